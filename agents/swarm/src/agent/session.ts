/**
 * One pull of one manifest by the agent: the scheduler decides, this module does.
 *
 * The session joins the manifest on the control channel (peers learn our bitfield and that we
 * pull), advertises it in the DHT at once (so we serve chunks before we have the whole model),
 * looks up other providers and dials them, and then turns the scheduler's decisions into
 * fetches: a peer request goes over the TLS data plane, an origin request to object storage,
 * both through the fetcher, which writes through the store, where every chunk is verified
 * against its CID. Arrivals are announced to peers (`have`) as they land.
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
 * clear error, not a hang). Timeouts do not count: a fleet sharing a slow origin times requests
 * out without anything being broken. With no progress for `stallTimeoutMs` the pull ends too.
 * A full disk (DiskFullError from the store) ends the pull at once and is no source's failure:
 * what was stored stays recorded, and a later pull fetches only the rest.
 *
 * A request holds its scheduler slot until its chunk is durable (verified, written, fsynced and
 * journaled), not only until its bytes arrive, so a peer gets as many requests at once as it
 * serves (its per-peer upload slots): with fewer, its link idles while our fsyncs run.
 */

import { ChunkUnavailableError, ChunkVerificationError, DiskFullError, OriginUnavailableError, silentLogger } from '@swarm/interface'
import { chunkScheduler, seededRandom, keyHash } from '@swarm/scheduler'
import { DEFAULT_MAX_UPLOADS_PER_PEER, peerSource } from '@swarm/exchange'
import { SourceTimeoutError, originSource } from '@swarm/fetcher'
import type { DataClient } from '@swarm/exchange'
import type { Fetcher } from '@swarm/fetcher'
import type { ChunkRequest, ChunkSource, ChunkStore, Logger, Manifest, Origin, SourceKind, TransferProgress } from '@swarm/interface'
import { fitsChunkCount } from '@swarm/p2p'
import type { SwarmNode, PeerBannedEvent, PeerJoinedEvent, PeerHaveEvent, PeerLeftEvent, PeerDisconnectedEvent } from '@swarm/p2p'
import type { ChunkScheduler, Request } from '@swarm/scheduler'

