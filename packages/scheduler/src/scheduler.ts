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
 * it.
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

import { LandingLimit, silentLogger } from '@swarm/interface'
import type { Logger } from '@swarm/interface'
import { bitfieldLength, validateBitfield } from '@swarm/interface'
import {
  DEFAULT_HEDGE_AFTER_MS,
  DEFAULT_MAX_INFLIGHT_ORIGIN,
  DEFAULT_MAX_INFLIGHT_PER_PEER,
  DEFAULT_MAX_INFLIGHT_TOTAL,
  MIN_PEER_INFLIGHT,
  DEFAULT_FLEET_INFLIGHT_ORIGIN,
  DEFAULT_ORIGIN_FALLBACK_MS,
  DEFAULT_ORIGIN_WINDOW,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRY_AFTER_MS,
  LANDING_SAMPLE_FRACTION
} from './constants.js'
import {
  InvalidBitfieldError,
  InvalidChunkIndexError,
  InvalidFailureReasonError,
  InvalidPeerIdError,
  InvalidSchedulerInitError,
  InvalidTimeError,
  RequestMismatchError
} from './errors.js'
import { duplicateDueAt, fillEndgame, hedge, inEndgame } from './endgame.js'
import { catchUp, expectedUntil, fallbackWindowEnd, fillFromOrigin, releaseLostOwnership, timeoutOf } from './origin.js'
import { fillFromPeers } from './peers.js'
import { PullerSet } from './pullers.js'

/** Where a request goes. */
export type RequestSource = { kind: 'peer', peerId: string } | { kind: 'origin' }

/** A request for one chunk from one source. The same object is returned when it is cancelled. */
export interface Request {
  /** unique within this scheduler, increasing */
  readonly id: number
  /** index into the manifest's unique chunk list */
  readonly chunk: number
  readonly cid: string
  readonly size: number
  readonly source: RequestSource
  /** a second (or third) request for a chunk already being fetched: a hedge or an endgame duplicate */
  readonly duplicate: boolean
}

/** What the caller should do now. */
export interface Actions {
  /** requests to start */
  start: Request[]
  /** requests to abort; the scheduler has already forgotten them, and later reports about them are ignored */
  cancel: Request[]
  /** when to call `tick` again if no other event comes first (a deadline), or undefined when only events matter */
  wakeAt: number | undefined
}

/**
 * How a request ended without delivering its chunk. `bad-data`: the bytes did not match the CID,
 * and the peer is banned for the rest of the pull. `cancelled`: the caller gave it up itself.
 * `busy`: the peer turned it away for want of an upload slot; like `error` it is asked again only
 * at its retry time or when no other holder is left, but it still counts as a holder when this
 * node decides what to take from the origin, since its slot will free up.
 */
export type FailureReason = 'error' | 'timeout' | 'bad-data' | 'cancelled' | 'busy'

