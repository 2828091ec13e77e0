/**
 * A byte worker's peer identity: the certificate its data client and server present, and the
 * check of the certificates peers present, both asked of the main thread. The worker serves and
 * fetches as its node, with the certificate the main thread made from the node's key (one for
 * every thread), so it never holds the key and never loads the X.509 code that makes and checks
 * certificates: about 9 MB of heap a worker, on a node that runs one per core. A peer's
 * certificate costs one question per certificate the worker has not seen (the exchange remembers
 * what each proved, per thread): a few per peer, at its connections' handshakes.
 */
import { askMain } from '@swarm/workers'
import type { Certificate, PeerIdentity } from '@swarm/exchange'

/** A worker's question about the node's identity. */
export type IdentityQuestion = { identity: 'certificate' } | { identity: 'verify', raw: Uint8Array }

/** The identity of a byte worker, answered by the main thread's `answerIdentityQuestion`. */
export function workerIdentity (): PeerIdentity {
  let certificate: Promise<Certificate> | undefined
  return {
    async certificate () {
      certificate ??= askMain<Certificate>({ identity: 'certificate' } satisfies IdentityQuestion)
      certificate.catch(() => { certificate = undefined })
      return await certificate
    },
    async verifyCertificate (raw) {
      return await askMain<string>({ identity: 'verify', raw } satisfies IdentityQuestion)
    }
  }
}

/**
 * The answer to a worker's identity question from the node's own identity, or undefined when
 * `question` is another kind.
 */
export function answerIdentityQuestion (question: unknown, identity: PeerIdentity): Promise<Certificate | string> | undefined {
  if (typeof question !== 'object' || question === null) return undefined
  const asked = question as Partial<{ identity: unknown, raw: unknown }>
  if (asked.identity === 'certificate') return identity.certificate()
  if (asked.identity === 'verify' && asked.raw instanceof Uint8Array) return identity.verifyCertificate(asked.raw)
  return undefined
}
