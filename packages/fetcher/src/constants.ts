/** Start the next source when the current one has not answered within this time. */
export const DEFAULT_HEDGE_AFTER_MS = 4_000
/** Give up on one source's attempt after this long; the next source is tried. */
export const DEFAULT_SOURCE_TIMEOUT_MS = 60_000
/** Chunks in flight during a pull: enough to fill a fast link with 4 MiB chunks, little enough to bound memory. */
export const DEFAULT_PULL_CONCURRENCY = 16
/** Runs of one attempt in the byte workers when the worker running it dies: once more on its replacement. */
export const WORKER_TRIES = 2
