/** Threads in a pool by default: one per core the process may use. */
export { availableParallelism as defaultPoolSize } from 'node:os'
/** A worker that exits this many times in a row without finishing a job is not started again. */
export const MAX_CONSECUTIVE_CRASHES = 5
/** Wait before starting a worker again after a crash, doubled per crash in a row. */
export const RESTART_DELAY_MS = 50
/** A worker that does not report its CPU time within this long is left out of that report. */
export const CPU_REPORT_TIMEOUT_MS = 1_000
