/**
 * The chunk scheduler: for one manifest pulled by one node, decides which chunk to ask of which
 * peer, and which chunks this node takes from the origin. It does no I/O and reads no clock:
 * facts come in as events stamped with `now` (peers joining and leaving, their bitfields and
 * "have"s, requests finishing or failing), and {@link ChunkScheduler.tick} answers with the
 * requests to start and to cancel, plus the time it next wants to be asked. So the same code
 * runs a real pull and a discrete-event simulation with virtual time, and a seeded PRNG makes a
 * simulated run repeat exactly.
 *
 * Its parts: who takes what from the origin (`origin.ts`), which peer is asked for what
 * (`peers.ts`), and the duplicates of the last and of slow requests (`endgame.ts`); each
 * module's notes say how it decides. This one keeps the state they share and turns events into
 * it, with the bookkeeping of who holds what (`holdings.ts`) and of requests in flight
 * (`requests.ts`); its options are checked in `options.ts`.
 *
 * ## Cost
 *
 * A simulator runs thousands of these, so events are cheap: bitfields are kept as 32-bit words,
 * holder counts are updated as haves arrive, owners are cached per chunk and assigned again
 * only when the few origin fetchers change (fetchers × chunks scores; see `pullers.ts`, whose
 * set a simulator may share among all its schedulers), and `tick` skips the
 * search for new work unless something that could create work happened (a slot freed, a wanted
 * chunk appeared at a peer with room, an owner changed, a deadline passed). A search is linear
 * in the missing chunks plus (peers with free slots × chunks / 32).
 */

import { silentLogger, validateBitfield } from '@swarm/interface'
import type { LandingLimit, Logger } from '@swarm/interface'
import {
  InvalidBitfieldError,
  InvalidChunkIndexError,
  InvalidPeerIdError,
  InvalidSchedulerInitError,
  InvalidTimeError,
  RequestMismatchError
} from './errors.js'
import { duplicateDueAt, fillEndgame, hedge, inEndgame } from './endgame.js'
import { addArriving, addBitfield, addHave, addHolding, clearFailed, dropArriving, haveBitfield, removeArriving, removeHoldings, setIdle } from './holdings.js'
import type { PeerState } from './holdings.js'
import { checkRequired, chunkList, haveFlags, pullerSetOf, settings } from './options.js'
import type { SchedulerInit } from './options.js'
import { catchUp, expectedUntil, fallbackWindowEnd, fillFromOrigin, releaseLostOwnership, timeoutOf } from './origin.js'
import { fillFromArriving, fillFromPeers } from './peers.js'
import type { PullerSet } from './pullers.js'
import { cancelRequest, checkFailureReason, endRequest, expireRequests, noteFailure, peerSlotFree, requestDelivered, startRequest } from './requests.js'
import type { FailureReason, Outstanding, Request } from './requests.js'

export type { FailureReason, Request, RequestSource } from './requests.js'
export type { SchedulerInit } from './options.js'

/** What the caller should do now. */
export interface Actions {
  /** requests to start */
  start: Request[]
  /** requests to abort; the scheduler has already forgotten them, and later reports about them are ignored */
  cancel: Request[]
  /** when to call `tick` again if no other event comes first (a deadline), or undefined when only events matter */
  wakeAt: number | undefined
}

export interface SchedulerStats {
  chunks: number
  chunksDone: number
  bytes: number
  bytesDone: number
  bytesFromOrigin: number
  bytesFromPeers: number
  /** bytes that arrived without a live request of ours (e.g. copied from another local model) */
  bytesOther: number
  originRequests: number
  /** origin requests for chunks this node did not own (an owner seemed slow or stalled), counted in `originRequests` too */
  originFallbacks: number
  /** origin requests, of those, for chunks a busier owner had yet to fetch, taken once this node had none of its own left */
  originSteals: number
  peerRequests: number
  /** hedges and endgame duplicates, counted in `peerRequests` too */
  duplicateRequests: number
  /** requests to peers still receiving the chunk (cut-through), counted in `peerRequests` too */
  relayRequests: number
  inflight: number
  inflightOrigin: number
  cancelled: number
  failures: number
  timeouts: number
  bannedPeers: number
  connectedPeers: number
  /** pullers this node ranks, itself included: all it knows of, up to 4 × `originFetchers` (see `pullers.ts`) */
  pullers: number
  /** chunks this node owns among the current fetchers */
  ownedChunks: number
  endgame: boolean
}

