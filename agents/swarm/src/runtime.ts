/**
 * Wiring shared by the CLI commands and the agent: origin from a URL, the store, the logger.
 * Adapters are chosen here, at the edge; libraries only see the interfaces.
 *
 * Only the adapter the origin URL names is loaded, when the origin is opened: the S3 and Azure
 * SDKs each cost a process some 30–50 MB of heap and half a second of CPU to load, which a pull
 * from any other origin has no use for. `createOrigin` stays synchronous by loading the package
 * with `require` (an ES module without top-level await may be required, Node ≥ 22.12), after
 * resolving it as an import would, since the packages export for `import` only; the instance is
 * the one a later `import` of the package gets. The peer stack (@swarm/exchange) is loaded the
 * same way, only where peers are in play: `swarm pull --no-agent` never loads it.
 */

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { ConfigError } from '@swarm/config'
import { CHUNK_WORKER_YOUNG_GENERATION_MB, chunkWorkers, decodeChunkError, defaultWorkerCount, workerPool } from '@swarm/workers'
import type { Config } from '@swarm/config'
import { SwarmError, redactDeep, redactSecrets } from '@swarm/interface'
import type { Logger, Origin } from '@swarm/interface'
import type { ChunkWorkers, WorkerPool } from '@swarm/workers'
import type { PeerIdentity } from '@swarm/exchange'
import type { ByteWorkerData } from './byte-worker.js'
import type { WorkerServing } from './worker-serving.js'
import type { OriginSpec } from './origin-spec.js'
import { answerIdentityQuestion } from './worker-identity.js'
import { CHUNK_READER_PACKAGES, ORIGIN_PACKAGES, isChunkReaderQuestion, locatedCid } from './origin-spec.js'

export class NoOriginError extends SwarmError {
  override readonly code = 'ERR_NO_ORIGIN'
  constructor () {
    super('no origin configured: pass --origin s3://bucket/prefix, file:///dir, oci://registry/namespace, az://account/container/prefix or https://host/prefix, or set SWARM_ORIGIN')
  }
}

export { createLogger } from './logger.js'
export { ORIGIN_PACKAGES, openOriginSpec } from './origin-spec.js'
export type { OriginSpec } from './origin-spec.js'

/** The origin a URL names; a URL its adapter cannot take is a configuration error (exit 2), not a crash. */
export function createOrigin (config: Config, logger: Logger): Origin {
  try {
    return openSpec(originSpec(config), logger)
  } catch (err) {
    if (err instanceof TypeError) throw new ConfigError(`invalid origin: ${err.message}`)
    throw err
  }
}

const requireModule = createRequire(import.meta.url)

/** an adapter's package, loaded now if it is not yet (see the top of this file) */
function adapter<K extends OriginSpec['adapter']> (name: K): AdapterModules[K] {
  return requireModule(fileURLToPath(import.meta.resolve(ORIGIN_PACKAGES[name]))) as AdapterModules[K]
}

/** @swarm/exchange, loaded now if it is not yet */
function exchange (): typeof import('@swarm/exchange') {
  return requireModule(fileURLToPath(import.meta.resolve('@swarm/exchange'))) as typeof import('@swarm/exchange')
}

interface AdapterModules {
  file: typeof import('@swarm/origin-file')
  oci: typeof import('@swarm/origin-oci')
  azure: typeof import('@swarm/origin-azure')
  http: typeof import('@swarm/origin-http')
  s3: typeof import('@swarm/origin-s3')
}

// synchronous here; workers import theirs (origin-spec.ts)
function openSpec (spec: OriginSpec, logger: Logger): Origin {
  switch (spec.adapter) {
    case 'file': return adapter('file').fileOrigin({ ...spec.init, logger })
    case 'oci': return adapter('oci').ociOrigin({ ...spec.init, logger })
    case 'azure': return adapter('azure').azureOrigin({ ...spec.init, logger })
    case 'http': return adapter('http').httpOrigin({ ...spec.init, logger })
    case 's3': return adapter('s3').s3Origin({ ...spec.init, logger })
  }
}

