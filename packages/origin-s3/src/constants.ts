/** Sockets per endpoint, for the SDK's agents and the bulk GET pool alike. */
export const DEFAULT_MAX_SOCKETS = 64

/** Retries after the first attempt, for failures that may pass (5xx, SlowDown, resets, timeouts). */
export const DEFAULT_RETRIES = 4

/** Backoff is full jitter: a uniform delay in [0, min(cap, base × 2^(retry − 1))]. */
export const RETRY_BASE_DELAY_MS = 200
export const RETRY_MAX_DELAY_MS = 10_000

/** How long a connection may stay silent (connect, headers, body) before the attempt is failed and retried. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** ListObjectsV2 page size; 1000 is the most S3 returns. */
export const DEFAULT_LIST_PAGE_SIZE = 1000

/** Presigned GET URLs are used at once; the expiry only bounds a leaked URL. */
export const PRESIGNED_URL_EXPIRES_S = 300

/** The region for S3-compatible endpoints given without one; most ignore it but sign with it. */
export const DEFAULT_ENDPOINT_REGION = 'us-east-1'


/** A byte worker's reader asks for fresh credentials this long before the ones it holds expire. */
export const READER_SPEC_REFRESH_MARGIN_MS = 5 * 60_000
