/**
 * One pull of one manifest: the scheduler decides, this module does.
 *
 * The session joins the manifest with its peers (they learn our bitfield and that we pull),
 * has it advertised at once (so we serve chunks before we have the whole model), looks up other
 * providers and dials them, and then turns the scheduler's decisions into fetches: a peer request
 * or an origin request, both through the fetcher, which writes through the store, where every
 * chunk is verified against its CID. Arrivals are announced to peers (`have`) as they land.
 *
 * Everything outside the scheduler comes in through small interfaces (`PullPeers`,
 * `PullSources`, `PullFetcher`, the store, a `PullClock`), so the agent runs it over libp2p and the
 * TLS data plane, `swarm pull --no-agent` runs it with no peers at all, and the simulator
 * (`bench/sim`) runs the very same object in virtual time over a simulated network.
 *
 * Before asking the origin for anything as an owner, the session waits `settleMs` for other
 * pullers' joins to arrive: rendezvous ownership is only right when every node sees the same set
 * of pullers, and a node that starts alone would otherwise believe it owns every chunk.
 *
 * Peers: the control channel hands on only joins and haves that fit the manifest (its chunk
 * count, indices inside it), and this module checks again before the scheduler sees them, because
 * the scheduler throws on a bitfield that does not fit and an exception in an event listener
 * would end the process. Every listener body runs guarded: an exception is logged and counted,
 * never thrown. Banned peers (the node's peer scores) are never added, and are dropped when a ban
 * comes during the pull.
 *
 * Failure handling: a peer whose bytes fail verification is banned by the scheduler for this pull
 * (and reported by the agent's fetcher to the node's peer scores, which ban it across pulls) and its data
 * connections are closed; origin failures are retried by the scheduler, but `maxOriginFailures`
 * consecutive ones end the pull with the origin's error (an origin that went away should be a
 * clear error, not a hang) unless peers hold every chunk still missing: then the origin is
 * paused for `ORIGIN_PAUSE_MS` (chunks a peer holds wait for that peer, even one that turned them
 * away as busy) and the pull goes on from peers, since an origin outage is when a fleet needs
 * them most. Timeouts do not count: a fleet sharing a slow origin times requests
 * out without anything being broken. With no progress for `stallTimeoutMs` the pull ends too.
 * A full disk (DiskFullError from the store) ends the pull at once and is no source's failure:
 * what was stored stays recorded, and a later pull fetches only the rest.
 *
 * A request holds its scheduler slot until its chunk is durable (verified, written, fsynced and
 * journaled), not only until its bytes arrive, so a peer gets as many requests at once as it
 * serves (its per-peer upload slots): with fewer, its link idles while our fsyncs run. The
 * fetcher's promise is that point: it resolves once the chunk is durable.
 *
 * Origin fetchers: in a large fleet only a few pullers fetch from the origin (`originFetchers` in
 * the scheduler, see `@swarm/scheduler`'s `pullers.ts`), and everyone must agree on which. A
 * node hears of pullers only from its peers, so each join we send names the fetchers we know of,
 * and the fetchers peers name count as pullers here, for as long as some peer names them. A
 * join goes out again, at most every `FETCHERS_ANNOUNCE_MS`, when the list changes: lists spread
 * hop by hop until the fleet agrees. A peer that says it is done is no puller, whoever names it.
 *
 * Each name carries how many hops away its sender heard of the fetcher (0: itself), and one
 * heard of from further than `MAX_FETCHER_HOPS` is not taken. Nodes that name a fetcher to each
 * other would otherwise keep it alive between them after it is gone (a node that crashed says
 * nothing): each then hears it one hop further than before, until it is too far. In bench/sim
 * at 1,000 nodes, with a tenth of them gone at once, names without hops kept the origin's
 * share of the gone fetchers' chunks waiting for the fallback: p99 7.4 × T* against 2.8.
 *
 * Named pullers are taken on trust from admitted peers: one that names pullers that do not
 * exist makes chunks wait for owners that never fetch them, until the fallback to the origin.
 *
 * A fetch that fails half-way is only a failed request: nothing is counted until the fetcher
 * says the chunk is stored, and a chunk that arrives twice (an endgame duplicate, a retry racing
 * its original) is counted once.
 */

