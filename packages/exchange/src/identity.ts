/**
 * Binds TLS to libp2p identities. Certificates are the libp2p TLS ones (a fresh P-256 key,
 * signed by the node's libp2p key in an extension), and TLS itself checks no chain: the only
 * authentication is `verifyPeerCertificate` on the remote certificate after the handshake.
 *
 * That check parses the certificate and verifies two signatures: 3–5 ms of CPU. A peer presents
 * the same certificate on each of its connections (a client's pool, a reconnect), so the peer id
 * a certificate proved is kept, by the certificate's SHA-256, for the certificates seen last
 * (`VERIFIED_CERTIFICATES`, per thread). What the check proved depends on the certificate's bytes
 * alone; that the peer holds its key, TLS proves on every handshake; its validity period is
 * checked again on every use.
 */

import { createHash } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import { privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { generateCertificate, verifyPeerCertificate } from '@libp2p/tls/utils'
import { LRUCache } from 'lru-cache'
import { PROTOCOL, VERIFIED_CERTIFICATES } from './constants.js'
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

/** Certificates checked in full and found again in this thread, since it started (for tests and reports). */
export const certificateChecks = { verified: 0, cached: 0 }

/** the peer id each recently seen certificate proved, by the certificate's SHA-256, and when it is valid */
const verified = new LRUCache<string, { peerId: PeerId, validFrom: number, validTo: number }>({ max: VERIFIED_CERTIFICATES })

/**
 * Returns the remote peer id of a socket that finished its handshake, requiring `expected`
 * when given. Throws UnexpectedPeerError or PeerAuthenticationError.
 */
export async function authenticate (socket: TLSSocket, expected?: PeerId): Promise<PeerId> {
  if (socket.alpnProtocol !== PROTOCOL) {
    throw new PeerAuthenticationError(`remote did not negotiate ${PROTOCOL}`)
  }
  const certificate = socket.getPeerCertificate()
  const raw = certificate?.raw
  if (raw == null || raw.length === 0) {
    throw new PeerAuthenticationError('remote presented no certificate')
  }
  return await peerOfCertificate(raw, certificate.valid_from, certificate.valid_to, expected)
}

/**
 * The peer id a libp2p TLS certificate proves (its DER bytes, and its validity period as Node
 * writes it), requiring `expected` when given: checked in full the first time, known by its
 * SHA-256 after. Throws UnexpectedPeerError or PeerAuthenticationError.
 */
export async function peerOfCertificate (raw: Uint8Array, validFrom: string, validTo: string, expected?: PeerId): Promise<PeerId> {
  const key = createHash('sha256').update(raw).digest('base64')
  const now = Date.now()
  let known = verified.get(key)
  if (known !== undefined && now >= known.validFrom && now <= known.validTo) {
    certificateChecks.cached++
  } else {
    certificateChecks.verified++
    let peerId: PeerId
    try {
      peerId = await verifyPeerCertificate(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength))
    } catch (err) {
      throw new PeerAuthenticationError(`remote certificate is not a valid libp2p certificate: ${(err as Error).message}`, { cause: err })
    }
    known = { peerId, validFrom: Date.parse(validFrom), validTo: Date.parse(validTo) }
    if (Number.isFinite(known.validFrom) && Number.isFinite(known.validTo)) verified.set(key, known)
  }
  if (expected != null && !known.peerId.equals(expected)) throw new UnexpectedPeerError(expected.toString())
  return known.peerId
}

/** A node key as bytes, to hand to a worker thread that opens its own data client with it. */
export function privateKeyToBytes (privateKey: PrivateKey): Uint8Array {
  return privateKeyToProtobuf(privateKey)
}

/** The node key from {@link privateKeyToBytes}. */
export function privateKeyFromBytes (bytes: Uint8Array): PrivateKey {
  return privateKeyFromProtobuf(bytes)
}
