/** The most a response head (status line and headers) may take. */
export const MAX_HEAD_BYTES = 16 * 1024

/** What an origin that reads objects in place keeps, unless it says otherwise: idle keep-alive connections this long… */
export const DEFAULT_KEEP_ALIVE_MS = 30_000
/** …and at most this much of an error document. */
export const DEFAULT_MAX_ERROR_BODY_BYTES = 64 * 1024
