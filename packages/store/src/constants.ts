/** Under the store's directory. */
export const CONTENT_DIR = 'content'
export const MANIFESTS_DIR = 'manifests'
export const MODELS_FILE = 'models.json'
export const LOCK_FILE = 'lock'

/** Suffix of a content file's presence journal. */
export const JOURNAL_SUFFIX = '.have'
/** Suffix of files written before an atomic rename; leftovers are deleted at open. */
export const TEMP_SUFFIX = '.tmp'

/** Version of models.json this code writes and reads. */
export const MODELS_FILE_VERSION = 1

/**
 * File descriptors the store keeps open at once. Idle ones beyond this are closed, so a
 * store holding many models with many files stays well under the process limit.
 */
export const DEFAULT_MAX_OPEN_FILES = 256

/** Chunks copied or re-hashed at once by fillFromLocal and verify. */
export const LOCAL_COPY_CONCURRENCY = 4

/** Mode of a complete content file: nothing may change it behind the store's back. */
export const COMPLETE_FILE_MODE = 0o444
/** Mode of a content file while it is being filled. */
export const PARTIAL_FILE_MODE = 0o644

/** The source name a rejected putChunk reports when the caller names none. */
export const DEFAULT_PUT_SOURCE = 'store'

/** Rounds of writing, and of waiting on other writers of the same slot, before a put gives up. */
export const MAX_WRITE_ROUNDS = 3

/** How long a lock file may stay empty (its creator between open and write) before it counts as stale. */
export const EMPTY_LOCK_GRACE_MS = 100
/** Tries at taking over a stale lock before giving up. */
export const LOCK_TAKEOVER_ATTEMPTS = 3

/**
 * Room kept free beyond a model's missing bytes when it is added: journals, manifests,
 * models.json and file system metadata grow too. A share of the file system, within bounds, so a
 * small volume is not refused everything and a large one keeps a sane reserve.
 */
export const DISK_MARGIN_FRACTION = 0.01
export const MIN_DISK_MARGIN_BYTES = 4 * 1024 * 1024
export const MAX_DISK_MARGIN_BYTES = 1024 * 1024 * 1024

/**
 * How long a model that holds no bytes and that nothing names, pins or leases is kept after its
 * last use before gc collects it: the view adds such manifests on a lookup by CID, and an open of
 * a file usually follows soon after.
 */
export const DEFAULT_UNUSED_GRACE_MS = 10 * 60 * 1000
