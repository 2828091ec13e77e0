/**
 * Failures particular to the HTTP origin. A missing object is the shared NotFoundError, an
 * unreachable server the shared OriginUnavailableError and a write the shared OriginReadOnlyError
 * (all from @swarm/interface).
 */

import { SwarmError } from '@swarm/interface'

/** The server refused the request (401, 403) — credentials in the URL are wrong or missing. Not retried. */
export class HttpOriginAuthError extends SwarmError {
  override readonly code = 'ERR_HTTP_ORIGIN_AUTH'
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

/** Any other answer that retrying would not change (4xx but 404, 408 and 429). */
export class HttpOriginRequestError extends SwarmError {
  override readonly code = 'ERR_HTTP_ORIGIN_REQUEST'
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

/**
 * Listing (refs for `swarm ls` and the mount's names, chunks) needs JSON directory listings from
 * the server, e.g. nginx's `autoindex on; autoindex_format json;`. Pulls by name or CID do not.
 */
export class HttpListingUnsupportedError extends SwarmError {
  override readonly code = 'ERR_HTTP_LISTING_UNSUPPORTED'
}

/** An answer that says something went wrong on the way (5xx, 429, a body cut short). Internal; retried. */
export class TransientHttpError extends SwarmError {
  constructor (readonly status: number | undefined, message: string) {
    super(message)
  }
}
