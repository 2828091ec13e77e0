import { SwarmError } from '@swarm/interface'

/** The swarm key is not a `/key/swarm/psk/1.0.0/` file with a base16 32-byte key. */
export class InvalidSwarmKeyError extends SwarmError {
  override readonly code = 'ERR_INVALID_SWARM_KEY'
}

/** A file that should hold a libp2p private key does not. */
export class InvalidKeyFileError extends SwarmError {
  override readonly code = 'ERR_INVALID_KEY_FILE'
  constructor (readonly path: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** A bootstrap entry is neither a multiaddr nor `dns:<name>:<port>`. */
export class InvalidBootstrapAddressError extends SwarmError {
  override readonly code = 'ERR_INVALID_BOOTSTRAP_ADDRESS'
  constructor (readonly entry: string, message: string) {
    super(message)
  }
}

/** A multiaddr given to listen on or dial does not parse. */
export class InvalidMultiaddrError extends SwarmError {
  override readonly code = 'ERR_INVALID_MULTIADDR'
  constructor (readonly address: string, message: string) {
    super(message)
  }
}

/** A string that should name a peer is not a peer id. */
export class InvalidPeerIdError extends SwarmError {
  override readonly code = 'ERR_INVALID_PEER_ID'
  constructor (readonly peerId: string, message?: string) {
    super(message ?? `not a peer id: ${JSON.stringify(peerId)}`)
  }
}

/** A routing key or manifest id is not a CID. */
export class InvalidManifestCidError extends SwarmError {
  override readonly code = 'ERR_INVALID_MANIFEST_CID'
  constructor (readonly value: string, message?: string) {
    super(message ?? `not a CID: ${JSON.stringify(value)}`)
  }
}

/** A bitfield, chunk count or chunk index that does not fit together. */
export class InvalidChunkStateError extends SwarmError {
  override readonly code = 'ERR_INVALID_CHUNK_STATE'
}

/** A peer sent a control message that does not parse or breaks the protocol; its stream is closed. */
export class InvalidControlMessageError extends SwarmError {
  override readonly code = 'ERR_INVALID_CONTROL_MESSAGE'
  /** `bitfield`: a join whose bitfield does not fit its own chunk count; `malformed`: anything else */
  readonly reason: 'malformed' | 'bitfield'
  constructor (message: string, options?: { cause?: unknown, reason?: 'malformed' | 'bitfield' }) {
    super(message, options)
    this.reason = options?.reason ?? 'malformed'
  }
}

/** A control frame's length prefix is over the limit; its stream is closed before the body is buffered. */
export class ControlMessageTooLargeError extends SwarmError {
  override readonly code = 'ERR_CONTROL_MESSAGE_TOO_LARGE'
  constructor (readonly length: number, readonly limit: number) {
    super(`control message of ${length} bytes is over the limit of ${limit}`)
  }
}

/** The node is not running. */
export class NodeNotStartedError extends SwarmError {
  override readonly code = 'ERR_NODE_NOT_STARTED'
  constructor (message = 'the swarm node is not started') {
    super(message)
  }
}

/** A node selector (`pool=a,zone!=b`) or a label that does not parse. */
export class InvalidSelectorError extends SwarmError {
  override readonly code = 'ERR_INVALID_SELECTOR'
}
