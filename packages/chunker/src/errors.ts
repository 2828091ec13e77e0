import { SwarmError } from '@swarm/interface'

/** A safetensors header (or a description of one) breaks the format. */
export class InvalidSafetensorsError extends SwarmError {
  override readonly code = 'ERR_INVALID_SAFETENSORS'
}

/** A chunk size outside [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE], or not an integer. */
export class InvalidChunkSizeError extends SwarmError {
  override readonly code = 'ERR_INVALID_CHUNK_SIZE'
}

/** A file size that is not a non-negative safe integer. */
export class InvalidFileSizeError extends SwarmError {
  override readonly code = 'ERR_INVALID_FILE_SIZE'
}

/** A safetensors layout that does not fit the file it is said to describe. */
export class InvalidLayoutError extends SwarmError {
  override readonly code = 'ERR_INVALID_LAYOUT'
}

/** A chunk plan that reaches outside the bytes it is applied to. */
export class ChunkOutOfRangeError extends SwarmError {
  override readonly code = 'ERR_CHUNK_OUT_OF_RANGE'
}

/** Fewer bytes were given than the safetensors header needs; read `safetensorsHeaderLength` bytes. */
export class IncompleteHeaderError extends SwarmError {
  override readonly code = 'ERR_INCOMPLETE_HEADER'
}