import { ChunkUnavailableError, ChunkVerificationError, DiskFullError, OriginUnavailableError, PEER_BUSY_CODE, fitsChunkCount, silentLogger, uniqueChunks } from '@swarm/interface'
import { DEFAULT_ORIGIN_LANDING_MS, DEFAULT_PEER_LANDING_MS, chunkScheduler, keyHash, seededRandom } from '@swarm/scheduler'
import { systemClock } from './clock.js'
import { DEFAULT_MAX_ORIGIN_FAILURES, DEFAULT_POLL_MS, DEFAULT_SETTLE_MS, DEFAULT_STALL_TIMEOUT_MS, FETCHERS_ANNOUNCE_MS, MAX_FETCHER_HOPS, MAX_NAMED_FETCHERS, ORIGIN_PAUSE_MS, REDISCOVER_AFTER_MS } from './constants.js'
import { SessionStartedError } from './errors.js'
import type { PullClock } from './clock.js'
import type { AbortOptions, ChunkRequest, ChunkSource, ChunkStore, Logger, Manifest, SourceKind, TransferProgress } from '@swarm/interface'
import type { ChunkScheduler, Request, SchedulerInit, SchedulerStats } from '@swarm/scheduler'

/** A peer that joined the manifest: its whole state as it announced it. */
export interface PullPeer {
  peerId: string
  pulling: boolean
  bitfield: Uint8Array
  /** the origin fetchers the peer knows of (see "Origin fetchers" above) */
  fetchers?: readonly NamedFetcher[]
}

/** An origin fetcher as a join names it: its peer id, and how many hops from the sender it is (0: the sender). */
export interface NamedFetcher {
  peerId: string
  hops: number
}

/** What peers do about this manifest, as a session hears it. */
export interface PullPeerEvents {
  /** a peer joined the manifest, or joined again with its whole state */
  joined(peer: PullPeer): void
  /** a peer got these chunks */
  have(peerId: string, indices: readonly number[]): void
  /** a peer began receiving these chunks and relays each as it arrives (cut-through) */
  arriving(peerId: string, indices: readonly number[]): void
  /** a peer no longer receives these chunks: its transfer failed or was given up */
  notArriving(peerId: string, indices: readonly number[]): void
  /** a peer left the manifest, hung up or was banned: it is asked for nothing more */
  left(peerId: string, why: 'left' | 'disconnected' | 'banned'): void
}

/**
 * The peers of one manifest and our part among them. The agent adapts its libp2p node to this
 * (control channel, DHT, peer scores); a pull with no peers passes none.
 */
export interface PullPeers {
  /** this node's id: the scheduler's own puller id */
  readonly selfId: string
  /** peers that joined the manifest, as known now */
  peers(): PullPeer[]
  /** nodes connected at all: each may be about to pull this too */
  connectedCount(): number
  isBanned(peerId: string): boolean
  /** announces our state of the manifest (`pulling: false` once done: we keep serving what we hold) */
  join(state: { bitfield: Uint8Array, chunkCount: number, pulling: boolean, fetchers?: readonly NamedFetcher[] }): void
  /** announces chunks that arrived */
  have(indices: number[]): void
  /**
   * Announces chunks we began receiving, which our data server relays as they arrive
   * (cut-through), and withdraws them when their last transfer ends without them. Absent where the
   * data plane cannot relay a chunk before it is whole: nothing is announced.
   */
  arriving?(indices: number[]): void
  notArriving?(indices: number[]): void
  /** starts hearing the manifest's peer events; returns what stops it */
  subscribe(events: PullPeerEvents): () => void
  /** provides the manifest to others (best effort) */
  advertise?(): Promise<void>
  /**
   * looks up other providers and connects to them, so they get our join and we their bitfields
   * (best effort); `again`: a lookup after the first, which may be skipped when it cannot find
   * anyone the first did not (see `REDISCOVER_AFTER_MS`)
   */
  discover?(options: AbortOptions & { again?: boolean }): Promise<void>
  /** a peer's bytes failed verification: its data connections go */
  rejected?(peerId: string): void
}

/**
 * Where chunks come from: a peer by id (undefined when it cannot be reached), and the origin.
 * `relay`: the peer announced the chunk as arriving, and is asked for it as it arrives.
 */
export interface PullSources {
  /** undefined: peers only */
  origin?: ChunkSource
  peer(peerId: string, relay?: boolean): ChunkSource | undefined
}

/**
 * Gets one chunk from the given sources into the store; resolves once it is verified and
 * durable. `onReceiving`: called once the chunk's bytes begin to arrive, where the fetcher can
 * tell (a data plane that relays chunks as they arrive; see `PullPeers.arriving`).
 */
export interface PullFetcher {
  fetch(request: ChunkRequest, options: { sources: ChunkSource[], signal: AbortSignal, onReceiving?: () => void }): Promise<{ kind: SourceKind }>
}

