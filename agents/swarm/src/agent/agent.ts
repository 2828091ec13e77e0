/**
 * The node agent: one per node. It owns the local store, runs the libp2p node (discovery,
 * DHT, control protocol), serves chunks to admitted peers over the TLS data plane, pulls
 * models on request (peers first, origin after: `@swarm/pull`, wired in `pull-peers.ts`), exposes a control API on
 * a Unix socket for the CLI and Prometheus metrics on a local port.
 *
 * Everything it holds it also advertises: a model is joined on the control channel and
 * provided in the DHT from the moment its pull starts until it is evicted.
 *
 * The fleet (`fleet.ts`): every agent gossips its labels and per-model progress and keeps what
 * the others gossip, so any node can show the whole fleet and act on preheat requests.
 *
 * Peers that misbehave are scored in one place, the libp2p node's peer scores (`@swarm/p2p`,
 * `peer-score.ts`): the control channel reports bad messages there, and the fetcher reports
 * chunk bytes that fail verification, whether a pull or a FUSE read asked for them. A banned peer
 * is refused by libp2p, by the data server's admission check and by every pull and read.
 */

import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_MAX_UPLOADS_PER_PEER, DEFAULT_UPLOAD_LANDING_MS, UploadGate, dataClient, dataServer, keyIdentity } from '@swarm/exchange'
import { ArrivingChunks, fetcher as createFetcher } from '@swarm/fetcher'
import { OriginUnavailableError, SwarmError, heldBitfield, silentLogger, uniqueChunks } from '@swarm/interface'
import { formatRef } from '@swarm/manifest'
import { createSwarmNode, loadOrCreateKey, parseSelector } from '@swarm/p2p'
import { guarded, PullSession, resolveManifest } from '@swarm/pull'
import { createStore } from '@swarm/store'
import { checkOriginContent, placeFiles } from '../pull.js'
import { MAIN_CONNECTIONS_PER_PEER, byteWorkerCount, createByteWorkers } from '../runtime.js'
import { AgentFleet } from './fleet.js'
import { ServedByWorkers } from './served-by-workers.js'
import { fleetRoutes } from './fleet-page.js'
import { agentMetrics, serveMetrics } from './metrics.js'
import { mountAgentView } from './mount.js'
import { agentManifestPeers, agentSources, nodePullPeers } from './pull-peers.js'
import type { Config } from '@swarm/config'
import type { DataClient, DataServer, DataServerStats } from '@swarm/exchange'
import type { Fetcher } from '@swarm/fetcher'
import type { AbortOptions, GcReport, Logger, Manifest, ModelRef, Origin, TransferProgress } from '@swarm/interface'
import type { PeerBannedEvent, SwarmNode } from '@swarm/p2p'
import type { Store } from '@swarm/store'
import type { FleetView } from './fleet.js'
import type { ByteWorkers } from '../runtime.js'
import type { AgentMetrics, ThreadCpuTime } from './metrics.js'
import type { ModelMount, MountOptions } from './mount.js'
import type { Server } from 'node:http'

export interface AgentInit {
  config: Config
  /** undefined when no origin is configured: peers only */
  origin?: Origin
  logger?: Logger
  /** mount the read-only FUSE view of the models here (see mount.ts) */
  mount?: MountOptions
}

export interface PullRequest {
  ref?: ModelRef
  cid?: string
  to?: string
  pin?: boolean
}

export interface AgentPullResult {
  manifestCid: string
  ref?: string
  progress: TransferProgress
  durationMs: number
  originRequests: number
  peerRequests: number
}

export interface TransferStatus {
  manifestCid: string
  ref?: string
  startedAt: number
  progress: TransferProgress
}

async function threadCpu (workers: ByteWorkers | undefined): Promise<ThreadCpuTime[]> {
  if (workers != null) return await workers.pool.threadCpu()
  const main = process.threadCpuUsage()
  return [{ name: 'main', userSeconds: main.user / 1e6, systemSeconds: main.system / 1e6 }]
}

export { ManifestUnavailableError } from '@swarm/pull'

