/**
 * The nodes pulling one manifest, and which of them owns each chunk (see `rendezvous.ts` and the
 * notes in `origin.ts`).
 *
 * ## Ownership balanced by bytes
 *
 * Plain rendezvous hashing gives each puller about 1/N of the chunks by count, with the spread
 * of a binomial: with 32 chunks and 4 pullers the heaviest owner often has half as many again
 * as the mean, and with tensor-aligned cutting (large chunks, then a tail of small ones) a count
 * says little about bytes. The slowest owner sets when the last chunk leaves the origin, so
 * ownership here is bounded by bytes: chunks in a fixed order (largest first, then by index) go
 * each to the highest-ranked puller whose owned bytes leave room for it under a capacity of
 * max(largest chunk, 1.1 × M / N). A chunk no one has room for (whole chunks cannot always fit
 * the bound) goes to the least loaded puller, so no owner exceeds 1.1 × M / N plus one chunk.
 * The result is a function of the set alone, so every node computes the same owners.
 *
 * Stability: a puller that owns nothing was never the best-ranked one with room, so it joining
 * or leaving changes no owner (with N well above the chunk count, where the capacity is one
 * chunk's size, that is most of them). Otherwise only an owner's leaving, a joiner outranking
 * some owner, or the capacity changing (N small) reassigns; the slack keeps most chunks with
 * their first-ranked puller, so a change moves about the joiner's or leaver's own share and few
 * others (measured in the tests). The runner-up of a chunk is its best-ranked puller other than
 * its owner.
 *
 * Cost: a reassignment scores every puller for every chunk (O(N × chunks)); changes are applied
 * lazily, on the next read, so a burst of joins costs one pass.
 *
 * Each scheduler normally has its own set. A simulator whose nodes all see the same pullers can
 * create one set and hand it to every scheduler (`pullerSet` in the scheduler's init): ranking
 * 10,000 pullers for 512 chunks is then done once instead of once per node, and the set is held
 * once. Schedulers notice changes through {@link PullerSet.version} and
 * {@link PullerSet.changesSince}.
 */

import { InvalidChunkIndexError, InvalidPeerIdError, InvalidSchedulerInitError } from './errors.js'
import { keyHash, scoreHigh, scoreLow } from './rendezvous.js'
import type { KeyHash } from './rendezvous.js'

/** Changed chunks kept for schedulers catching up, in chunk indices, as a multiple of the chunk count. */
const CHANGE_LOG_CHUNKS = 4
/** At most this many versions are kept for schedulers catching up. */
const CHANGE_LOG_ENTRIES = 1024
/**
 * An owner's bytes may exceed the even share M / pullers by this factor: some slack lets most
 * chunks go to their first-ranked puller, so a join or leave moves few chunks beyond the
 * joiner's or leaver's own; none at all would make every change ripple through the order.
 */
const OWNER_SLACK = 1.1

export class PullerSet {
  readonly chunkCount: number
  private readonly keyA: Uint32Array
  private readonly keyB: Uint32Array
  private readonly members = new Map<string, KeyHash>()
  private readonly joined = new Set<string>()
  private readonly left = new Set<string>()
  /** '' while the set is empty */
  private readonly owners: string[]
  private readonly ownerHigh: Uint32Array
  private readonly ownerLow: Uint32Array
  /** the runner-up, who takes over the chunk's origin fetch first when the owner stalls; '' while there is none */
  private readonly backups: string[]
  private readonly backupHigh: Uint32Array
  private readonly backupLow: Uint32Array
  private readonly positions: Uint32Array
  private ownedCounts = new Map<string, number>()
  private currentVersion = 0
  private readonly log: Array<{ version: number, chunks: Uint32Array }> = []
  private logged = 0

  /** chunk sizes in bytes (1 each when the chunks came without sizes: ownership then balances counts) */
  private readonly sizes: Float64Array
  private readonly totalBytes: number
  private readonly largest: number
  /** the order in which chunks are assigned: largest first, then by index */
  private readonly order: Uint32Array
  /** the capacity the owners were last assigned under; a change of it reassigns every chunk */
  private assignedCapacity = -1

