import { readFileSync } from 'node:fs'
import { rootCertificates } from 'node:tls'
import { NotFoundError, OriginReadOnlyError, OriginUnavailableError, RetriesExhaustedError, integerSetting, isTransientNetworkError, networkErrorCode, retrying } from '@swarm/interface'
import { BodyLengthError, InPlaceGets, UnsupportedFramingError } from '@swarm/http-in-place'
import { ObjectStoreOrigin } from '@swarm/origin-layout'
import {
  DEFAULT_MAX_SOCKETS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
  KEEP_ALIVE_TIMEOUT_MS,
  MAX_LISTING_BYTES,
  MAX_OTHER_BODY_BYTES,
  MAX_REDIRECTS,
  REDIRECT_STATUSES,
  RETRY_BASE_DELAY_MS,
  RETRY_MAX_DELAY_MS
} from './constants.js'
import { HttpListingUnsupportedError, HttpOriginAuthError, HttpOriginRequestError, TransientHttpError } from './errors.js'
import { parseHttpOriginUrl } from './url.js'
import type { HttpOriginInit } from './index.js'
import type { AbortOptions, BufferPool, ChunkFetchOptions } from '@swarm/interface'
import type { ObjectPut } from '@swarm/origin-layout'
import type { BodyTarget, InPlaceResponse } from '@swarm/http-in-place'
import type { Agent, Dispatcher } from 'undici'

/**
 * The schema of a JSON directory listing (one entry each: nginx writes `type`, others `is_dir`);
 * zod is loaded with the first listing, so that a byte worker reading chunks never loads it.
 */
let listingSchema: Promise<{ safeParse(value: unknown): { success: true, data: Array<{ name: string, type?: string, is_dir?: boolean }> } | { success: false } }> | undefined
async function listingSchemaOf (): Promise<Awaited<NonNullable<typeof listingSchema>>> {
  listingSchema ??= import('zod').then(({ z }) => z.array(z.object({
    name: z.string().min(1),
    type: z.string().optional(),
    is_dir: z.boolean().optional()
  }).loose()))
  return await listingSchema
}

type Listing = Array<{ name: string, directory: boolean }>

function isTransient (err: unknown): boolean {
  return err instanceof TransientHttpError || isTransientNetworkError(err)
}