export interface ChunkScheduler {
  readonly selfId: string
  readonly chunkCount: number
  /** every chunk is local */
  readonly done: boolean
  readonly stats: SchedulerStats
  /** A connection to a peer we may ask for chunks. `puller`: it also pulls this manifest (see `pullerJoined`). */
  peerJoined(peerId: string, now: number, options?: { puller?: boolean }): void
  /** The connection is gone; its requests are cancelled. `puller`: it also stopped pulling (see `pullerLeft`). */
  peerLeft(peerId: string, now: number, options?: { puller?: boolean }): void
  /**
   * A connected peer holds these chunks: a bitfield (Uint8Array) or a list of indices. Holdings only
   * grow, so this adds to what is known. Ignored for peers not connected or banned.
   */
  peerHas(peerId: string, chunks: Uint8Array | readonly number[], now: number): void
  /**
   * A connected peer has begun receiving these chunks and relays each as it arrives
   * (cut-through): it is asked for one only when no connected peer holds it (see `peers.ts`).
   * Ignored for chunks it holds, and for peers not connected or banned.
   */
  peerArriving(peerId: string, chunks: readonly number[], now: number): void
  /** The peer no longer receives these chunks (its transfer failed or was given up). */
  peerNotArriving(peerId: string, chunks: readonly number[], now: number): void
  /** The complete set of other pullers (self is added, and ignored if listed); marks the set known. */
  setPullers(peerIds: Iterable<string>, now: number): void
  pullerJoined(peerId: string, now: number): void
  pullerLeft(peerId: string, now: number): void
  /**
   * A chunk is local and verified. `requestId`: the request that delivered it; other requests
   * for the chunk are cancelled by the next `tick`. Without one (e.g. copied from another local
   * model), all of the chunk's requests are cancelled.
   */
  chunkArrived(chunk: number, now: number, requestId?: number): void
  /** A request ended without its chunk. Unknown or already cancelled ids are ignored. */
  requestFailed(requestId: number, now: number, reason: FailureReason): void
  /**
   * The origin keeps failing: until `until`, a chunk that a connected peer holds is not asked of
   * the origin, even where that peer turned it away (it is asked of the peer again at its retry
   * time); a chunk no peer holds still is. Origin requests already outstanding are left to end.
   */
  pauseOrigin(until: number, now: number): void
  /** Every chunk still missing is held by a connected, unbanned peer, so the pull can end without the origin. */
  peersHoldAllMissing(): boolean
  /** Expires timed-out requests, hedges slow ones, fills every free slot. */
  tick(now: number): Actions
  /** The rendezvous owner of a chunk among the current pullers (self included unless a shared set dropped it). */
  owner(chunk: number): string | undefined
  has(chunk: number): boolean
  /**
   * Whether a connected peer lacks the chunk (holds no copy that this node knows of), and so may
   * ask this node for it while it arrives. A peer whose holdings are not known yet lacks everything.
   */
  peerLacks(chunk: number): boolean
  /** What this node holds, to announce to peers. */
  bitfield(): Uint8Array
  /** The pullers that fetch from the origin as this node knows them, best-ranked first: to tell peers (see `pullers.ts`). */
  fetchers(): string[]
  /** Requests outstanding now. */
  inflight(): Request[]
}

/**
 * The package exports only {@link ChunkScheduler} (through `chunkScheduler()`); the state below is
 * open to this package's deciding modules (`origin.ts`, `peers.ts`, `endgame.ts`), which read it
 * and start requests through `startRequest`, and to its bookkeeping (`holdings.ts`, `requests.ts`).
 */
export class Scheduler implements ChunkScheduler {
  readonly selfId: string
  readonly chunkCount: number

  readonly cids: string[]
  readonly sizes: Float64Array
  readonly totalBytes: number
  /** the largest chunk's size: chunks under a quarter of it do not move `originLimit` or `peerLimit` */
  readonly largestChunk: number
  readonly words: number
  readonly random: () => number
  readonly log: Logger

