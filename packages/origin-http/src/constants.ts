/** Connections per server, for the bulk GETs of a pull. */
export const DEFAULT_MAX_SOCKETS = 64

/** Retries after the first attempt, for failures that may pass (5xx, 429, resets, timeouts, a body cut short). */
export const DEFAULT_RETRIES = 4

/** Backoff is full jitter: a uniform delay in [0, min(cap, base × 2^(retry − 1))]. */
export const RETRY_BASE_DELAY_MS = 200
export const RETRY_MAX_DELAY_MS = 10_000

/** How long a connection may stay silent (connect, headers, between body bytes) before the attempt fails. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** Idle keep-alive connections are kept this long. */
export const KEEP_ALIVE_TIMEOUT_MS = 30_000

/** Redirects followed per request (a CDN may send a GET on to a storage host). */
export const MAX_REDIRECTS = 5


/** Of an answer that is not the object (an error page, a redirect), at most this much is read. */
export const MAX_OTHER_BODY_BYTES = 4096

/** Redirect statuses followed. */
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308])

/** Listings and ref bodies are small; a larger answer is refused rather than buffered. */
export const MAX_LISTING_BYTES = 64 * 1024 * 1024

