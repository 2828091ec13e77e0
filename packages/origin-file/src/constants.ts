/** Object kinds, each a directory under the origin's root. */
export const CHUNKS_DIR = 'chunks'
export const MANIFESTS_DIR = 'manifests'
export const REFS_DIR = 'refs'

/**
 * A CID in its canonical form: multibase base32 (`b` then lowercase base32). Checking the form keeps
 * a CID from naming any other path (`..`, `/`).
 */
export { CID_PATTERN } from '@swarm/interface'

/**
 * Temporary files start with this: no CID, name component or tag can, so listings skip them
 * and a crash never leaves something that looks like an object.
 */
export const TEMP_PREFIX = '.tmp-'

/** Mode of written objects; the origin is shared, so others may read. */
export const FILE_MODE = 0o644