/** The store as a pull uses it; `fillFromLocal` copies chunks another held model already has. */
export type PullStore = Pick<ChunkStore, 'hasChunk'> & Partial<Pick<ChunkStore, 'fillFromLocal'>>

export interface PullSessionInit {
  manifestCid: string
  manifest: Manifest
  store: PullStore
  fetcher: PullFetcher
  sources: PullSources
  /** undefined: no peers (the origin alone) */
  peers?: PullPeers
  /** the scheduler's own id when there are no peers */
  selfId?: string
  clock?: PullClock
  logger?: Logger
  settleMs?: number
  originFallbackMs?: number
  stallTimeoutMs?: number
  maxOriginFailures?: number
  maxInflightOrigin?: number
  /** requests outstanding at one peer (the agent: the upload slots a peer grants one peer) */
  maxInflightPerPeer?: number
  /** the longest the session sleeps without an event */
  pollMs?: number
  /**
   * More scheduler settings, over the session's. A `pullerSet` shared among sessions (the
   * simulator's one view of the fleet) replaces the pullers the session would learn from peers.
   */
  scheduler?: Partial<Omit<SchedulerInit, 'selfId' | 'chunks' | 'have' | 'random' | 'now'>>
  onBytes?(kind: SourceKind, bytes: number): void
  onRejected?(peerId: string, cid: string): void
  /** an exception was caught in a handler of peer events (logged already) */
  onHandlerError?(handler: string): void
}

export interface SessionResult {
  progress: TransferProgress
  durationMs: number
  originRequests: number
  peerRequests: number
}

export interface RunOptions extends AbortOptions {
  onProgress?(progress: TransferProgress): void
}

/**
 * Runs an event handler's body so that nothing it throws leaves it: an exception in an event
 * listener would be uncaught and end the process. Logged and counted instead.
 */
export function guarded (log: Logger, handler: string, body: () => void, onError?: (handler: string) => void): void {
  try {
    body()
  } catch (err) {
    log.error({ handler, err: (err as Error).message, stack: (err as Error).stack }, 'a peer event handler failed; the event was dropped')
    try {
      onError?.(handler)
    } catch {}
  }
}

export class PullSession {
  private readonly init: PullSessionInit
  private readonly log: Logger
  private readonly clock: PullClock
  private readonly selfId: string
  readonly chunks: ChunkRequest[]
  private scheduler?: ChunkScheduler
  private readonly controllers = new Map<number, AbortController>()
  private readonly timers = new Set<unknown>()
  private unsubscribe?: () => void
  private progress: TransferProgress
  private onProgress?: (progress: TransferProgress) => void
  private pumpTimer?: unknown
  private running = false
  private settled = false
  private originFailures = 0
  private lookups = 0
  /** the fetcher list each peer named in its last join (see "Origin fetchers" at the top) */
  private readonly namedBy = new Map<string, readonly NamedFetcher[]>()
  /** pullers the scheduler has because some peer names them, and how many hops away the nearest name puts them */
  private named = new Map<string, number>()
  /** bumped whenever what we would name may have changed beside the scheduler's list */
  private namedVersion = 0
  /** what we would name, worked out for this version and scheduler list */
  private toName: { version: string, list: NamedFetcher[], key: string } = { version: '', list: [], key: '' }
  /** transfers under way per chunk, while our peers are told what we are receiving */
  private readonly receiving = new Map<number, number>()
  /** what our last join named, as a key, and when it went out */
  private announced = ''
  private announcedAt = -Infinity
  private announcePending = false
  private lastProgressAt = 0
  private started = 0
  /** aborted when the session ends, so its lookups end with it */
  private readonly lifetime = new AbortController()
  private signal?: AbortSignal
  private resolve!: (result: SessionResult) => void
  private reject!: (err: Error) => void

  constructor (init: PullSessionInit) {
    this.init = init
    this.clock = init.clock ?? systemClock
    this.selfId = init.peers?.selfId ?? init.selfId ?? 'self'
    this.log = (init.logger ?? silentLogger).child({ component: 'session', manifest: init.manifestCid })
    this.chunks = uniqueChunks(init.manifest)
    this.progress = {
      totalBytes: this.chunks.reduce((sum, c) => sum + c.size, 0),
      doneBytes: 0,
      totalChunks: this.chunks.length,
      doneChunks: 0,
      bytesBySource: { local: 0, peer: 0, origin: 0 }
    }
  }

