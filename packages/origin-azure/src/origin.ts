import { AnonymousCredential, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob'
import { NotFoundError, OriginUnavailableError, integerSetting } from '@swarm/interface'
import { ObjectStoreOrigin } from '@swarm/origin-layout'
import {
  DEFAULT_LIST_PAGE_SIZE,
  DEFAULT_RETRIES,
  RETRY_BASE_DELAY_MS,
  RETRY_MAX_DELAY_MS
} from './constants.js'
import { AzureContainerNotFoundError, AzureCredentialsError, AzureRequestError } from './errors.js'
import { parseAzureUrl } from './url.js'
import type { AzureOriginInit } from './index.js'
import type { TokenCredential } from '@azure/core-auth'
import type { AbortOptions, BufferPool } from '@swarm/interface'
import type { ObjectPut } from '@swarm/origin-layout'

type Credential = StorageSharedKeyCredential | AnonymousCredential | TokenCredential

/** What a failed SDK call said. */
interface Failure {
  status?: number
  azureCode?: string
  name?: string
  message: string
}

const CREDENTIAL_ERROR_NAMES = new Set(['CredentialUnavailableError', 'AuthenticationError', 'AggregateAuthenticationError', 'AuthenticationRequiredError'])

function describe (err: unknown): Failure {
  const e = err as { statusCode?: unknown, code?: unknown, name?: unknown, message?: unknown, details?: { errorCode?: unknown } } | undefined
  const failure: Failure = { message: typeof e?.message === 'string' ? e.message.split('\n')[0] ?? '' : String(err) }
  if (typeof e?.statusCode === 'number') failure.status = e.statusCode
  const code = typeof e?.details?.errorCode === 'string' ? e.details.errorCode : e?.code
  if (typeof code === 'string') failure.azureCode = code
  if (typeof e?.name === 'string') failure.name = e.name
  return failure
}



export class AzureOrigin extends ObjectStoreOrigin {
  private readonly container: string
  private readonly serviceUrl: string
  private readonly retries: number
  private readonly listPageSize: number
  private readonly credentialKind: string
  private readonly client: Promise<ContainerClient>

  constructor (init: AzureOriginInit) {
    const location = parseAzureUrl(init.url)
    super({ url: location.display, prefix: location.prefix, logger: init.logger, pooledChunks: true })
    this.container = location.container
    this.serviceUrl = (init.endpoint ?? location.serviceUrl).replace(/\/+$/, '')
    if (!/^https?:\/\/[^/?#]+(\/[^?#]*)?$/.test(this.serviceUrl)) throw new TypeError('invalid Azure endpoint: expected an http(s) URL without a query, e.g. http://127.0.0.1:10000/devstoreaccount1')
    this.retries = integerSetting(init.retries, DEFAULT_RETRIES, 'retries', 0)
    this.listPageSize = integerSetting(init.listPageSize, DEFAULT_LIST_PAGE_SIZE, 'listPageSize')

    const env = init.env ?? process.env
    const given = init.credential
    let sas: string | undefined
    let credential: Credential | undefined
    const envKey = env.AZURE_STORAGE_KEY !== undefined && env.AZURE_STORAGE_KEY !== '' && (env.AZURE_STORAGE_ACCOUNT ?? location.account) === location.account ? env.AZURE_STORAGE_KEY : undefined
    if (given !== undefined && 'accountKey' in given) {
      credential = new StorageSharedKeyCredential(location.account, given.accountKey)
      this.credentialKind = 'the shared key given'
    } else if (given !== undefined && 'sasToken' in given) {
      sas = given.sasToken
      this.credentialKind = 'the SAS given'
    } else if (given !== undefined) {
      credential = given.tokenCredential
      this.credentialKind = 'the token credential given'
    } else if (location.sasToken !== undefined) {
      sas = location.sasToken
      this.credentialKind = 'the SAS in the URL'
    } else if (envKey !== undefined) {
      credential = new StorageSharedKeyCredential(location.account, envKey)
      this.credentialKind = 'AZURE_STORAGE_KEY'
    } else if (env.AZURE_STORAGE_SAS_TOKEN !== undefined && env.AZURE_STORAGE_SAS_TOKEN !== '') {
      sas = env.AZURE_STORAGE_SAS_TOKEN
      this.credentialKind = 'AZURE_STORAGE_SAS_TOKEN'
    } else {
      this.credentialKind = 'DefaultAzureCredential'
    }
    const containerUrl = `${this.serviceUrl}/${this.container}${sas !== undefined ? `?${sas.replace(/^\?/, '')}` : ''}`
    const options = { retryOptions: { maxTries: this.retries + 1, retryDelayInMs: RETRY_BASE_DELAY_MS, maxRetryDelayInMs: RETRY_MAX_DELAY_MS } }
    this.client = credential !== undefined || sas !== undefined
      ? Promise.resolve(new ContainerClient(containerUrl, credential ?? new AnonymousCredential(), options))
      // the identity library is large: loaded only for the chain
      : import('@azure/identity').then(({ DefaultAzureCredential }) => new ContainerClient(containerUrl, new DefaultAzureCredential(), options))
    // an import that fails surfaces on the first call, not as an unhandled rejection
    this.client.catch(() => {})
  }

  /** Takes back bytes `getChunk` returned, for a later GET to read into; the caller must not touch them afterwards. */
  /** Runs one SDK call (its own retries included) and turns what failed into the error callers handle. */
  private async call<T> (what: string, { signal }: AbortOptions, fn: (client: ContainerClient, signal: AbortSignal | undefined) => Promise<T>, notFound?: string): Promise<T> {
    signal?.throwIfAborted()
    try {
      return await fn(await this.client, signal)
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      throw this.toOriginError(err, what, notFound)
    }
  }

  private toOriginError (err: unknown, what: string, notFound: string | undefined): unknown {
    const failure = describe(err)
    const last = `${failure.status !== undefined ? `HTTP ${failure.status} ` : ''}${failure.azureCode ?? ''}${failure.message !== '' ? `: ${failure.message}` : ''}`.trim()
    if (failure.name !== undefined && CREDENTIAL_ERROR_NAMES.has(failure.name)) {
      return new AzureCredentialsError(`no Azure credentials for ${this.url} (${this.credentialKind}): ${failure.message}`, { cause: err })
    }
    if (failure.status === undefined) {
      if (err instanceof TypeError || err instanceof NotFoundError) return err
      return new OriginUnavailableError(`Azure endpoint ${this.serviceUrl} cannot be reached (${this.url}): ${what} failed after ${this.retries + 1} attempts; last: ${last}`, { cause: err })
    }
    if (failure.azureCode === 'ContainerNotFound') {
      return new AzureContainerNotFoundError(this.container, `container ${this.container} does not exist at ${this.serviceUrl} (${this.url})`, { cause: err })
    }
    if (failure.status === 404) return new NotFoundError(`${notFound ?? what} not found at ${this.url}`)
    if (failure.status === 401 || failure.status === 403) {
      return new AzureCredentialsError(`${this.serviceUrl} refused ${what} (${this.url}) with ${this.credentialKind}: ${last}; check the key, SAS or role assignment (Storage Blob Data Reader/Contributor) on the container`, { cause: err })
    }
    if (failure.status >= 500) {
      return new OriginUnavailableError(`Azure endpoint ${this.serviceUrl} keeps failing (${this.url}): ${what} failed after ${this.retries + 1} attempts; last: ${last}`, { cause: err })
    }
    return new AzureRequestError(failure.status, failure.azureCode, `${this.serviceUrl} refused ${what} (${this.url}): ${last}`, { cause: err })
  }

  protected async getObject (name: string, what: string, options: AbortOptions, pool?: BufferPool): Promise<Uint8Array> {
    return await this.call(`GET ${name}`, options, async (client, abortSignal) => {
      const response = await client.getBlobClient(name).download(0, undefined, { abortSignal, maxRetryRequests: this.retries })
      const body = response.readableStreamBody
      const length = response.contentLength
      if (body === undefined) throw new AzureRequestError(undefined, undefined, `${what} at ${this.url}: the response has no body`)
      if (length === undefined) {
        const parts: Buffer[] = []
        for await (const piece of body as AsyncIterable<Buffer>) parts.push(piece)
        return new Uint8Array(Buffer.concat(parts))
      }
      const bytes = pool !== undefined ? pool.take(length) : new Uint8Array(length)
      let received = 0
      for await (const piece of body as AsyncIterable<Buffer>) {
        if (received + piece.byteLength > length) throw new AzureRequestError(200, undefined, `${what} at ${this.url}: the body ran past its Content-Length ${length}`)
        bytes.set(piece, received)
        received += piece.byteLength
      }
      if (received !== length) throw new AzureRequestError(200, undefined, `${what} at ${this.url}: the body ended after ${received} of ${length} bytes`)
      return bytes
    }, what)
  }

  protected async hasObject (name: string, options: AbortOptions): Promise<boolean> {
    return await this.call(`HEAD ${name}`, options, async (client, abortSignal) => await client.getBlobClient(name).exists({ abortSignal }))
  }

  /**
   * One Put Blob. A content-addressed blob (chunks, manifests) is written only where none exists
   * (If-None-Match: *), and the conflict a second writer meets means the bytes are there already.
   */
  protected async putObject (name: string, bytes: Uint8Array, { contentType, contentAddressed: once }: ObjectPut, options: AbortOptions): Promise<void> {
    await this.call(`PUT ${name}`, options, async (client, abortSignal) => {
      try {
        await client.getBlockBlobClient(name).upload(bytes, bytes.byteLength, {
          abortSignal,
          blobHTTPHeaders: { blobContentType: contentType },
          ...(once ? { conditions: { ifNoneMatch: '*' } } : {})
        })
      } catch (err) {
        const { status, azureCode } = describe(err)
        if (once && status === 409 && azureCode === 'BlobAlreadyExists') {
          this.log.trace({ blob: name }, 'already present')
          return
        }
        throw err
      }
    })
  }

  /** List Blobs, a page at a time. Blob names are flat: `nested` changes nothing. */
  protected async * listNames (prefix: string, _nested: boolean, options: AbortOptions): AsyncIterable<string[]> {
    options.signal?.throwIfAborted()
    const client = await this.call(`LIST ${prefix}`, options, async client => client)
    const pages = client.listBlobsFlat({ prefix, abortSignal: options.signal }).byPage({ maxPageSize: this.listPageSize })
    for (;;) {
      const page = await this.call(`LIST ${prefix}`, options, async () => await pages.next())
      if (page.done === true) return
      yield page.value.segment.blobItems.map(item => item.name)
    }
  }
}
