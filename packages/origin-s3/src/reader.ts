/**
 * The S3 origin's light chunk reader (`@swarm/origin-s3/reader`), for byte workers: chunk GETs
 * through URLs it presigns itself, read in place, under the origin's retry policy and errors.
 *
 * A worker thread that opened the whole origin loaded the SDK's client (its commands, endpoint
 * rules, HTTP handler) to presign GETs and nothing else: about 0.2 CPU-s and 25 MB of RSS per
 * worker, so a pull with 8 workers peaked at 449 MB where one without workers stays under 300.
 * Here the main thread's origin resolves once what the SDK decides (`S3Origin.chunkReaderSpec`:
 * the object URLs' base after its endpoint rules, the region, the credentials from its chain) and
 * the reader signs with the presigner alone.
 *
 * Credentials that expire (the standard chain's session credentials) come with their expiry; past
 * it (less a margin) the reader asks its `refresh` for a new spec before the next GET, and a GET
 * refused as `ExpiredToken` asks at once.
 *
 * @example
 *
 * ```ts
 * import { s3ChunkReader } from '@swarm/origin-s3/reader'
 *
 * const spec = await origin.chunkReaderSpec()        // on the thread that holds the S3 origin
 * const reader = s3ChunkReader({ spec, refresh: async () => await askTheOrigin() })
 * const bytes = await reader.getChunk(cid, { signal })
 * reader.release(bytes)
 * await reader.close()
 * ```
 */
import { createHash, createHmac } from 'node:crypto'
import { S3RequestPresigner } from '@aws-sdk/s3-request-presigner'
import { BufferPool, checkCid, silentLogger } from '@swarm/interface'
import { CHUNK_POOL_IDLE_MS, CHUNK_POOL_MAX_FREE_BYTES } from '@swarm/origin-layout/constants'
import { S3CredentialsError } from './errors.js'
import { S3ObjectReads, presignedGet } from './object-reads.js'
import type { ObjectUrlBase } from './object-reads.js'
import type { AbortOptions, ChunkReader, ChunkReaderSpec, CidString, Logger } from '@swarm/interface'
import type { BinaryLike, Hash, Hmac } from 'node:crypto'

/** What `S3Origin.chunkReaderSpec` resolves, as `ChunkReaderSpec.init` for the `s3` adapter. */
export interface S3ChunkReaderInit {
  /** the origin's URL, without credentials, for errors */
  url: string
  bucket: string
  endpointName: string
  /** the key of chunk `cid` is this followed by `cid` */
  chunkKeyPrefix: string
  base: ObjectUrlBase
  region: string
  credentials: { accessKeyId: string, secretAccessKey: string, sessionToken?: string }
  retries: number
  maxSockets: number
  requestTimeoutMs: number
}

export interface S3ChunkReaderOptions {
  spec: ChunkReaderSpec
  /** a fresh spec from the origin (credentials that expired or were refused as expired) */
  refresh?(options: AbortOptions): Promise<ChunkReaderSpec>
  logger?: Logger
}

/** SHA-256 and its HMAC as the SDK's signer takes them (`Checksum`), from node:crypto. */
class Sha256 {
  private readonly secret: BinaryLike | undefined
  private hash: Hash | Hmac

  constructor (secret?: string | ArrayBuffer | ArrayBufferView) {
    this.secret = typeof secret === 'string' || secret === undefined ? secret : secret instanceof ArrayBuffer ? new Uint8Array(secret) : new Uint8Array(secret.buffer, secret.byteOffset, secret.byteLength)
    this.hash = this.fresh()
  }

  update (data: Uint8Array): void {
    this.hash.update(data)
  }

  async digest (): Promise<Uint8Array> {
    return this.hash.digest()
  }

  reset (): void {
    this.hash = this.fresh()
  }

  private fresh (): Hash | Hmac {
    return this.secret !== undefined ? createHmac('sha256', this.secret) : createHash('sha256')
  }
}

function readerInit (spec: ChunkReaderSpec): S3ChunkReaderInit {
  if (spec.adapter !== 's3') throw new TypeError(`an S3 chunk reader opens specs of the s3 adapter, not ${JSON.stringify(spec.adapter)}`)
  return spec.init as S3ChunkReaderInit
}

class S3ChunkReader implements ChunkReader {
  private current: { spec: ChunkReaderSpec, init: S3ChunkReaderInit, presigner: S3RequestPresigner }
  private refreshing: Promise<void> | undefined
  private readonly refreshSpec: S3ChunkReaderOptions['refresh']
  private readonly reads: S3ObjectReads
  private readonly buffers = new BufferPool({ maxFreeBytes: CHUNK_POOL_MAX_FREE_BYTES, idleMs: CHUNK_POOL_IDLE_MS })

  constructor (options: S3ChunkReaderOptions) {
    this.current = this.open(options.spec)
    this.refreshSpec = options.refresh
    const init = this.current.init
    this.reads = new S3ObjectReads({
      url: init.url,
      bucket: init.bucket,
      endpointName: init.endpointName,
      retries: init.retries,
      maxSockets: init.maxSockets,
      requestTimeoutMs: init.requestTimeoutMs,
      presigned: true,
      sign: async key => {
        const { init, presigner } = this.current
        return { base: init.base, path: await presignedGet(presigner, init.base, key) }
      },
      logger: (options.logger ?? silentLogger).child({ origin: init.url })
    })
  }

  async getChunk (cid: CidString, options: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    const expiresAt = this.current.spec.expiresAt
    if (expiresAt !== undefined && Date.now() >= expiresAt) await this.refresh(options)
    const key = `${this.current.init.chunkKeyPrefix}${cid}`
    try {
      return await this.reads.get(key, `chunk ${cid}`, options, this.buffers)
    } catch (err) {
      // credentials that expired before the spec said: once more with fresh ones
      if (!(err instanceof S3CredentialsError) || !/ExpiredToken|TokenRefreshRequired/.test(err.message) || this.refreshSpec === undefined) throw err
      await this.refresh(options)
      return await this.reads.get(key, `chunk ${cid}`, options, this.buffers)
    }
  }

  release (bytes: Uint8Array): void {
    this.buffers.give(bytes)
  }

  async close (): Promise<void> {
    try {
      await this.reads.close()
    } finally {
      this.buffers.clear()
    }
  }

  private open (spec: ChunkReaderSpec): S3ChunkReader['current'] {
    const init = readerInit(spec)
    const presigner = new S3RequestPresigner({ credentials: init.credentials, region: init.region, sha256: Sha256 })
    return { spec, init, presigner }
  }

  /** one refresh at a time, whoever needs it */
  private async refresh (options: AbortOptions): Promise<void> {
    const refreshSpec = this.refreshSpec
    if (refreshSpec === undefined) return
    this.refreshing ??= refreshSpec(options).then(spec => { this.current = this.open(spec) }).finally(() => { this.refreshing = undefined })
    await this.refreshing
  }
}

/** A chunk reader from `S3Origin.chunkReaderSpec`'s spec; throws TypeError for another adapter's. */
export function s3ChunkReader (options: S3ChunkReaderOptions): ChunkReader {
  return new S3ChunkReader(options)
}
