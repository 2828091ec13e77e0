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
 *
 * A chunk still arriving (cut-through) is relayed from the memory the worker that receives it
 * shares (@swarm/workers' shared-arrival.ts): a GET with the relay flag asks the main thread,
 * which keeps the node's registry of arrivals, and reads what it answers.
 */
import { FdPool } from '@swarm/store/fd-pool'
import { askMain, openSharedArrival, sharedArrivalReadable, tellMain } from '@swarm/workers'
import type { DataServer, PeerIdentity, PeerVerdict, ServeGate, SlotVerdict } from '@swarm/exchange'
import type { ArrivingChunk, ChunkArrivals, Logger, ReadChunkOptions } from '@swarm/interface'
import type { SharedArrival } from '@swarm/workers'

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
  | { serving: 'begin', peer: string, small: boolean, relay?: boolean }
  | { serving: 'locate', cid: string }
  /** answered with a SharedArrival, or undefined where the chunk is stored or not arriving in shared memory */
  | { serving: 'arriving', cid: string }

/** Where the main thread says a CID's bytes are. */
export type Located =
  | { kind: 'chunk', path: string, offset: number, size: number }
  | { kind: 'manifest', bytes: Uint8Array }
  | { kind: 'none' }

/** A worker's note to the main thread about serving. */
export type ServingNote =
  | { serving: 'closed' }
  | { serving: 'left', peer: string }
  | { serving: 'end', peer: string, small: boolean, landedAfterMs?: number, relay?: boolean }
  | { serving: 'listening', port: number }

/** How long a content file's descriptor is kept after its last read. */
const KEEP_DESCRIPTOR_MS = 5_000
/** Content files a worker keeps open at most. */
const MAX_OPEN_DESCRIPTORS = 64
/** How long an arrival the main thread named is kept for the relay that asked (it opens it within milliseconds). */
const KEEP_ARRIVAL_MS = 5_000

const ask = async <T>(question: ServingQuestion): Promise<T> => await askMain<T>(question)
const tell = (note: ServingNote): void => { tellMain(note) }

/** The main thread's gate, asked through messages. */
export const gateOnMainThread: ServeGate = {
  connectionOpened: async () => await ask<boolean>({ serving: 'open' }),
  connectionClosed: () => { tell({ serving: 'closed' }) },
  peerConnected: async peer => await ask<PeerVerdict>({ serving: 'peer', peer }),
  peerDisconnected: peer => { tell({ serving: 'left', peer }) },
  begin: async (peer, small, options) => await ask<SlotVerdict>({ serving: 'begin', peer, small, ...(options?.relay === true ? { relay: true } : {}) }),
  end: (peer, small, landedAfterMs, options) => { tell({ serving: 'end', peer, small, ...(landedAfterMs !== undefined ? { landedAfterMs } : {}), ...(options?.relay === true ? { relay: true } : {}) }) }
}

/** The node's arrivals as the main thread keeps them: asked for each relay GET, read from the memory it names. */
export class ArrivalsOnMainThread implements ChunkArrivals {
  private readonly named = new Map<string, { shared: SharedArrival, at: number }>()

  async arriving (cid: string): Promise<boolean> {
    const shared = await ask<SharedArrival | undefined>({ serving: 'arriving', cid })
    this.forgetOld()
    if (shared == null) {
      this.named.delete(cid)
      return false
    }
    this.named.set(cid, { shared, at: performance.now() })
    return true
  }

  open (cid: string): ArrivingChunk | undefined {
    const named = this.named.get(cid)
    if (named === undefined) return undefined
    const reader = openSharedArrival(named.shared)
    if (reader === undefined) this.named.delete(cid)
    return reader
  }

  /** arrivals no longer readable, or named long ago, are let go (their memory is the receiving worker's) */
  private forgetOld (): void {
    const now = performance.now()
    for (const [cid, { shared, at }] of this.named) {
      if (now - at > KEEP_ARRIVAL_MS || !sharedArrivalReadable(shared)) this.named.delete(cid)
    }
  }
}

/** Starts this worker's data server on the node's port; resolves once it listens. */
export async function serveFromWorker (serving: WorkerServing, identity: PeerIdentity, log: Logger): Promise<DataServer> {
  const { dataServer } = await import('@swarm/exchange')
  const descriptors = new FdPool(MAX_OPEN_DESCRIPTORS)
  setInterval(() => { descriptors.closeIdle(KEEP_DESCRIPTOR_MS) }, KEEP_DESCRIPTOR_MS).unref()
  const server = dataServer({
    identity,
    gate: gateOnMainThread,
    arrivals: new ArrivalsOnMainThread(),
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