  constructor (chunks: ReadonlyArray<{ cid: string, size?: number }>, members: Iterable<string> = []) {
    if (!Array.isArray(chunks)) throw new InvalidSchedulerInitError('chunks must be an array')
    const n = chunks.length
    this.chunkCount = n
    this.keyA = new Uint32Array(n)
    this.keyB = new Uint32Array(n)
    this.owners = new Array<string>(n).fill('')
    this.ownerHigh = new Uint32Array(n)
    this.ownerLow = new Uint32Array(n)
    this.positions = new Uint32Array(n)
    this.backups = new Array<string>(n).fill('')
    this.backupHigh = new Uint32Array(n)
    this.backupLow = new Uint32Array(n)
    for (let i = 0; i < n; i++) {
      const cid = chunks[i]?.cid
      if (typeof cid !== 'string' || cid === '') throw new InvalidSchedulerInitError(`chunk ${i} has no CID`)
      const key = keyHash(cid)
      this.keyA[i] = key.a
      this.keyB[i] = key.b
    }
    this.sizes = new Float64Array(n)
    let total = 0
    let largest = 0
    for (let i = 0; i < n; i++) {
      const size = chunks[i]!.size ?? 1
      if (!Number.isFinite(size) || size < 0) throw new InvalidSchedulerInitError(`chunk ${i} has size ${String(size)}, expected a non-negative number`)
      this.sizes[i] = size
      total += size
      largest = Math.max(largest, size)
    }
    this.totalBytes = total
    this.largest = largest
    const order = Array.from({ length: n }, (_, i) => i)
    order.sort((x, y) => this.sizes[y]! - this.sizes[x]! || x - y)
    this.order = Uint32Array.from(order)
    for (const id of members) this.add(id)
  }

  /** Whether the set was made for exactly these chunks (by CID, in this order). */
  covers (cids: readonly string[]): boolean {
    if (cids.length !== this.chunkCount) return false
    for (let i = 0; i < cids.length; i++) {
      const key = keyHash(cids[i]!)
      if (key.a !== this.keyA[i] || key.b !== this.keyB[i]) return false
    }
    return true
  }

  get size (): number {
    return this.members.size
  }

  /** Increases whenever some chunk's owner or runner-up changes. */
  get version (): number {
    this.sync()
    return this.currentVersion
  }

  has (peerId: string): boolean {
    return this.members.has(peerId)
  }

  ids (): string[] {
    return [...this.members.keys()]
  }

  add (peerId: string): void {
    checkPeerId(peerId)
    if (this.members.has(peerId)) return
    this.members.set(peerId, keyHash(peerId))
    // back before the change was applied: the cached owners are still right
    if (!this.left.delete(peerId)) this.joined.add(peerId)
  }

  remove (peerId: string): void {
    checkPeerId(peerId)
    if (!this.members.delete(peerId)) return
    if (!this.joined.delete(peerId)) this.left.add(peerId)
  }

  /** Makes the set exactly `peerIds`. */
  set (peerIds: Iterable<string>): void {
    const next = new Set<string>()
    for (const id of peerIds) {
      checkPeerId(id)
      next.add(id)
    }
    for (const id of [...this.members.keys()]) {
      if (!next.has(id)) this.remove(id)
    }
    for (const id of next) this.add(id)
  }

  /** The puller that owns a chunk, or undefined while the set is empty. */
  owner (chunk: number): string | undefined {
    this.checkChunk(chunk)
    this.sync()
    const owner = this.owners[chunk]!
    return owner === '' ? undefined : owner
  }

  /** The puller ranked second for a chunk, or undefined while there are fewer than two. */
  backup (chunk: number): string | undefined {
    this.checkChunk(chunk)
    this.sync()
    const backup = this.backups[chunk]!
    return backup === '' ? undefined : backup
  }

  /** How many of its owner's chunks come before this one: its place in the owner's origin queue. */
  queuePosition (chunk: number): number {
    this.checkChunk(chunk)
    this.sync()
    return this.positions[chunk]!
  }

  /** How many chunks a puller owns. */
  ownedBy (peerId: string): number {
    this.sync()
    return this.ownedCounts.get(peerId) ?? 0
  }