function header (headers: Dispatcher.ResponseData['headers'], name: string): string | undefined {
  const value = headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** A strong ETag, the only kind If-Match may compare. */
function strongEtag (etag: string | undefined): string | undefined {
  return etag !== undefined && etag.startsWith('"') ? etag : undefined
}

/** Where a response body is being copied: a buffer of the announced length, filled from `received`. */
interface Target {
  bytes: Uint8Array
  received: number
  etag: string | undefined
}

/** The part of a broken read worth asking for again: bound to its ETag, so a changed file is not stitched. */
function resumable (target: Target | undefined): Target | undefined {
  return target !== undefined && target.received > 0 && target.etag !== undefined ? target : undefined
}

function resumeHeaders (resume: Target | undefined): Record<string, string> {
  return resume !== undefined ? { range: `bytes=${resume.received}-`, 'if-match': resume.etag as string } : {}
}

/** Whether a 206's Content-Range carries on exactly where `resume` stopped, to the end of the object. */
function continues (resume: Target, contentRange: string | undefined): boolean {
  const range = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(contentRange ?? '')
  return range !== null && Number(range[1]) === resume.received && Number(range[2]) === resume.bytes.byteLength - 1 && Number(range[3]) === resume.bytes.byteLength
}

/** What a server answered, whichever client asked (see `follow`). */
interface Answered<T> {
  status: number
  location: string | undefined
  /** lets go of a body not to be read (a redirect's) */
  discard(): Promise<void>
  response: T
}

/** The layout's object names are paths below the URL's own path (`basePath`), so its prefix is empty. */
export class HttpOrigin extends ObjectStoreOrigin {
  private readonly server: string
  private readonly basePath: string
  private readonly authorization: string | undefined
  /** undici, for HEADs, listings and bodies framed otherwise: loaded at the first such request */
  private agent: Promise<Agent> | undefined
  private readonly agentOptions: ConstructorParameters<typeof Agent>[0]
  private readonly inPlace: InPlaceGets
  /** set once the server framed a body otherwise: object GETs go through undici from then on */
  private inPlaceRetired = false
  private readonly retries: number

  constructor (init: HttpOriginInit) {
    const parsed = parseHttpOriginUrl(init.url)
    super({ url: parsed.display, logger: init.logger, pooledChunks: true })
    this.server = parsed.origin
    this.basePath = parsed.basePath
    this.authorization = parsed.authorization
    this.retries = integerSetting(init.retries, DEFAULT_RETRIES, 'retries', 0)
    const timeout = integerSetting(init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
    const extraCa = init.ca === undefined ? [] : Array.isArray(init.ca) ? init.ca : [init.ca]
    const maxSockets = integerSetting(init.maxSockets, DEFAULT_MAX_SOCKETS, 'maxSockets')
    const ca = extraCa.length > 0 ? [...rootCertificates, ...extraCa, ...extraCaFromEnv()] : undefined
    this.inPlace = new InPlaceGets({ maxConnections: maxSockets, keepAliveMs: KEEP_ALIVE_TIMEOUT_MS, timeoutMs: timeout, maxErrorBodyBytes: MAX_OTHER_BODY_BYTES, ...(ca !== undefined ? { ca } : {}) })
    this.agentOptions = {
      connections: maxSockets,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      // without `ca` Node's default store applies, NODE_EXTRA_CA_CERTS included; with it, both are kept
      connect: { timeout, ...(ca !== undefined ? { ca } : {}) }
    }
  }

  /**
   * Chunk reads, the bulk of the requests, go in place; a byte worker that only reads chunks
   * never loads undici (about 0.14 CPU-s and 30 MB of RSS per thread).
   */
  private async undici (): Promise<Agent> {
    this.agent ??= import('undici').then(({ Agent }) => new Agent(this.agentOptions))
    return await this.agent
  }

  /** Takes back bytes `getChunk` returned, for a later GET to read into; the caller must not touch them afterwards. */
  protected override async closeStore (): Promise<void> {
    await this.inPlace.close()
    await (await this.agent)?.close()
  }

  protected async hasObject (path: string, options: AbortOptions): Promise<boolean> {
    return await this.withRetries(`HEAD ${path}`, options, async signal => {
      const res = await this.send('HEAD', path, {}, signal)
      await res.body.dump()
      if (res.statusCode === 200) return true
      if (res.statusCode === 404) return false
      throw this.statusError(res.statusCode, `HEAD ${path}`)
    })
  }

  /** Read-only: every write is refused, after the layout's argument checks and an abort. */
  protected async putObject (_path: string, _bytes: Uint8Array, { what }: ObjectPut, options: AbortOptions): Promise<void> {
    options.signal?.throwIfAborted()
    throw new OriginReadOnlyError(`${this.url} is a read-only HTTP origin: cannot write ${what}; publish to the directory it serves (--origin file:///dir) or to a writable origin`)
  }

  /** One request through undici, following redirects (see `follow`). */
  private async send (method: 'GET' | 'HEAD', path: string, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Dispatcher.ResponseData> {
    const { status, response } = await this.follow(method, path, headers, async (url, withCredentials) => {
      const agent = await this.undici()
      const res = await agent.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method, headers: withCredentials, signal })
      return { status: res.statusCode, location: header(res.headers, 'location'), discard: async () => { await res.body.dump() }, response: res }
    })
    return status === response.statusCode ? response : { ...response, statusCode: status }
  }

  /**
   * One request, following redirects; `once` sends it to one URL with the headers for that server
   * (credentials go to the configured server only, never to wherever it redirects). A redirect to
   * the same path plus `/` is a web server pointing at a directory: its answer comes back as a
   * 404, since no object lives there.
   */
  private async follow<T> (method: 'GET' | 'HEAD', path: string, headers: Record<string, string>, once: (url: URL, headers: Record<string, string>) => Promise<Answered<T>>): Promise<{ status: number, response: T }> {
    let target = new URL(`${this.basePath}${path.split('/').map(encodeURIComponent).join('/')}`, this.server)
    for (let hop = 0; ; hop++) {
      const sameServer = target.origin === this.server
      const answer = await once(target, { ...headers, ...(sameServer && this.authorization !== undefined ? { authorization: this.authorization } : {}) })
      if (!REDIRECT_STATUSES.has(answer.status) || answer.location === undefined) return { status: answer.status, response: answer.response }
      await answer.discard()
      const next = new URL(answer.location, target)
      if (next.origin === target.origin && next.pathname === `${target.pathname}/`) return { status: 404, response: answer.response }
      if (hop >= MAX_REDIRECTS) throw new HttpOriginRequestError(answer.status, `${method} ${path} at ${this.url}: more than ${MAX_REDIRECTS} redirects`)
      if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new HttpOriginRequestError(answer.status, `${method} ${path} at ${this.url}: redirected to a ${next.protocol} URL`)
      target = next
    }
  }

  /** An object's answer that ends the read: 404, and on a resumption 412 (the object changed since the read broke). */
  private objectRefusal (status: number, resuming: boolean, path: string, what: string): Error | undefined {
    if (status === 404) return new NotFoundError(`${what} not found at ${this.url}`)
    if (status === 412 && resuming) {
      this.log.debug({ path }, 'object changed between a broken read and its resumption; reading it again from the start')
      return new TransientHttpError(412, `${path} changed while being read`)
    }
    return undefined
  }

  private statusError (status: number, what: string): Error {
    if (status === 401 || status === 403) {
      return new HttpOriginAuthError(status, `${this.url} refused ${what} (HTTP ${status}); check the credentials in the origin URL and the server's access rules`)
    }
    if ((status >= 500 && status !== 501) || status === 429 || status === 408) return new TransientHttpError(status, `HTTP ${status}`)
    return new HttpOriginRequestError(status, `${this.url} refused ${what} (HTTP ${status})`)
  }

  /** Runs `attempt` under the retry policy (`retrying`); a transient failure that outlasts it is OriginUnavailableError. */
  private async withRetries<T> (what: string, { signal }: AbortOptions, attempt: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    try {
      return await retrying(attempt, {
        retries: this.retries,
        baseDelayMs: RETRY_BASE_DELAY_MS,
        maxDelayMs: RETRY_MAX_DELAY_MS,
        transient: isTransient,
        onRetry: ({ attempt: tries, delayMs, error }) => { this.log.debug({ request: what, attempt: tries, delayMs: Math.round(delayMs), error: (error as Error).message }, 'HTTP request failed; retrying') }
      }, { signal })
    } catch (err) {
      if (!(err instanceof RetriesExhaustedError)) throw err
      const last = err.last
      const reached = last instanceof TransientHttpError ? 'keeps failing' : 'cannot be reached'
      throw new OriginUnavailableError(`HTTP origin ${this.url} ${reached}: ${what} failed ${err.attempts} times; last: ${networkErrorCode(last) ?? (last as Error).message}`, { cause: last })
    }
  }

  /**
   * GETs one object whole, its body read in place into the buffer it is returned in. A body that
   * breaks off is resumed from where it stopped with a ranged GET bound to the first answer's
   * ETag (If-Match), so a file replaced in between is read again from the start instead of being
   * stitched from two versions. A server that frames bodies otherwise (chunked) is read through
   * undici from then on. Bytes read in place are reported as they land (`options.onData`), in the
   * buffer the object is returned in: a resumed read goes on filling it, a read started over
   * fills another.
   */
  protected async getObject (path: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array> {
    const inPlace = this.inPlace
    if (this.inPlaceRetired) return await this.getObjectThroughUndici(path, what, options, pool)
    let target: Target | undefined
    try {
      return await this.withRetries(`GET ${path}`, options, async signal => {
        const resume = resumable(target)
        // where in the object the buffer named for this answer's body starts
        let landsAt: number | undefined
        const into: BodyTarget = (status, headers, length) => {
          if (status === 206 && resume !== undefined) {
            // another range than asked for is not worth reading
            if (!continues(resume, headers.get('content-range'))) return false
            landsAt = resume.received
            return resume.bytes.subarray(resume.received)
          }
          if (status !== 200) return undefined
          target = { bytes: pool !== undefined ? pool.take(length) : new Uint8Array(length), received: 0, etag: strongEtag(headers.get('etag')) }
          landsAt = 0
          return target.bytes
        }
        const onData = options.onData
        const onBody = onData === undefined
          ? undefined
          : (_body: Uint8Array, received: number): void => { if (target !== undefined && landsAt !== undefined) onData(target.bytes, landsAt + received) }
        let res: InPlaceResponse
        try {
          res = await this.getInPlace(inPlace, path, resumeHeaders(resume), signal, into, onBody)
        } catch (err) {
          if (!(err instanceof BodyLengthError)) throw err
          // what landed stays for the next attempt to resume after; a body that ran past its length starts over
          if (target !== undefined && landsAt !== undefined && err.received <= err.expected) target.received = landsAt + err.received
          else target = undefined
          throw new TransientHttpError(undefined, `${path}: ${err.message}`)
        }
        const refusal = this.objectRefusal(res.status, resume !== undefined, path, what)
        if (refusal !== undefined) {
          target = undefined
          throw refusal
        }
        if (landsAt === undefined || target === undefined) throw this.statusError(res.status, `GET ${path}`)
        if (landsAt > 0) this.log.trace({ path, from: landsAt }, 'resumed a broken read')
        const bytes = (target as Target).bytes
        target = undefined
        return bytes
      })
    } catch (err) {
      if (!(err instanceof UnsupportedFramingError)) throw err
      // GETs already under way finish where they are
      if (!this.inPlaceRetired) this.log.info({ server: this.server, framing: err.framing }, 'object bodies are not framed by Content-Length here; reading them through the general HTTP client')
      this.inPlaceRetired = true
      return await this.getObjectThroughUndici(path, what, options, pool)
    }
  }

  /** A GET read in place, following redirects as `send` does; the body of a redirect is never given to `into`. */
  private async getInPlace (inPlace: InPlaceGets, path: string, headers: Record<string, string>, signal: AbortSignal | undefined, into: BodyTarget, onBody?: (body: Uint8Array, received: number) => void): Promise<InPlaceResponse> {
    const { status, response } = await this.follow('GET', path, headers, async (url, withCredentials) => {
      const endpoint = { protocol: url.protocol, hostname: url.hostname, port: url.port === '' ? undefined : Number(url.port), host: url.host }
      const res = await inPlace.get(endpoint, `${url.pathname}${url.search}`, {
        headers: withCredentials,
        signal,
        ...(onBody !== undefined ? { onBody } : {}),
        into: (answer, responseHeaders, length) => REDIRECT_STATUSES.has(answer) && responseHeaders.has('location') ? undefined : into(answer, responseHeaders, length)
      })
      return { status: res.status, location: res.headers.get('location'), discard: async () => {}, response: res }
    })
    return status === response.status ? response : { ...response, status }
  }

  /** `getObject` through undici, for a server whose bodies are not framed by Content-Length. */
  private async getObjectThroughUndici (path: string, what: string, options: AbortOptions, pool?: BufferPool): Promise<Uint8Array> {
    let target: Target | undefined
    return await this.withRetries(`GET ${path}`, options, async signal => {
      const resume = resumable(target)
      const res = await this.send('GET', path, resumeHeaders(resume), signal)
      const refusal = this.objectRefusal(res.statusCode, resume !== undefined, path, what)
      if (refusal !== undefined) {
        await res.body.dump()
        target = undefined
        throw refusal
      }
      if (res.statusCode === 206 && resume !== undefined && continues(resume, header(res.headers, 'content-range'))) {
        this.log.trace({ path, from: resume.received }, 'resuming a broken read')
      } else if (res.statusCode === 200) {
        const length = Number(header(res.headers, 'content-length'))
        if (!Number.isSafeInteger(length) || length < 0) {
          // no announced length (chunked encoding): nothing to resume against
          target = undefined
          const bytes = new Uint8Array(await res.body.arrayBuffer())
          return bytes
        }
        target = { bytes: pool !== undefined ? pool.take(length) : new Uint8Array(length), received: 0, etag: strongEtag(header(res.headers, 'etag')) }
      } else {
        await res.body.dump()
        throw this.statusError(res.statusCode, `GET ${path}`)
      }
      const into = target as Target
      for await (const piece of res.body as AsyncIterable<Buffer>) {
        if (into.received + piece.byteLength > into.bytes.byteLength) {
          target = undefined
          throw new TransientHttpError(undefined, `${path}: the body ran past its Content-Length`)
        }
        into.bytes.set(piece, into.received)
        into.received += piece.byteLength
      }
      if (into.received !== into.bytes.byteLength) throw new TransientHttpError(undefined, `${path}: the body ended after ${into.received} of ${into.bytes.byteLength} bytes`)
      target = undefined
      return into.bytes
    })
  }

  /** A JSON directory listing of `dir` (ending in `/`); a missing directory lists as empty. */
  private async list (dir: string, options: AbortOptions): Promise<Listing> {
    return await this.withRetries(`LIST ${dir}`, options, async signal => {
      const res = await this.send('GET', dir, { accept: 'application/json' }, signal)
      if (res.statusCode === 404) {
        await res.body.dump()
        return []
      }
      if (res.statusCode === 401 || res.statusCode >= 500 || res.statusCode === 429 || res.statusCode === 408) {
        await res.body.dump()
        throw this.statusError(res.statusCode, `a listing of ${dir}`)
      }
      const type = header(res.headers, 'content-type') ?? ''
      if (res.statusCode !== 200 || !type.includes('json')) {
        await res.body.dump()
        throw new HttpListingUnsupportedError(`${this.url} gives no JSON listing of ${dir} (HTTP ${res.statusCode}, ${type === '' ? 'no content type' : type}): listing names needs JSON directory listings, e.g. nginx "autoindex on; autoindex_format json;"; pulls by name or CID work without`)
      }
      const length = Number(header(res.headers, 'content-length') ?? 0)
      if (length > MAX_LISTING_BYTES) {
        await res.body.dump()
        throw new HttpOriginRequestError(200, `the listing of ${dir} at ${this.url} is ${length} bytes; the limit is ${MAX_LISTING_BYTES}`)
      }
      const parsed = (await listingSchemaOf()).safeParse(await res.body.json().catch(() => undefined))
      if (!parsed.success) throw new HttpListingUnsupportedError(`${this.url} answered the listing of ${dir} with JSON that is not a directory listing (expected [{ "name", "type": "file" | "directory" }])`)
      return parsed.data.map(entry => ({ name: entry.name.replace(/\/$/, ''), directory: entry.type === 'directory' || entry.is_dir === true || entry.name.endsWith('/') }))
    })
  }

  /**
   * The files in directory `dir` (a JSON listing), as one page. Nested: the directories in it are
   * walked too, in name order, each before the page of `dir`'s own files, leaving out names that
   * start with `.` (a writer's temporary files).
   */
  protected async * listNames (dir: string, nested: boolean, options: AbortOptions): AsyncIterable<string[]> {
    let entries = await this.list(dir, options)
    if (nested) entries = entries.filter(e => !e.name.startsWith('.')).sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    const names: string[] = []
    for (const entry of entries) {
      if (!entry.directory) names.push(`${dir}${entry.name}`)
      else if (nested) yield * this.listNames(`${dir}${entry.name}/`, true, options)
    }
    yield names
  }
}

/**
 * NODE_EXTRA_CA_CERTS joins Node's default store only, and a `ca` option replaces that store, so
 * the file is added back here. Unreadable, it is left out: Node has already warned about it at start.
 */
function extraCaFromEnv (): string[] {
  const file = process.env.NODE_EXTRA_CA_CERTS
  if (file === undefined || file === '') return []
  try {
    return [readFileSync(file, 'utf8')]
  } catch {
    return []
  }
}
