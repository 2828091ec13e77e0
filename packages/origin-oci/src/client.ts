/**
 * The registry protocol (OCI distribution spec v1.1) over undici: manifests, blobs (ranged GETs,
 * monolithic uploads), tag and catalog listings, referrers (the API, else the `sha256-<hex>`
 * tag-schema fallback), with authentication, redirects and retries.
 *
 * - Auth is learned from the first 401 and then sent up front: Basic with the credentials, or a
 *   Bearer token per scope (`repository:<repo>:pull[,push]`, `registry:catalog:*`) from the
 *   token server the challenge names, renewed shortly before it expires. A 401 after fresh
 *   credentials, or a 403, is {@link OciCredentialsError}.
 * - Redirects (a blob GET is often sent on to S3, GCS or a CDN with a presigned URL) are followed
 *   by hand, and the Authorization header goes only to the registry itself: presigned storage
 *   refuses a second authorization, and the registry's credentials must not leak to a third party.
 * - One retry policy: 5xx (but 501), 429, 408, connection failures and timeouts are retried with
 *   exponential backoff and full jitter; an upload's body is opened afresh for each attempt.
 */

import { createHash } from 'node:crypto'
import { InPlaceGets } from '@swarm/http-in-place'
import { NotFoundError, OriginUnavailableError, RetriesExhaustedError, isTransientNetworkError, retrying } from '@swarm/interface'
import { Agent } from 'undici'
import { basicAuthorization, parseChallenge, TokenAnswerSchema } from './auth.js'
import {
  DEFAULT_TOKEN_LIFETIME_S,
  DIGEST_PATTERN,
  KEEP_ALIVE_TIMEOUT_MS,
  LIST_PAGE_SIZE,
  MAX_DOCUMENT_BYTES,
  MAX_ERROR_BODY_BYTES,
  MAX_REDIRECTS,
  OCI_INDEX,
  RETRY_BASE_DELAY_MS,
  RETRY_MAX_DELAY_MS,
  TOKEN_EXPIRY_MARGIN_MS
} from './constants.js'
import { OciCredentialsError, OciRequestError, RegistryResponseError, TruncatedBodyError } from './errors.js'
import type { RegistryCredentials } from './auth.js'
import type { BufferPool, Logger, OnChunkData } from '@swarm/interface'
import type { BodyTarget, InPlaceResponse } from '@swarm/http-in-place'
import type { Dispatcher } from 'undici'

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
  data?: string
}

export interface RegistryClientInit {
  base: string
  registry: string
  /** loaded on the first challenge, once */
  credentials: () => Promise<RegistryCredentials | undefined>
  retries: number
  requestTimeoutMs: number
  maxSockets: number
  logger: Logger
}

type Method = 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE'

interface Request {
  method: Method
  /** a path under the registry (`/v2/…`) or an absolute URL (an upload location) */
  url: string
  /** the token scope this request needs */
  scope: string
  headers?: Record<string, string>
  /** opened afresh for each attempt */
  body?: () => Uint8Array | AsyncIterable<Uint8Array>
}

/** What one request was answered, whichever client sent it (see `exchange`). */
interface Answered<T> {
  status: number
  location: string | undefined
  challenge: string | undefined
  /** the body of a refusal, as text */
  errorText(): Promise<string>
  /** lets go of a body not to be read (a redirect's) */
  discard(): void
  response: T
}

function isTransient (err: unknown): boolean {
  if (err instanceof RegistryResponseError) return err.status !== 501 && (err.status >= 500 || err.status === 429 || err.status === 408)
  return isTransientNetworkError(err)
}

