/** A safetensors header (or a description of one) breaks the format. */
export class InvalidSafetensorsError extends Error {
  static override name = 'InvalidSafetensorsError'
  readonly code = 'ERR_INVALID_SAFETENSORS'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidSafetensorsError'
  }
}

/** A chunk size outside [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE], or not an integer. */
export class InvalidChunkSizeError extends Error {
  static override name = 'InvalidChunkSizeError'
  readonly code = 'ERR_INVALID_CHUNK_SIZE'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidChunkSizeError'
  }
}

/** A file size that is not a non-negative safe integer. */
export class InvalidFileSizeError extends Error {
  static override name = 'InvalidFileSizeError'
  readonly code = 'ERR_INVALID_FILE_SIZE'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidFileSizeError'
  }
}

/** A safetensors layout that does not fit the file it is said to describe. */
export class InvalidLayoutError extends Error {
  static override name = 'InvalidLayoutError'
  readonly code = 'ERR_INVALID_LAYOUT'
  constructor (message: string) {
    super(message)
    this.name = 'InvalidLayoutError'
  }
}

/** A chunk plan that reaches outside the bytes it is applied to. */
export class ChunkOutOfRangeError extends Error {
  static override name = 'ChunkOutOfRangeError'
  readonly code = 'ERR_CHUNK_OUT_OF_RANGE'
  constructor (message: string) {
    super(message)
    this.name = 'ChunkOutOfRangeError'
  }
}

/** Fewer bytes were given than the safetensors header needs; read `safetensorsHeaderLength` bytes. */
export class IncompleteHeaderError extends Error {
  static override name = 'IncompleteHeaderError'
  readonly code = 'ERR_INCOMPLETE_HEADER'
  constructor (message: string) {
    super(message)
    this.name = 'IncompleteHeaderError'
  }
}
