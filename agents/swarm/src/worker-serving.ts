/**
 * The node's data server, hosted by a byte worker. Every worker of an agent listens on the
 * node's data port (SO_REUSEPORT: the kernel spreads the connections over them), so the TLS
 * and the reads and writes of every upload run on the workers, as the downloads do; the main
 * thread keeps the node's one gate (admission, connection caps, upload slots: `UploadGate` in
 * @swarm/exchange) and the store's index, and answers each worker's questions about them
 * (`agent/served-by-workers.ts`): a connection accepted, a peer authenticated, a GET begun,
 * where a chunk's bytes lie. Those cost a message each way per GET, against the few
 * milliseconds of encryption a 4 MiB chunk costs where it is sent.
 *
 * A worker reads a chunk from the store's content file by path, through the store's descriptor
 * pool (`FdPool`): a lease per read, and descriptors unused for a few seconds closed, since
 * nobody tells a worker when the store deletes a file. A file deleted after it was opened still
 * reads whole through its descriptor (the bytes the main thread located); one deleted before the
 * open is NOT_FOUND.
 */
import { FdPool } from '@swarm/store/fd-pool'
import { askMain, tellMain } from '@swarm/workers'
import type { DataServer, PeerVerdict, ServeGate, SlotVerdict } from '@swarm/exchange'
import type { Logger, ReadChunkOptions } from '@swarm/interface'

/** How a worker's server listens and times out connections; the limits are the main thread's gate's. */
export interface WorkerServing {
  host: string
  port: number
  writeTimeoutMs?: number
  idleTimeoutMs?: number
  handshakeTimeoutMs?: number
}

/** A worker's question to the main thread about serving. */
export type ServingQuestion =
  | { serving: 'open' }
  | { serving: 'peer', peer: string }
  | { serving: 'begin', peer: string, small: boolean }
  | { serving: 'locate', cid: string }

/** Where the main thread says a CID's bytes are. */
export type Located =
  | { kind: 'chunk', path: string, offset: number, size: number }
  | { kind: 'manifest', bytes: Uint8Array }
  | { kind: 'none' }

/** A worker's note to the main thread about serving. */
export type ServingNote =
  | { serving: 'closed' }
  | { serving: 'left', peer: string }
  | { serving: 'end', peer: string, small: boolean, landedAfterMs?: number }
  | { serving: 'listening', port: number }

/** How long a content file's descriptor is kept after its last read. */
const KEEP_DESCRIPTOR_MS = 5_000
/** Content files a worker keeps open at most. */
const MAX_OPEN_DESCRIPTORS = 64

const ask = async <T>(question: ServingQuestion): Promise<T> => await askMain<T>(question)
const tell = (note: ServingNote): void => { tellMain(note) }

/** The main thread's gate, asked through messages. */
export const gateOnMainThread: ServeGate = {
  connectionOpened: async () => await ask<boolean>({ serving: 'open' }),
  connectionClosed: () => { tell({ serving: 'closed' }) },
  peerConnected: async peer => await ask<PeerVerdict>({ serving: 'peer', peer }),
  peerDisconnected: peer => { tell({ serving: 'left', peer }) },
  begin: async (peer, small) => await ask<SlotVerdict>({ serving: 'begin', peer, small }),
  end: (peer, small, landedAfterMs) => { tell({ serving: 'end', peer, small, ...(landedAfterMs !== undefined ? { landedAfterMs } : {}) }) }
}

/** Starts this worker's data server on the node's port; resolves once it listens. */
export async function serveFromWorker (serving: WorkerServing, privateKeyBytes: Uint8Array, log: Logger): Promise<DataServer> {
  const { dataServer, privateKeyFromBytes } = await import('@swarm/exchange')
  const descriptors = new FdPool(MAX_OPEN_DESCRIPTORS)
  setInterval(() => { descriptors.closeIdle(KEEP_DESCRIPTOR_MS) }, KEEP_DESCRIPTOR_MS).unref()
  const server = dataServer({
    privateKey: privateKeyFromBytes(privateKeyBytes),
    gate: gateOnMainThread,
    content: {
      async read (cid: string, _peer: string, options: ReadChunkOptions): Promise<Uint8Array | undefined> {
        const located = await ask<Located>({ serving: 'locate', cid })
        if (located.kind === 'none') return undefined
        if (located.kind === 'manifest') return located.bytes
        options.signal?.throwIfAborted()
        try {
          return await descriptors.read(located.path, located.offset, located.size, options.allocate)
        } catch (err) {
          // the store removed the model between the answer and the open: as if it had not been held
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
          throw err
        }
      }
    },
    host: serving.host,
    port: serving.port,
    reusePort: true,
    writeTimeoutMs: serving.writeTimeoutMs,
    idleTimeoutMs: serving.idleTimeoutMs,
    handshakeTimeoutMs: serving.handshakeTimeoutMs,
    logger: log
  })
  const bound = await server.start()
  tell({ serving: 'listening', port: bound.port })
  return server
}