/** How long an agent's start waits for its byte workers to serve the data port before it goes online anyway. */
const WORKERS_LISTEN_TIMEOUT_MS = 10_000

/** An agent asked to join a swarm without a key, which would let any host that reaches it in. */
export class SwarmKeyRequiredError extends SwarmError {
  override readonly code = 'ERR_SWARM_KEY_REQUIRED'
  constructor () {
    super('no swarm key: without one any host that reaches this node joins the swarm, learns every model it holds and downloads them. ' +
      'Give one with --swarm-key FILE (SWARM_SWARM_KEY_FILE; make one with `swarm keygen FILE`), or run open on purpose with --insecure-open-swarm (SWARM_INSECURE_OPEN_SWARM=1)')
  }
}

export class Agent {
  readonly config: Config
  readonly store: Store
  readonly node: SwarmNode
  /** the main thread's data server; with byte workers it stops listening once they all serve the port */
  readonly server: DataServer
  /** what the node's data servers have done, the workers' included */
  readonly serverStats: () => Promise<Readonly<DataServerStats>>
  readonly client: DataClient
  readonly fetcher: Fetcher
  readonly metrics: AgentMetrics
  readonly origin?: Origin
  readonly log: Logger
  /** the threads that carry the byte path; undefined with `agent.workers: 0` */
  readonly workers?: ByteWorkers
  private metricsServer?: Server
  /** the FUSE view, when mounted */
  mount?: ModelMount
  /** this node's part in the fleet: what it publishes, preheat requests */
  fleetState?: AgentFleet
  private readonly sessions = new Map<string, { session: Promise<AgentPullResult>, status: TransferStatus }>()
  private readonly shutdown = new AbortController()
  /** the latest gc's report, for status */
  private lastGc?: GcReport & { at: number }
  private started = false

  private constructor (init: { config: Config, store: Store, node: SwarmNode, server: DataServer, serverStats(): Promise<Readonly<DataServerStats>>, client: DataClient, metrics: AgentMetrics, origin?: Origin, log: Logger, workers?: ByteWorkers, arrivals: ArrivingChunks }) {
    this.config = init.config
    this.store = init.store
    this.node = init.node
    this.server = init.server
    this.serverStats = init.serverStats
    this.client = init.client
    this.metrics = init.metrics
    this.origin = init.origin
    this.log = init.log
    this.workers = init.workers
    this.fetcher = createFetcher({
      store: this.store,
      sources: [],
      // pulls and FUSE misses alike move their bytes in the workers
      workers: init.workers?.chunks,
      arrivals: init.arrivals,
      logger: this.log,
      // pulls and FUSE reads alike, counted here because the ban that follows may cancel the
      // pull's request before the pull sees why it failed
      onBadSource: source => {
        this.metrics.chunksRejected.inc({ source: source.kind })
        if (source.kind === 'peer' && source.name.startsWith('peer:')) this.node.peerScores.penalize(source.name.slice('peer:'.length), 'bad-data')
      }
    })
    const onBanned = (event: CustomEvent<PeerBannedEvent>): void => {
      guarded(this.log, 'peer:banned', () => {
        // libp2p hangs up on its own; the data plane's connections go too
        this.client.disconnect(event.detail.peerId)
        this.workers?.pool.broadcast({ disconnect: event.detail.peerId })
      }, handler => { this.metrics.handlerErrors.inc({ handler }) })
    }
    this.node.peerScores.addEventListener('peer:banned', onBanned)
  }

