/** Shared error classes. Each names one failure; `code` is stable for callers and exit codes. */

export class NotFoundError extends Error {
  static override name = 'NotFoundError'
  readonly code = 'ERR_NOT_FOUND'
  constructor (message = 'Not found') {
    super(message)
    this.name = 'NotFoundError'
  }
}

export class InvalidManifestError extends Error {
  static override name = 'InvalidManifestError'
  readonly code = 'ERR_INVALID_MANIFEST'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidManifestError'
  }
}

export class InvalidRefError extends Error {
  static override name = 'InvalidRefError'
  readonly code = 'ERR_INVALID_REF'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidRefError'
  }
}

/** Bytes did not hash to the CID they were asked for. */
export class ChunkVerificationError extends Error {
  static override name = 'ChunkVerificationError'
  readonly code = 'ERR_CHUNK_VERIFICATION'
  constructor (readonly cid: string, readonly source: string, message?: string) {
    super(message ?? `chunk ${cid} from ${source} failed verification`)
    this.name = 'ChunkVerificationError'
  }
}

/** A read touched a chunk that is not in the local store. */
export class ChunkMissingError extends Error {
  static override name = 'ChunkMissingError'
  readonly code = 'ERR_CHUNK_MISSING'
  constructor (readonly cid: string, message?: string) {
    super(message ?? `chunk ${cid} is not present locally`)
    this.name = 'ChunkMissingError'
  }
}

/** No source could deliver a chunk. `causes` holds each source's failure. */
export class ChunkUnavailableError extends Error {
  static override name = 'ChunkUnavailableError'
  readonly code = 'ERR_CHUNK_UNAVAILABLE'
  constructor (readonly cid: string, readonly causes: Array<{ source: string, error: Error }>) {
    super(`chunk ${cid} unavailable: ${causes.map(c => `${c.source}: ${c.error.message}`).join('; ') || 'no sources'}`)
    this.name = 'ChunkUnavailableError'
  }
}

/**
 * Content did not hash to the digest something trustworthy gave for it: a whole file against the
 * layer digest an OCI registry lists it under, a blob against its digest.
 */
export class DigestMismatchError extends Error {
  static override name = 'DigestMismatchError'
  readonly code = 'ERR_DIGEST_MISMATCH'
  constructor (readonly expected: string, readonly actual: string, message: string) {
    super(message)
    this.name = 'DigestMismatchError'
  }
}

/** The origin cannot do this at all (a registry cannot list the blobs it holds); see `Origin.capabilities`. */
export class UnsupportedOperationError extends Error {
  static override name = 'UnsupportedOperationError'
  readonly code = 'ERR_UNSUPPORTED_OPERATION'
  constructor (message: string) {
    super(message)
    this.name = 'UnsupportedOperationError'
  }
}

export class OriginUnavailableError extends Error {
  static override name = 'OriginUnavailableError'
  readonly code = 'ERR_ORIGIN_UNAVAILABLE'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'OriginUnavailableError'
  }
}

export class AbortError extends Error {
  static override name = 'AbortError'
  readonly code = 'ABORT_ERR'
  readonly type = 'aborted'
  constructor (message = 'The operation was aborted') {
    super(message)
    this.name = 'AbortError'
  }
}

/**
 * The file system of the store's data directory has no room (ENOSPC, EDQUOT), or too little for
 * a model being added. Not a fault of any source: a pull that meets it ends with it at once.
 */
export class DiskFullError extends Error {
  static override name = 'DiskFullError'
  readonly code = 'ERR_DISK_FULL'
  constructor (readonly dir: string, readonly neededBytes: number | undefined, readonly freeBytes: number | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'DiskFullError'
  }
}

/** A write to an origin that only reads (a web server, a CDN). Publish through a writable origin instead. */
export class OriginReadOnlyError extends Error {
  static override name = 'OriginReadOnlyError'
  readonly code = 'ERR_ORIGIN_READ_ONLY'
  constructor (message: string) {
    super(message)
    this.name = 'OriginReadOnlyError'
  }
}

/** A chunk index that is not an integer inside a manifest's chunks (or a bitfield's bits). */
export class InvalidChunkIndexError extends Error {
  static override name = 'InvalidChunkIndexError'
  readonly code = 'ERR_INVALID_CHUNK_INDEX'
  constructor (readonly index: unknown, readonly chunkCount: number) {
    super(`chunk index ${String(index)} is not an integer in [0, ${chunkCount})`)
    this.name = 'InvalidChunkIndexError'
  }
}

/** A bitfield of the wrong length, or with bits set past the last chunk. */
export class InvalidBitfieldError extends Error {
  static override name = 'InvalidBitfieldError'
  readonly code = 'ERR_INVALID_BITFIELD'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidBitfieldError'
  }
}
