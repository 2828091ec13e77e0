/** Errors of the peer data plane. NOT_FOUND replies reject with NotFoundError from @swarm/interface. */

import { PEER_BUSY_CODE, SwarmError } from '@swarm/interface'

/** The remote certificate does not belong to the peer id that was dialled. */
export class UnexpectedPeerError extends SwarmError {
  override readonly code = 'ERR_UNEXPECTED_PEER'
  constructor (readonly expectedPeerId: string, options?: { cause?: unknown }) {
    super(`remote peer is not ${expectedPeerId}`, options)
  }
}

/** The remote side offered no valid libp2p certificate, or not our protocol. */
export class PeerAuthenticationError extends SwarmError {
  override readonly code = 'ERR_PEER_AUTHENTICATION'
}

/** A peer the swarm no longer admits asked for something; its connection is closed. */
export class PeerNotAdmittedError extends SwarmError {
  override readonly code = 'ERR_PEER_NOT_ADMITTED'
  constructor (readonly peerId: string) {
    super(`peer ${peerId} is not admitted`)
  }
}

/** The peer's upload slots are full; ask another source. */
export class PeerBusyError extends SwarmError {
  override readonly code = PEER_BUSY_CODE
  constructor (readonly peerId: string) {
    super(`peer ${peerId} is busy`)
  }
}

/** The peer answered ERROR; `message` is its reason. */
export class RemoteError extends SwarmError {
  override readonly code = 'ERR_REMOTE'
  constructor (readonly peerId: string, message: string) {
    super(`peer ${peerId}: ${message}`)
  }
}

/** A frame broke the wire protocol; the connection it came on is closed. */
export class ProtocolError extends SwarmError {
  override readonly code = 'ERR_PROTOCOL'
}

/** A response announced more bytes than the request allowed; the connection is closed unread. */
export class ResponseTooLargeError extends SwarmError {
  override readonly code = 'ERR_RESPONSE_TOO_LARGE'
  constructor (readonly length: number, readonly maxLength: number) {
    super(`response of ${length} bytes exceeds the ${maxLength} bytes asked for`)
  }
}

/** Served side: the chunk a GET names is larger than the GET accepts, found before it is read; the peer gets ERROR with this message. */
export class AnswerTooLargeError extends SwarmError {
  override readonly code = 'ERR_ANSWER_TOO_LARGE'
  constructor (readonly cid: string, readonly length: number, readonly maxLength: number) {
    super(`${cid} is ${length} bytes, more than the ${maxLength} asked for`)
  }
}

/** No complete answer within `requestTimeoutMs`. */
export class RequestTimeoutError extends SwarmError {
  override readonly code = 'ERR_REQUEST_TIMEOUT'
  constructor (readonly timeoutMs: number, message?: string) {
    super(message ?? `no response within ${timeoutMs} ms`)
  }
}

/** No connection to the peer could be opened (refused, unreachable, closed during the handshake). */
export class ConnectionFailedError extends SwarmError {
  override readonly code = 'ERR_CONNECTION_FAILED'
}

/** The connection closed while the request was waiting for its answer. */
export class ConnectionClosedError extends SwarmError {
  override readonly code = 'ERR_CONNECTION_CLOSED'
  constructor (message = 'connection closed', options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** The client was closed. */
export class ClientClosedError extends SwarmError {
  override readonly code = 'ERR_CLIENT_CLOSED'
  constructor () {
    super('data client is closed')
  }
}

/**
 * A fetch asked for something the protocol cannot carry (CID too long, size out of range, bad peer
 * address), or a client or server was given an option out of range.
 */
export class InvalidRequestError extends SwarmError {
  override readonly code = 'ERR_INVALID_REQUEST'
}

/** A server was started twice, or its address was read before it started. */
export class ServerStateError extends SwarmError {
  override readonly code = 'ERR_SERVER_STATE'
}

/** A peer did not take a response within the write timeout; its connection is closed. */
export class WriteTimeoutError extends SwarmError {
  override readonly code = 'ERR_WRITE_TIMEOUT'
  constructor (readonly timeoutMs: number) {
    super(`the peer took no response bytes for ${timeoutMs} ms`)
  }
}
