import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client
} from '@aws-sdk/client-s3'
import { getSignedUrl, S3RequestPresigner } from '@aws-sdk/s3-request-presigner'
import { NotFoundError, integerSetting } from '@swarm/interface'
import { ObjectStoreOrigin } from '@swarm/origin-layout'
import {
  DEFAULT_ENDPOINT_REGION,
  DEFAULT_LIST_PAGE_SIZE,
  DEFAULT_MAX_SOCKETS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
  PRESIGNED_URL_EXPIRES_S,
  READER_SPEC_REFRESH_MARGIN_MS
} from './constants.js'
import { TruncatedBodyError } from './errors.js'
import { S3ObjectReads, encodeKey, presignedGet } from './object-reads.js'
import { parseEndpoint, parseS3Url } from './url.js'
import type { S3OriginInit } from './index.js'
import type { ObjectUrlBase, SignedGet } from './object-reads.js'
import type { S3ChunkReaderInit } from './reader.js'
import type { AbortOptions, BufferPool, ChunkFetchOptions, ChunkReaderSpec, Logger } from '@swarm/interface'
import type { ObjectPut } from '@swarm/origin-layout'

/** The HTTP handler warns through this (e.g. sockets exhausted), so nothing reaches the console. */
function handlerLogger (log: Logger): { trace: (...c: unknown[]) => void, debug: (...c: unknown[]) => void, info: (...c: unknown[]) => void, warn: (...c: unknown[]) => void, error: (...c: unknown[]) => void } {
  const text = (content: unknown[]): string => content.map(c => typeof c === 'string' ? c : String(c)).join(' ')
  return {
    trace: (...c) => { log.trace(text(c)) },
    debug: (...c) => { log.trace(text(c)) },
    info: (...c) => { log.debug(text(c)) },
    warn: (...c) => { log.warn(text(c)) },
    error: (...c) => { log.error(text(c)) }
  }
}

export class S3Origin extends ObjectStoreOrigin {
  private readonly bucket: string
  private readonly endpointName: string
  private readonly client: S3Client
  private readonly presigner: S3RequestPresigner
  /** how object GETs go: presigned URLs (`reads`) or the SDK's GetObject */
  private readonly objectGets: 'presigned' | 'sdk'
  /** object GETs and the retry policy for every request */
  private readonly reads: S3ObjectReads
  private readonly readerSettings: Pick<S3ChunkReaderInit, 'retries' | 'maxSockets' | 'requestTimeoutMs'>
  private readonly retries: number
  private readonly listPageSize: number
  private objectUrlBase: Promise<ObjectUrlBase> | undefined

  constructor (init: S3OriginInit) {
    const location = parseS3Url(init.url)
    super({ url: location.display, prefix: location.prefix, logger: init.logger, pooledChunks: true })
    const endpoint = init.endpoint != null && init.endpoint !== '' ? parseEndpoint(init.endpoint) : undefined
    this.bucket = location.bucket
    this.endpointName = endpoint?.endpoint ?? `AWS S3${init.region !== undefined ? ` (${init.region})` : ''}`
    this.retries = integerSetting(init.retries, DEFAULT_RETRIES, 'retries', 0)
    this.listPageSize = integerSetting(init.listPageSize, DEFAULT_LIST_PAGE_SIZE, 'listPageSize')
    const maxSockets = integerSetting(init.maxSockets, DEFAULT_MAX_SOCKETS, 'maxSockets')
    const requestTimeoutMs = integerSetting(init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
    const objectGets = init.objectGets ?? 'presigned'
    if (objectGets !== 'presigned' && objectGets !== 'sdk') throw new TypeError(`objectGets must be "presigned" or "sdk", got ${JSON.stringify(objectGets)}`)

    const credentials = init.credentials ?? location.credentials ?? endpoint?.credentials
    const region = init.region ?? (endpoint !== undefined ? DEFAULT_ENDPOINT_REGION : undefined)
    this.client = new S3Client({
      ...(endpoint !== undefined ? { endpoint: endpoint.endpoint } : {}),
      ...(region !== undefined ? { region } : {}),
      // left out: the standard chain (env, profile, SSO, container, instance metadata)
      ...(credentials !== undefined ? { credentials } : {}),
      forcePathStyle: init.forcePathStyle ?? endpoint !== undefined,
      followRegionRedirects: true,
      // retries are ours (retry.ts), one policy for every request
      maxAttempts: 1,
      // plain bodies with Content-Length; streamed aws-chunked uploads are refused by some servers (Ceph RGW)
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
        connectionTimeout: requestTimeoutMs,
        // idle time, not total time: a large PUT on a slow link may take longer than this
        socketTimeout: requestTimeoutMs,
        logger: handlerLogger(this.log)
      }
    })
    this.presigner = new S3RequestPresigner({ ...this.client.config })
    this.objectGets = objectGets
    this.readerSettings = { retries: this.retries, maxSockets, requestTimeoutMs }
    this.reads = new S3ObjectReads({
      url: this.url,
      bucket: this.bucket,
      endpointName: this.endpointName,
      retries: this.retries,
      maxSockets,
      requestTimeoutMs,
      presigned: objectGets === 'presigned',
      sign: async key => await this.sign(key),
      logger: this.log
    })
  }