  static async start (init: AgentInit): Promise<Agent> {
    const { config } = init
    const log = (init.logger ?? silentLogger).child({ component: 'agent' })
    // closed by default: an open swarm is a choice someone made, never an accident of a missing flag
    if (config.agent.swarmKeyFile == null && !config.agent.insecureOpenSwarm) throw new SwarmKeyRequiredError()
    await mkdir(config.dataDir, { recursive: true })
    const privateKey = await loadOrCreateKey(join(config.dataDir, 'node.key'))
    const swarmKey = config.agent.swarmKeyFile != null ? await readFile(config.agent.swarmKeyFile) : undefined

    let node: SwarmNode | undefined
    let agent: Agent | undefined
    const store = await createStore({
      dir: config.dataDir,
      budgetBytes: config.cacheSize > 0 ? config.cacheSize : undefined,
      logger: init.logger,
      onEvict: manifestCid => {
        node?.control.leave(manifestCid)
        node?.router.withdraw(manifestCid).catch(() => {})
        agent?.mount?.evicted(manifestCid)
      }
    })
    // the node's one gate, whichever threads serve: its admission, connection caps and upload slots
    const gate = new UploadGate({
      // only peers connected to us over libp2p (which the swarm key guards) and not banned are served
      isAdmitted: peerId => node?.isConnected(peerId) === true && !node.peerScores.isBanned(peerId),
      maxUploads: config.agent.uploadSlots,
      maxRelays: config.agent.relaySlots,
      // on a slow uplink, fewer uploads at once land each chunk sooner, to be passed on sooner
      uploadLandingMs: DEFAULT_UPLOAD_LANDING_MS,
      maxConnections: config.agent.dataConnections,
      maxConnectionsPerPeer: config.agent.dataConnectionsPerPeer,
      onAdmissionError: (err, peer) => { log.error({ err, peer }, 'admission check failed') }
    })
    const timeouts = { writeTimeoutMs: config.agent.dataWriteTimeoutMs, idleTimeoutMs: config.agent.dataIdleTimeoutMs, handshakeTimeoutMs: config.agent.dataHandshakeTimeoutMs }
    const workerCount = byteWorkerCount(config)
    // uploads move to the byte workers, except under an upload rate limit (one bucket on one thread
    // paces every connection) and where threads cannot share a port (SO_REUSEPORT: Linux here)
    const serveFromWorkers = workerCount > 0 && config.agent.uploadRate === 0 && process.platform === 'linux'
    const host = config.agent.dataHost ?? '0.0.0.0'
    // chunks passed on as they arrive (cut-through): registered here whichever thread receives
    // them (byte workers share theirs, see @swarm/workers' shared-arrival.ts) and served by any
    const arrivals = new ArrivingChunks()
    // one certificate for every thread's data client and server; the workers ask this thread for it
    const identity = keyIdentity(privateKey)
    const server = dataServer({
      identity,
      store,
      gate,
      arrivals,
      host,
      port: config.agent.dataPort,
      reusePort: serveFromWorkers,
      uploadBytesPerSecond: config.agent.uploadRate,
      ...timeouts,
      logger: init.logger
    })
    const bound = await server.start()
    const served = serveFromWorkers
      ? new ServedByWorkers({
        gate,
        store,
        arrivals,
        workers: workerCount,
        everyWorkerListens: () => {
          server.stopListening().catch(err => { log.warn({ err }, 'the main thread could not stop listening on the data port') })
        },
        logger: log
      })
      : undefined
    const workers = createByteWorkers(config, identity, log, {
      origin: init.origin,
      shareArrivals: true,
      ...(served !== undefined ? { serving: { serve: { host, port: bound.port, ...timeouts }, answer: (m, w) => served.answer(m, w), told: (m, w) => { served.told(m, w) }, gone: w => { served.gone(w) } } } : {})
    })
    // what the node's data servers have done: the main thread's, and the workers' where they serve
    const serverStats = async (): Promise<Readonly<DataServerStats>> => served !== undefined && workers !== undefined ? await served.stats(server, workers.pool) : server.stats
    // the workers load their clients now, not during the first pull's chunks
    workers?.pool.start()
    // a peer's data connections last: the node goes online once its workers serve the port, so
    // they carry the uploads from the first (a worker that cannot listen leaves them to this thread)
    await served?.everyWorkerListening(WORKERS_LISTEN_TIMEOUT_MS)
    node = await createSwarmNode({
      privateKey,
      listen: config.agent.listen,
      bootstrap: config.agent.bootstrap,
      swarmKey,
      mdns: config.agent.mdns,
      peerScore: { banMs: config.agent.peerBanSeconds * 1000 },
      fleetState: () => agent?.fleetState?.localState() ?? { labels: config.agent.labels, models: [] },
      dataAddress: () => ({ host: config.agent.dataHost != null && config.agent.dataHost !== '0.0.0.0' ? config.agent.dataHost : undefined, port: bound.port }),
      logger: init.logger
    })
    // with workers the main thread fetches only manifests; the workers hold the peer connections
    const client = dataClient({ identity, downloadBytesPerSecond: config.agent.downloadRate, logger: init.logger, ...(workers != null ? { connectionsPerPeer: MAIN_CONNECTIONS_PER_PEER } : {}) })
    const metrics = agentMetrics({
      openSwarm: swarmKey == null,
      threads: async () => await threadCpu(workers),
      peers: () => node?.connectedPeers().length ?? 0,
      bytesServed: async () => (await serverStats()).bytesServed,
      dataServer: serverStats,
      fuse: () => agent?.mount?.fuseStats(),
      peerCounts: () => node != null ? { control: node.control.stats(), scores: node.peerScores.stats() } : undefined,
      fleet: () => agent?.fleetState != null ? { view: agent.fleet(), stats: agent.node.fleet.stats() } : undefined
    })
    agent = new Agent({ config, store, node, server, serverStats, client, metrics, origin: init.origin, log, workers, arrivals })
    agent.fleetState = new AgentFleet(agent, config.agent.labels)
    agent.metricsServer = await serveMetrics(metrics, config.agent.metricsHost, config.agent.metricsPort, () => agent?.started === true, fleetRoutes(agent))

    // advertise what we already hold
    for (const model of store.models()) agent.announce(model.manifestCid)
    if (init.mount != null) {
      try {
        agent.mount = await mountAgentView(agent, init.mount)
      } catch (err) {
        await agent.stop()
        throw err
      }
    }
    agent.started = true
    if (swarmKey == null) log.warn({ dataPort: bound.port, listen: node.multiaddrs() }, 'open swarm (--insecure-open-swarm): no swarm key, so any host that reaches these ports can join, list and download every model held here')
    log.info({ peerId: node.peerId, multiaddrs: node.multiaddrs(), dataPort: bound.port, metricsPort: agent.metricsPort }, 'agent started')
    return agent
  }

