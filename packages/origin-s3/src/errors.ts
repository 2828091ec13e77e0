/**
 * Failures particular to S3. A missing object is the shared NotFoundError and an unreachable
 * endpoint the shared OriginUnavailableError (both from @swarm/interface).
 */

import { SwarmError } from '@swarm/interface'

/** The server refused the credentials or their permissions (HTTP 403), or none could be found. Not retried. */
export class S3CredentialsError extends SwarmError {
  override readonly code = 'ERR_S3_CREDENTIALS'
}

/** The bucket the origin URL names does not exist at the endpoint. Not retried. */
export class S3NoSuchBucketError extends SwarmError {
  override readonly code = 'ERR_S3_NO_SUCH_BUCKET'
  constructor (readonly bucket: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Any other refusal (4xx) that retrying would not change. `status` and `s3Code` say which. */
export class S3RequestError extends SwarmError {
  override readonly code = 'ERR_S3_REQUEST'
  constructor (readonly status: number | undefined, readonly s3Code: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/**
 * A response of the bulk GET path that was not 200 (the SDK raises its own for control calls).
 * Internal: it is classified and turned into one of the errors above before a caller sees it.
 */
export class S3ResponseError extends SwarmError {
  constructor (readonly status: number, readonly s3Code: string | undefined, message: string) {
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

