/**
 * The nodes pulling one manifest, which of them fetch from the origin, and which of those owns
 * each chunk (see `rendezvous.ts` and the notes in `origin.ts`).
 *
 * ## Origin fetchers: a small set everyone agrees on
 *
 * Rendezvous ownership over every puller is only right when every node knows every puller. In a
 * large fleet none does: a node that knows k of N pullers believes it owns about 1/(k+1) of the
 * chunks, and the origin sees about N/(k+1) copies of them (bench/sim, 1,000 nodes learning
 * pullers by gossip: 3.6 × M from the origin). So only a few pullers fetch from the origin:
 * the `fetchers` (default {@link DEFAULT_ORIGIN_FETCHERS}) that rank first by a second
 * rendezvous score, of the model (all its chunk CIDs) and the peer id. Ownership is assigned
 * among them alone. A node needs to know only those few, not the whole fleet, to agree with the
 * others on every owner, and they are few enough to travel with every message that names
 * pullers (the session passes on what it hears; a fleet's gossip carries each node's list). With
 * no more pullers than that, every puller is a fetcher and nothing changes.
 *
 * The set keeps only the {@link RETAIN_FACTOR} × fetchers best-ranked pullers it has heard of,
 * so a node's memory and work do not grow with the fleet: a puller ranked below all of them is
 * not recorded, and one that outranks the last pushes it out. When a fetcher leaves, the next
 * retained puller takes its place.
 *
 * ## Ownership balanced by bytes
 *
 * Plain rendezvous hashing gives each fetcher about 1/F of the chunks by count, with the spread
 * of a binomial: with 32 chunks and 4 fetchers the heaviest owner often has half as many again
 * as the mean, and with tensor-aligned cutting (large chunks, then a tail of small ones) a count
 * says little about bytes. The slowest owner sets when the last chunk leaves the origin, so
 * ownership here is bounded by bytes: chunks in a fixed order (largest first, then by index) go
 * each to the highest-ranked fetcher whose owned bytes leave room for it under a capacity of
 * max(largest chunk, 1.1 × M / F). A chunk no one has room for (whole chunks cannot always fit
 * the bound) goes to the least loaded fetcher, so no owner exceeds 1.1 × M / F plus one chunk.
 * The result is a function of the set of fetchers alone, so every node that knows them computes
 * the same owners.
 *
 * Stability: a fetcher that owns nothing was never the best-ranked one with room, so it joining
 * or leaving changes no owner (with F well above the chunk count, where the capacity is one
 * chunk's size). Otherwise only an owner's leaving, a joiner outranking some owner, or the
 * capacity changing (F small) reassigns; the slack keeps most chunks with their first-ranked
 * fetcher, so a change moves about the joiner's or leaver's own share and few others (measured
 * in the tests). The runner-up of a chunk is its best-ranked fetcher other than its owner.
 *
 * Cost: a change among the fetchers scores every fetcher for every chunk (O(F × chunks)); a
 * change among the others costs nothing. Changes are applied lazily, on the next read, so a
 * burst of joins costs one pass.
 *
 * Each scheduler normally has its own set. A simulator whose nodes all see the same pullers can
 * create one set and hand it to every scheduler (`pullerSet` in the scheduler's init), so the
 * ranking is done and held once. Schedulers notice changes through {@link PullerSet.version} and
 * {@link PullerSet.changesSince}.
 */

import { DEFAULT_ORIGIN_FETCHERS } from './constants.js'
import { InvalidChunkIndexError, InvalidPeerIdError, InvalidSchedulerInitError } from './errors.js'
import { keyHash, scoreHigh, scoreLow } from './rendezvous.js'
import type { KeyHash } from './rendezvous.js'

/** Changed chunks kept for schedulers catching up, in chunk indices, as a multiple of the chunk count. */
const CHANGE_LOG_CHUNKS = 4
/** At most this many versions are kept for schedulers catching up. */
const CHANGE_LOG_ENTRIES = 1024
/**
 * An owner's bytes may exceed the even share M / fetchers by this factor: some slack lets most
 * chunks go to their first-ranked fetcher, so a join or leave moves few chunks beyond the
 * joiner's or leaver's own; none at all would make every change ripple through the order.
 */