  readonly maxPerPeer: number
  readonly maxOrigin: number
  readonly fleetOrigin: number
  readonly originWindow: number
  /** chunks seen held anywhere (here or at a connected peer), ever */
  readonly seen: Uint8Array
  seenCount = 0
  /** chunks below this have entered the non-owners' fallback window (see `fallbackWindowEnd`) */
  windowEnd = 0
  /** recent average time of this node's origin requests that delivered (0: none yet) */
  originMs = 0
  originSamples = 0
  /** how long peer requests take per byte (moving average of those delivered), and how many made it */
  peerMsPerByte = 0
  peerSamples = 0
  /** before this time the origin is not asked for chunks a peer holds (see `pauseOrigin`) */
  originPausedUntil = -Infinity
  /** recent average time from a chunk becoming wanted to its first appearance at a peer */
  deliveryMs = 0
  deliveries = 0
  readonly maxTotal: number
  /** peer requests at once: as many as land within `peerLandingMs` */
  readonly peerLimit: LandingLimit
  /** origin requests at once while others pull too: as many as land within `originLandingMs` */
  readonly originLimit: LandingLimit
  readonly expectedPullers: number
  expectedPullersLapsed = false
  readonly originFallbackMs: number
  readonly requestTimeoutMs: number
  readonly hedgeAfterMs: number
  readonly retryAfterMs: number
  readonly endgameEnabled: boolean
  readonly useOrigin: boolean

  readonly haveWords: Uint32Array
  haveCount = 0
  bytesDone = 0
  /** missing chunks with no request outstanding */
  readonly idleWords: Uint32Array
  idleCount = 0
  /** connected, unbanned peers holding each chunk */
  readonly holders: Uint32Array
  /** chunks with a holder (`holders[i] > 0`), and chunks some peer failed (`failedPeers[i]` set): what the origin scan skips and keeps */
  readonly heldWords: Uint32Array
  readonly failedWords: Uint32Array
  /** rotation of chunk order from a random start: the tie-break among equally rare chunks */
  readonly tiebreak: Uint32Array
  /** the chunk whose tie-break is 0 */
  readonly tiebreakStart: number
  readonly scratch: Uint32Array

  readonly peers = new Map<string, PeerState>()
  readonly banned = new Set<string>()
  readonly outstanding = new Map<number, Outstanding>()
  readonly byChunk: Array<Outstanding[] | undefined>
  originInflight = 0
  /** relays outstanding (see `peers.ts`): peer requests outside the landing-time limit */
  relayInflight = 0
  /** chunks connected peers said they are receiving, summed over peers */
  arrivingCount = 0
  nextRequestId = 1
  /**
   * peers that failed us for a chunk, each with whether its last failure was only `busy`: asked
   * again only when no other holder is left; a busy one still holds it for the origin's decisions (see `freshHolders`)
   */
  readonly failedPeers: Array<Map<string, boolean> | undefined>
  readonly peerRetryAt: Float64Array
  readonly originRetryAt: Float64Array

  // ownership
  readonly pullers: PullerSet
  pullersKnown: boolean
  /** the pullers' version the waits below account for */
  seenVersion = 0
  /** when the chunk started waiting under its current owner */
  readonly waitSince: Float64Array
  /** when the chunk entered the non-owners' fallback window; their wait for it counts from then too */
  readonly eligibleSince: Float64Array
  /** the chunk's owner at the last look at the pullers (undefined: it has had none yet) */
  readonly lastOwner: Array<string | undefined>
  /** where this node took the chunk over from another owner, when it may take it from the origin (-Infinity: at once); see TAKEOVER_WAIT_MS */
  readonly takeOverAt: Float64Array

  // time and pending work
  startedAt: number | undefined
  lastNow = -Infinity
  dirty = true
  nextFallbackAt = Infinity
  /** when a fetcher with nothing of its own left may next look for a busier owner's chunk (see `origin.ts`) */
  nextStealScanAt = -Infinity
  nextRetryAt = Infinity
  pendingCancels: Request[] = []

  counters = {
    bytesFromOrigin: 0,
    bytesFromPeers: 0,
    bytesOther: 0,
    originRequests: 0,
    originFallbacks: 0,
    originSteals: 0,
    peerRequests: 0,
    duplicateRequests: 0,
    relayRequests: 0,
    cancelled: 0,
    failures: 0,
    timeouts: 0
  }