export interface SessionInit {
  manifestCid: string
  manifest: Manifest
  store: ChunkStore
  node: SwarmNode
  client: DataClient
  fetcher: Fetcher
  /** undefined: peers only */
  origin?: Origin
  logger?: Logger
  settleMs?: number
  originFallbackMs?: number
  stallTimeoutMs?: number
  maxOriginFailures?: number
  maxInflightOrigin?: number
  /** requests outstanding at one peer; default: the upload slots a peer grants one peer by default */
  maxInflightPerPeer?: number
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

/** The manifest's distinct chunks in file order: the index space of bitfields and the scheduler. */
export function uniqueChunks (manifest: Manifest): ChunkRequest[] {
  const seen = new Set<string>()
  const out: ChunkRequest[] = []
  for (const file of manifest.files) {
    for (const chunk of file.chunks) {
      if (seen.has(chunk.cid)) continue
      seen.add(chunk.cid)
      out.push({ cid: chunk.cid, size: chunk.size })
    }
  }
  return out
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
  private readonly init: SessionInit
  private readonly log: Logger
  private readonly chunks: ChunkRequest[]
  private readonly scheduler: ChunkScheduler
  private readonly controllers = new Map<number, AbortController>()
  private readonly listeners: Array<() => void> = []
  private readonly progress: TransferProgress
  private onProgress?: (progress: TransferProgress) => void
  private timer?: NodeJS.Timeout
  private settled = false
  private originFailures = 0
  private lookups = 0
  private lastProgressAt = performance.now()
  private resolve!: (result: SessionResult) => void
  private reject!: (err: Error) => void
  private readonly started = performance.now()

  constructor (init: SessionInit) {
    this.init = init
    this.log = (init.logger ?? silentLogger).child({ component: 'session', manifest: init.manifestCid })
    this.chunks = uniqueChunks(init.manifest)
    const have = this.chunks.map(c => init.store.hasChunk(c.cid))
    this.scheduler = chunkScheduler({
      selfId: init.node.peerId,
      chunks: this.chunks,
      have,
      random: seededRandom(keyHash(init.node.peerId + init.manifestCid).a),
      useOrigin: init.origin != null,
      originFallbackMs: init.originFallbackMs,
      maxInflightOrigin: init.maxInflightOrigin,
      // every node we are connected to may be about to pull this too
      expectedPullers: init.node.connectedPeers().length + 1,
      maxInflightPerPeer: init.maxInflightPerPeer ?? DEFAULT_MAX_UPLOADS_PER_PEER,
      now: this.now(),
      logger: this.log
    })
    const totalBytes = this.chunks.reduce((sum, c) => sum + c.size, 0)
    const doneBytes = this.chunks.reduce((sum, c, i) => sum + (have[i] === true ? c.size : 0), 0)
    this.progress = {
      totalBytes,
      doneBytes,
      totalChunks: this.chunks.length,
      doneChunks: have.filter(Boolean).length,
      bytesBySource: { local: 0, peer: 0, origin: 0 }
    }
  }

  private now (): number {
    return performance.now()
  }

  get bitfield (): Uint8Array {
    return this.scheduler.bitfield()
  }

  async run (options: { signal?: AbortSignal, onProgress?(progress: TransferProgress): void } = {}): Promise<SessionResult> {
    const { manifestCid, node } = this.init
    this.onProgress = options.onProgress
    const done = new Promise<SessionResult>((resolve, reject) => {
      this.resolve = resolve
      this.reject = reject
    })
    const onAbort = (): void => { this.finish(options.signal?.reason instanceof Error ? options.signal.reason : new Error('aborted')) }
    options.signal?.addEventListener('abort', onAbort, { once: true })

    this.subscribe()
    try {
      node.control.join(manifestCid, { bitfield: this.scheduler.bitfield(), chunkCount: this.chunks.length, pulling: !this.scheduler.done })
    } catch (err) {
      // nothing may leave the listeners attached
      this.finish(err as Error)
      return await done
    }
    node.router.advertise(manifestCid).catch(err => { this.log.debug({ err: (err as Error).message }, 'advertise failed') })
    void this.discover(options.signal)
    for (const peer of node.control.peersFor(manifestCid)) this.guard('peers', () => { this.addPeer(peer.peerId, peer.pulling, peer.bitfield) })
    this.emitProgress()

    if (this.scheduler.done) {
      this.finish()
    } else {
      this.pump()
      // ownership needs the set of pullers; give their joins a moment to arrive
      setTimeout(() => {
        if (this.settled) return
        this.guard('settle', () => {
          const pullers = this.pullers()
          this.log.info({ pullers: pullers.length + 1, peers: node.control.peersFor(manifestCid).length }, 'pullers known')
          this.scheduler.setPullers(pullers, this.now())
          this.pump()
        })
      }, this.init.settleMs ?? 500).unref()
      // pullers that started after our lookup are only found by looking again; every puller
      // missing from our view makes us take chunks from the origin that it owns
      for (const delay of REDISCOVER_AFTER_MS) {
        setTimeout(() => { if (!this.settled) void this.discover(options.signal) }, delay).unref()
      }
    }
    try {
      return await done
    } finally {
      options.signal?.removeEventListener('abort', onAbort)
    }
  }

  private pullers (): string[] {
    const { node, manifestCid } = this.init
    return node.control.peersFor(manifestCid).filter(p => p.pulling && !node.peerScores.isBanned(p.peerId)).map(p => p.peerId)
  }

  private guard (handler: string, body: () => void): void {
    guarded(this.log, handler, body, this.init.onHandlerError)
  }

  /** DHT lookup: dial every provider so it gets our join and we get its bitfield. */
  private async discover (signal?: AbortSignal): Promise<void> {
    this.lookups++
    const { node, manifestCid } = this.init
    try {
      for await (const peer of node.router.lookup(manifestCid, { signal: signal ?? AbortSignal.timeout(30_000) })) {
        if (this.settled) return
        if (node.isConnected(peer.peerId)) continue
        node.control.dial(peer, { signal: AbortSignal.timeout(10_000) }).catch(err => {
          this.log.debug({ peer: peer.peerId, err: (err as Error).message }, 'dial failed')
        })
      }
    } catch (err) {
      if (!this.settled) this.log.debug({ err: (err as Error).message }, 'provider lookup ended')
    }
  }

  private addPeer (peerId: string, pulling: boolean, bitfield: Uint8Array): void {
    if (this.init.node.peerScores.isBanned(peerId)) return
    if (!fitsChunkCount(bitfield, this.chunks.length)) {
      this.log.warn({ peer: peerId, bytes: bitfield.length, chunks: this.chunks.length }, 'ignoring a peer whose bitfield does not fit the manifest')
      return
    }
    const now = this.now()
    this.scheduler.peerJoined(peerId, now, { puller: pulling })
    if (!pulling) this.scheduler.pullerLeft(peerId, now)
    this.scheduler.peerHas(peerId, bitfield, now)
  }

  private subscribe (): void {
    const { node, manifestCid } = this.init
    const control = node.control
    const chunkCount = this.chunks.length
    const onJoined = (event: CustomEvent<PeerJoinedEvent>): void => {
      if (event.detail.manifestCid !== manifestCid) return
      this.guard('peer:joined', () => {
        this.addPeer(event.detail.peerId, event.detail.pulling, event.detail.bitfield)
        this.pump()
      })
    }
    const onHave = (event: CustomEvent<PeerHaveEvent>): void => {
      if (event.detail.manifestCid !== manifestCid) return
      this.guard('peer:have', () => {
        const { peerId, indices } = event.detail
        if (node.peerScores.isBanned(peerId)) return
        if (!indices.every(i => Number.isInteger(i) && i >= 0 && i < chunkCount)) {
          this.log.warn({ peer: peerId, chunks: chunkCount }, 'ignoring a have with indices outside the manifest')
          return
        }
        this.scheduler.peerHas(peerId, indices, this.now())
        this.pump()
      })
    }
    const onLeft = (event: CustomEvent<PeerLeftEvent>): void => {
      if (event.detail.manifestCid !== manifestCid) return
      this.guard('peer:left', () => {
        this.scheduler.peerLeft(event.detail.peerId, this.now(), { puller: true })
        this.pump()
      })
    }
    const onGone = (event: CustomEvent<PeerDisconnectedEvent | PeerBannedEvent>): void => {
      this.guard(event.type, () => {
        this.scheduler.peerLeft(event.detail.peerId, this.now(), { puller: true })
        this.pump()
      })
    }
    const scores = node.peerScores
    scores.addEventListener('peer:banned', onGone)
    control.addEventListener('peer:joined', onJoined)
    control.addEventListener('peer:have', onHave)
    control.addEventListener('peer:left', onLeft)
    control.addEventListener('peer:disconnected', onGone)
    this.listeners.push(
      () => { control.removeEventListener('peer:joined', onJoined) },
      () => { control.removeEventListener('peer:have', onHave) },
      () => { control.removeEventListener('peer:left', onLeft) },
      () => { control.removeEventListener('peer:disconnected', onGone) },
      () => { scores.removeEventListener('peer:banned', onGone) }
    )
  }

  private sourceFor (request: Request): ChunkSource | undefined {
    if (request.source.kind === 'origin') return this.init.origin != null ? originSource(this.init.origin) : undefined
    const address = this.init.node.control.dataAddressOf(request.source.peerId)
    if (address == null) return undefined
    return peerSource(this.init.client, { peerId: request.source.peerId, host: address.host, port: address.port })
  }

  /** Runs the scheduler's decisions now, and arranges to be called again when it asks. */
  private pump (): void {
    if (this.settled) return
    const now = this.now()
    const actions = this.scheduler.tick(now)
    for (const request of actions.cancel) this.controllers.get(request.id)?.abort()
    for (const request of actions.start) this.start(request)
    if (this.scheduler.done) {
      this.finish()
      return
    }
    const stallTimeout = this.init.stallTimeoutMs ?? 120_000
    if (now - this.lastProgressAt > stallTimeout) {
      const missing = this.chunks.find((_c, i) => !this.scheduler.has(i))
      this.finish(new ChunkUnavailableError(missing?.cid ?? '', [{ source: 'swarm', error: new Error(`no progress for ${Math.round(stallTimeout / 1000)} s: no peer holds the missing chunks${this.init.origin == null ? ' and the origin is not used' : ''}`) }]))
      return
    }
    clearTimeout(this.timer)
    const wakeAt = actions.wakeAt ?? now + 1000
    this.timer = setTimeout(() => { this.pump() }, Math.max(5, Math.min(wakeAt - now, 1000)))
  }

  private start (request: Request): void {
    const chunk = this.chunks[request.chunk] as ChunkRequest
    const source = this.sourceFor(request)
    if (source == null) {
      queueMicrotask(() => {
        this.scheduler.requestFailed(request.id, this.now(), 'error')
        this.pump()
      })
      return
    }
    const controller = new AbortController()
    this.controllers.set(request.id, controller)
    this.init.fetcher.fetch(chunk, { sources: [source], signal: controller.signal }).then(result => {
      this.controllers.delete(request.id)
      if (this.settled) return
      if (this.scheduler.has(request.chunk)) {
        // a duplicate (endgame, hedge) that shared the winning fetch: counted once already
        this.pump()
        return
      }
      if (request.source.kind === 'origin') this.originFailures = 0
      this.scheduler.chunkArrived(request.chunk, this.now(), request.id)
      this.init.node.control.have(this.init.manifestCid, [request.chunk])
      this.lastProgressAt = performance.now()
      this.progress.doneBytes += chunk.size
      this.progress.doneChunks++
      const kind = result.kind === 'local' ? 'local' : source.kind
      this.progress.bytesBySource[kind] += chunk.size
      if (kind !== 'local') this.init.onBytes?.(kind, chunk.size)
      this.emitProgress()
      this.pump()
    }, (err: Error) => {
      this.controllers.delete(request.id)
      if (this.settled || controller.signal.aborted) return
      const cause = err instanceof ChunkUnavailableError ? err.causes[0]?.error ?? err : err
      if (cause instanceof DiskFullError) {
        // our disk, not the source: fetching more cannot help until space is freed
        this.finish(cause)
        return
      }
      if (cause instanceof ChunkVerificationError && request.source.kind === 'peer') {
        this.log.warn({ peer: request.source.peerId, cid: chunk.cid }, 'peer sent bytes that failed verification: banned for this pull')
        this.init.client.disconnect(request.source.peerId)
        this.init.onRejected?.(request.source.peerId, chunk.cid)
        this.scheduler.requestFailed(request.id, this.now(), 'bad-data')
      } else {
        this.log.debug({ source: source.name, cid: chunk.cid, err: cause.message }, 'request failed')
        this.scheduler.requestFailed(request.id, this.now(), 'error')
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
          if (++this.originFailures >= (this.init.maxOriginFailures ?? 3)) {
            this.finish(cause instanceof OriginUnavailableError ? cause : new OriginUnavailableError(`origin failed ${this.originFailures} times in a row: ${cause.message}`, { cause }))
            return
          }
        }
      }
      this.pump()
    })
  }

