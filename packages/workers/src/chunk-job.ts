/**
 * A chunk job: one whole chunk, from its source to durable bytes in the store's content files.
 *
 * The main thread plans the write (the store's `planWrite` names each content file and offset
 * that needs the chunk) and sends `{ cid, size, source, slots }`. The worker fetches the bytes
 * with its own clients (its own origin client, its own peer connections), hashes them against
 * the CID, pwrites them at every slot through descriptors it opens itself by path (the main
 * thread's descriptor numbers mean nothing here, and may be closed and reused there at any
 * time), and answers only once an fdatasync of each file has covered those writes: the chunks a
 * worker writes to one file share a descriptor and its syncs (see durable-files.ts). The main
 * thread then records the chunk in the store's journal (`recordWritten`): the worker never
 * records, so a worker that dies, or a job that is aborted, leaves at worst bytes on disk
 * without a record, which the store treats as missing. The bytes never cross threads.
 *
 * Failures come back as the errors the in-thread path would give: ChunkVerificationError (bad
 * data from that source), DiskFullError, AbortError, SyncFailedError (a sync that covered the chunk failed), and the source's own errors by name
 * (NotFoundError, OriginUnavailableError, a peer's RequestTimeoutError, …); a worker that died
 * gives WorkerDiedError, which may be retried.
 */
