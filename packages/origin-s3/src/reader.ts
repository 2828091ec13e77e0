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
import { silentLogger } from '@swarm/interface'
import { LayoutChunkReader } from '@swarm/origin-layout/reader'
import { S3CredentialsError } from './errors.js'
import { S3ObjectReads, presignedGet } from './object-reads.js'
import type { ObjectUrlBase } from './object-reads.js'
import type { AbortOptions, BufferPool, ChunkReader, ChunkReaderSpec, CidString, Logger } from '@swarm/interface'
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

/** the spec's init, and a presigner with its credentials */
interface Opened {
  init: S3ChunkReaderInit
  presigner: S3RequestPresigner
}

function open (spec: ChunkReaderSpec): Opened {
  const init = readerInit(spec)
  return { init, presigner: new S3RequestPresigner({ credentials: init.credentials, region: init.region, sha256: Sha256 }) }
}

class S3ChunkReader extends LayoutChunkReader<Opened> {
  private readonly reads: S3ObjectReads

  constructor (options: S3ChunkReaderOptions) {
    super({ spec: options.spec, open, ...(options.refresh !== undefined ? { refresh: options.refresh } : {}) })
    const { init } = this.spec.init
    this.reads = new S3ObjectReads({
      url: init.url,
      bucket: init.bucket,
      endpointName: init.endpointName,
      retries: init.retries,
      maxSockets: init.maxSockets,
      requestTimeoutMs: init.requestTimeoutMs,
      presigned: true,
      sign: async key => {
        const { init, presigner } = this.spec.init
        return { base: init.base, path: await presignedGet(presigner, init.base, key) }
      },
      logger: (options.logger ?? silentLogger).child({ origin: init.url })
    })
  }

  protected async read ({ init }: Opened, cid: CidString, options: AbortOptions, pool: BufferPool): Promise<Uint8Array> {
    return await this.reads.get(`${init.chunkKeyPrefix}${cid}`, `chunk ${cid}`, options, pool)
  }

  /** session credentials that expired before the spec said */
  protected isStale (err: unknown): boolean {
    return err instanceof S3CredentialsError && /ExpiredToken|TokenRefreshRequired/.test(err.message)
  }

  protected async closeReads (): Promise<void> {
    await this.reads.close()
  }
}

/** A chunk reader from `S3Origin.chunkReaderSpec`'s spec; throws TypeError for another adapter's. */
export function s3ChunkReader (options: S3ChunkReaderOptions): ChunkReader {
  return new S3ChunkReader(options)
}
