/**
 * @packageDocumentation
 *
 * A read-only {@link Origin} on any web server or CDN that serves the file origin's layout:
 * `https://models.example.com/prefix` (or `http://`) in front of a directory that `swarm push
 * --origin file:///dir` wrote, i.e. `<prefix>/chunks/<cid>`, `<prefix>/manifests/<cid>`,
 * `<prefix>/refs/<name>/<tag>` (body: the manifest CID).
 *
 * Design:
 * - Reads only. `putChunk`, `putManifest` and `putRef` reject with {@link OriginReadOnlyError}
 *   after their arguments are checked: publish to the directory the server serves (the file
 *   origin), or to any writable origin the server fronts.
 * - Object GETs are read in place (`@swarm/http-in-place`): the socket, or TLS record by record,
 *   copies a body straight into a buffer of its Content-Length lent from a pool (`release` gives
 *   it back), as the S3 origin does. A server that sends bodies chunked is read through an undici
 *   Agent from then on, as are HEADs and listings. In `bench/origin-pull` against nginx the
 *   in-place reads took a pull from 9.2 to 5.6 CPU-s/GB and its peak RSS from 317 to 261 MB.
 * - Ranged resumption with ETag checks: when a body breaks off (reset, timeout, short body), the
 *   next attempt asks only for the rest, `Range: bytes=<received>-` with `If-Match: <ETag>` of
 *   the first answer. If the object changed in between, the server answers 412 and the read
 *   starts over from byte 0; a server that ignores the range (200) is read from 0 too. So bytes
 *   of two versions of a file are never stitched together. Weak ETags (`W/…`) cannot be matched
 *   for ranges and resume nothing.
 * - Retries: 5xx (but 501), 429, 408, connection failures, timeouts and bodies cut short are
 *   retried with exponential backoff and full jitter; 404 is {@link NotFoundError}; 401 and 403
 *   {@link HttpOriginAuthError}; neither is retried. Transient failures that outlast the retries
 *   become {@link OriginUnavailableError} naming the server.
 * - Redirects are followed (a CDN may hand a GET to a storage host), except the one a web server
 *   sends for a directory (`…/refs/org/model` → `…/refs/org/model/`): that names no object, so it
 *   is NotFound, and a prefix of a name is never taken for a name.
 * - Listing is what plain HTTP lacks. `listRefs` and `listChunks` read JSON directory listings
 *   (nginx `autoindex on; autoindex_format json;`, or any server answering `Accept:
 *   application/json` with `[{ "name", "type": "file" | "directory" }]`); a server without them
 *   rejects with {@link HttpListingUnsupportedError}. Only `swarm ls` and the mount's list of names
 *   need listings: pulls by name or CID never list.
 * - TLS: the system's CAs, plus those in `NODE_EXTRA_CA_CERTS` (read by Node at start), plus the
 *   PEM given as `ca` (the agent's `http.caFile`, `SWARM_HTTP_CA_FILE`), for a private CA.
 * - Userinfo in the URL (`https://user:token@host/prefix`) is sent as HTTP Basic credentials and
 *   removed from `url`, messages and logs.
 * - Every call honours its AbortSignal; an aborted call rejects with the signal's reason.
 *
 * @example
 *
 * ```ts
 * import { httpOrigin } from '@swarm/origin-http'
 *
 * const origin = httpOrigin({ url: 'https://models.example.com/prod', ca: readFileSync('/etc/swarm/ca.pem', 'utf8') })
 * const cid = await origin.resolveRef({ name: 'meta/llama-3-8b', tag: 'latest' }, { signal })
 * const bytes = await origin.getChunk(chunkCid, { signal })
 * await origin.close()
 * ```
 */

import { HttpOrigin } from './origin.js'
import type { Logger, Origin } from '@swarm/interface'

export * from './errors.js'
export { DEFAULT_MAX_SOCKETS, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_RETRIES } from './constants.js'
export { parseHttpOriginUrl } from './url.js'

export interface HttpOriginInit {
  /** `http(s)://host[:port][/prefix]`; userinfo is taken as Basic credentials and removed */
  url: string | URL
  /** extra trusted CA certificates (PEM), added to the system's */
  ca?: string | string[]
  /** connections per server (default 64) */
  maxSockets?: number
  /** retries after the first attempt for transient failures (default 4) */
  retries?: number
  /** silence allowed on a connection before an attempt fails (default 30 s) */
  requestTimeoutMs?: number
  logger?: Logger
}

export function httpOrigin (init: HttpOriginInit): Origin {
  return new HttpOrigin(init)
}
