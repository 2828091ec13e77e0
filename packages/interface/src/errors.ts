/** Shared error classes. Each names one failure; `code` is stable for callers and exit codes. */

/**
 * The base of every Swarm error. `name` is the class's own name, so a subclass needs no
 * constructor of its own unless it words its message or keeps extra fields; `code` is the stable
 * string callers and exit codes match on (an internal error that never reaches a caller may have
 * none). `cause` is passed on to `Error`, so the chain shows in logs and `util.inspect`.
 */
export class SwarmError extends Error {
  declare readonly code?: string
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/**
 * The `code` of an error for a request a peer turned away for want of an upload slot
 * (@swarm/exchange's PeerBusyError): the pull engine tells it from other failures by this code
 * alone, which a byte worker keeps when it sends an error across threads.
 */
export const PEER_BUSY_CODE = 'ERR_PEER_BUSY'

export class NotFoundError extends SwarmError {
  override readonly code = 'ERR_NOT_FOUND'
  constructor (message = 'Not found') {
    super(message)
  }
}

export class InvalidManifestError extends SwarmError {
  override readonly code = 'ERR_INVALID_MANIFEST'
}

export class InvalidRefError extends SwarmError {
  override readonly code = 'ERR_INVALID_REF'
}

/** Bytes did not hash to the CID they were asked for. */
export class ChunkVerificationError extends SwarmError {
  override readonly code = 'ERR_CHUNK_VERIFICATION'
  constructor (readonly cid: string, readonly source: string, message?: string) {
    super(message ?? `chunk ${cid} from ${source} failed verification`)
  }
}

/** A read touched a chunk that is not in the local store. */
export class ChunkMissingError extends SwarmError {
  override readonly code = 'ERR_CHUNK_MISSING'
  constructor (readonly cid: string, message?: string) {
    super(message ?? `chunk ${cid} is not present locally`)
  }
}

/** No source could deliver a chunk. `causes` holds each source's failure. */
export class ChunkUnavailableError extends SwarmError {
  override readonly code = 'ERR_CHUNK_UNAVAILABLE'
  constructor (readonly cid: string, readonly causes: Array<{ source: string, error: Error }>) {
    super(`chunk ${cid} unavailable: ${causes.map(c => `${c.source}: ${c.error.message}`).join('; ') || 'no sources'}`)
  }
}

/**
 * Content did not hash to the digest something trustworthy gave for it: a whole file against the
 * layer digest an OCI registry lists it under, a blob against its digest.
 */
export class DigestMismatchError extends SwarmError {
  override readonly code = 'ERR_DIGEST_MISMATCH'
  constructor (readonly expected: string, readonly actual: string, message: string) {
    super(message)
  }
}

/** The origin cannot do this at all (a registry cannot list the blobs it holds); see `Origin.capabilities`. */
export class UnsupportedOperationError extends SwarmError {
  override readonly code = 'ERR_UNSUPPORTED_OPERATION'
}

export class OriginUnavailableError extends SwarmError {
  override readonly code = 'ERR_ORIGIN_UNAVAILABLE'
}

export class AbortError extends SwarmError {
  override readonly code = 'ABORT_ERR'
  readonly type = 'aborted'
  constructor (message = 'The operation was aborted') {
    super(message)
  }
}

/**
 * The file system of the store's data directory has no room (ENOSPC, EDQUOT), or too little for
 * a model being added. Not a fault of any source: a pull that meets it ends with it at once.
 */
export class DiskFullError extends SwarmError {
  override readonly code = 'ERR_DISK_FULL'
  constructor (readonly dir: string, readonly neededBytes: number | undefined, readonly freeBytes: number | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** A write to an origin that only reads (a web server, a CDN). Publish through a writable origin instead. */
export class OriginReadOnlyError extends SwarmError {
  override readonly code = 'ERR_ORIGIN_READ_ONLY'
}

/** A chunk index that is not an integer inside a manifest's chunks (or a bitfield's bits). */
export class InvalidChunkIndexError extends SwarmError {
  override readonly code = 'ERR_INVALID_CHUNK_INDEX'
  constructor (readonly index: unknown, readonly chunkCount: number) {
    super(`chunk index ${String(index)} is not an integer in [0, ${chunkCount})`)
  }
}

/** A bitfield of the wrong length, or with bits set past the last chunk. */
export class InvalidBitfieldError extends SwarmError {
  override readonly code = 'ERR_INVALID_BITFIELD'
}

/** A chunk stopped arriving before a reader of it had all its bytes: its source failed, or a block failed its digest. */
export class ChunkArrivalFailedError extends SwarmError {
  override readonly code = 'ERR_CHUNK_ARRIVAL_FAILED'
  constructor (readonly cid: string, reason: string) {
    super(`chunk ${cid} stopped arriving: ${reason}`)
  }
}
