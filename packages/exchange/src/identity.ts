/**
 * Binds TLS to libp2p identities. Certificates are the libp2p TLS ones (a fresh P-256 key,
 * signed by the node's libp2p key in an extension), and TLS itself checks no chain: the only
 * authentication is the check of the remote certificate after the handshake.
 *
 * That check parses the certificate and verifies two signatures: 3–5 ms of CPU. A peer presents
 * the same certificate on each of its connections (a client's pool, a reconnect), so the peer id
 * a certificate proved is kept, by the certificate's SHA-256, for the certificates seen last
 * (`VERIFIED_CERTIFICATES`, per thread). What the check proved depends on the certificate's bytes
 * alone; that the peer holds its key, TLS proves on every handshake; its validity period is
 * checked again on every use.
 *
 * Making and checking certificates is a `PeerIdentity`'s job. `keyIdentity` does both with the
 * node's key, through @libp2p/tls's X.509 code, loaded at the first use. That code and the key
 * types under it are about 9 MB of heap in each thread that loads them, so a byte worker, which
 * serves and fetches with the same certificate as its process, uses an identity that asks the
 * main thread for both instead (see the agent's byte-worker.ts): the worker never holds the key,
 * and a process with many workers loads the X.509 code once.
 */

import { createHash } from 'node:crypto'
import type { TLSSocket } from 'node:tls'
import { LRUCache } from 'lru-cache'
import { PROTOCOL, VERIFIED_CERTIFICATES } from './constants.js'
import { PeerAuthenticationError, UnexpectedPeerError } from './errors.js'
import type { PrivateKey } from '@libp2p/interface'

export interface Certificate {
  cert: string
  key: string
}

/** How a data client or server shows which node it is and learns which node the other end is. */
export interface PeerIdentity {
  /** this node's libp2p TLS certificate and its key, in PEM: made once, the same on every call (a call after a failure tries again) */
  certificate(): Promise<Certificate>
  /**
   * The peer id (its string form) a remote libp2p TLS certificate proves, given its DER bytes
   * and the validity period it states (as Node writes it); rejects when it proves none. The
   * caller remembers what a certificate proved (`peerOfCertificate`), so this is asked once per
   * certificate a thread meets.
   */
  verifyCertificate(raw: Uint8Array, validity: CertificateValidity): Promise<string>
}

/** A certificate's validity period, as Node writes it (`getPeerCertificate().valid_from`, `valid_to`). */
export interface CertificateValidity {
  validFrom: string
  validTo: string
}

/** The identity of the node whose libp2p key this thread holds. */
export function keyIdentity (privateKey: PrivateKey): PeerIdentity {
  let certificate: Promise<Certificate> | undefined
  return {
    async certificate () {
      certificate ??= import('@libp2p/tls/utils').then(async ({ generateCertificate }) => await generateCertificate(privateKey))
      certificate.catch(() => { certificate = undefined })
      return await certificate
    },
    verifyCertificate: checkCertificate
  }
}

/** the full check of a libp2p TLS certificate: the peer id it proves, which needs no key of this node's */
async function checkCertificate (raw: Uint8Array): Promise<string> {
  const { verifyPeerCertificate } = await import('@libp2p/tls/utils')
  return (await verifyPeerCertificate(raw)).toString()
}

/** the identity a client or server was given: `identity`, else one made from `privateKey`; undefined with neither */
export function identityOf (init: { privateKey?: PrivateKey, identity?: PeerIdentity }): PeerIdentity | undefined {
  return init.identity ?? (init.privateKey !== undefined ? keyIdentity(init.privateKey) : undefined)
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
const verified = new LRUCache<string, { peerId: string, validFrom: number, validTo: number }>({ max: VERIFIED_CERTIFICATES })

/**
 * Returns the remote peer id of a socket that finished its handshake, requiring `expected`
 * (a peer id's string form) when given. Throws UnexpectedPeerError or PeerAuthenticationError.
 */
export async function authenticate (socket: TLSSocket, identity: PeerIdentity, expected?: string): Promise<string> {
  if (socket.alpnProtocol !== PROTOCOL) {
    throw new PeerAuthenticationError(`remote did not negotiate ${PROTOCOL}`)
  }
  const certificate = socket.getPeerCertificate()
  const raw = certificate?.raw
  if (raw == null || raw.length === 0) {
    throw new PeerAuthenticationError('remote presented no certificate')
  }
  return await peerOfCertificate(raw, certificate.valid_from, certificate.valid_to, { identity, expected })
}

/**
 * The peer id a libp2p TLS certificate proves (its DER bytes, and its validity period as Node
 * writes it), requiring `expected` when given: checked in full by `identity` (default: with no
 * key of this node's, which a check does not need) the first time, known by its SHA-256 after.
 * Throws UnexpectedPeerError or PeerAuthenticationError.
 */
export async function peerOfCertificate (raw: Uint8Array, validFrom: string, validTo: string, { identity = checker, expected }: { identity?: PeerIdentity, expected?: string } = {}): Promise<string> {
  const key = createHash('sha256').update(raw).digest('base64')
  const now = Date.now()
  let known = verified.get(key)
  if (known !== undefined && now >= known.validFrom && now <= known.validTo) {
    certificateChecks.cached++
  } else {
    certificateChecks.verified++
    let peerId: string
    try {
      peerId = await identity.verifyCertificate(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength), { validFrom, validTo })
    } catch (err) {
      throw new PeerAuthenticationError(`remote certificate is not a valid libp2p certificate: ${(err as Error).message}`, { cause: err })
    }
    known = { peerId, validFrom: Date.parse(validFrom), validTo: Date.parse(validTo) }
    if (Number.isFinite(known.validFrom) && Number.isFinite(known.validTo)) verified.set(key, known)
  }
  if (expected != null && known.peerId !== expected) throw new UnexpectedPeerError(expected)
  return known.peerId
}

/** checks certificates only: what `peerOfCertificate` uses when given no identity */
const checker: PeerIdentity = {
  async certificate () { throw new TypeError('this identity only checks certificates') },
  verifyCertificate: checkCertificate
}