/** Which adapter the configured origin URL needs and its init, as data a worker thread can be given. */
export function originSpec (config: Config): OriginSpec {
  const url = config.origin
  if (url === '') throw new NoOriginError()
  if (url.startsWith('file://')) return { adapter: 'file', init: { url } }
  // derived chunk manifests are cut at the configured chunk size, like swarm push
  if (url.startsWith('oci://')) return { adapter: 'oci', init: { url, chunkSize: config.chunkSize } }
  // an https URL of Azure Blob Storage is Azure; any other http(s) URL a plain web server
  if (url.startsWith('az://') || (/^https?:\/\//.test(url) && adapter('azure').isAzureBlobUrl(url))) {
    const { endpoint, accountKey, sasToken } = config.azure
    return {
      adapter: 'azure',
      init: { url, endpoint, credential: accountKey != null ? { accountKey } : sasToken != null ? { sasToken } : undefined }
    }
  }
  if (url.startsWith('http://') || url.startsWith('https://')) {
    let ca: string | undefined
    if (config.http.caFile != null) {
      try {
        ca = readFileSync(config.http.caFile, 'utf8')
      } catch (err) {
        throw new ConfigError(`cannot read http.caFile ${config.http.caFile}: ${(err as Error).message}`)
      }
    }
    return { adapter: 'http', init: { url, ca } }
  }
  return {
    adapter: 's3',
    init: {
      url,
      endpoint: config.s3.endpoint,
      region: config.s3.region,
      forcePathStyle: config.s3.forcePathStyle ?? (config.s3.endpoint != null),
      credentials: config.s3.accessKeyId != null && config.s3.secretAccessKey != null
        ? { accessKeyId: config.s3.accessKeyId, secretAccessKey: config.s3.secretAccessKey }
        : undefined
    }
  }
}

/** The byte workers: a pool of threads that fetch, verify, write and sync chunks (see @swarm/workers). */
export interface ByteWorkers {
  pool: WorkerPool
  chunks: ChunkWorkers
  close(): Promise<void>
}

/**
 * Data connections this node opens to one peer when byte workers carry the transfers: the main
 * thread's client keeps one (manifests), and peer jobs go to at most this many workers, which
 * share the rest, so a peer that caps connections per peer (`agent.dataConnectionsPerPeer`, 8 by
 * default, assumed the same across the fleet) never refuses ours: 7 workers with 1 each, or 1
 * worker with 7.
 */
export function workerPeerSpread (config: Config, workers: number): number {
  const cap = config.agent.dataConnectionsPerPeer ?? exchange().DEFAULT_MAX_CONNECTIONS_PER_PEER
  return Math.max(1, Math.min(workers, cap - MAIN_CONNECTIONS_PER_PEER))
}

/** The main thread's data connections per peer while byte workers carry the transfers. */
export const MAIN_CONNECTIONS_PER_PEER = 1

/** An agent's workers serve the data port too: where, and the main thread's side of it (see agent/served-by-workers.ts). */
export interface ByteWorkersServing {
  serve: WorkerServing
  answer(message: unknown, worker: number): unknown
  told(message: unknown, worker: number): void
  gone(worker: number): void
}

/** The byte workers the configuration asks for: `agent.workers`, else `defaultWorkerCount()`. */
export function byteWorkerCount (config: Config): number {
  return config.agent.workers ?? defaultWorkerCount()
}

export interface ByteWorkersOptions {
  /**
   * the origin this thread holds: where it offers a light chunk reader (`chunkReaderSpec`), the
   * workers ask it for one rather than opening the whole adapter
   */
  origin?: Origin
  /** the data port the workers serve, in an agent */
  serving?: ByteWorkersServing
  /** the workers share the chunks they receive with other threads as they land (cut-through; an agent's, whose data servers relay them) */
  shareArrivals?: boolean
}

/** Byte workers from the configuration (`byteWorkerCount`), or undefined for 0. */
export function createByteWorkers (config: Config, identity: PeerIdentity | undefined, logger: Logger, { origin, serving, shareArrivals = false }: ByteWorkersOptions = {}): ByteWorkers | undefined {
  const size = byteWorkerCount(config)
  if (size === 0) return undefined
  const spec = config.origin !== '' ? originSpec(config) : undefined
  const reader = spec !== undefined && CHUNK_READER_PACKAGES[spec.adapter] !== undefined ? origin?.chunkReaderSpec?.bind(origin) : undefined
  // a process with no node key (swarm pull --no-agent) reaches no peer: its workers fetch from the origin only
  const peers = identity !== undefined
  const spread = peers ? workerPeerSpread(config, size) : size
  const data: ByteWorkerData = {
    origin: spec,
    originReader: reader !== undefined,
    logLevel: config.logLevel,
    peers,
    // the connections a peer accepts from this node, shared among the workers that may reach it
    connectionsPerPeer: peers ? Math.max(1, Math.floor(((config.agent.dataConnectionsPerPeer ?? exchange().DEFAULT_MAX_CONNECTIONS_PER_PEER) - MAIN_CONNECTIONS_PER_PEER) / spread)) : 1,
    downloadBytesPerSecond: config.agent.downloadRate > 0 ? Math.max(1, Math.floor(config.agent.downloadRate / spread)) : 0,
    ...(serving !== undefined ? { serve: serving.serve } : {}),
    shareArrivals
  }
  const pool = workerPool({ script: new URL('./byte-worker.js', import.meta.url), workerData: data, size, name: 'worker', decodeError: decodeChunkError, logger,
    resourceLimits: { maxYoungGenerationSizeMb: CHUNK_WORKER_YOUNG_GENERATION_MB },
    ...(serving !== undefined ? { told: serving.told, gone: serving.gone } : {}),
    answer: (question, worker) => {
      if (isChunkReaderQuestion(question) && reader !== undefined) return reader()
      const answer = identity !== undefined
        ? answerIdentityQuestion(question, {
          certificate: async () => await identity.certificate(),
          peerOf: async (raw, { validFrom, validTo }) => await exchange().peerOfCertificate(raw, validFrom, validTo, { identity })
        })
        : undefined
      if (answer !== undefined) return answer
      const cid = locatedCid(question)
      if (cid !== undefined) return origin?.chunkLocation?.(cid)
      if (serving !== undefined) return serving.answer(question, worker)
      throw new Error(`a byte worker asked something this process does not answer: ${JSON.stringify(question)}`)
    } })
  return { pool, chunks: chunkWorkers({ pool, peerSpread: spread }), close: async () => { await pool.close() } }
}
