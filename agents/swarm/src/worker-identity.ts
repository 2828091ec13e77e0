/**
 * A byte worker's peer identity: the certificate its data client and server present, and the
 * check of the certificates peers present, both asked of the main thread. The worker serves and
 * fetches as its node, with the certificate the main thread made from the node's key (one for
 * every thread), so it never holds the key and never loads the X.509 code that makes and checks
 * certificates: about 9 MB of heap a worker, on a node that runs one per core. The main thread
 * checks a certificate in full once, whichever threads meet it (it remembers what each proved,
 * as every thread does for its own connections), and a worker asks once per certificate it has
 * not met: a few per peer, at its connections' handshakes.
 */
import { askMain } from '@swarm/workers'
import type { Certificate, CertificateValidity, PeerIdentity } from '@swarm/exchange'

/** A worker's question about the node's identity. */
export type IdentityQuestion = { identity: 'certificate' } | ({ identity: 'verify', raw: Uint8Array } & CertificateValidity)

/** The identity of a byte worker, answered by the main thread's `answerIdentityQuestion`. */
export function workerIdentity (): PeerIdentity {
  let certificate: Promise<Certificate> | undefined
  return {
    async certificate () {
      certificate ??= askMain<Certificate>({ identity: 'certificate' } satisfies IdentityQuestion)
      certificate.catch(() => { certificate = undefined })
      return await certificate
    },
    async verifyCertificate (raw, { validFrom, validTo }) {
      return await askMain<string>({ identity: 'verify', raw, validFrom, validTo } satisfies IdentityQuestion)
    }
  }
}

/** What the main thread answers a worker's identity questions with. */
export interface NodeIdentity {
  certificate(): Promise<Certificate>
  /** the peer id a certificate proves, remembered by the certificate (@swarm/exchange's `peerOfCertificate`) */
  peerOf(raw: Uint8Array, validity: CertificateValidity): Promise<string>
}

/** The answer to a worker's identity question, or undefined when `question` is another kind. */
export function answerIdentityQuestion (question: unknown, node: NodeIdentity): Promise<Certificate | string> | undefined {
  if (typeof question !== 'object' || question === null) return undefined
  const asked = question as Partial<{ identity: unknown, raw: unknown, validFrom: unknown, validTo: unknown }>
  if (asked.identity === 'certificate') return node.certificate()
  if (asked.identity === 'verify' && asked.raw instanceof Uint8Array && typeof asked.validFrom === 'string' && typeof asked.validTo === 'string') {
    return node.peerOf(asked.raw, { validFrom: asked.validFrom, validTo: asked.validTo })
  }
  return undefined
}