import { statfs } from 'node:fs/promises'
import { dirname } from 'node:path'
// the CID module alone: the package's safetensors parsing loads zod, 6 MB and 45 ms of CPU per worker
import { verifyChunk } from '@swarm/chunker/cid'
import { AbortError, ChunkVerificationError, DiskFullError, NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { DurableFiles } from './durable-files.js'
import { SyncFailedError, WorkerJobError } from './errors.js'
import { serveJobs } from './worker.js'
import type { DurableFilesInit, DurableFilesStats } from './durable-files.js'
import type { RunOptions, SerializedError, WorkerPool } from './pool.js'
import { SharedArrivalWriter } from './shared-arrival.js'
import type { SharedArrival } from './shared-arrival.js'
import type { AbortOptions, BlockDigests, ChunkFetchOptions, ChunkRequest, OnChunkData, RemoteSource } from '@swarm/interface'

/** where a chunk goes: a content file and the offset of the chunk in it */
export interface ChunkSlot {
  path: string
  offset: number
}

export interface ChunkJob {
  cid: string
  size: number
  source: RemoteSource
  /** the source's name, for errors (`origin`, `peer:<id>`) */
  sourceName: string
  slots: readonly ChunkSlot[]
  /** the store's data directory, named in a disk-full error */
  dataDir?: string
  /**
   * the chunk's block digests, where it may be passed on while it arrives: the worker then
   * shares the arriving bytes with other threads (see shared-arrival.ts) and says so with a
   * `{ arriving: SharedArrival }` progress message at the first bytes
   */
  blocks?: BlockDigests
}

/** The progress a chunk job reports: its chunk arriving in shared memory. */
export interface ChunkJobProgress {
  arriving: SharedArrival
}

export interface ChunkJobResult {
  /** bytes fetched (the chunk's size) */
  bytes: number
}

/** Runs chunk jobs in a pool; what the fetcher is given. */
export interface ChunkWorkers {
  readonly size: number
  fetchChunk(job: ChunkJob, options?: ChunkJobOptions): Promise<ChunkJobResult>
}

export interface ChunkJobOptions extends AbortOptions {
  /** the chunk (a job with `blocks`) is arriving in memory other threads may read */
  onArriving?(shared: SharedArrival): void
}

export interface ChunkWorkersInit {
  pool: WorkerPool
  /**
   * jobs for one peer run on at most this many workers, so a peer sees at most this many
   * workers' connections from this node (default: the whole pool)
   */
  peerSpread?: number
}

/** The main thread's side: chunk jobs for a pool whose workers run `serveChunkJobs`. */
export function chunkWorkers (init: ChunkWorkersInit): ChunkWorkers {
  const { pool } = init
  const spread = init.peerSpread ?? pool.size
  return {
    size: pool.size,
    async fetchChunk (job, options = {}) {
      const run: RunOptions = { signal: options.signal }
      if (job.source.kind === 'peer') run.affinity = { key: job.source.peerId, spread }
      const onArriving = options.onArriving
      if (onArriving !== undefined) run.onProgress = message => { onArriving((message as ChunkJobProgress).arriving) }
      return await pool.run<ChunkJobResult>(job, run)
    }
  }
}

/** Rebuilds, on the main thread, an error a chunk job failed with. */
export function decodeChunkError (error: SerializedError): Error {
  const fields = error.fields ?? {}
  switch (error.name) {
    case 'ChunkVerificationError': return new ChunkVerificationError(String(fields.cid ?? ''), String(fields.source ?? ''), error.message)
    case 'DiskFullError': return new DiskFullError(String(fields.dir ?? ''), numberOr(fields.neededBytes), numberOr(fields.freeBytes), error.message)
    case 'AbortError': return new AbortError(error.message)
    case 'NotFoundError': return new NotFoundError(error.message)
    case 'OriginUnavailableError': return new OriginUnavailableError(error.message)
    case 'SyncFailedError': return Object.assign(new SyncFailedError(String(fields.path ?? '')), { message: error.message })
    default: return new WorkerJobError(error.name, error.message, error.code)
  }
}

function numberOr (value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined
}

export interface ChunkJobSources {
  /** the bytes of a chunk from a source this worker can reach */
  fetch(source: RemoteSource, request: ChunkRequest, options: Required<AbortOptions> & ChunkFetchOptions): Promise<Uint8Array>
  /** gives bytes back to the client that fetched them, once written */
  release?(source: RemoteSource, bytes: Uint8Array): void
  /** a message the main thread broadcast to every worker (`WorkerPool.broadcast`) */
  control?(message: unknown): void
  /** what this worker says of itself in `WorkerPool.threadReports` (structured-cloneable) */
  describe?(): unknown
}

/** What a chunk worker reports of itself (`WorkerPool.threadReports`): its sources' own report, and its syncs. */
export interface ChunkWorkerReport {
  sources: unknown
  files: DurableFilesStats
}

/** In a worker's entry script: answers chunk jobs with these sources (`files`: how it syncs, for tests). */
export function serveChunkJobs (sources: ChunkJobSources, files: DurableFilesInit = {}): () => void {
  const durable = new DurableFiles(files)
  return serveJobs(async (job: ChunkJob, options) => await runChunkJob(job, sources, { signal: options.signal, onArriving: shared => { options.progress({ arriving: shared } satisfies ChunkJobProgress) } }, durable), message => { sources.control?.(message) },
    (): ChunkWorkerReport => ({ sources: sources.describe?.(), files: { ...durable.stats } }))
}

/**
 * fetch, verify, pwrite every slot; resolves only once a sync has made the bytes durable.
 * `onArriving`: where the job has block digests, the chunk is shared with other threads as it
 * lands (when its source reads into shared memory), and this is told so once.
 */
export async function runChunkJob (job: ChunkJob, sources: ChunkJobSources, options: Required<AbortOptions> & { onArriving?(shared: SharedArrival): void }, files: DurableFiles = new DurableFiles()): Promise<ChunkJobResult> {
  const { signal } = options
  signal.throwIfAborted()
  const arrival = job.blocks !== undefined && options.onArriving !== undefined ? sharing(job, job.blocks, options.onArriving, signal) : undefined
  let bytes: Uint8Array
  try {
    bytes = await sources.fetch(job.source, { cid: job.cid, size: job.size }, { signal, ...(arrival !== undefined ? { onData: arrival.onData } : {}) })
  } catch (err) {
    void arrival?.end()
    throw err
  }
  try {
    if (signal.aborted) throw new AbortError()
    if (bytes.byteLength !== job.size) {
      throw new ChunkVerificationError(job.cid, job.sourceName, `chunk ${job.cid} from ${job.sourceName} has ${bytes.byteLength} bytes, expected ${job.size}`)
    }
    if (!verifyChunk(job.cid, bytes)) throw new ChunkVerificationError(job.cid, job.sourceName)
    arrival?.whole()
    const byPath = new Map<string, number[]>()
    for (const slot of job.slots) {
      const offsets = byPath.get(slot.path)
      if (offsets === undefined) byPath.set(slot.path, [slot.offset])
      else offsets.push(slot.offset)
    }
    await Promise.all([...byPath].map(async ([path, offsets]) => { await writeDurably(files, path, offsets, bytes, job) }))
  } finally {
    // other threads may still read a shared chunk: its memory goes back once none does
    const release = (): void => { sources.release?.(job.source, bytes) }
    if (arrival === undefined) release()
    else void arrival.end().then(release)
  }
  return { bytes: bytes.byteLength }
}

/** The job's chunk shared with other threads from its first bytes, where they land in shared memory. */
function sharing (job: ChunkJob, blocks: BlockDigests, onArriving: (shared: SharedArrival) => void, signal: AbortSignal): { onData: OnChunkData, whole(): void, end(): Promise<void> } {
  let writer: SharedArrivalWriter | undefined
  let declined = false
  // a transfer given up stops the readers at once: its source may reuse the memory
  const onAbort = (): void => { writer?.fail() }
  signal.addEventListener('abort', onAbort, { once: true })
  return {
    onData: (buffer, filled) => {
      if (writer === undefined) {
        if (declined) return
        writer = SharedArrivalWriter.begin(job.cid, job.size, blocks, buffer)
        if (writer === undefined) {
          declined = true
          return
        }
        onArriving(writer.shared)
      }
      writer.land(buffer, filled)
    },
    whole: () => { writer?.whole() },
    // an arrival not whole by now failed (close fails it): readers stop
    end: async () => {
      signal.removeEventListener('abort', onAbort)
      await writer?.close()
    }
  }
}

async function writeDurably (files: DurableFiles, path: string, offsets: readonly number[], bytes: Uint8Array, job: ChunkJob): Promise<void> {
  try {
    await files.write(path, offsets, bytes)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOSPC' || code === 'EDQUOT') {
      // worded as the store words its own disk errors
      const dir = job.dataDir ?? dirname(path)
      const freeBytes = await statfs(dir).then(fs => fs.bavail * fs.bsize, () => undefined)
      throw new DiskFullError(dir, undefined, freeBytes,
        `disk full: ${code === 'EDQUOT' ? 'the disk quota is exhausted' : 'no space left'} on the file system of the data dir ${dir}${freeBytes !== undefined ? ` (${freeBytes} bytes free)` : ''} while writing chunk ${job.cid}; chunks not stored are not recorded and will be fetched again once there is room`,
        { cause: err })
    }
    throw err
  }
}
