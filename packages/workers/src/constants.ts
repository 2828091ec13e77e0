/** Threads in a pool by default: one per core the process may use. */
export { availableParallelism as defaultPoolSize } from 'node:os'
/** A worker that exits this many times in a row without finishing a job is not started again. */
export const MAX_CONSECUTIVE_CRASHES = 5
/** Wait before starting a worker again after a crash, doubled per crash in a row. */
export const RESTART_DELAY_MS = 50
/** A worker that does not report its CPU time within this long is left out of that report. */
export const CPU_REPORT_TIMEOUT_MS = 1_000
/** Below this many cores a node moves bytes on its main thread by default (see `defaultWorkerCount`). */
export const MIN_CORES_FOR_WORKERS = 4
/** Cores left to the main thread, libuv's pool (writes, syncs) and V8 when workers are sized by default. */
export const RESERVED_CORES = 2
/** Byte workers at most when sized by default: each holds its own heap, connections and buffers (some 30 MB of heap and 60–70 MB of buffers each on a pull with 16 chunks of 4 MiB in flight). */
export const MAX_DEFAULT_WORKERS = 32
/**
 * A chunk written to a content file waits this long for others to share its fdatasync (see
 * durable-files.ts); chunks that finish while a sync runs share the next one in any case.
 */
export const SYNC_WINDOW_MS = 2
/**
 * Young generation of a chunk worker, in MB (`resourceLimits.maxYoungGenerationSizeMb`). A worker
 * keeps little alive: its garbage is mostly short-lived objects around reads and writes and the
 * buffers they hold, whose memory lies outside the heap. A small young generation keeps the heap
 * small and is scavenged often, so such buffers go back sooner. Measured on a pull from S3 with 2
 * workers, alternating runs: per worker ~30 MB of heap and ~65 MB of buffers instead of ~60 and
 * ~105, and about 10% less CPU for the pull; 1 MB measured the same as 2.
 */
export const CHUNK_WORKER_YOUNG_GENERATION_MB = 2