  /**
   * The chunks whose owner changed after `version` (possibly with repeats; runner-up changes are
   * not listed), or undefined when that is too long ago to say, in which case any chunk may have
   * changed.
   */
  changesSince (version: number): Uint32Array | undefined {
    this.sync()
    if (version >= this.currentVersion) return new Uint32Array(0)
    const first = this.log.findIndex(entry => entry.version > version)
    if (first < 0 || this.log[first]!.version !== version + 1) return undefined
    const entries = this.log.slice(first)
    const changed = new Uint32Array(entries.reduce((sum, entry) => sum + entry.chunks.length, 0))
    let at = 0
    for (const entry of entries) {
      changed.set(entry.chunks, at)
      at += entry.chunks.length
    }
    return changed
  }

  private sync (): void {
    if (this.joined.size === 0 && this.left.size === 0) return
    const n = this.chunkCount
    const oldOwners = this.owners.slice()
    const oldBackups = this.backups.slice()
    // Only an owner's leaving, or a joiner outranking some chunk's owner, can change an owner:
    // a puller that owns nothing was never the best-ranked one with room, so no assignment
    // depended on it (see the notes at the top).
    let reassign = this.capacity() !== this.assignedCapacity
    for (const id of this.left) if ((this.ownedCounts.get(id) ?? 0) > 0) reassign = true
    if (!reassign && this.joined.size > 0) {
      const hashes = [...this.joined].map(id => this.members.get(id)!)
      const ids = [...this.joined]
      for (let i = 0; i < n && !reassign; i++) {
        if (this.owners[i] === '') {
          reassign = true
          break
        }
        for (let p = 0; p < ids.length; p++) {
          const high = scoreHigh(this.keyA[i]!, this.keyB[i]!, hashes[p]!.a)
          if (high < this.ownerHigh[i]!) continue
          const low = scoreLow(this.keyB[i]!, hashes[p]!.b, high)
          if (outranks(high, low, ids[p]!, this.ownerHigh[i]!, this.ownerLow[i]!, this.owners[i]!)) {
            reassign = true
            break
          }
        }
      }
    }
    if (reassign || this.members.size === 0) this.assign()
    else this.rerankBackups()
    this.joined.clear()
    this.left.clear()

    let changes = 0
    let backupsChanged = false
    const changed = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      if (this.owners[i] !== oldOwners[i]) {
        changed[i] = 1
        changes++
      }
      if (this.backups[i] !== oldBackups[i]) backupsChanged = true
    }
    if (changes === 0 && !backupsChanged) return

    if (changes > 0) {
      const counts = new Map<string, number>()
      for (let i = 0; i < n; i++) {
        const owner = this.owners[i]!
        const position = counts.get(owner) ?? 0
        this.positions[i] = position
        counts.set(owner, position + 1)
      }
      this.ownedCounts = counts
    }