  get metricsPort (): number {
    const address = this.metricsServer?.address()
    return address != null && typeof address === 'object' ? address.port : 0
  }

  get dataPort (): number {
    return this.server.address.port
  }

  /** Joins a held model on the control channel and provides it in the DHT. */
  announce (manifestCid: string): void {
    const manifest = this.store.getManifest(manifestCid)
    if (manifest == null) return
    const chunks = uniqueChunks(manifest)
    const bitfield = heldBitfield(chunks, cid => this.store.hasChunk(cid))
    this.node.control.join(manifestCid, { bitfield, chunkCount: chunks.length, pulling: false })
    this.node.router.advertise(manifestCid).catch(err => { this.log.debug({ err: (err as Error).message }, 'advertise failed') })
  }

  /**
   * The manifest by CID: from the store, else from the origin when one is configured, else
   * from peers (any copy that hashes to the CID is as good as the origin's, so peers may serve
   * it; they are only never trusted to name a model).
   */
  private async manifestFor (manifestCid: string, options: AbortOptions): Promise<Manifest> {
    return await resolveManifest(manifestCid, { store: this.store, origin: this.origin, peers: agentManifestPeers(this.node, this.client) }, options)
  }

  /** A manifest by CID, held or fetched (peers, then the origin) and verified; the FUSE view adds what it reads this way. */
  async fetchManifest (manifestCid: string, options: AbortOptions = {}): Promise<Manifest> {
    return await this.manifestFor(manifestCid, options)
  }