export interface SchedulerInit {
  /** this node's peer id; it is always one of the pullers */
  selfId: string
  /** the manifest's unique chunks in file order; a chunk's index is its position here */
  chunks: ReadonlyArray<{ cid: string, size: number }>
  /** what is already local: a bitfield (see `encodeBitfield`) or one flag per chunk */
  have?: Uint8Array | ArrayLike<boolean>
  /** a seeded PRNG returning numbers in [0, 1), e.g. `seededRandom(seed)` */
  random: () => number
  /**
   * the other nodes pulling this manifest. Give it (even empty) once known; until it is known
   * (here or through `setPullers`) nothing is taken from the origin as an owner.
   */
  pullers?: Iterable<string>
  /**
   * instead of `pullers`: a set shared with other schedulers in this process that see the same
   * pullers (a simulator's nodes). Changes made through any of them, or to the set itself, apply
   * to all.
   */
  pullerSet?: PullerSet
  /** when the pull starts; defaults to the time of the first event */
  now?: number
  maxInflightPerPeer?: number
  maxInflightOrigin?: number
  /** origin requests the fleet keeps outstanding in all, shared out among the fetchers (default 16) */
  fleetInflightOrigin?: number
  /**
   * how many pullers fetch from the origin: the best-ranked for this model (default 16, see
   * `pullers.ts`); Infinity: every puller
   */
  originFetchers?: number
  /**
   * how far ahead of the chunks seen anywhere owners fetch from the origin (default 8): chunk i
   * is fetched once i − window + 1 chunks are seen at this node or its peers (see `origin.ts`);
   * Infinity: none
   */
  originWindow?: number
  /**
   * How many nodes may be pulling, this one included, as far as this node can tell before their
   * joins arrive (e.g. the nodes it is connected to). Until that many pullers are known, its
   * share of the fleet's origin requests assumes them: a node that starts a moment before the
   * others sees itself alone, believes it owns every chunk, and would otherwise ask the origin
   * for many that their owners are about to fetch too. Holds for `EXPECTED_PULLERS_MS` from the
   * first event, so a node pulling alone among many idle ones is held back only that long. Default 1.
   */
  expectedPullers?: number
  maxInflightTotal?: number
  /**
   * how long a chunk from a peer should take to land, in ms: peer requests at once follow it,
   * from `MIN_PEER_INFLIGHT` up to `maxInflightTotal` (see `LandingLimit` in @swarm/interface). Default 0: always
   * `maxInflightTotal`; the pull engine (`@swarm/pull`) gives `DEFAULT_PEER_LANDING_MS`
   */
  peerLandingMs?: number
  /**
   * how long a chunk from the origin should take to land, in ms, while other pullers wait to be
   * passed it: origin requests at once follow it, from 1 up to this node's share (see
   * `originCap` in `origin.ts`). Default 0: always the share; the pull engine gives
   * `DEFAULT_ORIGIN_LANDING_MS`
   */
  originLandingMs?: number
  /** Infinity: a non-owner never falls back to the origin */
  originFallbackMs?: number
  requestTimeoutMs?: number
  /** Infinity: no hedging */
  hedgeAfterMs?: number
  retryAfterMs?: number
  /** duplicate the last outstanding requests to other holders (default true) */
  endgame?: boolean
  /** false: peers only, e.g. pulling by CID while the origin is down (default true) */
  useOrigin?: boolean
  logger?: Logger
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
  /** What this node holds, to announce to peers. */
  bitfield(): Uint8Array
  /** The pullers that fetch from the origin as this node knows them, best-ranked first: to tell peers (see `pullers.ts`). */
  fetchers(): string[]
  /** Requests outstanding now. */
  inflight(): Request[]
}

const ORIGIN: RequestSource = Object.freeze({ kind: 'origin' })
const FAILURE_REASONS = new Set<string>(['error', 'timeout', 'bad-data', 'cancelled', 'busy'])

/** A connected peer as the scheduler sees it. */
export interface PeerState {
  readonly id: string
  readonly source: RequestSource
  /** chunk holdings as 32-bit words, bit i of word w = chunk 32w + i */
  readonly bits: Uint32Array
  inflight: number
}

/** A request in flight. */
export interface Outstanding {
  readonly request: Request
  /** undefined: the origin */
  readonly peer: PeerState | undefined
  readonly startedAt: number
  /** already duplicated once, or itself a duplicate: never hedged (again) */
  hedged: boolean
  /** an origin request this node made as the chunk's owner (not a fallback) */
  readonly asOwner: boolean
}

