/**
 * The entry script of the agent's byte workers (see @swarm/workers): each worker thread opens
 * its own origin client, from the spec the main thread opened its origin with (`originSpec`),
 * and its own data client with the node's key, and answers chunk jobs with them. Nothing here is
 * shared with the main thread but the store's files, which the jobs name by path.
 *
 * A worker loads what its jobs will use and nothing more, as soon as it starts: the light chunk
 * reader of the origin the main thread holds, where its adapter offers one (the S3 and Azure
 * adapters', from the spec the main thread's origin resolves: see `CHUNK_READER_QUESTION`), else the one origin
 * adapter the spec names (see origin-spec.ts), the peer data client (@swarm/exchange) when the
 * process has a node key (whose certificate and checks the main thread answers for: see
 * worker-identity.ts), and the logger. Statically it imports only the worker side of
 * @swarm/workers and @swarm/interface. Loading every adapter, the configuration schema and the
 * peer stack cost each worker about a second of CPU and some 60–90 MB of heap; a process with no
 * key (`swarm pull --no-agent`) never loads the peer stack. Loading at start rather than at the
 * first job of each kind puts that cost where the pool starts (`WorkerPool.start`: the agent's
 * start, a pull resolving its manifest), not in the first chunks of a transfer, where it took
 * 0.3–0.7 CPU-s per GB of a 1 GiB peer transfer (bench/peer-transfer). What a worker has loaded
 * is in its report (`WorkerPool.threadReports`).
 *
 * In an agent the workers also serve: each runs a data server on the node's data port
 * (`serve`; see worker-serving.ts), so uploads leave the main thread too.
 */
import { threadId, workerData } from 'node:worker_threads'
import { OriginUnavailableError, shareBufferPoolMemory } from '@swarm/interface'
import { askMain, serveChunkJobs } from '@swarm/workers'
import { workerIdentity } from './worker-identity.js'
import { CHUNK_READER_PACKAGES, CHUNK_READER_QUESTION, ORIGIN_PACKAGES, locateQuestion, openChunkReader, openOriginSpec } from './origin-spec.js'
import type { OriginSpec } from './origin-spec.js'
import type { WorkerServing } from './worker-serving.js'
import type { Config } from '@swarm/config'
import type { DataClient, DataServer, DataServerStats } from '@swarm/exchange'
import type { ChunkReader, ChunkReaderSpec, Logger } from '@swarm/interface'

/** What the main thread hands every byte worker. */
export interface ByteWorkerData {
  /** the origin's adapter and init; absent: none configured */
  origin?: OriginSpec
  /** the main thread answers CHUNK_READER_QUESTION: the worker reads chunks with the adapter's light reader */
  originReader?: boolean
  logLevel: Config['logLevel']
  /**
   * the process has a node key, so the worker reaches peers, with the identity the main thread
   * answers for (worker-identity.ts); false: no peers (swarm pull --no-agent)
   */
  peers: boolean
  /** data connections this worker opens to one peer */
  connectionsPerPeer: number
  /** this worker's share of the download rate limit; 0 = none */
  downloadBytesPerSecond: number
  /** where this worker serves the node's data port; absent: the main thread serves */
  serve?: WorkerServing
  /**
   * chunks land in memory shared with the other threads, which relay them while they arrive
   * (@swarm/workers' shared-arrival.ts): this thread's buffer pools allocate from SharedArrayBuffer
   */
  shareArrivals?: boolean
}

/** What a byte worker reports about itself (`describe`). */
export interface ByteWorkerReport {
  /** the packages it loaded for its jobs, in the order it loaded them */
  loaded: string[]
  /** its data server's counters, where it serves */
  served?: Readonly<DataServerStats>
}

const data = workerData as ByteWorkerData
// before any client makes its pools
if (data.shareArrivals === true) shareBufferPoolMemory(true)
const loaded: string[] = []
let logger: Promise<Logger> | undefined
let origin: Promise<ChunkReader | undefined> | undefined
let client: Promise<DataClient | undefined> | undefined
let server: DataServer | undefined
const identity = workerIdentity()

