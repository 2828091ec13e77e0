/**
 * Binds TLS to libp2p identities. Certificates are the libp2p TLS ones (a fresh P-256 key,
 * signed by the node's libp2p key in an extension), and TLS itself checks no chain: the only
 * authentication is `verifyPeerCertificate` on the remote certificate after the handshake.
 */

import type { TLSSocket } from 'node:tls'
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateCertificate, verifyPeerCertificate } from '@libp2p/tls/utils'
import { PROTOCOL } from './constants.js'
import { PeerAuthenticationError, UnexpectedPeerError } from './errors.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

export interface Certificate {
  cert: string
  key: string
}

export async function certificateFor (privateKey: PrivateKey): Promise<Certificate> {
  return await generateCertificate(privateKey)
}

/** TLS options both sides use; authentication is left to {@link authenticate}. */
export function tlsOptions (certificate: Certificate): { key: string, cert: string, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: string[] } {
  return {
    key: certificate.key,
    cert: certificate.cert,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: [PROTOCOL]
  }
}

/**
 * Returns the remote peer id of a socket that finished its handshake, requiring `expected`
 * when given. Throws UnexpectedPeerError or PeerAuthenticationError.
 */
export async function authenticate (socket: TLSSocket, expected?: PeerId): Promise<PeerId> {
  if (socket.alpnProtocol !== PROTOCOL) {
    throw new PeerAuthenticationError(`remote did not negotiate ${PROTOCOL}`)
  }
  const raw = socket.getPeerCertificate()?.raw
  if (raw == null || raw.length === 0) {
    throw new PeerAuthenticationError('remote presented no certificate')
  }
  try {
    return await verifyPeerCertificate(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), expected)
  } catch (err) {
    // matched by name: @libp2p/tls may load its own copy of @libp2p/interface
    if (expected != null && (err as Error).name === 'UnexpectedPeerError') {
      throw new UnexpectedPeerError(expected.toString(), { cause: err })
    }
    throw new PeerAuthenticationError(`remote certificate is not a valid libp2p certificate: ${(err as Error).message}`, { cause: err })
  }
}

/** A node key as bytes, to hand to a worker thread that opens its own data client with it. */
export function privateKeyToBytes (privateKey: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(privateKey)
}

/** The node key from {@link privateKeyToBytes}. */
export function privateKeyFromBytes (bytes: Uint8Array): PrivateKey {
  return privateKeyFromProtobuf(bytes)
}
