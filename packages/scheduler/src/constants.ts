/** Requests one peer may have outstanding from us; a few keep its link busy without hogging its upload. */
export const DEFAULT_MAX_INFLIGHT_PER_PEER = 4

/** Requests outstanding at the origin at once. */
export const DEFAULT_MAX_INFLIGHT_ORIGIN = 8

/** Requests outstanding in all, peers and origin together. */
export const DEFAULT_MAX_INFLIGHT_TOTAL = 32

/**
 * How long a chunk nobody holds yet waits for its owner before this node takes it from the origin,
 * per "round" of the owner's origin queue (see the design notes in `scheduler.ts`). It is a safety
 * net for owners that stall without leaving; leaving is noticed at once.
 */
export const DEFAULT_ORIGIN_FALLBACK_MS = 5_000

/** A request outstanding this long is cancelled and retried elsewhere. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** A request outstanding this long may be duplicated to another holder (first answer wins). */
export const DEFAULT_HEDGE_AFTER_MS = 3_000

/** After a failure, how long before the same source is asked for that chunk again (when nothing else has it). */
export const DEFAULT_RETRY_AFTER_MS = 1_000

/** In endgame and when hedging, at most this many requests for one chunk are outstanding at once: one duplicate is enough to route around a slow holder, and costs holders at most one extra upload per chunk. */
export const MAX_REQUESTS_PER_CHUNK = 2
