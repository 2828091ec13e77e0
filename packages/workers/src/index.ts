/**
 * @packageDocumentation
 *
 * A pool of worker threads that carries the byte path, so the main thread only schedules and
 * talks control while every core fetches, hashes and writes. The pool itself runs any job a
 * worker script answers (see `pool.ts`); the chunk job (see `chunk-job.ts`) fetches one whole
 * chunk from an origin or a peer, verifies it against its CID, writes it into the store's content
 * files and syncs them, and answers "verified and durable" — the main thread records it.
 *
 * The package imports no adapter: the worker's entry script (the agent's) builds its own origin
 * client and peer client from its `workerData` and hands them to `serveChunkJobs`.
 *
 * @example
 *
 * ```ts
 * // main thread
 * import { chunkWorkers, decodeChunkError, workerPool } from '@swarm/workers'
 *
 * const pool = workerPool({ script: new URL('./byte-worker.js', import.meta.url), workerData: { originUrl }, decodeError: decodeChunkError })
 * const workers = chunkWorkers({ pool, peerSpread: 4 })
 * const plan = store.planWrite(cid)
 * await workers.fetchChunk({ cid, size, source: { kind: 'origin' }, sourceName: 'origin', slots: plan.slots }, { signal })
 * await store.recordWritten(plan)
 * const threads = await pool.threadCpu()   // [{ name: 'main', … }, { name: 'worker-0', … }, …]
 * const reports = await pool.threadReports()   // [{ name: 'worker-0', memory: { heapUsed, arrayBuffers, … }, info: { sources, files } }, …]
 * await pool.close()
 *
 * // byte-worker.ts
 * import { workerData } from 'node:worker_threads'
 * import { serveChunkJobs } from '@swarm/workers'
 *
 * const origin = openOrigin(workerData.originUrl)
 * serveChunkJobs({ fetch: async (source, request, options) => await origin.getChunk(request.cid, options) })
 * ```
 */

export * from './constants.js'
export * from './errors.js'
export { workerPool } from './pool.js'
export { defaultWorkerCount } from './sizing.js'
export type { WorkerPool, WorkerPoolInit, WorkerPoolStats, RunOptions, SerializedError, ThreadCpu, ThreadMemory, ThreadReport } from './pool.js'
export { askMain, serveJobs, serializeError, tellMain } from './worker.js'
export type { JobHandler, JobOptions } from './worker.js'
export { chunkWorkers, decodeChunkError, runChunkJob, serveChunkJobs } from './chunk-job.js'
export type { ChunkJob, ChunkJobOptions, ChunkJobProgress, ChunkJobResult, ChunkJobSources, ChunkSlot, ChunkWorkerReport, ChunkWorkers, ChunkWorkersInit } from './chunk-job.js'
export { SharedArrivalWriter, blockMatches, failSharedArrival, openSharedArrival, settleSharedArrival, sharedArrivalReadable } from './shared-arrival.js'
export type { SharedArrival } from './shared-arrival.js'
export { DurableFiles } from './durable-files.js'
export type { DurableFilesInit, DurableFilesStats, OpenFile } from './durable-files.js'