export function sha256Digest (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

function header (headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

async function readAll (body: Dispatcher.ResponseData['body'], limit: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = []
  let length = 0
  for await (const piece of body) {
    length += (piece as Buffer).byteLength
    if (length > limit) {
      body.destroy()
      throw new OciRequestError(0, undefined, `${what}: the answer is larger than ${limit} bytes`)
    }
    parts.push(piece as Buffer)
  }
  return Buffer.concat(parts)
}

/** The registry's error document, `{"errors":[{"code","message"}]}`, as one line. */
function describeErrorBody (text: string): { registryCode?: string, message?: string } {
  try {
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: unknown, message?: unknown }> }
    const first = parsed.errors?.[0]
    if (first != null) {
      return {
        ...(typeof first.code === 'string' ? { registryCode: first.code } : {}),
        ...(typeof first.message === 'string' ? { message: first.message } : {})
      }
    }
  } catch {}
  const line = text.trim().split('\n')[0]
  return line !== undefined && line !== '' ? { message: line.slice(0, 200) } : {}
}

/** `Link: </v2/_catalog?last=x&n=100>; rel="next"` */
function nextLink (link: string | undefined): string | undefined {
  return link != null ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link)?.[1] : undefined
}

export class RegistryClient {
  private readonly agent: Agent
  private readonly inPlace: InPlaceGets
  /** set once the registry answered a range otherwise (the whole blob, chunked): ranges go through undici from then on */
  private inPlaceRetired = false
  private readonly base: string
  private readonly registry: string
  private readonly log: Logger
  private readonly retries: number
  private readonly loadCredentials: () => Promise<RegistryCredentials | undefined>
  private credentials: Promise<RegistryCredentials | undefined> | undefined
  /** learned from the first challenge */
  private scheme: 'none' | 'basic' | 'bearer' = 'none'
  private bearer: { realm: string, service?: string } | undefined
  private readonly tokens = new Map<string, { token: string, expiresAt: number }>()

  constructor (init: RegistryClientInit) {
    this.base = init.base
    this.registry = init.registry
    this.log = init.logger
    this.retries = init.retries
    this.loadCredentials = init.credentials
    this.agent = new Agent({
      connections: init.maxSockets,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      headersTimeout: init.requestTimeoutMs,
      bodyTimeout: init.requestTimeoutMs,
      connect: { timeout: init.requestTimeoutMs }
    })
    this.inPlace = new InPlaceGets({ maxConnections: init.maxSockets, keepAliveMs: KEEP_ALIVE_TIMEOUT_MS, timeoutMs: init.requestTimeoutMs, maxErrorBodyBytes: MAX_ERROR_BODY_BYTES * 16 })
  }

  async close (): Promise<void> {
    await this.inPlace.close()
    await this.agent.close()
  }

  /**
   * Runs `attempt` under the retry policy and turns what failed into the error callers handle:
   * NotFoundError, OciCredentialsError, OciRequestError, or OriginUnavailableError once transient
   * failures outlast the retries. An abort rejects with the signal's reason.
   */
  async call<T> (what: string, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    try {
      return await retrying(async () => await attempt(), {
        retries: this.retries,
        baseDelayMs: RETRY_BASE_DELAY_MS,
        maxDelayMs: RETRY_MAX_DELAY_MS,
        transient: isTransient,
        onRetry: ({ attempt: tries, delayMs, error }) => { this.log.debug({ request: what, attempt: tries, delayMs: Math.round(delayMs), error: (error as Error).message }, 'registry request failed; retrying') }
      }, { signal })
    } catch (err) {
      if (err instanceof RetriesExhaustedError) {
        const last = err.last
        const reached = last instanceof RegistryResponseError ? 'keeps failing' : 'cannot be reached'
        throw new OriginUnavailableError(`registry ${this.registry} ${reached}: ${what} failed ${err.attempts} times; last: ${(last as Error).message}`, { cause: last })
      }
      if (err instanceof RegistryResponseError) {
        if (err.status === 404) throw new NotFoundError(`${what}: not found at ${this.registry}`)
        const status = `HTTP ${err.status}${err.registryCode !== undefined ? ` ${err.registryCode}` : ''}${err.message !== `HTTP ${err.status}` ? ` (${err.message})` : ''}`
        if (err.status === 401 || err.status === 403) throw new OciCredentialsError(`registry ${this.registry} refused ${what}: ${status}; check the credentials and their permissions (docker login, DOCKER_CONFIG, or user:password in the origin URL)`, { cause: err })
        throw new OciRequestError(err.status, err.registryCode, `registry ${this.registry} refused ${what}: ${status}`, { cause: err })
      }
      throw err
    }
  }

