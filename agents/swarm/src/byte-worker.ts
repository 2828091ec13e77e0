/**
 * The entry script of the agent's byte workers (see @swarm/workers): each worker thread opens
 * its own origin client, from the same configuration the main thread opened its origin with
 * (`createOrigin`), and its own data client with the node's key, and answers chunk jobs with them.
 * Nothing here is shared with the main thread but the store's files, which the jobs name by path.
 *
 * Both clients are opened at their first job: loading every origin adapter costs a thread a
 * second or more of CPU, and a worker that only ever talks to peers never needs it.
 */
import { threadId, workerData } from 'node:worker_threads'
import { dataClient, privateKeyFromBytes } from '@swarm/exchange'
import { OriginUnavailableError } from '@swarm/interface'
import { serveChunkJobs } from '@swarm/workers'
import type { Config } from '@swarm/config'
import type { DataClient } from '@swarm/exchange'
import type { Logger, Origin } from '@swarm/interface'

/** What the main thread hands every byte worker. */
export interface ByteWorkerData {
  /** the configuration the origin is opened from; `origin: ''` means none */
  config: Config
  /** the node's libp2p key (privateKeyToBytes); empty: no peers (swarm pull --no-agent) */
  privateKey: Uint8Array
  /** data connections this worker opens to one peer */
  connectionsPerPeer: number
  /** this worker's share of the download rate limit; 0 = none */
  downloadBytesPerSecond: number
}

const data = workerData as ByteWorkerData
let logger: Promise<Logger> | undefined
let origin: Promise<Origin | undefined> | undefined
let client: Promise<DataClient | undefined> | undefined

async function getLogger (): Promise<Logger> {
  logger ??= import('./logger.js').then(({ createLogger }) => createLogger(data.config.logLevel).child({ thread: `byte-worker-${threadId}` }))
  return await logger
}

async function getOrigin (): Promise<Origin | undefined> {
  origin ??= data.config.origin === ''
    ? Promise.resolve(undefined)
    : Promise.all([import('./runtime.js'), getLogger()]).then(([runtime, log]) => runtime.createOrigin(data.config, log))
  return await origin
}

async function getClient (): Promise<DataClient | undefined> {
  client ??= data.privateKey.byteLength === 0
    ? Promise.resolve(undefined)
    : getLogger().then(log => dataClient({
      privateKey: privateKeyFromBytes(data.privateKey),
      connectionsPerPeer: data.connectionsPerPeer,
      downloadBytesPerSecond: data.downloadBytesPerSecond,
      logger: log
    }))
  return await client
}

serveChunkJobs({
  async fetch (source, request, options) {
    if (source.kind === 'peer') {
      const peers = await getClient()
      if (peers === undefined) throw new OriginUnavailableError('this process has no node key, so its workers reach no peer')
      return await peers.fetch({ peerId: source.peerId, host: source.host, port: source.port }, request, options)
    }
    const from = await getOrigin()
    if (from === undefined) throw new OriginUnavailableError('no origin is configured')
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
  }
})
