import { SwarmError } from '@swarm/interface'

/** A scheduler was created with options it cannot work with. */
export class InvalidSchedulerInitError extends SwarmError {
  override readonly code = 'ERR_INVALID_SCHEDULER_INIT'
}

// shared with every package that reads bitfields (`@swarm/interface`'s bitfield module)
export { InvalidBitfieldError, InvalidChunkIndexError } from '@swarm/interface'

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
