/**
 * Object GETs and the retry policy, without the SDK: what both the S3 origin and the light chunk
 * reader of byte workers (reader.ts) run. The SDK is needed only to sign (the origin's presigner
 * after its endpoint rules) and for control calls; each caller brings its own `sign`.
 */
import { NotFoundError, OriginUnavailableError, RetriesExhaustedError, isUnreachable, retrying } from '@swarm/interface'
import { DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_ERROR_BODY_BYTES, ObjectGets } from '@swarm/http-in-place'
import { PRESIGNED_URL_EXPIRES_S } from './constants.js'
import { S3CredentialsError, S3NoSuchBucketError, S3RequestError, S3ResponseError } from './errors.js'
import { describeFailure, formatFailure, s3RetryPolicy } from './retry.js'
import type { AbortOptions, BufferPool, ChunkFetchOptions, Logger, OnChunkData } from '@swarm/interface'
import type { S3RequestPresigner } from '@aws-sdk/s3-request-presigner'

type PresignRequest = Parameters<S3RequestPresigner['presign']>[0]

/** Where object URLs start, learned once from the SDK's endpoint rules (path or virtual-host style, partitions, …). */
export interface ObjectUrlBase {
  protocol: string
  hostname: string
  port: number | undefined
  /** the host header: hostname plus a non-default port */
  host: string
  /** the path before the key, e.g. `/bucket/` (path style) or `/` (virtual host) */
  pathPrefix: string
}

/** A GET of one key, signed: where to send it, and the path with its signed query. */
export interface SignedGet {
  base: ObjectUrlBase
  path: string
}

export interface S3ObjectReadsInit {
  /** the origin's URL, without credentials, for errors */
  url: string
  bucket: string
  /** the endpoint's name for errors (`http://…`, `AWS S3 (eu-west-1)`) */
  endpointName: string
  retries: number
  maxSockets: number
  requestTimeoutMs: number
  /** whether object GETs go out as presigned URLs (`objectGets: 'presigned'`); false: `get` is not used */
  presigned: boolean
  /** signs a GET of `key` */
  sign(key: string): Promise<SignedGet>
  logger: Logger
}

/** The path and signed query of a GET of `key` under `base`. */
export async function presignedGet (presigner: Pick<S3RequestPresigner, 'presign'>, base: ObjectUrlBase, key: string): Promise<string> {
  const request: PresignRequest = {
    method: 'GET',
    protocol: base.protocol,
    hostname: base.hostname,
    ...(base.port !== undefined ? { port: base.port } : {}),
    path: `${base.pathPrefix}${encodeKey(key)}`,
    query: {},
    headers: { host: base.host }
  }
  const signed = await presigner.presign(request, { expiresIn: PRESIGNED_URL_EXPIRES_S })
  const query = new URLSearchParams()
  for (const [name, value] of Object.entries(signed.query ?? {})) {
    for (const v of Array.isArray(value) ? value : [value]) if (v != null) query.append(name, v)
  }
  return `${signed.path}?${query.toString()}`
}

const CREDENTIAL_S3_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AuthorizationHeaderMalformed'])

export class S3ObjectReads {
  private readonly init: S3ObjectReadsInit
  /** object GETs read in place (undici once the endpoint frames a body otherwise); undefined unless presigned */
  private readonly gets: ObjectGets | undefined

  constructor (init: S3ObjectReadsInit) {
    this.init = init
    this.gets = init.presigned
      ? new ObjectGets({
        maxConnections: init.maxSockets,
        keepAliveMs: DEFAULT_KEEP_ALIVE_MS,
        timeoutMs: init.requestTimeoutMs,
        maxErrorBodyBytes: DEFAULT_MAX_ERROR_BODY_BYTES,
        // a server (or a proxy before it) that frames bodies otherwise, chunked
        onRetire: framing => { init.logger.info({ endpoint: init.endpointName, framing }, 'object bodies are not framed by Content-Length here; reading them through the general HTTP client') }
      })
      : undefined
  }

  async close (): Promise<void> {
    await this.gets?.close()
  }

