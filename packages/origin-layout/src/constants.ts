/** Object kinds under the origin's prefix. */
export const CHUNKS_PREFIX = 'chunks/'
export const MANIFESTS_PREFIX = 'manifests/'
export const REFS_PREFIX = 'refs/'

/** Free chunk buffers an origin keeps for the next GETs: a pull's in-flight chunks at 4 MiB each. */
export const CHUNK_POOL_MAX_FREE_BYTES = 64 * 1024 * 1024
/** Free chunk buffers are dropped after this long without a GET that needs one. */
export const CHUNK_POOL_IDLE_MS = 5_000