  private emitProgress (): void {
    this.onProgress?.({ ...this.progress, bytesBySource: { ...this.progress.bytesBySource } })
  }

  private finish (err?: Error): void {
    if (this.settled) return
    this.settled = true
    clearTimeout(this.timer)
    for (const controller of this.controllers.values()) controller.abort()
    this.controllers.clear()
    for (const off of this.listeners) off()
    const { node, manifestCid } = this.init
    // keep serving what we hold; peers now see us as a seeder if complete
    this.guard('finish', () => { node.control.join(manifestCid, { bitfield: this.scheduler.bitfield(), chunkCount: this.chunks.length, pulling: false }) })
    if (err != null) {
      this.log.warn({ stats: this.scheduler.stats, err: err.message }, 'session failed')
      this.reject(err)
      return
    }
    const stats = this.scheduler.stats
    this.log.info({ stats, lookups: this.lookups }, 'session finished')
    this.resolve({ progress: this.progress, durationMs: performance.now() - this.started, originRequests: stats.originRequests, peerRequests: stats.peerRequests })
  }
}

/** When a running pull looks up the manifest's providers again, counted from its start. */
const REDISCOVER_AFTER_MS = [2_000, 5_000, 10_000, 20_000]

function isTimeout (err: Error): boolean {
  return err instanceof SourceTimeoutError || err.name === 'TimeoutError' || err.name === 'AbortError'
}
