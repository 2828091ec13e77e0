/**
 * Temporary files start with this: no CID, name component or tag can, so listings skip them
 * and a crash never leaves something that looks like an object.
 */
export const TEMP_PREFIX = '.tmp-'

/** Mode of written objects; the origin is shared, so others may read. */
export const FILE_MODE = 0o644
