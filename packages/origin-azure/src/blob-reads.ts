/**
 * Blob GETs without the SDK, read in place (`@swarm/http-in-place`: the socket, or TLS record by
 * record, copies a body straight into the buffer it is kept in), under one retry policy: what the
 * Azure origin reads chunks, manifests and refs with, and what the light chunk reader of byte
 * workers (reader.ts) runs. Each brings its own `authorize`: a SAS for the query, or headers (a
 * bearer token), as the origin's credentials give them.
 *
 * The SDK's download handed a body over as a stream of pieces copied into the chunk's buffer and
 * left to the collector; in `bench/origin-pull --origin azure` that was most of a pull's CPU above
 * the necessary work's, and its peak RSS past 300 MB.
 */
import { NotFoundError, OriginUnavailableError, RetriesExhaustedError, isTransientNetworkError, retrying } from '@swarm/interface'
import { DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_ERROR_BODY_BYTES, ObjectGets } from '@swarm/http-in-place'
import { AZURE_API_VERSION, RETRY_BASE_DELAY_MS, RETRY_MAX_DELAY_MS } from './constants.js'
import { AzureContainerNotFoundError, AzureCredentialsError, AzureRequestError } from './errors.js'
import type { Endpoint } from '@swarm/http-in-place'
import type { AbortOptions, BufferPool, ChunkFetchOptions, Logger, OnChunkData } from '@swarm/interface'

/** How a request is authorized: a SAS (the query without `?`), or headers such as `authorization: Bearer …`. */
export interface BlobAuth {
  query?: string
  headers?: Record<string, string>
}

export interface AzureBlobReadsInit {
  /** the origin's URL, without credentials, for errors */
  url: string
  /** the account's blob service URL (`https://account.blob.core.windows.net`, Azurite's with its account path) */
  serviceUrl: string
  container: string
  /** which credentials, for errors (`the SAS in the URL`, `DefaultAzureCredential`, …) */
  credentialKind: string
  retries: number
  maxSockets: number
  requestTimeoutMs: number
  authorize(options: AbortOptions): Promise<BlobAuth>
  logger: Logger
}

/** 5xx but 501, 408 and 429 answers, and failures to reach or hear from the endpoint */
function isTransient (err: unknown): boolean {
  if (err instanceof AzureRequestError) return err.status !== undefined && ((err.status >= 500 && err.status !== 501) || err.status === 408 || err.status === 429)
  return isTransientNetworkError(err)
}

/** Blob names in a URL path: each segment escaped, slashes kept. */
function encodeName (name: string): string {
  return name.split('/').map(encodeURIComponent).join('/')
}

export class AzureBlobReads {
  private readonly init: AzureBlobReadsInit
  private readonly endpoint: Endpoint
  /** the path before a blob's name: the service URL's own path and the container */
  private readonly pathPrefix: string
  private readonly gets: ObjectGets

  constructor (init: AzureBlobReadsInit) {
    this.init = init
    const service = new URL(init.serviceUrl)
    this.endpoint = {
      protocol: service.protocol,
      hostname: service.hostname,
      port: service.port === '' ? undefined : Number(service.port),
      host: service.host
    }
    this.pathPrefix = `${service.pathname.replace(/\/+$/, '')}/${encodeURIComponent(init.container)}/`
    this.gets = new ObjectGets({
      maxConnections: init.maxSockets,
      keepAliveMs: DEFAULT_KEEP_ALIVE_MS,
      timeoutMs: init.requestTimeoutMs,
      maxErrorBodyBytes: DEFAULT_MAX_ERROR_BODY_BYTES,
      onRetire: framing => { init.logger.info({ endpoint: init.serviceUrl, framing }, 'blob bodies are not framed by Content-Length here; reading them through the general HTTP client') }
    })
  }

  async close (): Promise<void> {
    await this.gets.close()
  }

  /** The whole blob `name`; with a `pool`, into a buffer lent from it. A missing one is NotFoundError naming `what`. */
  async get (name: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array> {
    const { signal } = options
    try {
      return await retrying(async attemptSignal => await this.getOnce(name, attemptSignal, pool, options.onData), {
        retries: this.init.retries,
        baseDelayMs: RETRY_BASE_DELAY_MS,
        maxDelayMs: RETRY_MAX_DELAY_MS,
        transient: isTransient,
        onRetry: ({ attempt, delayMs, error }) => { this.init.logger.debug({ request: `GET ${name}`, attempt, delayMs: Math.round(delayMs), error: (error as Error).message }, 'Azure request failed; retrying') }
      }, { signal })
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      throw this.toOriginError(err, `GET ${name}`, what)
    }
  }

  private async getOnce (name: string, signal: AbortSignal | undefined, pool: BufferPool | undefined, onData: OnChunkData | undefined): Promise<Uint8Array> {
    const auth = await this.init.authorize({ signal })
    const query = auth.query !== undefined && auth.query !== '' ? `?${auth.query.replace(/^\?/, '')}` : ''
    const response = await this.gets.get(this.endpoint, `${this.pathPrefix}${encodeName(name)}${query}`, {
      signal,
      headers: { 'x-ms-version': AZURE_API_VERSION, ...auth.headers },
      into: (status, _headers, length) => status !== 200 ? undefined : pool !== undefined ? pool.take(length) : Buffer.allocUnsafe(length),
      ...(onData !== undefined ? { onBody: onData } : {})
    })
    if (response.status === 200) return response.body
    const text = Buffer.from(response.body.buffer, response.body.byteOffset, response.body.byteLength).toString('utf8')
    const azureCode = response.headers.get('x-ms-error-code') ?? /<Code>([^<]*)<\/Code>/.exec(text)?.[1]
    const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1]?.split('\n')[0]
    throw new AzureRequestError(response.status, azureCode, `HTTP ${response.status}${azureCode !== undefined ? ` ${azureCode}` : ''}${message !== undefined ? `: ${message}` : ''}`)
  }

  private toOriginError (err: unknown, request: string, what: string): unknown {
    const { url, serviceUrl, container, credentialKind } = this.init
    if (err instanceof RetriesExhaustedError) {
      const last = err.last
      const reached = last instanceof AzureRequestError ? 'keeps failing' : 'cannot be reached'
      return new OriginUnavailableError(`Azure endpoint ${serviceUrl} ${reached} (${url}): ${request} failed after ${err.attempts} attempts; last: ${(last as Error).message}`, { cause: last })
    }
    if (!(err instanceof AzureRequestError)) return err
    if (err.azureCode === 'ContainerNotFound') {
      return new AzureContainerNotFoundError(container, `container ${container} does not exist at ${serviceUrl} (${url})`, { cause: err })
    }
    if (err.status === 404) return new NotFoundError(`${what} not found at ${url}`)
    if (err.status === 401 || err.status === 403) {
      return new AzureCredentialsError(`${serviceUrl} refused ${request} (${url}) with ${credentialKind}: ${err.message}; check the key, SAS or role assignment (Storage Blob Data Reader/Contributor) on the container`, { cause: err })
    }
    return new AzureRequestError(err.status, err.azureCode, `${serviceUrl} refused ${request} (${url}): ${err.message}`, { cause: err })
  }
}
