/**
 * The Azure origin's light chunk reader (`@swarm/origin-azure/reader`), for byte workers: blob
 * GETs read in place (blob-reads.ts) with the authorization the origin on the main thread made
 * (`AzureOrigin.chunkReaderSpec`: a SAS, the one configured or one derived from the shared key,
 * or a bearer token from its credential chain). A worker that opened the whole origin loaded the
 * Azure SDK (about 0.2 CPU-s and 25 MB of RSS per worker) to do what these few modules do.
 *
 * An authorization that expires comes with its expiry; past it (less a margin) the reader asks its
 * `refresh` for a new spec before the next GET, and a GET refused as unauthorized asks at once
 * (a token revoked or a SAS cut short before the spec said).
 *
 * @example
 *
 * ```ts
 * import { azureChunkReader } from '@swarm/origin-azure/reader'
 *
 * const spec = await origin.chunkReaderSpec()        // on the thread that holds the Azure origin
 * const reader = azureChunkReader({ spec, refresh: async () => await askTheOrigin() })
 * const bytes = await reader.getChunk(cid, { signal })
 * await reader.close()
 * ```
 */
import { silentLogger } from '@swarm/interface'
import { LayoutChunkReader } from '@swarm/origin-layout/reader'
import { AzureBlobReads } from './blob-reads.js'
import { AzureCredentialsError } from './errors.js'
import type { BlobAuth } from './blob-reads.js'
import type { AbortOptions, BufferPool, ChunkReader, ChunkReaderSpec, CidString, Logger } from '@swarm/interface'

/** What `AzureOrigin.chunkReaderSpec` resolves, as `ChunkReaderSpec.init` for the `azure` adapter. */
export interface AzureChunkReaderInit {
  /** the origin's URL, without credentials, for errors */
  url: string
  serviceUrl: string
  container: string
  credentialKind: string
  /** the name of chunk `cid`'s blob is this followed by `cid` */
  chunkNamePrefix: string
  auth: BlobAuth
  retries: number
  maxSockets: number
  requestTimeoutMs: number
}

export interface AzureChunkReaderOptions {
  spec: ChunkReaderSpec
  /** a fresh spec from the origin (an authorization that expired or was refused) */
  refresh?(options: AbortOptions): Promise<ChunkReaderSpec>
  logger?: Logger
}

function readerInit (spec: ChunkReaderSpec): AzureChunkReaderInit {
  if (spec.adapter !== 'azure') throw new TypeError(`an Azure chunk reader opens specs of the azure adapter, not ${JSON.stringify(spec.adapter)}`)
  return spec.init as AzureChunkReaderInit
}

class AzureChunkReader extends LayoutChunkReader<AzureChunkReaderInit> {
  private readonly reads: AzureBlobReads

  constructor (options: AzureChunkReaderOptions) {
    super({ spec: options.spec, open: readerInit, ...(options.refresh !== undefined ? { refresh: options.refresh } : {}) })
    const init = this.spec.init
    this.reads = new AzureBlobReads({
      url: init.url,
      serviceUrl: init.serviceUrl,
      container: init.container,
      credentialKind: init.credentialKind,
      retries: init.retries,
      maxSockets: init.maxSockets,
      requestTimeoutMs: init.requestTimeoutMs,
      authorize: async () => this.spec.init.auth,
      logger: (options.logger ?? silentLogger).child({ origin: init.url })
    })
  }

  protected async read (init: AzureChunkReaderInit, cid: CidString, options: AbortOptions, pool: BufferPool): Promise<Uint8Array> {
    return await this.reads.get(`${init.chunkNamePrefix}${cid}`, `chunk ${cid}`, options, pool)
  }

  /** a token revoked or a SAS cut short before the spec said */
  protected isStale (err: unknown): boolean {
    return err instanceof AzureCredentialsError
  }

  protected async closeReads (): Promise<void> {
    await this.reads.close()
  }
}

/** A chunk reader from `AzureOrigin.chunkReaderSpec`'s spec; throws TypeError for another adapter's. */
export function azureChunkReader (options: AzureChunkReaderOptions): ChunkReader {
  return new AzureChunkReader(options)
}
