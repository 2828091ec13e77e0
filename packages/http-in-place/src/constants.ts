/** The most a response head (status line and headers) may take. */
export const MAX_HEAD_BYTES = 16 * 1024