  async pull (request: PullRequest, options: AbortOptions & { onProgress?(progress: TransferProgress, manifestCid: string): void } = {}): Promise<AgentPullResult> {
    const ref = request.ref != null ? formatRef(request.ref) : undefined
    const resolved: { manifestCid?: string } = {}
    try {
      return await this.pullOnce(request, ref, resolved, options)
    } catch (err) {
      // the fleet sees why; a later pull that succeeds clears it
      this.fleetState?.failed(resolved.manifestCid ?? request.cid ?? '', ref, err)
      throw err
    }
  }

  private async pullOnce (request: PullRequest, ref: string | undefined, resolved: { manifestCid?: string }, options: AbortOptions & { onProgress?(progress: TransferProgress, manifestCid: string): void }): Promise<AgentPullResult> {
    const signal = options.signal != null ? AbortSignal.any([options.signal, this.shutdown.signal]) : this.shutdown.signal
    let manifestCid = request.cid
    if (manifestCid == null) {
      if (request.ref == null) throw new TypeError('pull needs a name or a manifest CID')
      if (this.origin == null) throw new OriginUnavailableError('names resolve only through the origin, and none is configured: pull by --cid instead')
      manifestCid = await this.origin.resolveRef(request.ref, { signal })
    }
    resolved.manifestCid = manifestCid
    const manifest = await this.manifestFor(manifestCid, { signal })
    // held from before the model is added until this pull is done with it, so no other pull's gc
    // (nor this one's own) can evict the model under it
    const lease = await this.store.addAndLease(manifestCid, manifest, `pull:${ref ?? manifestCid}`, { ref, signal })
    try {
      if (request.pin === true) await this.store.pin(manifestCid, true)
      this.store.touch(manifestCid)
      const result = await this.runSession(manifestCid, manifest, ref, signal, options.onProgress)
      await checkOriginContent(this.store, this.origin, manifestCid, { signal })
      if (request.to != null) await placeFiles(this.store, manifestCid, request.to)
      await this.gc()
      return result
    } finally {
      lease.release()
    }
  }

  /** The store's gc to the configured budget (none: only unused, empty models go); the report is kept for status. */
  async gc (options: AbortOptions = {}): Promise<GcReport> {
    const report = await this.store.gc({ budgetBytes: this.config.cacheSize > 0 ? this.config.cacheSize : undefined, signal: options.signal })
    this.lastGc = { at: Date.now(), ...report }
    if (report.evicted.length > 0 || report.skipped.length > 0) {
      this.log.info({ evicted: report.evicted.map(e => `${e.manifestCid} (${e.reason})`), skipped: report.skipped.map(s => `${s.manifestCid} (${s.reason}${s.holders != null ? `: ${s.holders.join(', ')}` : ''})`), presentBytes: report.presentBytes }, 'gc')
    }
    return report
  }

  /** One session per manifest: a second pull of the same model joins the running one. */
  private async runSession (manifestCid: string, manifest: Manifest, ref: string | undefined, signal: AbortSignal, onProgress?: (progress: TransferProgress, manifestCid: string) => void): Promise<AgentPullResult> {
    const running = this.sessions.get(manifestCid)
    if (running != null) return await running.session
    const status: TransferStatus = { manifestCid, ref, startedAt: Date.now(), progress: { totalBytes: 0, doneBytes: 0, totalChunks: 0, doneChunks: 0, bytesBySource: { local: 0, peer: 0, origin: 0 } } }
    const session = new PullSession({
      manifestCid,
      manifest,
      store: this.store,
      fetcher: this.fetcher,
      sources: agentSources(this.node, this.client, this.origin),
      peers: nodePullPeers(this.node, this.client, manifestCid, this.log),
      // a peer gets as many requests at once as it serves one peer
      maxInflightPerPeer: DEFAULT_MAX_UPLOADS_PER_PEER,
      logger: this.log,
      // chunks copied from another held model are counted apart: nothing was verified or fetched
      onBytes: (kind, bytes) => { if (kind === 'local') this.metrics.bytes.inc({ source: 'local' }, bytes); else this.metrics.countBytes(kind, bytes) },
      onHandlerError: handler => { this.metrics.handlerErrors.inc({ handler }) }
    })
    const started = performance.now()
    const promise = session.run({
      signal,
      onProgress: progress => {
        status.progress = progress
        this.fleetState?.progressed()
        onProgress?.(progress, manifestCid)
      }
    }).then(result => {
      this.metrics.pullDuration.observe({ result: 'ok' }, (performance.now() - started) / 1000)
      this.log.info({ manifestCid, ref, ...result.progress.bytesBySource, ms: Math.round(result.durationMs) }, 'pull complete')
      this.fleetState?.completed(manifestCid, ref, result.progress)
      return { manifestCid, ref, ...result }
    }, (err: Error) => {
      this.metrics.pullDuration.observe({ result: 'error' }, (performance.now() - started) / 1000)
      throw err
    }).finally(() => { this.sessions.delete(manifestCid) })
    this.sessions.set(manifestCid, { session: promise, status })
    this.fleetState?.changed()
    this.node.router.advertise(manifestCid).catch(() => {})
    return await promise
  }

