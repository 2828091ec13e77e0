/** Errors of the peer data plane. NOT_FOUND replies reject with NotFoundError from @swarm/interface. */

/** The remote certificate does not belong to the peer id that was dialled. */
export class UnexpectedPeerError extends Error {
  static override name = 'UnexpectedPeerError'
  readonly code = 'ERR_UNEXPECTED_PEER'
  constructor (readonly expectedPeerId: string, options?: { cause?: unknown }) {
    super(`remote peer is not ${expectedPeerId}`, options)
    this.name = 'UnexpectedPeerError'
  }
}

/** The remote side offered no valid libp2p certificate, or not our protocol. */
export class PeerAuthenticationError extends Error {
  static override name = 'PeerAuthenticationError'
  readonly code = 'ERR_PEER_AUTHENTICATION'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'PeerAuthenticationError'
  }
}

/** The peer's upload slots are full; ask another source. */
export class PeerBusyError extends Error {
  static override name = 'PeerBusyError'
  readonly code = 'ERR_PEER_BUSY'
  constructor (readonly peerId: string) {
    super(`peer ${peerId} is busy`)
    this.name = 'PeerBusyError'
  }
}

/** The peer answered ERROR; `message` is its reason. */
export class RemoteError extends Error {
  static override name = 'RemoteError'
  readonly code = 'ERR_REMOTE'
  constructor (readonly peerId: string, message: string) {
    super(`peer ${peerId}: ${message}`)
    this.name = 'RemoteError'
  }
}

/** A frame broke the wire protocol; the connection it came on is closed. */
export class ProtocolError extends Error {
  static override name = 'ProtocolError'
  readonly code = 'ERR_PROTOCOL'
  constructor (message: string) {
    super(message)
    this.name = 'ProtocolError'
  }
}

/** A response announced more bytes than the request allowed; the connection is closed unread. */
export class ResponseTooLargeError extends Error {
  static override name = 'ResponseTooLargeError'
  readonly code = 'ERR_RESPONSE_TOO_LARGE'
  constructor (readonly length: number, readonly maxLength: number) {
    super(`response of ${length} bytes exceeds the ${maxLength} bytes asked for`)
    this.name = 'ResponseTooLargeError'
  }
}

/** No complete answer within `requestTimeoutMs`. */
export class RequestTimeoutError extends Error {
  static override name = 'RequestTimeoutError'
  readonly code = 'ERR_REQUEST_TIMEOUT'
  constructor (readonly timeoutMs: number, message?: string) {
    super(message ?? `no response within ${timeoutMs} ms`)
    this.name = 'RequestTimeoutError'
  }
}

/** No connection to the peer could be opened (refused, unreachable, closed during the handshake). */
export class ConnectionFailedError extends Error {
  static override name = 'ConnectionFailedError'
  readonly code = 'ERR_CONNECTION_FAILED'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ConnectionFailedError'
  }
}

/** The connection closed while the request was waiting for its answer. */
export class ConnectionClosedError extends Error {
  static override name = 'ConnectionClosedError'
  readonly code = 'ERR_CONNECTION_CLOSED'
  constructor (message = 'connection closed', options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'ConnectionClosedError'
  }
}

/** The client was closed. */
export class ClientClosedError extends Error {
  static override name = 'ClientClosedError'
  readonly code = 'ERR_CLIENT_CLOSED'
  constructor () {
    super('data client is closed')
    this.name = 'ClientClosedError'
  }
}

/**
 * A fetch asked for something the protocol cannot carry (CID too long, size out of range, bad peer
 * address), or a client or server was given an option out of range.
 */
export class InvalidRequestError extends Error {
  static override name = 'InvalidRequestError'
  readonly code = 'ERR_INVALID_REQUEST'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'InvalidRequestError'
  }
}

/** A server was started twice, or its address was read before it started. */
export class ServerStateError extends Error {
  static override name = 'ServerStateError'
  readonly code = 'ERR_SERVER_STATE'
  constructor (message: string) {
    super(message)
    this.name = 'ServerStateError'
  }
}

/** A peer did not take a response within the write timeout; its connection is closed. */
export class WriteTimeoutError extends Error {
  static override name = 'WriteTimeoutError'
  readonly code = 'ERR_WRITE_TIMEOUT'
  constructor (readonly timeoutMs: number) {
    super(`the peer took no response bytes for ${timeoutMs} ms`)
    this.name = 'WriteTimeoutError'
  }
}
