/**
 * Leases: which models are in use right now.
 *
 * A lease says a model is in use right now: a pull filling it, a file of it open in the FUSE
 * view. gc (budget or not) and remove() never take a leased model, so a pull never finds its
 * slots gone under it and a reader never loses the file it has open. Leases live in memory only:
 * they belong to the running process, and a restart ends every use they stood for. A pull takes
 * its lease before its manifest is added (addAndLease), so there is no moment in which a gc run
 * queued behind the add could evict the model it is about to fill.
 */
import type { CidString, StoreLease } from '@swarm/interface'

export class Leases {
  /** manifest CID → open leases (id → holder); an entry may precede the model (addAndLease) */
  private readonly leases = new Map<CidString, Map<number, string>>()
  private nextLeaseId = 0

  open (manifestCid: CidString, holder: string): StoreLease {
    if (typeof holder !== 'string' || holder === '') throw new TypeError('a lease needs a non-empty holder name')
    const id = this.nextLeaseId++
    let open = this.leases.get(manifestCid)
    if (open === undefined) {
      open = new Map()
      this.leases.set(manifestCid, open)
    }
    open.set(id, holder)
    let released = false
    return {
      manifestCid,
      holder,
      release: () => {
        if (released) return
        released = true
        const current = this.leases.get(manifestCid)
        current?.delete(id)
        if (current?.size === 0) this.leases.delete(manifestCid)
      }
    }
  }

  isLeased (manifestCid: CidString): boolean {
    return (this.leases.get(manifestCid)?.size ?? 0) > 0
  }

  holders (manifestCid: CidString): string[] {
    return [...new Set(this.leases.get(manifestCid)?.values())]
  }
}