async function getLogger (): Promise<Logger> {
  logger ??= import('./logger.js').then(({ createLogger }) => {
    loaded.push('pino')
    return createLogger(data.logLevel).child({ thread: `byte-worker-${threadId}` })
  })
  return await logger
}

async function askForReader (): Promise<ChunkReaderSpec | undefined> {
  return await askMain<ChunkReaderSpec | undefined>(CHUNK_READER_QUESTION)
}

async function getOrigin (): Promise<ChunkReader | undefined> {
  const spec = data.origin
  origin ??= spec === undefined
    ? Promise.resolve(undefined)
    : getLogger().then(async log => {
      const readerSpec = data.originReader === true ? await askForReader() : undefined
      if (readerSpec === undefined) {
        loaded.push(ORIGIN_PACKAGES[spec.adapter])
        return await openOriginSpec(spec, log)
      }
      loaded.push(CHUNK_READER_PACKAGES[spec.adapter] ?? ORIGIN_PACKAGES[spec.adapter])
      return await openChunkReader(readerSpec, async () => {
        const fresh = await askForReader()
        if (fresh === undefined) throw new OriginUnavailableError('the main thread no longer offers a reader of its origin')
        return fresh
      }, log)
    })
  const opening = origin
  try {
    return await opening
  } catch (err) {
    // asked again at the next job: the main thread's origin may resolve its credentials later
    if (origin === opening) origin = undefined
    throw err
  }
}

async function getClient (): Promise<DataClient | undefined> {
  client ??= !data.peers
    ? Promise.resolve(undefined)
    : Promise.all([import('@swarm/exchange'), getLogger()]).then(([{ dataClient }, log]) => {
      loaded.push('@swarm/exchange')
      return dataClient({
        identity,
        connectionsPerPeer: data.connectionsPerPeer,
        downloadBytesPerSecond: data.downloadBytesPerSecond,
        logger: log
      })
    })
  return await client
}

serveChunkJobs({
  async fetch (source, request, options) {
    if (source.kind === 'peer') {
      const peers = await getClient()
      if (peers === undefined) throw new OriginUnavailableError('this process has no node key, so its workers reach no peer')
      return await peers.fetch({ peerId: source.peerId, host: source.host, port: source.port }, request, source.relay === true ? { ...options, relay: true } : options)
    }
    const from = await getOrigin()
    if (from === undefined) throw new OriginUnavailableError('no origin is configured')
    if (from.addChunkLocation !== undefined) {
      // an origin whose chunks lie where only the main thread's instance learned (OCI layers)
      const location = await askMain(locateQuestion(request.cid))
      if (location != null) from.addChunkLocation(request.cid, location)
    }
    return await from.getChunk(request.cid, options)
  },
  // a peer banned on the main thread loses this worker's connections too
  control (message) {
    const peerId = (message as { disconnect?: unknown }).disconnect
    if (typeof peerId === 'string') void client?.then(peers => { peers?.disconnect(peerId) })
  },
  release (source, bytes) {
    if (source.kind === 'peer') void client?.then(peers => { peers?.release(bytes) })
    else void origin?.then(from => { from?.release?.(bytes) })
  },
  describe (): ByteWorkerReport {
    return { loaded: [...loaded], ...(server !== undefined ? { served: server.stats } : {}) }
  }
})

// what the jobs will use, loaded now rather than during the first chunks; a failure here is the
// first job's to report, as it would have been
getOrigin().catch(() => {})
getClient().catch(() => {})

const serving = data.serve
if (serving !== undefined) {
  // a worker that cannot listen leaves the port to the others and to the main thread, which keeps listening until every worker does
  void getLogger().then(async log => {
    loaded.push('@swarm/exchange (server)')
    const { serveFromWorker } = await import('./worker-serving.js')
    server = await serveFromWorker(serving, identity, log)
  }).catch(async (err: Error) => { (await getLogger()).error({ err }, 'this worker could not serve the data port') })
}
