const MiB = 1024 * 1024

/** Read-ahead a sequential reader starts with. */
export const DEFAULT_INITIAL_READ_AHEAD = 8 * MiB
/** The most a sequential reader's read-ahead grows to. */
export const DEFAULT_MAX_READ_AHEAD = 256 * MiB
/** Chunks prefetched at once across all open files; reads that wait on a chunk are not counted. */
export const DEFAULT_PREFETCH_CONCURRENCY = 16
/**
 * A read that starts up to this far before where the reader had got still counts as sequential:
 * the kernel keeps many read-ahead requests in flight, and libfuse's threads hand them over
 * slightly out of order.
 */
export const SEQUENTIAL_BACK_SLACK = 8 * MiB
/**
 * A read that starts up to this far past where the reader had got still counts as sequential:
 * the kernel's read-ahead of the mount (1 MiB as the FUSE adapter sets it) arrives out of order too.
 */
export const SEQUENTIAL_FORWARD_SLACK = 4 * MiB
/** Scattered reads of one open file after which it is prefetched whole (an mmap loader faulting pages). */
export const DEFAULT_RANDOM_READS_FOR_WHOLE_FILE = 4
/** A read waits at most this long for the chunks it needs, then fails with EIO. */
export const DEFAULT_READ_TIMEOUT_MS = 60_000
/** Resolving a name or fetching a manifest on lookup gives up after this long. */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 10_000
/** How long a name that did not resolve is answered ENOENT without asking again. */
export const DEFAULT_NEGATIVE_TTL_MS = 5_000
/** How long the list of names the origin knows is reused before it is fetched again. */
export const DEFAULT_REFS_TTL_MS = 30_000
/** How long the held models are reused before the store is asked again (it is cheap; this only batches bursts). */
export const HELD_TTL_MS = 500
/** How long what the store says of a model's files is reused (it copies every file's presence to say it). */
export const STORED_FILES_TTL_MS = 100
/** The store is asked again about a model whose files changed at most this often (asking is O(files)). */
export const STORED_FILES_MIN_INTERVAL_MS = 50
/** Manifests whose directory trees are kept built. */
export const TREE_CACHE_SIZE = 64

/** The directory under the root that holds every model by manifest CID. */
export const BY_CID = 'by-cid'
/** Separates a name from its tag in a path: `/llama@v1`. */
export const TAG_SEPARATOR = '@'

/** st_blksize reported for files: large reads from userspace mean fewer requests. */
export const FILE_BLOCK_SIZE = 1 * MiB

export const S_IFDIR = 0o040000
export const S_IFREG = 0o100000
export const S_IFLNK = 0o120000