  /**
   * One request, authenticated and redirected as needed; a 2xx answer is returned with its body
   * unread, anything else is read and thrown as RegistryResponseError.
   */
  async send (request: Request, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    return await this.exchange(request, signal, async (url, headers) => {
      const body = request.body?.()
      const response = await this.agent.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: request.method,
        headers,
        ...(body !== undefined ? { body: body as Uint8Array } : {}),
        ...(signal !== undefined ? { signal } : {})
      })
      return {
        status: response.statusCode,
        location: header(response.headers, 'location'),
        challenge: header(response.headers, 'www-authenticate'),
        errorText: async () => request.method === 'HEAD' ? '' : (await readAll(response.body, MAX_ERROR_BODY_BYTES * 16, 'error answer').catch(() => Buffer.alloc(0))).toString('utf8'),
        discard: () => { response.body.resume() },
        response
      }
    })
  }

  /**
   * The steps around one request, whichever client sends it (`once`): credentials for the
   * registry's own URLs, redirects for GET and HEAD, one answer to an authentication challenge,
   * and a refusal thrown as RegistryResponseError.
   */
  private async exchange<T> (request: Request, signal: AbortSignal | undefined, once: (url: URL, headers: Record<string, string>) => Promise<Answered<T>>): Promise<T> {
    let url = new URL(request.url, this.base)
    let answeredChallenge = false
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const ours = url.origin === new URL(this.base).origin
      const headers: Record<string, string> = { ...request.headers }
      if (ours) {
        const authorization = await this.authorization(request.scope, signal)
        if (authorization !== undefined) headers.authorization = authorization
      }
      const answer = await once(url, headers)
      const { status } = answer
      if (status >= 200 && status < 300) return answer.response
      if ([301, 302, 303, 307, 308].includes(status) && answer.location !== undefined && (request.method === 'GET' || request.method === 'HEAD')) {
        answer.discard()
        url = new URL(answer.location, url)
        continue
      }
      const { registryCode, message } = describeErrorBody(await answer.errorText())
      const failure = new RegistryResponseError(status, registryCode, message ?? `HTTP ${status}`, answer.challenge)
      if (status === 401 && ours && !answeredChallenge) {
        answeredChallenge = true
        if (await this.answer(failure.challenge, request.scope, headers.authorization !== undefined, signal)) {
          hop--
          continue
        }
      }
      throw failure
    }
    throw new OciRequestError(0, undefined, `${request.method} ${request.url}: more than ${MAX_REDIRECTS} redirects`)
  }

  /** Learns from a challenge; true when the request is worth sending again. */
  private async answer (header: string | undefined, scope: string, sentCredentials: boolean, signal: AbortSignal | undefined): Promise<boolean> {
    const challenge = parseChallenge(header)
    if (challenge === undefined) return false
    const credentials = await this.credentialsOnce()
    if (challenge.scheme === 'basic') {
      if (credentials === undefined) throw new OciCredentialsError(`registry ${this.registry} wants credentials (HTTP basic) and none were found: run docker login ${this.registry}, set DOCKER_CONFIG, or put them in the origin URL`)
      // refused with the credentials: wrong ones; without (sent before another request learned the scheme): try with them
      if (this.scheme === 'basic' && sentCredentials) return false
      this.scheme = 'basic'
      return true
    }
    const realm = challenge.params.realm
    if (realm === undefined) return false
    this.scheme = 'bearer'
    this.bearer = { realm, ...(challenge.params.service !== undefined ? { service: challenge.params.service } : {}) }
    // the challenge names the scope the registry wants; ours is asked for too, as one token per scope is cached
    const wanted = challenge.params.scope ?? scope
    const fresh = await this.fetchToken(wanted, credentials, signal)
    this.tokens.set(scope, fresh)
    return true
  }

  private async credentialsOnce (): Promise<RegistryCredentials | undefined> {
    this.credentials ??= this.loadCredentials()
    return await this.credentials
  }

  private async authorization (scope: string, signal: AbortSignal | undefined): Promise<string | undefined> {
    if (this.scheme === 'basic') {
      const credentials = await this.credentialsOnce()
      return credentials !== undefined ? basicAuthorization(credentials) : undefined
    }
    if (this.scheme !== 'bearer') return undefined
    let cached = this.tokens.get(scope)
    if (cached === undefined || cached.expiresAt - TOKEN_EXPIRY_MARGIN_MS < Date.now()) {
      cached = await this.fetchToken(scope, await this.credentialsOnce(), signal)
      this.tokens.set(scope, cached)
    }
    return `Bearer ${cached.token}`
  }

  private async fetchToken (scope: string, credentials: RegistryCredentials | undefined, signal: AbortSignal | undefined): Promise<{ token: string, expiresAt: number }> {
    const bearer = this.bearer
    if (bearer === undefined) throw new OciCredentialsError(`registry ${this.registry} asked for a token without saying where to get one`)
    const url = new URL(bearer.realm)
    if (bearer.service !== undefined) url.searchParams.set('service', bearer.service)
    for (const part of scope.split(' ')) url.searchParams.append('scope', part)
    const response = await this.agent.request({
      origin: url.origin,
      path: url.pathname + url.search,
      method: 'GET',
      headers: credentials !== undefined ? { authorization: basicAuthorization(credentials) } : {},
      ...(signal !== undefined ? { signal } : {})
    })
    const text = (await readAll(response.body, MAX_DOCUMENT_BYTES, `token from ${url.origin}`)).toString('utf8')
    if (response.statusCode === 401 || response.statusCode === 403) {
      throw new OciCredentialsError(`token server ${url.origin}${url.pathname} refused ${credentials !== undefined ? `the credentials of ${credentials.username}` : 'an anonymous request'} for ${scope}: HTTP ${response.statusCode}${credentials === undefined ? '; run docker login or set DOCKER_CONFIG' : ''}`)
    }
    if (response.statusCode !== 200) throw new RegistryResponseError(response.statusCode, undefined, `token server ${url.origin}: ${describeErrorBody(text).message ?? `HTTP ${response.statusCode}`}`)
    let answer
    try {
      answer = TokenAnswerSchema.parse(JSON.parse(text))
    } catch {
      throw new OciCredentialsError(`token server ${url.origin}${url.pathname} gave no token for ${scope}`)
    }
    return { token: (answer.token ?? answer.access_token) as string, expiresAt: Date.now() + (answer.expires_in ?? DEFAULT_TOKEN_LIFETIME_S) * 1000 }
  }

  /** A manifest or index by tag or digest: its bytes, media type and digest (checked when asked for by digest). */
  async getManifest (repository: string, reference: string, accept: string[], signal?: AbortSignal): Promise<{ bytes: Uint8Array, mediaType: string, digest: string }> {
    const what = `manifest ${repository}:${reference}`
    return await this.call(what, signal, async () => {
      const response = await this.send({ method: 'GET', url: `/v2/${repository}/manifests/${reference}`, scope: pullScope(repository), headers: { accept: accept.join(', ') } }, signal)
      const bytes = await readAll(response.body, MAX_DOCUMENT_BYTES, what)
      const digest = sha256Digest(bytes)
      if (DIGEST_PATTERN.test(reference) && digest !== reference) throw new OciRequestError(0, undefined, `${what}: the registry sent bytes of ${digest}`)
      let mediaType = header(response.headers, 'content-type')?.split(';')[0]?.trim() ?? ''
      try {
        const declared = (JSON.parse(bytes.toString('utf8')) as { mediaType?: unknown }).mediaType
        if (typeof declared === 'string') mediaType = declared
      } catch {}
      return { bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), mediaType, digest }
    })
  }

  /** Puts a manifest; `subjectHandled` tells whether the registry indexes its subject itself (OCI-Subject). */
  async putManifest (repository: string, reference: string, bytes: Uint8Array, mediaType: string, signal?: AbortSignal): Promise<{ digest: string, subjectHandled: boolean }> {
    return await this.call(`PUT manifest ${repository}:${reference}`, signal, async () => {
      const response = await this.send({ method: 'PUT', url: `/v2/${repository}/manifests/${reference}`, scope: pushScope(repository), headers: { 'content-type': mediaType }, body: () => bytes }, signal)
      response.body.resume()
      return { digest: sha256Digest(bytes), subjectHandled: header(response.headers, 'oci-subject') !== undefined }
    })
  }

  /** The size of a blob, or undefined when the repository lacks it. */
  async statBlob (repository: string, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      return await this.call(`HEAD blob ${repository}@${digest}`, signal, async () => {
        const response = await this.send({ method: 'HEAD', url: `/v2/${repository}/blobs/${digest}`, scope: pullScope(repository) }, signal)
        response.body.resume()
        return Number(header(response.headers, 'content-length'))
      })
    } catch (err) {
      if (err instanceof NotFoundError) return undefined
      throw err
    }
  }

  /**
   * Bytes `[offset, offset + length)` of a blob, read into one buffer (lent from `pool` when
   * given), in place (`@swarm/http-in-place`): the socket copies the range straight into that
   * buffer. A server that ignores Range and sends the whole blob, or sends it chunked, is read
   * through undici, through to the range. Bytes read in place are reported as they land
   * (`onData`, in the buffer returned; a retry starts that buffer over).
   */
  async readBlobRange (repository: string, digest: string, offset: number, length: number, signal?: AbortSignal, pool?: BufferPool, onData?: OnChunkData): Promise<Uint8Array> {
    const inPlace = this.inPlace
    if (this.inPlaceRetired) return await this.readBlobRangeThroughUndici(repository, digest, offset, length, signal, pool)
    let out: Uint8Array | undefined
    const into: BodyTarget = (status, headers, size) => {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headers.get('content-range') ?? '')
      // a whole blob for a range, or another range: not read here (see below)
      if (status !== 206 || size !== length || range === null || Number(range[1]) !== offset) return false
      out ??= pool !== undefined ? pool.take(length) : Buffer.allocUnsafe(length)
      return out
    }
    try {
      const response = await this.call(`GET blob ${repository}@${digest} [${offset}, +${length})`, signal, async () => {
        return await this.sendInPlace(inPlace, { method: 'GET', url: `/v2/${repository}/blobs/${digest}`, scope: pullScope(repository), headers: { range: `bytes=${offset}-${offset + length - 1}` } }, signal, into,
          onData !== undefined ? (body, received) => { onData(body, received) } : undefined)
      })
      if (response.status === 206 && out !== undefined && response.body === out) return out
      if (response.status === 200) this.retireInPlace('this registry answers a range with the whole blob; reading ranges through the general HTTP client')
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_UNSUPPORTED_FRAMING') throw err
      this.retireInPlace('blob ranges are not framed by Content-Length here; reading them through the general HTTP client')
    }
    // a whole blob for a range (the server ignored Range) or chunked framing: read it as before
    return await this.readBlobRangeThroughUndici(repository, digest, offset, length, signal, pool)
  }

  /** Reads ranges through undici from now on; ranges already under way finish where they are. */
  private retireInPlace (why: string): void {
    if (this.inPlaceRetired) return
    this.log.info({ registry: this.registry }, why)
    this.inPlaceRetired = true
  }

  /** `send` for a GET whose 2xx body is read in place where `into` says. */
  private async sendInPlace (inPlace: InPlaceGets, request: Request, signal: AbortSignal | undefined, into: BodyTarget, onBody?: (body: Uint8Array, received: number) => void): Promise<InPlaceResponse> {
    return await this.exchange(request, signal, async (url, headers) => {
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OciRequestError(0, undefined, `${request.method} ${request.url}: redirected to a ${url.protocol} URL`)
      const endpoint = { protocol: url.protocol, hostname: url.hostname, port: url.port === '' ? undefined : Number(url.port), host: url.host }
      const response = await inPlace.get(endpoint, url.pathname + url.search, {
        headers,
        into: (status, responseHeaders, size) => status >= 200 && status < 300 ? into(status, responseHeaders, size) : undefined,
        ...(onBody !== undefined ? { onBody } : {}),
        ...(signal !== undefined ? { signal } : {})
      })
      return {
        status: response.status,
        location: response.headers.get('location'),
        challenge: response.headers.get('www-authenticate'),
        errorText: async () => Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength).toString('utf8'),
        discard: () => {},
        response
      }
    })
  }

  /** `readBlobRange` through undici: a server that ignores Range is read through to the range. */
  private async readBlobRangeThroughUndici (repository: string, digest: string, offset: number, length: number, signal?: AbortSignal, pool?: BufferPool): Promise<Uint8Array> {
    return await this.call(`GET blob ${repository}@${digest} [${offset}, +${length})`, signal, async () => {
      const response = await this.send({ method: 'GET', url: `/v2/${repository}/blobs/${digest}`, scope: pullScope(repository), headers: { range: `bytes=${offset}-${offset + length - 1}` } }, signal)
      const skip = response.statusCode === 206 ? 0 : offset
      const out = pool !== undefined ? pool.take(length) : Buffer.allocUnsafe(length)
      let at = -skip
      for await (const piece of response.body) {
        const bytes = piece as Buffer
        const from = Math.max(0, -at)
        const to = Math.min(bytes.byteLength, length - at)
        if (to > from) bytes.copy(out, at + from, from, to)
        at += bytes.byteLength
        if (at >= length && response.statusCode !== 206) {
          response.body.destroy()
          break
        }
      }
      if (at < length) throw new TruncatedBodyError(length, Math.max(0, at))
      if (response.statusCode === 206 && at > length) throw new OciRequestError(206, undefined, `GET blob ${digest}: ${at} bytes for a range of ${length}`)
      return out
    })
  }

  /** A whole small blob (a config, a chunk manifest), checked against its digest. */
  async readBlob (repository: string, digest: string, limit: number, signal?: AbortSignal): Promise<Uint8Array> {
    const what = `blob ${repository}@${digest}`
    return await this.call(what, signal, async () => {
      const response = await this.send({ method: 'GET', url: `/v2/${repository}/blobs/${digest}`, scope: pullScope(repository) }, signal)
      const bytes = await readAll(response.body, limit, what)
      const actual = sha256Digest(bytes)
      if (actual !== digest) throw new OciRequestError(0, 'DIGEST_INVALID', `${what}: the registry sent bytes of ${actual}`)
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    })
  }

  /** A blob streamed to `onData`, start to end (for hashing a layer); retried from the start. */
  async streamBlob (repository: string, digest: string, onStart: () => void, onData: (bytes: Buffer) => void, signal?: AbortSignal): Promise<void> {
    await this.call(`GET blob ${repository}@${digest}`, signal, async () => {
      const response = await this.send({ method: 'GET', url: `/v2/${repository}/blobs/${digest}`, scope: pullScope(repository) }, signal)
      onStart()
      for await (const piece of response.body) onData(piece as Buffer)
    })
  }

  /** Uploads a blob unless the repository holds it: POST for a session, then one PUT of the whole body. */
  async uploadBlob (repository: string, digest: string, size: number, body: () => Uint8Array | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<boolean> {
    if (await this.statBlob(repository, digest, signal) !== undefined) return false
    await this.call(`upload blob ${repository}@${digest}`, signal, async () => {
      const started = await this.send({ method: 'POST', url: `/v2/${repository}/blobs/uploads/`, scope: pushScope(repository) }, signal)
      started.body.resume()
      const location = header(started.headers, 'location')
      if (location === undefined) throw new OciRequestError(started.statusCode, undefined, `upload to ${repository}: the registry gave no upload location`)
      const url = new URL(location, this.base)
      url.searchParams.set('digest', digest)
      const done = await this.send({ method: 'PUT', url: url.href, scope: pushScope(repository), headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) }, body }, signal)
      done.body.resume()
    })
    return true
  }

  /**
   * Referrers of a manifest with the given artifact type: the referrers API where the registry
   * has it, else the index at tag `sha256-<hex>` (the OCI 1.1 tag schema; distribution 2.8).
   */
  async referrers (repository: string, digest: string, artifactType: string, signal?: AbortSignal): Promise<Descriptor[]> {
    let index: Uint8Array | undefined
    try {
      index = await this.call(`referrers of ${repository}@${digest}`, signal, async () => {
        const response = await this.send({ method: 'GET', url: `/v2/${repository}/referrers/${digest}?artifactType=${encodeURIComponent(artifactType)}`, scope: pullScope(repository), headers: { accept: OCI_INDEX } }, signal)
        const bytes = await readAll(response.body, MAX_DOCUMENT_BYTES, 'referrers')
        // a registry without the API may answer some other route's 200 (an HTML page); only an index counts
        return (header(response.headers, 'content-type') ?? '').startsWith(OCI_INDEX) ? bytes : undefined
      })
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
    }
    if (index === undefined) {
      try {
        index = (await this.getManifest(repository, fallbackTag(digest), [OCI_INDEX], signal)).bytes
      } catch (err) {
        if (err instanceof NotFoundError) return []
        throw err
      }
    }
    return parseIndex(index).filter(d => d.artifactType === artifactType)
  }

  /** Adds a referrer to the `sha256-<hex>` fallback index, for registries without the referrers API. */
  async addFallbackReferrer (repository: string, subject: string, referrer: Descriptor, signal?: AbortSignal): Promise<void> {
    let manifests: Descriptor[] = []
    try {
      manifests = parseIndex((await this.getManifest(repository, fallbackTag(subject), [OCI_INDEX], signal)).bytes)
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
    }
    if (manifests.some(d => d.digest === referrer.digest)) return
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [...manifests, referrer] }
    await this.putManifest(repository, fallbackTag(subject), new TextEncoder().encode(JSON.stringify(index)), OCI_INDEX, signal)
  }

  async * tags (repository: string, signal?: AbortSignal): AsyncIterable<string[]> {
    yield * this.pages(`/v2/${repository}/tags/list?n=${LIST_PAGE_SIZE}`, pullScope(repository), 'tags', `tags of ${repository}`, signal)
  }

  async * catalog (signal?: AbortSignal): AsyncIterable<string[]> {
    yield * this.pages(`/v2/_catalog?n=${LIST_PAGE_SIZE}`, 'registry:catalog:*', 'repositories', 'the catalog', signal)
  }

  private async * pages (first: string, scope: string, field: string, what: string, signal?: AbortSignal): AsyncIterable<string[]> {
    let url: string | undefined = first
    while (url !== undefined) {
      const page: { items: string[], next: string | undefined } = await this.call(what, signal, async () => {
        const response = await this.send({ method: 'GET', url: url as string, scope }, signal)
        const bytes = await readAll(response.body, MAX_DOCUMENT_BYTES, what)
        const parsed = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>
        const items = parsed[field]
        return { items: Array.isArray(items) ? items.filter((i): i is string => typeof i === 'string') : [], next: nextLink(header(response.headers, 'link')) }
      })
      yield page.items
      url = page.next
    }
  }
}

export function pullScope (repository: string): string {
  return `repository:${repository}:pull`
}

export function pushScope (repository: string): string {
  return `repository:${repository}:pull,push`
}

export function fallbackTag (digest: string): string {
  return digest.replace(':', '-')
}

function parseIndex (bytes: Uint8Array): Descriptor[] {
  try {
    const parsed = JSON.parse(new TextDecoder().decode(bytes)) as { manifests?: unknown }
    if (!Array.isArray(parsed.manifests)) return []
    return parsed.manifests.filter((d): d is Descriptor => d != null && typeof d === 'object' && typeof (d as Descriptor).digest === 'string' && DIGEST_PATTERN.test((d as Descriptor).digest))
  } catch {
    return []
  }
}