  constructor (init: SchedulerInit) {
    checkRequired(init)
    this.selfId = init.selfId
    this.random = init.random
    this.log = (init.logger ?? silentLogger).child({ component: 'scheduler' })

    const n = init.chunks.length
    this.chunkCount = n
    this.words = (n + 31) >>> 5
    const chunks = chunkList(init.chunks)
    this.cids = chunks.cids
    this.sizes = chunks.sizes
    this.totalBytes = chunks.totalBytes
    this.largestChunk = chunks.largestChunk

    const limits = settings(init)
    this.maxPerPeer = limits.maxPerPeer
    this.maxOrigin = limits.maxOrigin
    this.fleetOrigin = limits.fleetOrigin
    this.originWindow = limits.originWindow
    this.expectedPullers = limits.expectedPullers
    this.maxTotal = limits.maxTotal
    this.peerLimit = limits.peerLimit
    this.originLimit = limits.originLimit
    this.originFallbackMs = limits.originFallbackMs
    this.requestTimeoutMs = limits.requestTimeoutMs
    this.hedgeAfterMs = limits.hedgeAfterMs
    this.retryAfterMs = limits.retryAfterMs
    this.endgameEnabled = limits.endgameEnabled
    this.useOrigin = limits.useOrigin

    this.haveWords = new Uint32Array(this.words)
    this.idleWords = new Uint32Array(this.words)
    this.scratch = new Uint32Array(this.words)
    this.holders = new Uint32Array(n)
    this.heldWords = new Uint32Array(this.words)
    this.failedWords = new Uint32Array(this.words)
    this.tiebreak = new Uint32Array(n)
    this.byChunk = new Array<Outstanding[] | undefined>(n)
    this.failedPeers = new Array<Map<string, boolean> | undefined>(n)
    this.peerRetryAt = new Float64Array(n)
    this.originRetryAt = new Float64Array(n)
    this.waitSince = new Float64Array(n)
    this.seen = new Uint8Array(n)
    this.eligibleSince = new Float64Array(n)
    this.lastOwner = new Array<string | undefined>(n)
    this.takeOverAt = new Float64Array(n).fill(-Infinity)

    const have = init.have === undefined ? undefined : haveFlags(init.have, n)
    for (let i = 0; i < n; i++) {
      if (have?.[i] === true) addHave(this, i, -Infinity)
      else setIdle(this, i)
    }

    const start = n === 0 ? 0 : Math.floor(this.draw() * n)
    this.tiebreakStart = start
    for (let i = 0; i < n; i++) this.tiebreak[i] = (i - start + n) % n

    this.pullers = pullerSetOf(init, this.cids)
    this.pullersKnown = init.pullers !== undefined || init.pullerSet !== undefined
    if (init.now !== undefined) this.clock(init.now)
  }

  get done (): boolean {
    return this.haveCount === this.chunkCount
  }

  get stats (): SchedulerStats {
    return {
      chunks: this.chunkCount,
      chunksDone: this.haveCount,
      bytes: this.totalBytes,
      bytesDone: this.bytesDone,
      ...this.counters,
      inflight: this.outstanding.size,
      inflightOrigin: this.originInflight,
      bannedPeers: this.banned.size,
      connectedPeers: this.peers.size,
      pullers: this.pullers.size,
      ownedChunks: this.pullers.ownedBy(this.selfId),
      endgame: this.endgameEnabled && inEndgame(this)
    }
  }

  peerJoined (peerId: string, now: number, options: { puller?: boolean } = {}): void {
    this.clock(now)
    checkPeerId(peerId)
    if (options.puller === true && peerId !== this.selfId) this.pullers.add(peerId)
    if (peerId === this.selfId || this.banned.has(peerId) || this.peers.has(peerId)) return
    this.peers.set(peerId, {
      id: peerId,
      source: Object.freeze({ kind: 'peer', peerId }),
      bits: new Uint32Array(this.words),
      arriving: new Uint32Array(this.words),
      inflight: 0
    })
  }

  peerLeft (peerId: string, now: number, options: { puller?: boolean } = {}): void {
    this.clock(now)
    checkPeerId(peerId)
    if (options.puller === true && peerId !== this.selfId) this.pullers.remove(peerId)
    const peer = this.peers.get(peerId)
    if (peer !== undefined) this.dropPeer(peer)
  }

  peerHas (peerId: string, chunks: Uint8Array | readonly number[], now: number): void {
    now = this.clock(now)
    checkPeerId(peerId)
    const peer = this.peers.get(peerId)
    if (chunks instanceof Uint8Array) {
      validateBitfield(chunks, this.chunkCount)
      if (peer === undefined) return
      addBitfield(this, peer, chunks, this.peerHasRoom(peer), now)
    } else if (Array.isArray(chunks)) {
      for (const i of chunks) this.checkChunk(i)
      if (peer === undefined) return
      const hasRoom = this.peerHasRoom(peer)
      for (const i of chunks) addHolding(this, peer, i, hasRoom, now)
    } else {
      throw new InvalidBitfieldError('chunks must be a bitfield (Uint8Array) or an array of chunk indices')
    }
  }

