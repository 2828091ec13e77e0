/**
 * One way to have a manifest by CID: the store, then the origin, then peers.
 *
 * The store's copy was verified when it was added. The origin's and any peer's copy are decoded
 * with `expectedCid`, so bytes that do not hash to the CID are refused wherever they came from:
 * any copy that verifies is as good as the origin's, which is why peers may serve manifests
 * (they are only never trusted to name a model; names resolve at the origin alone).
 *
 * A manifest the origin says does not exist is a `NotFoundError` at once (peers are not asked to
 * contradict it); an origin that fails otherwise, or none, leaves it to peers. The manifest is
 * returned, not recorded: callers add it to the store under their own lease or ref.
 */

import { NotFoundError } from '@swarm/interface'
import { decodeManifest } from '@swarm/manifest'
import { MANIFEST_LOOKUP_TIMEOUT_MS, MANIFEST_PEER_CANDIDATES, MANIFEST_PEER_TIMEOUT_MS } from './constants.js'
import { ManifestUnavailableError } from './errors.js'
import type { AbortOptions, Manifest, Origin } from '@swarm/interface'

/** Peers that may hold a manifest, and a way to ask one for its bytes. */
export interface ManifestPeers {
  /** peers to ask, best first: connected ones, then providers found by lookup (dialled); ends when the signal does */
  candidates(manifestCid: string, options: AbortOptions & { max: number }): Promise<string[]>
  /** the manifest's bytes from one peer (not yet verified) */
  fetchManifest(peerId: string, manifestCid: string, options: AbortOptions): Promise<Uint8Array>
}

export interface ResolveManifestInit {
  store?: { getManifest(manifestCid: string): Manifest | undefined }
  /** undefined: no origin configured */
  origin?: Pick<Origin, 'getManifest'>
  /** undefined: no peers */
  peers?: ManifestPeers
}

/** The manifest by CID, from the store, else the origin, else peers; verified against its CID. */
export async function resolveManifest (manifestCid: string, init: ResolveManifestInit, options: AbortOptions = {}): Promise<Manifest> {
  const held = init.store?.getManifest(manifestCid)
  if (held != null) return held
  const reasons: string[] = []
  if (init.origin != null) {
    try {
      return decodeManifest(await init.origin.getManifest(manifestCid, options), { expectedCid: manifestCid })
    } catch (err) {
      if (err instanceof NotFoundError) throw new NotFoundError(`manifest ${manifestCid} is not at the origin`)
      options.signal?.throwIfAborted()
      if (init.peers == null) throw err
      reasons.push(`origin: ${(err as Error).message}`)
    }
  }
  if (init.peers != null) {
    const lookup = AbortSignal.any([AbortSignal.timeout(MANIFEST_LOOKUP_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
    let candidates: string[] = []
    try {
      candidates = await init.peers.candidates(manifestCid, { signal: lookup, max: MANIFEST_PEER_CANDIDATES })
    } catch {}
    for (const peerId of candidates) {
      options.signal?.throwIfAborted()
      try {
        const bytes = await init.peers.fetchManifest(peerId, manifestCid, { signal: AbortSignal.any([AbortSignal.timeout(MANIFEST_PEER_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])]) })
        return decodeManifest(bytes, { expectedCid: manifestCid })
      } catch (err) {
        reasons.push(`peer ${peerId}: ${(err as Error).message}`)
      }
    }
  }
  throw new ManifestUnavailableError(manifestCid, reasons.length > 0 ? reasons.join('; ') : init.origin == null ? 'no peer has it and no origin is configured' : 'no peer has it')
}
