import { SwarmError } from '@swarm/interface'

/** Manifest bytes did not hash to the CID they were fetched under. */
export class ManifestCidMismatchError extends SwarmError {
  override readonly code = 'ERR_MANIFEST_CID_MISMATCH'
  constructor (readonly expectedCid: string, readonly actualCid: string) {
    super(`manifest bytes hash to ${actualCid}, not to the expected ${expectedCid}`)
  }
}

/** A string that should name a manifest is not a CIDv1 with the json codec and sha2-256. */
export class InvalidManifestCidError extends SwarmError {
  override readonly code = 'ERR_INVALID_MANIFEST_CID'
}