  peerArriving (peerId: string, chunks: readonly number[], now: number): void {
    const peer = this.arrivingNotice(peerId, chunks, now)
    if (peer !== undefined) for (const i of chunks) addArriving(this, peer, i)
  }

  peerNotArriving (peerId: string, chunks: readonly number[], now: number): void {
    const peer = this.arrivingNotice(peerId, chunks, now)
    if (peer !== undefined) for (const i of chunks) dropArriving(this, peer, i)
  }

  setPullers (peerIds: Iterable<string>, now: number): void {
    this.clock(now)
    const next = new Set<string>(peerIds)
    next.add(this.selfId)
    this.pullers.set(next)
    if (!this.pullersKnown) {
      this.pullersKnown = true
      this.dirty = true
    }
  }

  pullerJoined (peerId: string, now: number): void {
    this.clock(now)
    checkPeerId(peerId)
    if (peerId !== this.selfId) this.pullers.add(peerId)
  }

  pullerLeft (peerId: string, now: number): void {
    this.clock(now)
    checkPeerId(peerId)
    if (peerId !== this.selfId) this.pullers.remove(peerId)
  }

  chunkArrived (chunk: number, now: number, requestId?: number): void {
    now = this.clock(now)
    this.checkChunk(chunk)
    const delivered = requestId === undefined ? undefined : this.outstanding.get(requestId)
    if (delivered !== undefined && delivered.request.chunk !== chunk) {
      throw new RequestMismatchError(`request ${String(requestId)} was for chunk ${delivered.request.chunk}, not chunk ${chunk}`)
    }
    if (delivered !== undefined) requestDelivered(this, delivered, now)
    if (this.has(chunk)) return

    addHave(this, chunk, now)
    const size = this.sizes[chunk]!
    if (delivered === undefined) this.counters.bytesOther += size
    else if (delivered.peer === undefined) this.counters.bytesFromOrigin += size
    else this.counters.bytesFromPeers += size

    const others = this.byChunk[chunk]
    if (others !== undefined) {
      for (const other of [...others]) this.cancel(other)
    }
    clearFailed(this, chunk)
    this.dirty = true
  }

  requestFailed (requestId: number, now: number, reason: FailureReason): void {
    now = this.clock(now)
    checkFailureReason(reason)
    const failed = this.outstanding.get(requestId)
    if (failed === undefined) return
    endRequest(this, failed)
    if (reason === 'cancelled') {
      this.counters.cancelled++
      return
    }
    if (reason === 'timeout') this.counters.timeouts++
    else this.counters.failures++
    const peer = failed.peer
    if (reason === 'bad-data' && peer !== undefined) {
      this.ban(peer)
    } else {
      noteFailure(this, failed, now, reason === 'busy')
    }
  }

  pauseOrigin (until: number, now: number): void {
    this.clock(now)
    if (typeof until !== 'number' || Number.isNaN(until)) throw new InvalidTimeError(until)
    this.originPausedUntil = Math.max(this.originPausedUntil, until)
    this.dirty = true
  }

  peersHoldAllMissing (): boolean {
    for (let i = 0; i < this.chunkCount; i++) {
      if (!this.has(i) && this.holders[i]! === 0) return false
    }
    return true
  }

  tick (now: number): Actions {
    now = this.clock(now)
    catchUp(this)
    releaseLostOwnership(this, now)
    const start: Request[] = []
    const cancel = this.pendingCancels
    this.pendingCancels = []

    if (this.done) {
      for (const outstanding of [...this.outstanding.values()]) {
        endRequest(this, outstanding)
        this.counters.cancelled++
        cancel.push(outstanding.request)
      }
      return { start, cancel, wakeAt: undefined }
    }

    expireRequests(this, now, cancel)

    hedge(this, now, start)
    if (now >= expectedUntil(this)) {
      // the pullers expected at the start had their time to show up: the share grows to what is known
      this.expectedPullersLapsed = true
      this.dirty = true
    }
    if (this.dirty || now >= this.nextFallbackAt || now >= this.nextRetryAt) this.fill(now, start)

    return { start, cancel, wakeAt: this.wakeAt(now) }
  }

  owner (chunk: number): string | undefined {
    this.checkChunk(chunk)
    return this.pullers.owner(chunk)
  }

  has (chunk: number): boolean {
    return (this.haveWords[chunk >>> 5]! & (1 << (chunk & 31))) !== 0
  }