const OWNER_SLACK = 1.1
/** Pullers retained, as a multiple of the fetchers: the next in line when fetchers leave. */
export const RETAIN_FACTOR = 4

// the model's key for ranking fetchers is folded from its chunks' keys, starting here
const MODEL_SEED_A = 0x6a09e667
const MODEL_SEED_B = 0xbb67ae85

export interface PullerSetOptions {
  /** how many pullers fetch from the origin (default {@link DEFAULT_ORIGIN_FETCHERS}); Infinity: all */
  fetchers?: number
}

interface Member {
  hash: KeyHash
  /** the member's rank as a fetcher of this model: higher first */
  high: number
  low: number
}

export class PullerSet {
  readonly chunkCount: number
  /** how many of the best-ranked pullers fetch from the origin and own chunks */
  readonly fetcherLimit: number
  private readonly retainLimit: number
  private readonly keyA: Uint32Array
  private readonly keyB: Uint32Array
  private readonly modelA: number
  private readonly modelB: number
  private readonly members = new Map<string, Member>()
  /**
   * The worst-ranked retained puller, found when a newcomer meets a full set and kept until a
   * puller is added: a node hears the same unretained names again with every join that names
   * them, and each was a scan of the whole set. A removal needs no reset: it leaves the set short
   * of full, and it is full again only after an add, which resets it.
   */
  private worst: { id: string, member: Member } | undefined
  /** the fetchers ownership was last assigned among */
  private assigned: string[] = []
  private changed = false
  /** '' while the set is empty */
  private readonly owners: string[]
  private readonly positions: Uint32Array
  /** the runner-up, who takes over the chunk's origin fetch first when the owner stalls; '' while there is none */
  private readonly backups: string[]
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

