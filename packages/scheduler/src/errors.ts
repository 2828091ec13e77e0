import { SwarmError } from '@swarm/interface'

/** A scheduler was created with options it cannot work with. */
export class InvalidSchedulerInitError extends SwarmError {
  override readonly code = 'ERR_INVALID_SCHEDULER_INIT'
}

/** A chunk index that is not an integer in [0, chunk count). */
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

/** An event carried a time that is not a finite number. */
export class InvalidTimeError extends SwarmError {
  override readonly code = 'ERR_INVALID_TIME'
  constructor (readonly time: unknown) {
    super(`event time ${String(time)} is not a finite number`)
  }
}

/** A request was reported with a chunk or outcome that does not match it. */
export class RequestMismatchError extends SwarmError {
  override readonly code = 'ERR_REQUEST_MISMATCH'
}

/** Rendezvous hashing was asked to choose among no candidates. */
export class NoCandidatesError extends SwarmError {
  override readonly code = 'ERR_NO_CANDIDATES'
  constructor (message = 'rendezvous hashing needs at least one candidate') {
    super(message)
  }
}

/** A peer id that is not a non-empty string. */
export class InvalidPeerIdError extends SwarmError {
  override readonly code = 'ERR_INVALID_PEER_ID'
  constructor (readonly peerId: unknown) {
    super(`peer id ${String(peerId)} must be a non-empty string`)
  }
}

/** A request failure reported with a reason the scheduler does not know. */
export class InvalidFailureReasonError extends SwarmError {
  override readonly code = 'ERR_INVALID_FAILURE_REASON'
  constructor (readonly reason: unknown) {
    super(`unknown failure reason ${String(reason)}; expected error, timeout, bad-data or cancelled`)
  }
}
