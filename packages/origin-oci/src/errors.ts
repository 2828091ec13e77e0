/**
 * Failures particular to OCI registries. A missing manifest, tag or blob is the shared
 * NotFoundError, an unreachable registry the shared OriginUnavailableError, and bytes that do not
 * match their digest the shared DigestMismatchError (all from @swarm/interface).
 */

import { SwarmError } from '@swarm/interface'

/** The registry or its token server refused the credentials or their permissions, or it wants credentials and none were found. Not retried. */
export class OciCredentialsError extends SwarmError {
  override readonly code = 'ERR_OCI_CREDENTIALS'
}

/** Any other refusal (4xx) that retrying would not change. `status` and `registryCode` (e.g. MANIFEST_INVALID) say which. */
export class OciRequestError extends SwarmError {
  override readonly code = 'ERR_OCI_REQUEST'
  constructor (readonly status: number, readonly registryCode: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** The artifact is not one Swarm can read as a model: an index, a compressed layer, a layer that names no file, two layers for one path. */
export class UnsupportedArtifactError extends SwarmError {
  override readonly code = 'ERR_OCI_UNSUPPORTED_ARTIFACT'
}

/** An answer that was not 2xx. Internal: classified and turned into one of the errors above before a caller sees it. */
export class RegistryResponseError extends SwarmError {
  constructor (readonly status: number, readonly registryCode: string | undefined, message: string, readonly challenge?: string) {
    super(message)
  }
}

/** The body ended before Content-Length said it would. Internal; retried. */
export class TruncatedBodyError extends SwarmError {
  override readonly code = 'ERR_TRUNCATED_BODY'
  constructor (readonly expected: number, readonly received: number) {
    super(`response body ended after ${received} of ${expected} bytes`)
  }
}
