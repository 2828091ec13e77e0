import { AnonymousCredential, ContainerClient, ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob'
import { NotFoundError, OriginUnavailableError, integerSetting } from '@swarm/interface'
import { ObjectStoreOrigin } from '@swarm/origin-layout'
import { AzureBlobReads } from './blob-reads.js'
import {
  CREDENTIAL_REFRESH_MARGIN_MS,
  DEFAULT_LIST_PAGE_SIZE,
  DEFAULT_MAX_SOCKETS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
  DERIVED_SAS_LIFETIME_MS,
  RETRY_BASE_DELAY_MS,
  RETRY_MAX_DELAY_MS,
  STORAGE_TOKEN_SCOPE
} from './constants.js'
import { AzureContainerNotFoundError, AzureCredentialsError, AzureRequestError } from './errors.js'
import { parseAzureUrl } from './url.js'
import type { AzureOriginInit } from './index.js'
import type { TokenCredential } from '@azure/core-auth'
import type { BlobAuth } from './blob-reads.js'
import type { AzureChunkReaderInit } from './reader.js'
import type { AbortOptions, BufferPool, ChunkFetchOptions, ChunkReaderSpec } from '@swarm/interface'
import type { ObjectPut } from '@swarm/origin-layout'

type Credential = StorageSharedKeyCredential | AnonymousCredential | TokenCredential

/** How blob GETs are authorized now, and until when (ms since the epoch; absent: for good). */
interface Authorization {
  auth: BlobAuth
  expiresAt?: number
}

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
  /** chunk, manifest and ref GETs, in place */
  private readonly reads: AzureBlobReads
  private readonly readSettings: Pick<AzureChunkReaderInit, 'retries' | 'maxSockets' | 'requestTimeoutMs'>
  private readonly sas: string | undefined
  private readonly sharedKey: StorageSharedKeyCredential | undefined
  private readonly tokenCredential: Promise<TokenCredential> | undefined
  private authorization: Promise<Authorization> | undefined

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
    let sharedKey: StorageSharedKeyCredential | undefined
    let tokenCredential: Promise<TokenCredential> | undefined
    const envKey = env.AZURE_STORAGE_KEY !== undefined && env.AZURE_STORAGE_KEY !== '' && (env.AZURE_STORAGE_ACCOUNT ?? location.account) === location.account ? env.AZURE_STORAGE_KEY : undefined
    if (given !== undefined && 'accountKey' in given) {
      sharedKey = new StorageSharedKeyCredential(location.account, given.accountKey)
      this.credentialKind = 'the shared key given'
    } else if (given !== undefined && 'sasToken' in given) {
      sas = given.sasToken
      this.credentialKind = 'the SAS given'
    } else if (given !== undefined) {
      tokenCredential = Promise.resolve(given.tokenCredential)
      this.credentialKind = 'the token credential given'
    } else if (location.sasToken !== undefined) {
      sas = location.sasToken
      this.credentialKind = 'the SAS in the URL'
    } else if (envKey !== undefined) {
      sharedKey = new StorageSharedKeyCredential(location.account, envKey)
      this.credentialKind = 'AZURE_STORAGE_KEY'
    } else if (env.AZURE_STORAGE_SAS_TOKEN !== undefined && env.AZURE_STORAGE_SAS_TOKEN !== '') {
      sas = env.AZURE_STORAGE_SAS_TOKEN
      this.credentialKind = 'AZURE_STORAGE_SAS_TOKEN'
    } else {
      // the identity library is large: loaded only for the chain
      tokenCredential = import('@azure/identity').then(({ DefaultAzureCredential }) => new DefaultAzureCredential())
      this.credentialKind = 'DefaultAzureCredential'
    }
    this.sas = sas?.replace(/^\?/, '')
    this.sharedKey = sharedKey
    this.tokenCredential = tokenCredential
    const containerUrl = `${this.serviceUrl}/${this.container}${this.sas !== undefined ? `?${this.sas}` : ''}`
    const options = { retryOptions: { maxTries: this.retries + 1, retryDelayInMs: RETRY_BASE_DELAY_MS, maxRetryDelayInMs: RETRY_MAX_DELAY_MS } }
    this.client = tokenCredential !== undefined
      ? tokenCredential.then(credential => new ContainerClient(containerUrl, credential, options))
      : Promise.resolve(new ContainerClient(containerUrl, sharedKey ?? new AnonymousCredential(), options))
    // an import that fails surfaces on the first call, not as an unhandled rejection
    this.client.catch(() => {})
    this.readSettings = {
      retries: this.retries,
      maxSockets: integerSetting(init.maxSockets, DEFAULT_MAX_SOCKETS, 'maxSockets'),
      requestTimeoutMs: integerSetting(init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
    }
    this.reads = new AzureBlobReads({
      url: this.url,
      serviceUrl: this.serviceUrl,
      container: this.container,
      credentialKind: this.credentialKind,
      ...this.readSettings,
      authorize: async options => (await this.authorize(options)).auth,
      logger: this.log
    })
  }

  protected override async closeStore (): Promise<void> {
    await this.reads.close()
  }

  /**
   * What a byte worker's light reader (reader.ts) needs: where blobs are, and how to authorize
   * its GETs (a SAS, the one given or one this origin makes from its shared key, or a bearer
   * token from its token credential), with their expiry; the worker asks again before it.
   */
  async chunkReaderSpec (options: AbortOptions = {}): Promise<ChunkReaderSpec> {
    const { auth, expiresAt } = await this.authorize(options)
    const init: AzureChunkReaderInit = {
      url: this.url,
      serviceUrl: this.serviceUrl,
      container: this.container,
      credentialKind: this.credentialKind,
      chunkNamePrefix: this.chunkName(''),
      auth,
      ...this.readSettings
    }
    return { adapter: 'azure', init, ...(expiresAt !== undefined ? { expiresAt: expiresAt - CREDENTIAL_REFRESH_MARGIN_MS } : {}) }
  }

  /** The authorization of blob GETs, made anew once it is within CREDENTIAL_REFRESH_MARGIN_MS of its end. */
  private async authorize (options: AbortOptions): Promise<Authorization> {
    const held = this.authorization
    if (held !== undefined) {
      const current = await held.catch(() => undefined)
      if (current !== undefined && (current.expiresAt === undefined || Date.now() < current.expiresAt - CREDENTIAL_REFRESH_MARGIN_MS)) return current
      if (this.authorization !== held) return await this.authorize(options)
    }
    const fresh = this.freshAuthorization(options)
    this.authorization = fresh
    // a failure is not kept: the next GET asks again
    fresh.catch(() => { if (this.authorization === fresh) this.authorization = undefined })
    return await fresh
  }

  private async freshAuthorization ({ signal }: AbortOptions): Promise<Authorization> {
    if (this.sas !== undefined) return { auth: { query: this.sas } }
    if (this.sharedKey !== undefined) {
      const expiresOn = new Date(Date.now() + DERIVED_SAS_LIFETIME_MS)
      const query = generateBlobSASQueryParameters({ containerName: this.container, permissions: ContainerSASPermissions.parse('r'), expiresOn }, this.sharedKey).toString()
      return { auth: { query }, expiresAt: expiresOn.getTime() }
    }
    try {
      const credential = await (this.tokenCredential as Promise<TokenCredential>)
      const token = await credential.getToken(STORAGE_TOKEN_SCOPE, { abortSignal: signal })
      if (token === null) throw new AzureCredentialsError(`no Azure token for ${this.url} (${this.credentialKind})`)
      return { auth: { headers: { authorization: `Bearer ${token.token}` } }, expiresAt: token.expiresOnTimestamp }
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      throw this.toOriginError(err, 'a token for blob reads', undefined)
    }
  }

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

  protected async getObject (name: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array> {
    return await this.reads.get(name, what, options, pool)
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