  peerLacks (chunk: number): boolean {
    this.checkChunk(chunk)
    return this.holders[chunk]! < this.peers.size
  }

  fetchers (): string[] {
    return this.pullers.fetchers()
  }

  bitfield (): Uint8Array {
    return haveBitfield(this)
  }

  inflight (): Request[] {
    return [...this.outstanding.values()].map(o => o.request)
  }

  // ---- deciding ----

  private fill (now: number, start: Request[]): void {
    this.dirty = false
    this.nextFallbackAt = Infinity
    this.nextRetryAt = Infinity
    if (this.done) return
    fillFromOrigin(this, now, start)
    fillFromPeers(this, now, start)
    fillFromArriving(this, now, start)
    if (this.endgameEnabled && inEndgame(this)) fillEndgame(this, now, start)
  }

  private wakeAt (now: number): number | undefined {
    let at = Math.min(this.nextFallbackAt, this.nextRetryAt, expectedUntil(this))
    const endgame = this.endgameEnabled && inEndgame(this)
    for (const outstanding of this.outstanding.values()) {
      at = Math.min(at, outstanding.startedAt + timeoutOf(this, outstanding))
      if (!outstanding.hedged) {
        const dueAt = duplicateDueAt(this, outstanding, endgame)
        // a duplicate already due found no holder; only an event (a have, a freed slot) can change that
        if (dueAt > now) at = Math.min(at, dueAt)
      }
    }
    return at > now && Number.isFinite(at) ? at : undefined
  }

  // ---- bookkeeping ----

  private peerHasRoom (peer: PeerState): boolean {
    return peer.inflight < this.maxPerPeer && this.peerSlotFree()
  }

  /** room for one more peer request: within `maxInflightTotal`, and within what lands in time (`peerLimit`) */
  peerSlotFree (): boolean {
    return peerSlotFree(this)
  }

  startRequest (chunk: number, peer: PeerState | undefined, now: number, start: Request[], duplicate = false, relay = false): void {
    startRequest(this, chunk, peer, now, start, duplicate, relay)
  }

  /** Ends a request of ours; the next `tick` tells the caller to cancel it. */
  cancel (outstanding: Outstanding): void {
    cancelRequest(this, outstanding)
  }

  private ban (peer: PeerState): void {
    this.log.warn({ peer: peer.id }, 'peer sent a chunk that failed verification; not asking it again in this pull')
    this.banned.add(peer.id)
    this.dropPeer(peer)
  }

  private dropPeer (peer: PeerState): void {
    this.peers.delete(peer.id)
    removeHoldings(this, peer)
    removeArriving(this, peer)
    for (const outstanding of [...this.outstanding.values()]) {
      if (outstanding.peer === peer) this.cancel(outstanding)
    }
    this.dirty = true
  }

  // ---- input checks ----

  /** Checks a notice of chunks a peer is (or is no longer) receiving; the peer, if connected and not banned. */
  private arrivingNotice (peerId: string, chunks: readonly number[], now: number): PeerState | undefined {
    this.clock(now)
    checkPeerId(peerId)
    if (!Array.isArray(chunks)) throw new InvalidBitfieldError('chunks must be an array of chunk indices')
    for (const i of chunks) this.checkChunk(i)
    return this.peers.get(peerId)
  }

  private clock (now: number): number {
    if (typeof now !== 'number' || !Number.isFinite(now)) throw new InvalidTimeError(now)
    if (this.startedAt === undefined) {
      this.startedAt = now
      this.lastNow = now
      this.waitSince.fill(now)
      this.windowEnd = Math.min(this.chunkCount, fallbackWindowEnd(this))
    }
    // events from several sources may be stamped a little out of order; time never runs back here
    if (now < this.lastNow) return this.lastNow
    this.lastNow = now
    return now
  }

  private checkChunk (chunk: number): void {
    if (!Number.isInteger(chunk) || chunk < 0 || chunk >= this.chunkCount) {
      throw new InvalidChunkIndexError(chunk, this.chunkCount)
    }
  }

  draw (): number {
    const value = this.random()
    if (!(value >= 0 && value < 1)) throw new InvalidSchedulerInitError(`random() returned ${String(value)}, expected a number in [0, 1)`)
    return value
  }
}

function checkPeerId (peerId: string): void {
  if (typeof peerId !== 'string' || peerId === '') throw new InvalidPeerIdError(peerId)
}