  /** pulls in flight */
  transfers (): TransferStatus[] {
    return [...this.sessions.values()].map(s => s.status)
  }

  /** Every node of the fleet this node knows of, itself first, with its models' states. */
  fleet (): FleetView {
    if (this.fleetState == null) return { self: this.node.peerId, updatedAt: Date.now(), nodes: [] }
    return this.fleetState.view()
  }

  /**
   * Asks the fleet to pull a model: gossiped to every node, acted on by those whose labels match
   * the selector (this node included). `manifestCid` is what our origin resolves the name to, for
   * watchers; each node resolves it again itself.
   */
  async preheat (ref: ModelRef, selector: string, options: AbortOptions = {}): Promise<{ id: string, manifestCid?: string, ref: string, selector: string }> {
    parseSelector(selector)
    const manifestCid = this.origin != null ? await this.origin.resolveRef(ref, options) : undefined
    const request = this.node.fleet.preheat({ target: formatRef(ref), selector, ...(manifestCid != null ? { manifestCid } : {}) })
    return { id: request.id, ref: request.target, selector: request.selector, ...(manifestCid != null ? { manifestCid } : {}) }
  }

  /** CPU time of the main thread and of each byte worker so far */
  async threads (): Promise<ThreadCpuTime[]> {
    return await threadCpu(this.workers)
  }

  /** the status, with what every thread's data server has done (status() alone has the main thread's) */
  async fullStatus (): Promise<Record<string, unknown>> {
    return { ...this.status(), served: await this.serverStats() }
  }

  status (): Record<string, unknown> {
    return {
      peerId: this.node.peerId,
      multiaddrs: this.node.multiaddrs(),
      dataPort: this.dataPort,
      metricsPort: this.metricsPort,
      origin: this.origin?.url ?? null,
      peers: this.node.connectedPeers(),
      models: this.store.models(),
      transfers: [...this.sessions.values()].map(s => {
        const seconds = Math.max((Date.now() - s.status.startedAt) / 1000, 1e-3)
        const fetched = s.status.progress.bytesBySource.peer + s.status.progress.bytesBySource.origin
        return { ...s.status, bytesPerSecond: Math.round(fetched / seconds) }
      }),
      served: this.server.stats,
      leases: this.store.models().map(m => ({ manifestCid: m.manifestCid, holders: this.store.holders(m.manifestCid) })).filter(l => l.holders.length > 0),
      lastGc: this.lastGc ?? null
    }
  }

  async stop (): Promise<void> {
    this.started = false
    // readers first: nothing may wait on a store that is closing
    await this.mount?.close().catch(err => { this.log.warn({ err: (err as Error).message }, 'unmounting the view failed') })
    this.shutdown.abort(new Error('agent shutting down'))
    await Promise.allSettled([...this.sessions.values()].map(async s => await s.session))
    await new Promise<void>(resolve => { this.metricsServer?.close(() => { resolve() }) ?? resolve() })
    await this.client.close()
    await this.workers?.close()
    await this.server.stop()
    await this.node.stop()
    await this.store.close()
    await this.origin?.close()
    this.log.info('agent stopped')
  }
}