    const list = new Uint32Array(changes)
    let at = 0
    for (let i = 0; i < n; i++) if (changed[i] === 1) list[at++] = i
    this.currentVersion++
    this.log.push({ version: this.currentVersion, chunks: list })
    this.logged += changes
    while (this.log.length > 1 && (this.logged > CHANGE_LOG_CHUNKS * n || this.log.length > CHANGE_LOG_ENTRIES)) {
      this.logged -= this.log.shift()!.chunks.length
    }
  }

  /**
   * Byte-balanced ownership: chunks in a fixed order (largest first, then by index), each to the
   * highest-ranked puller whose owned bytes leave room for it under `capacity()`; a chunk no one
   * has room for (only possible with very uneven sizes) goes to the least loaded puller.
   */
  private assign (): void {
    const n = this.chunkCount
    const ids = [...this.members.keys()]
    const hashes = [...this.members.values()]
    this.owners.fill('')
    this.backups.fill('')
    if (ids.length === 0) return
    const cap = this.capacity(ids.length)
    this.assignedCapacity = cap
    const loads = new Float64Array(ids.length)
    for (const i of this.order) {
      const size = this.sizes[i]!
      let best = -1
      let bestHigh = 0
      let bestLow = 0
      let top = -1
      let topHigh = 0
      let topLow = 0
      let second = -1
      let secondHigh = 0
      let secondLow = 0
      let lightest = 0
      for (let p = 0; p < ids.length; p++) {
        const high = scoreHigh(this.keyA[i]!, this.keyB[i]!, hashes[p]!.a)
        const low = scoreLow(this.keyB[i]!, hashes[p]!.b, high)
        const id = ids[p]!
        if (top < 0 || outranks(high, low, id, topHigh, topLow, ids[top]!)) {
          second = top
          secondHigh = topHigh
          secondLow = topLow
          top = p
          topHigh = high
          topLow = low
        } else if (second < 0 || outranks(high, low, id, secondHigh, secondLow, ids[second]!)) {
          second = p
          secondHigh = high
          secondLow = low
        }
        if (loads[p]! + size <= cap && (best < 0 || outranks(high, low, id, bestHigh, bestLow, ids[best]!))) {
          best = p
          bestHigh = high
          bestLow = low
        }
        if (loads[p]! < loads[lightest]! || (loads[p]! === loads[lightest]! && id > ids[lightest]!)) lightest = p
      }
      if (best < 0) {
        best = lightest
        bestHigh = scoreHigh(this.keyA[i]!, this.keyB[i]!, hashes[best]!.a)
        bestLow = scoreLow(this.keyB[i]!, hashes[best]!.b, bestHigh)
      }
      loads[best]! += size
      this.owners[i] = ids[best]!
      this.ownerHigh[i] = bestHigh
      this.ownerLow[i] = bestLow
      // the runner-up: the best-ranked puller other than the owner
      const backup = top === best ? second : top
      if (backup >= 0) {
        this.backups[i] = ids[backup]!
        this.backupHigh[i] = backup === top ? topHigh : secondHigh
        this.backupLow[i] = backup === top ? topLow : secondLow
      }
    }
  }

  /** Owners unchanged: the runners-up of chunks whose runner-up left, or that a joiner outranks. */
  private rerankBackups (): void {
    const ids = [...this.members.keys()]
    const hashes = [...this.members.values()]
    const joined = [...this.joined]
    const joinedHashes = joined.map(id => this.members.get(id)!)
    for (let i = 0; i < this.chunkCount; i++) {
      const owner = this.owners[i]!
      if (this.left.has(this.backups[i]!)) {
        this.backups[i] = ''
        for (let p = 0; p < ids.length; p++) if (ids[p] !== owner) this.considerBackup(i, ids[p]!, hashes[p]!)
      } else {
        for (let p = 0; p < joined.length; p++) this.considerBackup(i, joined[p]!, joinedHashes[p]!)
      }
    }
  }

  private considerBackup (i: number, id: string, hash: KeyHash): void {
    const high = scoreHigh(this.keyA[i]!, this.keyB[i]!, hash.a)
    // most candidates lose to the runner-up on the high bits alone
    if (this.backups[i] !== '' && high < this.backupHigh[i]!) return
    const low = scoreLow(this.keyB[i]!, hash.b, high)
    if (this.backups[i] === '' || outranks(high, low, id, this.backupHigh[i]!, this.backupLow[i]!, this.backups[i]!)) {
      this.backups[i] = id
      this.backupHigh[i] = high
      this.backupLow[i] = low
    }
  }

  /** The bytes one puller may own: its even share with some slack, and never less than the largest chunk. */
  capacity (pullers: number = this.members.size): number {
    if (pullers === 0) return 0
    return Math.max(this.largest, Math.ceil(OWNER_SLACK * this.totalBytes / pullers))
  }

  private checkChunk (chunk: number): void {
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= this.chunkCount) {
      throw new InvalidChunkIndexError(chunk, this.chunkCount)
    }
  }
}

function outranks (high: number, low: number, id: string, otherHigh: number, otherLow: number, other: string): boolean {
  return high > otherHigh || (high === otherHigh && (low > otherLow || (low === otherLow && id > other)))
}

function checkPeerId (peerId: string): void {
  if (typeof peerId !== 'string' || peerId === '') throw new InvalidPeerIdError(peerId)
}
