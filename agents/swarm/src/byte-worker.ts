/**
 * The entry script of the agent's byte workers (see @swarm/workers): each worker thread opens
 * its own origin client, from the same configuration the main thread opened its origin with
 * (`createOrigin`), and its own data client with the node's key, and answers chunk jobs with them.
 * Nothing here is shared with the main thread but the store's files, which the jobs name by path.
 */
import { threadId, workerData } from 'node:worker_threads'
import { dataClient, privateKeyFromBytes } from '@swarm/exchange'
import { OriginUnavailableError } from '@swarm/interface'
import { serveChunkJobs } from '@swarm/workers'
import { createLogger, createOrigin } from './runtime.js'
import type { Config } from '@swarm/config'
import type { Origin } from '@swarm/interface'

/** What the main thread hands every byte worker. */
export interface ByteWorkerData {
  /** the configuration the origin is opened from; `origin: ''` means none */
  config: Config
  /** the node's libp2p key (privateKeyToBytes) */
  privateKey: Uint8Array
  /** data connections this worker opens to one peer */
  connectionsPerPeer: number
  /** this worker's share of the download rate limit; 0 = none */
  downloadBytesPerSecond: number
}

const data = workerData as ByteWorkerData
const logger = createLogger(data.config.logLevel).child({ thread: `byte-worker-${threadId}` })
const origin: Origin | undefined = data.config.origin !== '' ? createOrigin(data.config, logger) : undefined
const client = data.privateKey.byteLength > 0
  ? dataClient({
    privateKey: privateKeyFromBytes(data.privateKey),
    connectionsPerPeer: data.connectionsPerPeer,
    downloadBytesPerSecond: data.downloadBytesPerSecond,
    logger
  })
  : undefined

serveChunkJobs({
  async fetch (source, request, options) {
    if (source.kind === 'peer') {
      if (client === undefined) throw new OriginUnavailableError('this process has no node key, so its workers reach no peer')
      return await client.fetch({ peerId: source.peerId, host: source.host, port: source.port }, request, options)
    }
    if (origin === undefined) throw new OriginUnavailableError('no origin is configured')
    return await origin.getChunk(request.cid, options)
  },
  release (source, bytes) {
    if (source.kind === 'peer') client?.release(bytes)
    else origin?.release?.(bytes)
  }
})