  constructor (chunks: ReadonlyArray<{ cid: string, size?: number }>, members: Iterable<string> = [], options: PullerSetOptions = {}) {
    if (!Array.isArray(chunks)) throw new InvalidSchedulerInitError('chunks must be an array')
    const fetchers = options.fetchers ?? DEFAULT_ORIGIN_FETCHERS
    if (fetchers !== Infinity && (!Number.isInteger(fetchers) || fetchers < 1)) {
      throw new InvalidSchedulerInitError(`fetchers must be a positive integer or Infinity, got ${String(fetchers)}`)
    }
    this.fetcherLimit = fetchers
    this.retainLimit = RETAIN_FACTOR * fetchers
    const n = chunks.length
    this.chunkCount = n
    this.keyA = new Uint32Array(n)
    this.keyB = new Uint32Array(n)
    this.owners = new Array<string>(n).fill('')
    this.positions = new Uint32Array(n)
    this.backups = new Array<string>(n).fill('')
    let modelA = MODEL_SEED_A
    let modelB = MODEL_SEED_B
    for (let i = 0; i < n; i++) {
      const cid = chunks[i]?.cid
      if (typeof cid !== 'string' || cid === '') throw new InvalidSchedulerInitError(`chunk ${i} has no CID`)
      const key = keyHash(cid)
      this.keyA[i] = key.a
      this.keyB[i] = key.b
      modelA = scoreHigh(modelA, modelB, key.a)
      modelB = scoreHigh(modelB, modelA, key.b)
    }
    this.modelA = modelA
    this.modelB = modelB
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

  /** Pullers retained: the best-ranked ones heard of, at most {@link RETAIN_FACTOR} × the fetchers. */
  get size (): number {
    return this.members.size
  }

  /** How many pullers fetch from the origin now: the retained ones, up to the limit. */
  get fetcherCount (): number {
    return Math.min(this.members.size, this.fetcherLimit)
  }

  /** Increases whenever some chunk's owner or runner-up changes. */
  get version (): number {
    this.sync()
    return this.currentVersion
  }

  /** Whether the puller is retained (a puller ranked below every retained one is not). */
  has (peerId: string): boolean {
    return this.members.has(peerId)
  }

  /** The retained pullers. */
  ids (): string[] {
    return [...this.members.keys()]
  }

  /** The pullers that fetch from the origin, best-ranked first: what a node tells others it knows. */
  fetchers (): string[] {
    this.sync()
    return this.assigned.slice()
  }

  /** Whether the puller is one of those that fetch from the origin now. */
  isFetcher (peerId: string): boolean {
    this.sync()
    return this.assigned.includes(peerId)
  }

  add (peerId: string): void {
    checkPeerId(peerId)
    if (this.members.has(peerId)) return
    const hash = keyHash(peerId)
    const high = scoreHigh(this.modelA, this.modelB, hash.a)
    const member = { hash, high, low: scoreLow(this.modelB, hash.b, high) }
    if (this.members.size >= this.retainLimit) {
      // full: it replaces the worst-ranked retained puller, or is not recorded
      const worst = this.worst ??= this.worstRetained()
      if (!outranks(member.high, member.low, peerId, worst.member.high, worst.member.low, worst.id)) return
      this.members.delete(worst.id)
    }
    this.members.set(peerId, member)
    this.worst = undefined
    this.changed = true
  }

  remove (peerId: string): void {
    checkPeerId(peerId)
    if (this.members.delete(peerId)) this.changed = true
  }

  /** The worst-ranked retained puller (the set is not empty). */
  private worstRetained (): { id: string, member: Member } {
    let worst: { id: string, member: Member } | undefined
    for (const [id, other] of this.members) {
      if (worst === undefined || outranks(worst.member.high, worst.member.low, worst.id, other.high, other.low, id)) worst = { id, member: other }
    }
    return worst!
  }

  /** Makes the set exactly `peerIds` (as far as it retains them). */
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

  /** The fetcher that owns a chunk, or undefined while the set is empty. */
  owner (chunk: number): string | undefined {
    this.checkChunk(chunk)
    this.sync()
    const owner = this.owners[chunk]!
    return owner === '' ? undefined : owner
  }

  /** The fetcher ranked second for a chunk, or undefined while there are fewer than two. */
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

  /** The best-ranked retained pullers, at most the fetcher limit, best first. */
  private bestRanked (): string[] {
    const ranked = [...this.members.entries()]
    ranked.sort(([x, a], [y, b]) => outranks(a.high, a.low, x, b.high, b.low, y) ? -1 : 1)
    return ranked.slice(0, this.fetcherLimit).map(([id]) => id)
  }

  private sync (): void {
    if (!this.changed) return
    this.changed = false
    const fetchers = this.bestRanked()
    // ownership depends on the fetchers alone (see the notes at the top)
    const same = fetchers.length === this.assigned.length && fetchers.every(id => this.assigned.includes(id))
    this.assigned = fetchers
    if (same) return
    const n = this.chunkCount
    const oldOwners = this.owners.slice()
    const oldBackups = this.backups.slice()
    this.assign(fetchers)

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
   * highest-ranked fetcher whose owned bytes leave room for it under `capacity()`; a chunk no one
   * has room for (only possible with very uneven sizes) goes to the least loaded fetcher.
   */
  private assign (ids: string[]): void {
    const hashes = ids.map(id => this.members.get(id)!.hash)
    this.owners.fill('')
    this.backups.fill('')
    if (ids.length === 0) return
    const cap = this.capacity(ids.length)
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
      if (best < 0) best = lightest
      loads[best]! += size
      this.owners[i] = ids[best]!
      // the runner-up: the best-ranked fetcher other than the owner
      const backup = top === best ? second : top
      if (backup >= 0) this.backups[i] = ids[backup]!
    }
  }

  /** The bytes one fetcher may own: its even share with some slack, and never less than the largest chunk. */
  private capacity (fetchers: number): number {
    if (fetchers === 0) return 0
    return Math.max(this.largest, Math.ceil(OWNER_SLACK * this.totalBytes / fetchers))
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