  /** The whole object `key` through a presigned GET, under the retry policy; with a `pool`, into a buffer lent from it. */
  async get (key: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array> {
    return await this.request(`GET ${key}`, options, async signal => await this.getSigned(key, signal, pool, options.onData), what)
  }

  /** Runs one request under the retry policy and turns what failed into the error callers handle. */
  async request<T> (what: string, { signal }: AbortOptions, attempt: (signal: AbortSignal | undefined) => Promise<T>, notFound?: string): Promise<T> {
    signal?.throwIfAborted()
    // The caller's signal is often long-lived and shared (a whole pull, an agent's lifetime) while
    // the SDK and our own GET add abort listeners per request and retry: hung on the caller's
    // signal they pile up with concurrency (Node warns past 10). A signal of its own per request
    // follows the caller's without adding a listener to it, and is collected with the request.
    const own = signal !== undefined ? AbortSignal.any([signal]) : undefined
    try {
      return await retrying(attempt, s3RetryPolicy(this.init.retries, this.init.logger, what), { signal: own })
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      throw this.toOriginError(err, what, notFound)
    }
  }

  private toOriginError (err: unknown, what: string, notFound: string | undefined): unknown {
    const { url, endpointName, bucket } = this.init
    if (err instanceof RetriesExhaustedError) {
      const reached = isUnreachable(err.last) ? 'cannot be reached' : 'keeps failing'
      return new OriginUnavailableError(
        `S3 endpoint ${endpointName} ${reached} (${url}): ${what} failed ${err.attempts} times; last: ${formatFailure(err.last)}`,
        { cause: err.last }
      )
    }
    const { status, s3Code, name } = describeFailure(err)
    if (name === 'CredentialsProviderError') {
      return new S3CredentialsError(`no S3 credentials for ${url}: ${(err as Error).message}`, { cause: err })
    }
    if (status === undefined) return err
    if (s3Code === 'NoSuchBucket') {
      return new S3NoSuchBucketError(bucket, `bucket ${bucket} does not exist at ${endpointName} (${url})`, { cause: err })
    }
    if (status === 404) return new NotFoundError(`${notFound ?? what} not found at ${url}`)
    if (status === 403 || (s3Code !== undefined && CREDENTIAL_S3_CODES.has(s3Code))) {
      const hint = s3Code === 'SignatureDoesNotMatch'
        ? 'the secret access key is wrong'
        : s3Code === 'InvalidAccessKeyId'
          ? 'the access key id is unknown'
          : 'check the credentials and their permissions on the bucket'
      return new S3CredentialsError(`${endpointName} refused ${what} (${url}): ${formatFailure(err)}; ${hint}`, { cause: err })
    }
    return new S3RequestError(status, s3Code, `${endpointName} refused ${what} (${url}): ${formatFailure(err)}`, { cause: err })
  }

  private async getSigned (key: string, signal: AbortSignal | undefined, pool: BufferPool | undefined, onData: OnChunkData | undefined): Promise<Uint8Array> {
    const { base, path } = await this.init.sign(key)
    const into = (status: number, _headers: ReadonlyMap<string, string>, length: number): Uint8Array | undefined => status !== 200 ? undefined : pool !== undefined ? pool.take(length) : Buffer.allocUnsafe(length)
    if (this.gets === undefined) throw new TypeError('this S3 origin reads objects through the SDK')
    const response = await this.gets.get(base, path, { signal, into, ...(onData !== undefined ? { onBody: onData } : {}) })
    if (response.status === 200) return response.body
    const { s3Code, message } = parseErrorBody(Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength).toString('utf8'))
    throw new S3ResponseError(response.status, s3Code, message ?? `HTTP ${response.status}`)
  }
}

/** S3 keys in a URL path: each segment escaped, slashes kept. */
export function encodeKey (key: string): string {
  return key.split('/').map(encodeURIComponent).join('/')
}

/** The `<Code>` and `<Message>` of an S3 XML error body. */
export function parseErrorBody (text: string): { s3Code?: string, message?: string } {
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]
  return { ...(code !== undefined ? { s3Code: code } : {}), ...(message !== undefined ? { message } : {}) }
}

