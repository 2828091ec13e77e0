/** Seconds the kernel keeps attributes and entries under `by-cid/`: content under a manifest CID never changes. */
export const DEFAULT_CACHE_TIMEOUT_SECONDS = 3600
/** Seconds the kernel keeps names (`/<name>`, name directories): a name moves when a new version is pulled or pushed. */
export const DEFAULT_NAME_TIMEOUT_SECONDS = 1
/**
 * Largest read answered, and the mount's read-ahead: with requests of about 1 MiB a sequential
 * reader costs a quarter of the requests of 256 KiB ones. One page short of 1 MiB so that a reply
 * (a page for its header, 255 of data) fits a pipe of 1 MiB, the largest an unprivileged process
 * (without CAP_SYS_RESOURCE, as in most containers) may make: replies from the store's file are
 * spliced through one (native/splice.c), a copy fewer than pread and writev. With 1 MiB requests
 * none would fit, and the server copied them.
 */
export const DEFAULT_MAX_READ = 1024 * 1024 - 4096
/** Threads reading /dev/fuse, each on its own cloned descriptor. */
export const DEFAULT_THREADS = 4
/** How often open files that are not yet complete are checked for chunks that arrived. */
export const DEFAULT_PRESENCE_INTERVAL_MS = 250
/**
 * How long a request passed to JavaScript (a lookup, an open, a read of missing chunks) may wait
 * for its answer before the server answers EIO itself: far below the kernel's patience, so a
 * reader never sits in uninterruptible sleep because the process's main thread is stuck.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** How often the totals statfs reports are refreshed. */
export const STATFS_INTERVAL_MS = 5_000
/** The file system's name in the mount table (`swarm on /mnt/swarm type fuse.swarm`). */
export const FS_NAME = 'swarm'
/** statfs f_type of overlayfs: a store on it needs a passthrough stack depth of 2. */
export const OVERLAYFS_MAGIC = 0x794c7630
