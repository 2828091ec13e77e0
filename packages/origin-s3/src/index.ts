/**
 * @packageDocumentation
 *
 * An {@link Origin} on S3 or an S3-compatible store (Ceph RGW, MinIO, R2, GCS interop), named by
 * `s3://bucket/prefix`. Layout under the prefix: `chunks/<cid>`, `manifests/<cid>`,
 * `refs/<name>/<tag>` (body: the manifest CID).
 *
 * Design:
 * - Control calls (HEAD, PUT, LIST) go through `@aws-sdk/client-s3` with keep-alive agents. Checksums
 *   are computed only when an operation requires them: by default recent SDKs upload as streamed
 *   `aws-chunked` bodies with a trailing checksum, which Ceph RGW refuses. PUT bodies are plain
 *   `Uint8Array`s with a Content-Length. Chunks are verified against their CIDs by whoever reads
 *   them, so transport checksums would add nothing.
 * - GETs of objects (chunks, manifests, refs) are the bulk of the bytes. They go out as presigned
 *   URLs (`objectGets: 'presigned'`, the default) over keep-alive connections of our own that read
 *   each body in place (`@swarm/http-in-place`): the socket, or TLS record by record, copies it straight
 *   into the buffer it is kept in, with no buffer per read. An endpoint that frames bodies
 *   otherwise (chunked) is read through an undici pool from then on, each body copied into one
 *   buffer of its Content-Length. In `bench/origin-pull` (838 MiB, 16 in flight, 2 workers) the
 *   in-place reads took a pull from 5.8–6.3 to 4.7–4.8 CPU-s/GB and its peak RSS from 329–334 to
 *   263–265 MB: undici handed each body over in fresh pieces of up to 64 KiB, one per read, that
 *   were copied and then left for the collector. URLs are signed by the SDK's presigner directly
 *   (~0.1 ms each; `getSignedUrl` spends ~1 ms each in the SDK's middleware), after the SDK's own
 *   endpoint rules have placed one key (path or virtual-host style, partitions, FIPS, …).
 *   Measured with `bench/object-gets.mjs` against the local Ceph RGW (scripts/s3-server.sh) on a
 *   2-core machine shared by client, server and other work, 4 MiB chunks, 16 in flight, both ways
 *   alternating in one process, medians of 5–7 passes over 192 MiB, four runs:
 *   SDK GetObject 93–213 MB/s at 5.1–6.3 client CPU-s/GB; presigned + undici 150–260 MB/s at
 *   3.2–4.0 CPU-s/GB: 1.2–1.8× the throughput for ~1.6× less CPU in every run (the gateway's own
 *   CPU, ~1.4 s/GB, was the same). Reading the body with undici's `request()` + `body.bytes()`
 *   instead of the dispatcher API cost ~15% more CPU. `objectGets: 'sdk'` keeps the SDK for GETs
 *   too (for a store that refuses presigned URLs).
 * - Byte workers read chunks through a light reader (`@swarm/origin-s3/reader`, reader.ts) that
 *   the origin describes as plain data (`chunkReaderSpec`: the URLs' base after the SDK's endpoint
 *   rules, the region, the credentials its chain resolved, and when they expire). It presigns and
 *   reads as the origin does (object-reads.ts: the same GETs, retries and errors) without loading
 *   the SDK's client: a worker that opened the whole origin spent ~0.2 CPU-s and ~25 MB of RSS
 *   loading it. undici, for the rare endpoint that frames bodies otherwise, loads at the first such
 *   body.
 * - Chunk bodies are read into buffers lent from a small pool (`BufferPool` from @swarm/interface); `release(bytes)`
 *   gives them back once the store has them, and the fetcher's `originSource` calls it. A fresh
 *   4 MiB buffer per chunk kept the garbage collector busy: with the pool, `bench/origin-pull`
 *   (1 GiB, 16 in flight, 2-core machine shared with the gateway) went from 0.36–0.41 to 0.53–0.56
 *   of a plain client's throughput, at the same peak RSS. A caller that never releases only loses the reuse.
 * - One retry policy for everything (`retry.ts`; the SDK's own retries are off): 5xx, 429, SlowDown
 *   and other throttling, connection resets and refusals, and timeouts are retried with exponential
 *   backoff and full jitter; 404 becomes {@link NotFoundError}, 403 {@link S3CredentialsError}, and
 *   neither is retried. A transient failure that outlasts the retries becomes
 *   {@link OriginUnavailableError} naming the endpoint.
 * - `requestTimeoutMs` bounds silence (connecting, waiting for headers, between body bytes), not
 *   the length of a transfer, so a large object on a slow link is not cut off.
 * - Every call honours its AbortSignal by aborting the HTTP request; an aborted call rejects with
 *   the signal's reason.
 * - Credentials never appear in `url`, messages or logs; credentials in the URL
 *   (`s3://KEY:SECRET@bucket/prefix`) are taken and removed from it.
 *
 * @example
 *
 * ```ts
 * import { s3Origin } from '@swarm/origin-s3'
 *
 * const origin = s3Origin({
 *   url: 's3://models/prod',
 *   endpoint: 'http://127.0.0.1:7480',   // leave out for AWS S3
 *   credentials: { accessKeyId: 'test', secretAccessKey: 'testsecret' } // leave out for the standard AWS chain
 * })
 * const bytes = await origin.getChunk(cid, { signal })
 * const manifestCid = await origin.resolveRef({ name: 'meta/llama-3-8b', tag: 'latest' })
 * await origin.close()
 * ```
 */

import { S3Origin } from './origin.js'
import type { S3ClientConfig } from '@aws-sdk/client-s3'
import type { Logger, Origin } from '@swarm/interface'

export * from './errors.js'
export type { S3ChunkReaderInit } from './reader.js'
export {
  DEFAULT_LIST_PAGE_SIZE,
  DEFAULT_MAX_SOCKETS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES
} from './constants.js'

export interface S3OriginInit {
  /**
   * `s3://bucket[/prefix]`. Userinfo (`s3://KEY:SECRET@bucket/…`, percent-encoded) is taken as
   * credentials and removed from `url`.
   */
  url: string | URL
  /** an S3-compatible endpoint such as `http://127.0.0.1:7480`; leave out for AWS S3 */
  endpoint?: string | URL
  /** default: `us-east-1` with an endpoint; the SDK's region chain (AWS_REGION, profile) without one */
  region?: string
  /** path-style URLs (`endpoint/bucket/key`); default: true with an endpoint, false for AWS */
  forcePathStyle?: boolean
  /** default: the URL's userinfo, else the standard AWS chain (env, profile, SSO, container, instance metadata) */
  credentials?: S3ClientConfig['credentials']
  /** connections per endpoint (default 64) */
  maxSockets?: number
  /** retries after the first attempt for transient failures (default 4) */
  retries?: number
  /** silence allowed on a connection before an attempt fails (default 30 s) */
  requestTimeoutMs?: number
  /** keys per ListObjectsV2 page (default 1000) */
  listPageSize?: number
  /** how objects are fetched: presigned URLs read in place (default; through undici for bodies framed otherwise), or the SDK's GetObject */
  objectGets?: 'presigned' | 'sdk'
  logger?: Logger
}

export function s3Origin (init: S3OriginInit): Origin {
  return new S3Origin(init)
}