  /** What we hold of the manifest's chunks (empty before `run`). */
  get bitfield (): Uint8Array {
    return this.scheduler?.bitfield() ?? new Uint8Array(Math.ceil(this.chunks.length / 8))
  }

  /** The scheduler's counters (undefined before `run`). */
  get stats (): SchedulerStats | undefined {
    return this.scheduler?.stats
  }

  /** Whether the pull has ended, either way. */
  get finished (): boolean {
    return this.settled
  }

  /** Pulls every missing chunk; resolves when all are durable, rejects with why it cannot. */
  async run (options: RunOptions = {}): Promise<SessionResult> {
    if (this.running) throw new SessionStartedError()
    this.running = true
    this.onProgress = options.onProgress
    this.signal = options.signal
    this.started = this.clock.now()
    const done = new Promise<SessionResult>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    const onAbort = (): void => { this.finish(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted')) }
    options.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      if (options.signal?.aborted === true) {
        onAbort()
        return await done
      }
      if (this.init.store.fillFromLocal != null) {
        // chunks another held model has: copied, not fetched
        const copied = await this.init.store.fillFromLocal(this.init.manifestCid, { signal: options.signal })
        if (copied > 0) {
          this.progress.bytesBySource.local += copied
          this.init.onBytes?.('local', copied)
        }
      }
      if (!this.settled) this.begin()
      return await done
    } catch (err) {
      this.finish(err as Error)
      return await done
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  private begin (): void {
    const { init } = this
    const have = this.chunks.map(c => init.store.hasChunk(c.cid))
    const now = this.clock.now()
    this.lastProgressAt = now
    this.scheduler = chunkScheduler({
      selfId: this.selfId,
      chunks: this.chunks,
      have,
      random: seededRandom(keyHash(this.selfId + init.manifestCid).a),
      useOrigin: init.sources.origin != null,
      originFallbackMs: init.originFallbackMs,
      maxInflightOrigin: init.maxInflightOrigin,
      // every node we are connected to may be about to pull this too
      expectedPullers: (init.peers?.connectedCount() ?? 0) + 1,
      maxInflightPerPeer: init.maxInflightPerPeer,
      // on a slow downlink, fewer peer requests at once land each chunk sooner, to be passed on sooner
      peerLandingMs: DEFAULT_PEER_LANDING_MS,
      // with others pulling too, an origin chunk that lands sooner is passed on sooner
      originLandingMs: DEFAULT_ORIGIN_LANDING_MS,
      // alone, the set of pullers is known: it is us
      ...(init.peers == null && init.scheduler?.pullerSet == null ? { pullers: [] } : {}),
      now,
      logger: this.log,
      ...init.scheduler
    })
    this.progress.doneChunks = have.filter(Boolean).length
    this.progress.doneBytes = this.chunks.reduce((sum, c, i) => sum + (have[i] === true ? c.size : 0), 0)

    const peers = init.peers
    if (peers != null) {
      this.unsubscribe = peers.subscribe({
        joined: peer => {
          this.guard('peer:joined', () => {
            this.addPeer(peer)
            this.pump()
          })
        },
        have: (peerId, indices) => {
          this.guard('peer:have', () => { this.peerHas(peerId, indices) })
        },
        arriving: (peerId, indices) => {
          this.guard('peer:arriving', () => { this.peerArriving(peerId, indices, true) })
        },
        notArriving: (peerId, indices) => {
          this.guard('peer:not-arriving', () => { this.peerArriving(peerId, indices, false) })
        },
        left: (peerId, why) => {
          this.guard(why === 'left' ? 'peer:left' : `peer:${why}`, () => {
            this.scheduler?.peerLeft(peerId, this.clock.now(), { puller: true })
            this.namedBy.delete(peerId)
            this.syncNamedPullers()
            this.pump()
          })
        }
      })
      try {
        const fetchers = this.fetchersToName()
        this.announced = fetchers.key
        peers.join({ bitfield: this.scheduler.bitfield(), chunkCount: this.chunks.length, pulling: !this.scheduler.done, fetchers: fetchers.list })
      } catch (err) {
        // nothing may leave the listeners attached
        this.finish(err as Error)
        return
      }
      peers.advertise?.().catch(err => { this.log.debug({ err: (err as Error).message }, 'advertise failed') })
      void this.discover()
      for (const peer of peers.peers()) this.guard('peers', () => { this.addPeer(peer) })
    }
    this.emitProgress()

    if (this.scheduler.done) {
      this.finish()
      return
    }
    this.pump()
    if (peers == null) return
    // ownership needs the set of pullers; give their joins a moment to arrive
    this.after(init.settleMs ?? DEFAULT_SETTLE_MS, () => {
      this.guard('settle', () => {
        const pullers = this.pullers()
        this.log.info({ pullers: pullers.length + 1, peers: peers.peers().length }, 'pullers known')
        // a shared view of the pullers (the simulator's) is kept by whoever shares it
        if (init.scheduler?.pullerSet == null) this.scheduler?.setPullers(pullers, this.clock.now())
        this.pump()
      })
    })
    // pullers that started after our lookup are only found by looking again; every puller
    // missing from our view makes us take chunks from the origin that it owns
    if (peers.discover != null) {
      for (const delay of REDISCOVER_AFTER_MS) this.after(delay, () => { void this.discover(true) })
    }
  }

  /** A timer that dies with the session. */
  private after (ms: number, fn: () => void): void {
    const timer = this.clock.setTimer(ms, () => {
      this.timers.delete(timer)
      if (!this.settled) fn()
    })
    this.timers.add(timer)
  }

  /** Pullers as far as we know: peers that joined pulling, and those named as fetchers by peers (see the notes at the top). */
  private pullers (): string[] {
    const peers = this.init.peers
    if (peers == null) return []
    const pullers = new Set(peers.peers().filter(p => p.pulling && !peers.isBanned(p.peerId)).map(p => p.peerId))
    for (const id of this.named.keys()) pullers.add(id)
    return [...pullers]
  }

  /**
   * Makes the pullers peers name, and only those still named, pullers in the scheduler; a peer
   * that joined here saying it is done is none.
   */
  private syncNamedPullers (): void {
    const scheduler = this.scheduler
    const peers = this.init.peers
    if (scheduler == null || peers == null) return
    const done = new Set<string>()
    const pulling = new Set<string>()
    for (const peer of peers.peers()) (peer.pulling ? pulling : done).add(peer.peerId)
    const named = new Map<string, number>()
    for (const list of this.namedBy.values()) {
      for (const { peerId: id, hops } of list) {
        const distance = hops + 1
        if (distance > MAX_FETCHER_HOPS || id === this.selfId || done.has(id) || pulling.has(id) || peers.isBanned(id)) continue
        named.set(id, Math.min(named.get(id) ?? Infinity, distance))
      }
    }
    const now = this.clock.now()
    for (const id of this.named.keys()) if (!named.has(id) && !pulling.has(id)) scheduler.pullerLeft(id, now)
    for (const id of named.keys()) scheduler.pullerJoined(id, now)
    this.named = named
    this.namedVersion++
  }

  /** The scheduler's fetchers, each with how far we heard of it, as our joins name them; and a key to tell a change. */
  private fetchersToName (): { list: NamedFetcher[], key: string } {
    const ids = this.scheduler?.fetchers() ?? []
    const version = `${this.namedVersion}\n${ids.join('\n')}`
    if (version === this.toName.version) return this.toName
    const connected = new Set<string>()
    for (const peer of this.init.peers?.peers() ?? []) if (peer.pulling) connected.add(peer.peerId)
    const list: NamedFetcher[] = []
    for (const id of ids) {
      // a puller the scheduler knows otherwise (a simulator's gossip) counts as heard from itself
      const hops = id === this.selfId ? 0 : connected.has(id) ? 1 : this.named.get(id) ?? 1
      if (hops < MAX_FETCHER_HOPS) list.push({ peerId: id, hops })
      if (list.length === MAX_NAMED_FETCHERS) break
    }
    this.toName = { version, list, key: list.map(f => `${f.peerId} ${f.hops}`).join('\n') }
    return this.toName
  }

  /**
   * Tells peers our list of origin fetchers when it changed, at most every `FETCHERS_ANNOUNCE_MS`.
   * `due`: the wait is over (the timer's own call). Checking the interval again there could find
   * it a rounding error short and wait that long, over and over at one instant of a virtual clock.
   */
  private announceFetchers (due = false): void {
    const scheduler = this.scheduler
    const peers = this.init.peers
    if (scheduler == null || peers == null || (this.announcePending && !due) || this.settled) return
    const fetchers = this.fetchersToName()
    if (fetchers.key === this.announced) return
    const wait = this.announcedAt + FETCHERS_ANNOUNCE_MS - this.clock.now()
    if (!due && wait > 0) {
      this.announcePending = true
      this.after(wait, () => {
        this.guard('announce-fetchers', () => { this.announceFetchers(true) })
        this.announcePending = false
      })
      return
    }
    this.announced = fetchers.key
    this.announcedAt = this.clock.now()
    peers.join({ bitfield: scheduler.bitfield(), chunkCount: this.chunks.length, pulling: !scheduler.done, fetchers: fetchers.list })
  }

  private guard (handler: string, body: () => void): void {
    guarded(this.log, handler, body, this.init.onHandlerError)
  }

  private async discover (again = false): Promise<void> {
    const peers = this.init.peers
    if (peers?.discover == null || this.settled) return
    this.lookups++
    try {
      await peers.discover({ signal: this.signal != null ? AbortSignal.any([this.signal, this.lifetime.signal]) : this.lifetime.signal, again })
    } catch (err) {
      if (!this.settled) this.log.debug({ err: (err as Error).message }, 'provider lookup ended')
    }
  }

  private addPeer (peer: PullPeer): void {
    const scheduler = this.scheduler
    if (scheduler == null || this.init.peers?.isBanned(peer.peerId) === true) return
    if (!fitsChunkCount(peer.bitfield, this.chunks.length)) {
      this.log.warn({ peer: peer.peerId, bytes: peer.bitfield?.length, chunks: this.chunks.length }, 'ignoring a peer whose bitfield does not fit the manifest')
      return
    }
    const now = this.clock.now()
    scheduler.peerJoined(peer.peerId, now, { puller: peer.pulling })
    if (!peer.pulling) scheduler.pullerLeft(peer.peerId, now)
    scheduler.peerHas(peer.peerId, peer.bitfield, now)
    const named = Array.isArray(peer.fetchers) ? peer.fetchers.filter(f => typeof f?.peerId === 'string' && f.peerId !== '' && Number.isInteger(f.hops) && f.hops >= 0) : []
    if (named.length > 0) this.namedBy.set(peer.peerId, named)
    else this.namedBy.delete(peer.peerId)
    // also when it names nobody: whether it pulls changes what we name, and at what distance
    this.syncNamedPullers()
  }

  private peerHas (peerId: string, indices: readonly number[]): void {
    const scheduler = this.schedulerFor(peerId, indices, 'a have')
    if (scheduler == null) return
    scheduler.peerHas(peerId, indices, this.clock.now())
    this.pump()
  }

  private peerArriving (peerId: string, indices: readonly number[], arriving: boolean): void {
    const scheduler = this.schedulerFor(peerId, indices, arriving ? 'an arriving notice' : 'a not-arriving notice')
    if (scheduler == null) return
    if (arriving) {
      scheduler.peerArriving(peerId, indices, this.clock.now())
      this.pump()
    } else {
      scheduler.peerNotArriving(peerId, indices, this.clock.now())
    }
  }

  /** The scheduler, for a notice about chunk indices from a peer that is not banned and names only chunks of the manifest. */
  private schedulerFor (peerId: string, indices: readonly number[], what: string): ChunkScheduler | undefined {
    if (this.scheduler == null || this.init.peers?.isBanned(peerId) === true) return undefined
    const chunkCount = this.chunks.length
    if (!Array.isArray(indices) || !indices.every(i => Number.isInteger(i) && i >= 0 && i < chunkCount)) {
      this.log.warn({ peer: peerId, chunks: chunkCount }, `ignoring ${what} with indices outside the manifest`)
      return undefined
    }
    return this.scheduler
  }

  /**
   * A transfer of `chunk` began to receive bytes: peers hear of the first such (see
   * `PullPeers.arriving`). Announced when bytes flow, not when the request goes out: announced at
   * once, relays of relays made every relay that failed before it began a notice to every
   * neighbour and back, and in bench/sim at 20 nodes a storm of 216,000 failed requests.
   */
  private receivingStarted (chunk: number): boolean {
    const peers = this.init.peers
    if (peers?.arriving == null || this.settled) return false
    const count = this.receiving.get(chunk) ?? 0
    this.receiving.set(chunk, count + 1)
    if (count === 0) peers.arriving([chunk])
    return true
  }

  /** A transfer that began ended; when the last ends without the chunk, peers hear that it is not coming. */
  private receivingEnded (chunk: number, arrived: boolean): void {
    const count = this.receiving.get(chunk)
    if (count === undefined) return
    if (count > 1) {
      this.receiving.set(chunk, count - 1)
      return
    }
    this.receiving.delete(chunk)
    if (!arrived && !this.settled && this.scheduler?.has(chunk) !== true) this.init.peers?.notArriving?.([chunk])
  }

  private sourceFor (request: Request): ChunkSource | undefined {
    if (request.source.kind === 'origin') return this.init.sources.origin
    try {
      return this.init.sources.peer(request.source.peerId, request.relay === true)
    } catch (err) {
      // a request without a source fails now; left started, it would hold its slot until it timed out
      this.log.warn({ peer: request.source.peerId, err: (err as Error).message }, 'no source for a peer')
      return undefined
    }
  }

  /**
   * The shared `pullerSet` (see `scheduler` in the init) changed outside the session: acts on
   * it now rather than at the scheduler's next deadline (an owner that lost chunks gives up their
   * origin requests; a new owner starts them).
   */
  pullersChanged (): void {
    this.guard('pullers-changed', () => { this.pump() })
  }

  /** Runs the scheduler's decisions now, and arranges to be called again when it asks. */
  private pump (): void {
    const scheduler = this.scheduler
    if (this.settled || scheduler == null) return
    const now = this.clock.now()
    const actions = scheduler.tick(now)
    for (const request of actions.cancel) this.controllers.get(request.id)?.abort()
    for (const request of actions.start) this.start(request)
    if (scheduler.done) {
      this.finish()
      return
    }
    this.announceFetchers()
    const stallTimeout = this.init.stallTimeoutMs ?? DEFAULT_STALL_TIMEOUT_MS
    if (now - this.lastProgressAt > stallTimeout) {
      const missing = this.chunks.find((_c, i) => !scheduler.has(i))
      this.finish(new ChunkUnavailableError(missing?.cid ?? '', [{ source: 'swarm', error: new Error(`no progress for ${Math.round(stallTimeout / 1000)} s: no peer holds the missing chunks${this.init.sources.origin == null ? ' and the origin is not used' : ''}`) }]))
      return
    }
    if (this.pumpTimer !== undefined) this.clock.clearTimer(this.pumpTimer)
    const poll = this.init.pollMs ?? DEFAULT_POLL_MS
    // the stall check needs a wake-up even when the scheduler asks for none
    const wakeAt = Math.min(actions.wakeAt ?? Infinity, now + poll, this.lastProgressAt + stallTimeout + 1)
    this.pumpTimer = this.clock.setTimer(Math.max(5, wakeAt - now), () => {
      this.pumpTimer = undefined
      this.pump()
    })
  }

  private start (request: Request): void {
    const scheduler = this.scheduler as ChunkScheduler
    const chunk = this.chunks[request.chunk] as ChunkRequest
    const source = this.sourceFor(request)
    if (source == null) {
      queueMicrotask(() => {
        if (this.settled) return
        scheduler.requestFailed(request.id, this.clock.now(), 'error')
        this.pump()
      })
      return
    }
    const controller = new AbortController()
    this.controllers.set(request.id, controller)
    const startedAt = this.clock.now()
    let fetching: Promise<{ kind: SourceKind }>
    // whether peers were told this transfer's chunk is arriving here
    let receiving = false
    // Without its block digests the chunk lands as a whole, shared with no other thread and
    // announced to nobody: when every connected peer already holds it (a pull from seeders),
    // nobody would ask for it while it arrives, and sharing it cost the main thread a message and
    // a registration per chunk.
    const wanted = chunk.blocks !== undefined && !scheduler.peerLacks(request.chunk) ? { cid: chunk.cid, size: chunk.size } : chunk
    try {
      fetching = this.init.fetcher.fetch(wanted, { sources: [source], signal: controller.signal, ...(this.init.peers?.arriving != null ? { onReceiving: () => { receiving = this.receivingStarted(request.chunk) } } : {}) })
    } catch (err) {
      fetching = Promise.reject(err as Error)
    }
    fetching.then(result => {
      this.controllers.delete(request.id)
      if (receiving) this.receivingEnded(request.chunk, true)
      if (this.settled) return
      if (scheduler.has(request.chunk)) {
        // a duplicate (endgame, hedge) that shared the winning fetch: counted once already
        this.pump()
        return
      }
      if (request.source.kind === 'origin') this.originFailures = 0
      // a pull's timeline, chunk by chunk, for when its tail needs explaining
      this.log.debug({ chunk: request.chunk, source: source.name, bytes: chunk.size, ms: Math.round(this.clock.now() - startedAt) }, 'chunk landed')
      scheduler.chunkArrived(request.chunk, this.clock.now(), request.id)
      this.init.peers?.have([request.chunk])
      this.lastProgressAt = this.clock.now()
      this.progress.doneBytes += chunk.size
      this.progress.doneChunks++
      const kind = result?.kind === 'local' ? 'local' : source.kind
      this.progress.bytesBySource[kind] += chunk.size
      if (kind !== 'local') this.init.onBytes?.(kind, chunk.size)
      this.emitProgress()
      this.pump()
    }, (err: Error) => {
      this.controllers.delete(request.id)
      if (receiving) this.receivingEnded(request.chunk, false)
      if (this.settled || controller.signal.aborted) return
      this.failed(request, chunk, source, err)
    })
  }

  private failed (request: Request, chunk: ChunkRequest, source: ChunkSource, err: Error): void {
    const scheduler = this.scheduler as ChunkScheduler
    const cause = err instanceof ChunkUnavailableError ? err.causes[0]?.error ?? err : err
    if (cause instanceof DiskFullError) {
      // our disk, not the source: fetching more cannot help until space is freed
      this.finish(cause)
      return
    }
    if (cause instanceof ChunkVerificationError && request.source.kind === 'peer') {
      this.log.warn({ peer: request.source.peerId, cid: chunk.cid }, 'peer sent bytes that failed verification: banned for this pull')
      this.init.peers?.rejected?.(request.source.peerId)
      this.init.onRejected?.(request.source.peerId, chunk.cid)
      scheduler.requestFailed(request.id, this.clock.now(), 'bad-data')
    } else {
      this.log.debug({ chunk: request.chunk, source: source.name, err: cause.message }, 'request failed')
      scheduler.requestFailed(request.id, this.clock.now(), request.source.kind === 'peer' && isBusy(cause) ? 'busy' : 'error')
      if (request.source.kind === 'origin') {
        if (cause instanceof ChunkVerificationError) {
          this.finish(err)
          return
        }
        // a timeout says the origin is slow (congested by the whole fleet), not broken: the
        // scheduler retries it, and a pull that makes no progress at all ends on the stall limit
        if (isTimeout(cause)) {
          this.pump()
          return
        }
        if (++this.originFailures >= (this.init.maxOriginFailures ?? DEFAULT_MAX_ORIGIN_FAILURES)) {
          if (scheduler.peersHoldAllMissing()) {
            // peers hold everything still missing: the pull goes on without the origin for a while
            this.log.warn({ failures: this.originFailures, err: cause.message, pauseMs: ORIGIN_PAUSE_MS }, 'the origin keeps failing; taking the missing chunks from peers only for now')
            this.originFailures = 0
            scheduler.pauseOrigin(this.clock.now() + ORIGIN_PAUSE_MS, this.clock.now())
            this.pump()
            return
          }
          this.finish(cause instanceof OriginUnavailableError ? cause : new OriginUnavailableError(`origin failed ${this.originFailures} times in a row: ${cause.message}`, { cause }))
          return
        }
      }
    }
    this.pump()
  }

  private emitProgress (): void {
    this.onProgress?.({ ...this.progress, bytesBySource: { ...this.progress.bytesBySource } })
  }

  private finish (err?: Error): void {
    if (this.settled) return
    this.settled = true
    if (this.pumpTimer !== undefined) this.clock.clearTimer(this.pumpTimer)
    for (const timer of this.timers) this.clock.clearTimer(timer)
    this.timers.clear()
    for (const controller of this.controllers.values()) controller.abort()
    this.controllers.clear()
    this.unsubscribe?.()
    this.lifetime.abort()
    const scheduler = this.scheduler
    const peers = this.init.peers
    // keep serving what we hold; peers now see us as a seeder if complete
    // done: we fetch nothing more, and name nobody
    if (peers != null && scheduler != null) this.guard('finish', () => { peers.join({ bitfield: scheduler.bitfield(), chunkCount: this.chunks.length, pulling: false, fetchers: [] }) })
    if (err != null) {
      this.log.warn({ stats: scheduler?.stats, err: err.message }, 'session failed')
      this.reject(err)
      return
    }
    const stats = scheduler?.stats
    this.log.info({ stats, lookups: this.lookups }, 'session finished')
    this.resolve({ progress: this.progress, durationMs: this.clock.now() - this.started, originRequests: stats?.originRequests ?? 0, peerRequests: stats?.peerRequests ?? 0 })
  }
}

/** A peer turned the request away for want of an upload slot (the data client's PeerBusyError, also from a byte worker, which keeps its code). */
function isBusy (err: Error): boolean {
  return (err as { code?: unknown }).code === PEER_BUSY_CODE
}

function isTimeout (err: Error): boolean {
  return err.name === 'SourceTimeoutError' || err.name === 'TimeoutError' || err.name === 'AbortError'
}
