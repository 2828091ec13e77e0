/**
 * The nodes pulling one manifest, and which of them owns each chunk (rendezvous hashing of the
 * chunk's CID and the node's peer id; see `rendezvous.ts` and the notes in `origin.ts`).
 *
 * Owners (and runners-up) are cached per chunk and updated incrementally: a joining puller
 * costs one score per chunk, a leaving one a full ranking only of the chunks it ranked first or
 * second for. Changes are applied lazily,
 * on the next read, so a burst of joins costs one pass over the chunks per joiner and one
 * re-count of the owners' queues.
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

  constructor (chunks: ReadonlyArray<{ cid: string }>, members: Iterable<string> = []) {
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
    const changed = new Uint8Array(n)
    let changes = 0
    let backupsChanged = false

    if (this.left.size > 0) {
      const ids = [...this.members.keys()]
      const hashes = [...this.members.values()]
      for (let i = 0; i < n; i++) {
        const owner = this.owners[i]!
        const backup = this.backups[i]!
        if (!this.left.has(owner) && !this.left.has(backup)) continue
        this.owners[i] = ''
        this.backups[i] = ''
        for (let p = 0; p < ids.length; p++) this.consider(i, ids[p]!, hashes[p]!)
        if (this.owners[i] !== owner) {
          changed[i] = 1
          changes++
        }
        if (this.backups[i] !== backup) backupsChanged = true
      }
    }
    if (this.joined.size > 0) {
      const ids = [...this.joined]
      const hashes = ids.map(id => this.members.get(id)!)
      for (let i = 0; i < n; i++) {
        const owner = this.owners[i]
        const backup = this.backups[i]
        for (let p = 0; p < ids.length; p++) this.consider(i, ids[p]!, hashes[p]!)
        if (this.owners[i] !== owner && changed[i] === 0) {
          changed[i] = 1
          changes++
        }
        if (this.backups[i] !== backup) backupsChanged = true
      }
    }
    this.joined.clear()
    this.left.clear()
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

  /** Ranks `id` for chunk `i` against the current owner and runner-up: higher score first, ties by id. */
  private consider (i: number, id: string, hash: KeyHash): void {
    const high = scoreHigh(this.keyA[i]!, this.keyB[i]!, hash.a)
    // most candidates lose to the runner-up on the high bits alone
    if (this.backups[i] !== '' && high < this.backupHigh[i]!) return
    const low = scoreLow(this.keyB[i]!, hash.b, high)
    if (this.owners[i] === '' || outranks(high, low, id, this.ownerHigh[i]!, this.ownerLow[i]!, this.owners[i]!)) {
      this.backups[i] = this.owners[i]!
      this.backupHigh[i] = this.ownerHigh[i]!
      this.backupLow[i] = this.ownerLow[i]!
      this.owners[i] = id
      this.ownerHigh[i] = high
      this.ownerLow[i] = low
    } else if (this.backups[i] === '' || outranks(high, low, id, this.backupHigh[i]!, this.backupLow[i]!, this.backups[i]!)) {
      this.backups[i] = id
      this.backupHigh[i] = high
      this.backupLow[i] = low
    }
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
