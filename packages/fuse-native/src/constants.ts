/** Seconds the kernel keeps attributes and directory entries: content under a manifest CID never changes. */
export const DEFAULT_CACHE_TIMEOUT_SECONDS = 3600
/**
 * Read-ahead of the mount, in KiB (the kernel's default is 128). libfuse 2 caps each request at
 * 128 KiB; a window of 1 MiB lets the kernel keep eight in flight, which libfuse answers on
 * several threads. Measured on 2 busy cores, larger windows only added threads and reordering
 * (requests reach the view out of order), and lowered throughput.
 */
export const DEFAULT_READ_AHEAD_KB = 1024
/**
 * Background requests the kernel may keep in flight; 0 leaves the kernel's default (12), which
 * suffices for the read-ahead above. Needs fusectl mounted at /sys/fs/fuse/connections.
 */
export const DEFAULT_MAX_BACKGROUND = 0
/** Metadata requests (lookups that may ask the origin) fail after this long. */
export const DEFAULT_OP_TIMEOUT_MS = 30_000
/** Extra time a read request gets beyond the view's own read bound, so the view always answers first. */
export const READ_TIMEOUT_MARGIN_MS = 15_000
/** Read requests fail after this long: the view's default read bound (60 s) and the margin. */
export const DEFAULT_READ_OP_TIMEOUT_MS = 60_000 + READ_TIMEOUT_MARGIN_MS
/** The file system's name in the mount table (`swarm on /mnt/swarm type fuse.swarm`). */
export const FS_NAME = 'swarm'