  /** Takes back bytes `getChunk` returned, for a later GET to read into; the caller must not touch them afterwards. */
  protected override async closeStore (): Promise<void> {
    this.client.destroy()
    await this.reads.close()
  }

  /**
   * What a byte worker's light reader (reader.ts) needs: the object URLs' base as the SDK's
   * endpoint rules place it, the region, and the credentials the SDK resolved (the standard chain
   * included), with their expiry; the worker asks again before they expire.
   */
  async chunkReaderSpec (options: AbortOptions = {}): Promise<ChunkReaderSpec | undefined> {
    // GETs through the SDK need the SDK
    if (this.objectGets !== 'presigned') return undefined
    const probe = this.chunkName('')
    const [base, region, credentials] = await this.reads.request(`SIGN ${probe}`, options, async () => await Promise.all([
      this.urlBase(probe),
      this.client.config.region(),
      this.client.config.credentials()
    ]))
    const init: S3ChunkReaderInit = {
      url: this.url,
      bucket: this.bucket,
      endpointName: this.endpointName,
      chunkKeyPrefix: probe,
      base,
      region,
      credentials: {
        accessKeyId: credentials.accessKeyId,
        secretAccessKey: credentials.secretAccessKey,
        ...(credentials.sessionToken !== undefined ? { sessionToken: credentials.sessionToken } : {})
      },
      ...this.readerSettings
    }
    const expiresAt = credentials.expiration?.getTime()
    return { adapter: 's3', init, ...(expiresAt !== undefined ? { expiresAt: expiresAt - READER_SPEC_REFRESH_MARGIN_MS } : {}) }
  }

  private async sign (key: string): Promise<SignedGet> {
    const base = await this.urlBase(key)
    return { base, path: await presignedGet(this.presigner, base, key) }
  }

  protected async getObject (key: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array> {
    if (this.objectGets === 'presigned') return await this.reads.get(key, what, options, pool)
    return await this.reads.request(`GET ${key}`, options, async signal => await this.getWithSdk(key, signal), what)
  }

  private async getWithSdk (key: string, signal: AbortSignal | undefined): Promise<Uint8Array> {
    const response = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })
    if (response.Body === undefined) throw new TruncatedBodyError(response.ContentLength ?? 0, 0)
    const bytes = await response.Body.transformToByteArray()
    if (response.ContentLength !== undefined && bytes.byteLength !== response.ContentLength) {
      throw new TruncatedBodyError(response.ContentLength, bytes.byteLength)
    }
    return bytes
  }

  /** Learns the SDK's URL for one key once and reuses its shape: presigning through the SDK costs ~1 ms a request, the presigner ~0.1 ms. */
  private async urlBase (key: string): Promise<ObjectUrlBase> {
    this.objectUrlBase ??= (async () => {
      const url = new URL(await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: PRESIGNED_URL_EXPIRES_S }))
      const suffix = encodeKey(key)
      if (!url.pathname.endsWith(suffix)) throw new Error(`cannot place keys in the SDK's object URL ${url.origin}${url.pathname}`)
      return {
        protocol: url.protocol,
        hostname: url.hostname,
        port: url.port === '' ? undefined : Number(url.port),
        host: url.host,
        pathPrefix: url.pathname.slice(0, url.pathname.length - suffix.length)
      }
    })()
    try {
      return await this.objectUrlBase
    } catch (err) {
      // not cached: the next call tries again (the failure may be credentials that appear later)
      this.objectUrlBase = undefined
      throw err
    }
  }

  protected async hasObject (key: string, options: AbortOptions): Promise<boolean> {
    try {
      await this.reads.request(`HEAD ${key}`, options, async signal => {
        await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal })
      })
      return true
    } catch (err) {
      if (err instanceof NotFoundError) return false
      throw err
    }
  }

  protected async putObject (key: string, bytes: Uint8Array, { contentType }: ObjectPut, options: AbortOptions): Promise<void> {
    await this.reads.request(`PUT ${key}`, options, async signal => {
      await this.client.send(new PutObjectCommand({
        Bucket: this.bucket,
        Key: key,
        Body: bytes,
        ContentLength: bytes.byteLength,
        ContentType: contentType
      }), { abortSignal: signal })
    })
  }

  /** ListObjectsV2, a page at a time; each page under the retry policy. Keys are flat: `nested` changes nothing. */
  protected async * listNames (keyPrefix: string, _nested: boolean, options: AbortOptions): AsyncIterable<string[]> {
    let continuationToken: string | undefined
    do {
      const page = await this.reads.request(`LIST ${keyPrefix}`, options, async signal => {
        return await this.client.send(new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: keyPrefix,
          MaxKeys: this.listPageSize,
          ...(continuationToken !== undefined ? { ContinuationToken: continuationToken } : {})
        }), { abortSignal: signal })
      })
      yield (page.Contents ?? []).flatMap(object => object.Key !== undefined ? [object.Key] : [])
      continuationToken = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (continuationToken !== undefined)
  }
}