/**
 * The package exports only {@link ChunkScheduler} (through `chunkScheduler()`); the state below is
 * open to this package's deciding modules (`origin.ts`, `peers.ts`, `endgame.ts`), which read it
 * and start requests through `startRequest`.
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
    cancelled: 0,
    failures: 0,
    timeouts: 0
  }

  constructor (init: SchedulerInit) {
    if (init == null || typeof init !== 'object') throw new InvalidSchedulerInitError('init must be an object')
    if (typeof init.selfId !== 'string' || init.selfId === '') throw new InvalidSchedulerInitError('selfId must be a non-empty string')
    if (typeof init.random !== 'function') throw new InvalidSchedulerInitError('random must be a function returning numbers in [0, 1)')
    if (!Array.isArray(init.chunks)) throw new InvalidSchedulerInitError('chunks must be an array')
    this.selfId = init.selfId
    this.random = init.random
    this.log = (init.logger ?? silentLogger).child({ component: 'scheduler' })

    const n = init.chunks.length
    this.chunkCount = n
    this.words = (n + 31) >>> 5
    this.cids = new Array<string>(n)
    this.sizes = new Float64Array(n)
    const seen = new Set<string>()
    let totalBytes = 0
    let largest = 0
    for (let i = 0; i < n; i++) {
      const chunk = init.chunks[i]
      if (chunk == null || typeof chunk.cid !== 'string' || chunk.cid === '') {
        throw new InvalidSchedulerInitError(`chunk ${i} has no CID`)
      }
      if (!Number.isSafeInteger(chunk.size) || chunk.size < 0) {
        throw new InvalidSchedulerInitError(`chunk ${i} has size ${String(chunk.size)}, expected a non-negative integer`)
      }
      if (seen.has(chunk.cid)) throw new InvalidSchedulerInitError(`chunk ${i} repeats CID ${chunk.cid}; chunks must be unique`)
      seen.add(chunk.cid)
      this.cids[i] = chunk.cid
      this.sizes[i] = chunk.size
      totalBytes += chunk.size
      largest = Math.max(largest, chunk.size)
    }
    this.totalBytes = totalBytes
    this.largestChunk = largest

    this.maxPerPeer = count(init.maxInflightPerPeer, DEFAULT_MAX_INFLIGHT_PER_PEER, 1, 'maxInflightPerPeer')
    this.maxOrigin = count(init.maxInflightOrigin, DEFAULT_MAX_INFLIGHT_ORIGIN, 0, 'maxInflightOrigin')
    this.fleetOrigin = count(init.fleetInflightOrigin, DEFAULT_FLEET_INFLIGHT_ORIGIN, 1, 'fleetInflightOrigin')
    this.originWindow = init.originWindow === Infinity ? Infinity : count(init.originWindow, DEFAULT_ORIGIN_WINDOW, 1, 'originWindow')
    this.expectedPullers = count(init.expectedPullers, 1, 1, 'expectedPullers')
    this.maxTotal = count(init.maxInflightTotal, DEFAULT_MAX_INFLIGHT_TOTAL, 1, 'maxInflightTotal')
    const landingMs = duration(init.peerLandingMs, 0, 'peerLandingMs')
    if (!Number.isFinite(landingMs)) throw new InvalidSchedulerInitError(`peerLandingMs must be 0 (off) or a finite number of milliseconds, got ${String(landingMs)}`)
    this.peerLimit = new LandingLimit({ min: Math.min(MIN_PEER_INFLIGHT, this.maxTotal), max: this.maxTotal, targetMs: landingMs })
    const originLandingMs = duration(init.originLandingMs, 0, 'originLandingMs')
    if (!Number.isFinite(originLandingMs)) throw new InvalidSchedulerInitError(`originLandingMs must be 0 (off) or a finite number of milliseconds, got ${String(originLandingMs)}`)
    this.originLimit = new LandingLimit({ min: 1, max: Math.max(1, this.maxOrigin), targetMs: originLandingMs })
    this.originFallbackMs = duration(init.originFallbackMs, DEFAULT_ORIGIN_FALLBACK_MS, 'originFallbackMs')
    this.requestTimeoutMs = duration(init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
    this.hedgeAfterMs = duration(init.hedgeAfterMs, DEFAULT_HEDGE_AFTER_MS, 'hedgeAfterMs')
    this.retryAfterMs = duration(init.retryAfterMs, DEFAULT_RETRY_AFTER_MS, 'retryAfterMs')
    if (this.requestTimeoutMs === 0) throw new InvalidSchedulerInitError('requestTimeoutMs must be above 0')
    this.endgameEnabled = init.endgame ?? true
    this.useOrigin = (init.useOrigin ?? true) && this.maxOrigin > 0

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
      if (have?.[i] === true) {
        this.haveWords[i >>> 5] = this.haveWords[i >>> 5]! | (1 << (i & 31))
        this.haveCount++
        this.bytesDone += this.sizes[i]!
        this.markSeen(i, -Infinity)
      } else {
        this.setIdle(i)
      }
    }

    const start = n === 0 ? 0 : Math.floor(this.draw() * n)
    this.tiebreakStart = start
    for (let i = 0; i < n; i++) this.tiebreak[i] = (i - start + n) % n

    if (init.pullerSet !== undefined) {
      if (init.pullers !== undefined) throw new InvalidSchedulerInitError('give pullers or pullerSet, not both')
      if (!(init.pullerSet instanceof PullerSet)) throw new InvalidSchedulerInitError('pullerSet must come from pullerSet()')
      if (!init.pullerSet.covers(this.cids)) throw new InvalidSchedulerInitError('pullerSet was made for other chunks')
      if (init.originFetchers !== undefined && init.originFetchers !== init.pullerSet.fetcherLimit) {
        throw new InvalidSchedulerInitError(`pullerSet has ${init.pullerSet.fetcherLimit} fetchers, originFetchers says ${init.originFetchers}`)
      }
      this.pullers = init.pullerSet
    } else {
      this.pullers = new PullerSet(init.chunks, [this.selfId], { fetchers: init.originFetchers })
      for (const id of init.pullers ?? []) this.pullers.add(id)
    }
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
      const hasRoom = this.peerHasRoom(peer)
      for (let byte = 0; byte < chunks.length; byte++) {
        let value = chunks[byte]!
        while (value !== 0) {
          const bit = 31 - Math.clz32(value)
          value ^= 1 << bit
          this.addHolding(peer, (byte << 3) + (7 - bit), hasRoom, now)
        }
      }
    } else if (Array.isArray(chunks)) {
      for (const i of chunks) this.checkChunk(i)
      if (peer === undefined) return
      const hasRoom = this.peerHasRoom(peer)
      for (const i of chunks) this.addHolding(peer, i, hasRoom, now)
    } else {
      throw new InvalidBitfieldError('chunks must be a bitfield (Uint8Array) or an array of chunk indices')
    }
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
    if (delivered !== undefined) {
      this.endRequest(delivered)
      const took = Math.max(0, now - delivered.startedAt)
      // a small chunk lands in a round trip whatever the link: it says nothing of how long the next large one takes
      const sample = delivered.request.size * LANDING_SAMPLE_FRACTION >= this.largestChunk
      if (delivered.peer === undefined) {
        this.originMs = this.originSamples === 0 ? took : 0.7 * this.originMs + 0.3 * took
        this.originSamples++
        if (sample) this.originLimit.landed(took, this.originInflight + 1)
      } else if (delivered.request.size > 0) {
        if (sample) this.peerLimit.landed(took, this.outstanding.size - this.originInflight + 1)
        const perByte = took / delivered.request.size
        this.peerMsPerByte = this.peerSamples === 0 ? perByte : 0.8 * this.peerMsPerByte + 0.2 * perByte
        this.peerSamples++
      }
    }
    if (this.has(chunk)) return

    this.haveWords[chunk >>> 5] = this.haveWords[chunk >>> 5]! | (1 << (chunk & 31))
    this.haveCount++
    this.markSeen(chunk, now)
    const size = this.sizes[chunk]!
    this.bytesDone += size
    this.clearIdle(chunk)
    if (delivered === undefined) this.counters.bytesOther += size
    else if (delivered.peer === undefined) this.counters.bytesFromOrigin += size
    else this.counters.bytesFromPeers += size

    const others = this.byChunk[chunk]
    if (others !== undefined) {
      for (const other of [...others]) this.cancel(other)
    }
    this.failedPeers[chunk] = undefined
    this.failedWords[chunk >>> 5] = this.failedWords[chunk >>> 5]! & ~(1 << (chunk & 31))
    this.dirty = true
  }

  requestFailed (requestId: number, now: number, reason: FailureReason): void {
    now = this.clock(now)
    if (!FAILURE_REASONS.has(reason)) {
      throw new InvalidFailureReasonError(reason)
    }
    const failed = this.outstanding.get(requestId)
    if (failed === undefined) return
    this.endRequest(failed)
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
      this.noteFailure(failed, now, reason === 'busy')
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
        this.endRequest(outstanding)
        this.counters.cancelled++
        cancel.push(outstanding.request)
      }
      return { start, cancel, wakeAt: undefined }
    }

    let expired: Outstanding[] | undefined
    for (const outstanding of this.outstanding.values()) {
      if (now - outstanding.startedAt >= timeoutOf(this, outstanding)) (expired ??= []).push(outstanding)
    }
    for (const outstanding of expired ?? []) {
      this.endRequest(outstanding)
      this.counters.timeouts++
      this.noteFailure(outstanding, now)
      cancel.push(outstanding.request)
    }

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

  fetchers (): string[] {
    return this.pullers.fetchers()
  }

  bitfield (): Uint8Array {
    const bytes = new Uint8Array(bitfieldLength(this.chunkCount))
    for (let i = 0; i < this.chunkCount; i++) {
      if (this.has(i)) bytes[i >>> 3] = bytes[i >>> 3]! | (0x80 >>> (i & 7))
    }
    return bytes
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

  /** Records that `peer` holds `chunk`; new work is possible if it has room and we want the chunk. */
  private addHolding (peer: PeerState, chunk: number, hasRoom: boolean, now: number): void {
    const w = chunk >>> 5
    const mask = 1 << (chunk & 31)
    if ((peer.bits[w]! & mask) !== 0) return
    peer.bits[w] = peer.bits[w]! | mask
    if (this.holders[chunk]! === 0 && (this.haveWords[w]! & mask) === 0) {
      // a chunk showing up for the first time: how long owners take to bring one in
      const took = Math.max(0, now - this.waitSince[chunk]!)
      this.deliveryMs = this.deliveries === 0 ? took : 0.8 * this.deliveryMs + 0.2 * took
      this.deliveries++
    }
    this.markSeen(chunk, now)
    if (this.holders[chunk]!++ === 0) this.heldWords[w] = this.heldWords[w]! | mask
    if (hasRoom && !this.dirty && (this.haveWords[w]! & mask) === 0) {
      // an idle chunk can now be asked for; in endgame, an outstanding one can be duplicated
      if ((this.idleWords[w]! & mask) !== 0 || (this.endgameEnabled && inEndgame(this))) this.dirty = true
    }
  }

  /** A chunk is seen for the first time: the origin window moves one chunk on (see `origin.ts`). */
  private markSeen (chunk: number, now: number): void {
    if (this.seen[chunk] === 1) return
    this.seen[chunk] = 1
    this.seenCount++
    // chunks entering the window: their owners start them only now, so a non-owner's wait for them starts now too
    if (Number.isFinite(now)) {
      const end = Math.min(this.chunkCount, fallbackWindowEnd(this))
      for (let i = this.windowEnd; i < end; i++) this.eligibleSince[i] = now
      this.windowEnd = Math.max(this.windowEnd, end)
    }
    this.dirty = true
  }

  private peerHasRoom (peer: PeerState): boolean {
    return peer.inflight < this.maxPerPeer && this.peerSlotFree()
  }

  /** room for one more peer request: within `maxInflightTotal`, and within what lands in time (`peerLimit`) */
  peerSlotFree (): boolean {
    return this.outstanding.size < this.maxTotal && this.outstanding.size - this.originInflight < this.peerLimit.limit
  }

  startRequest (chunk: number, peer: PeerState | undefined, now: number, start: Request[], duplicate = false): void {
    const request: Request = {
      id: this.nextRequestId++,
      chunk,
      cid: this.cids[chunk]!,
      size: this.sizes[chunk]!,
      source: peer?.source ?? ORIGIN,
      duplicate
    }
    const asOwner = peer === undefined && this.pullersKnown && this.pullers.owner(chunk) === this.selfId
    const outstanding: Outstanding = { request, peer, startedAt: now, hedged: duplicate, asOwner }
    this.outstanding.set(request.id, outstanding)
    let list = this.byChunk[chunk]
    if (list === undefined) {
      list = []
      this.byChunk[chunk] = list
    }
    list.push(outstanding)
    this.clearIdle(chunk)
    if (peer === undefined) {
      this.originInflight++
      this.counters.originRequests++
      if (!asOwner) this.counters.originFallbacks++
    } else {
      peer.inflight++
      this.counters.peerRequests++
      if (duplicate) this.counters.duplicateRequests++
    }
    start.push(request)
  }

  private endRequest (outstanding: Outstanding): void {
    const { request, peer } = outstanding
    if (!this.outstanding.delete(request.id)) return
    const list = this.byChunk[request.chunk]
    if (list !== undefined) {
      const at = list.indexOf(outstanding)
      if (at >= 0) list.splice(at, 1)
      if (list.length === 0) {
        this.byChunk[request.chunk] = undefined
        if (!this.has(request.chunk)) this.setIdle(request.chunk)
      }
    }
    if (peer === undefined) this.originInflight--
    else peer.inflight--
    this.dirty = true
  }

  /** Ends a request of ours; the next `tick` tells the caller to cancel it. */
  cancel (outstanding: Outstanding): void {
    this.endRequest(outstanding)
    this.counters.cancelled++
    this.pendingCancels.push(outstanding.request)
  }

  private noteFailure (outstanding: Outstanding, now: number, busy = false): void {
    const chunk = outstanding.request.chunk
    if (outstanding.peer === undefined) {
      this.originRetryAt[chunk] = now + this.retryAfterMs
      return
    }
    (this.failedPeers[chunk] ??= new Map()).set(outstanding.peer.id, busy)
    this.failedWords[chunk >>> 5] = this.failedWords[chunk >>> 5]! | (1 << (chunk & 31))
    this.peerRetryAt[chunk] = now + this.retryAfterMs
  }

  private ban (peer: PeerState): void {
    this.log.warn({ peer: peer.id }, 'peer sent a chunk that failed verification; not asking it again in this pull')
    this.banned.add(peer.id)
    this.dropPeer(peer)
  }

  private dropPeer (peer: PeerState): void {
    this.peers.delete(peer.id)
    for (let w = 0; w < this.words; w++) {
      let word = peer.bits[w]!
      while (word !== 0) {
        const low = word & -word
        word = (word ^ low) >>> 0
        const chunk = (w << 5) + 31 - Math.clz32(low)
        if (--this.holders[chunk]! === 0) this.heldWords[w] = this.heldWords[w]! & ~low
      }
    }
    for (const outstanding of [...this.outstanding.values()]) {
      if (outstanding.peer === peer) this.cancel(outstanding)
    }
    this.dirty = true
  }

  private setIdle (chunk: number): void {
    const w = chunk >>> 5
    const mask = 1 << (chunk & 31)
    if ((this.idleWords[w]! & mask) !== 0) return
    this.idleWords[w] = this.idleWords[w]! | mask
    this.idleCount++
    this.dirty = true
  }

  private clearIdle (chunk: number): void {
    const w = chunk >>> 5
    const mask = 1 << (chunk & 31)
    if ((this.idleWords[w]! & mask) === 0) return
    this.idleWords[w] = this.idleWords[w]! & ~mask
    this.idleCount--
  }

  // ---- input checks ----

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

function count (value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < min) throw new InvalidSchedulerInitError(`${name} must be an integer of at least ${min}, got ${String(value)}`)
  return value
}

function duration (value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidSchedulerInitError(`${name} must be a non-negative number of milliseconds (Infinity allowed), got ${String(value)}`)
  }
  return value
}

function checkPeerId (peerId: string): void {
  if (typeof peerId !== 'string' || peerId === '') throw new InvalidPeerIdError(peerId)
}

function haveFlags (have: Uint8Array | ArrayLike<boolean>, n: number): boolean[] {
  if (have instanceof Uint8Array) {
    validateBitfield(have, n)
    const flags = new Array<boolean>(n)
    for (let i = 0; i < n; i++) flags[i] = (have[i >>> 3]! & (0x80 >>> (i & 7))) !== 0
    return flags
  }
  if (have.length !== n) throw new InvalidSchedulerInitError(`have lists ${have.length} flags for ${n} chunks`)
  return Array.from(have, flag => flag === true)
}
