/**
 * The common part of the origins' light chunk readers (`@swarm/origin-s3/reader`,
 * `@swarm/origin-azure/reader`), which byte workers open from `Origin.chunkReaderSpec`: chunk
 * buffers lent from a pool and given back with `release`, the spec refreshed once it expires, and
 * one more try with a fresh spec when the origin says the credentials went stale before it said.
 * Each adapter brings how a spec opens (`open`), how a chunk is read, and which refusal is stale
 * credentials. Loads nothing of the layout's manifest handling.
 */
import { BufferPool, RefreshingSpec, checkCid } from '@swarm/interface'
import { CHUNK_POOL_IDLE_MS, CHUNK_POOL_MAX_FREE_BYTES } from './constants.js'
import type { AbortOptions, ChunkReader, ChunkReaderSpec, CidString } from '@swarm/interface'

export interface LayoutChunkReaderInit<Opened> {
  spec: ChunkReaderSpec
  /** the spec opened into what the reader uses; throws TypeError for another adapter's spec */
  open(spec: ChunkReaderSpec): Opened
  /** a fresh spec from the origin */
  refresh?(options: AbortOptions): Promise<ChunkReaderSpec>
}

export abstract class LayoutChunkReader<Opened> implements ChunkReader {
  protected readonly spec: RefreshingSpec<Opened>
  private readonly buffers = new BufferPool({ maxFreeBytes: CHUNK_POOL_MAX_FREE_BYTES, idleMs: CHUNK_POOL_IDLE_MS })

  constructor (init: LayoutChunkReaderInit<Opened>) {
    this.spec = new RefreshingSpec(init.spec, init.open, init.refresh)
  }

  /** chunk `cid`, read with what the spec opened into, into a buffer from `pool` */
  protected abstract read (opened: Opened, cid: CidString, options: AbortOptions, pool: BufferPool): Promise<Uint8Array>
  /** whether a failure says the credentials went stale, so that a fresh spec may pass */
  protected abstract isStale (err: unknown): boolean
  /** lets go of the reader's connections */
  protected abstract closeReads (): Promise<void>

  async getChunk (cid: CidString, options: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    try {
      return await this.read(await this.spec.current(options), cid, options, this.buffers)
    } catch (err) {
      if (!this.isStale(err) || !this.spec.refreshable) throw err
      await this.spec.refresh(options)
      return await this.read(this.spec.init, cid, options, this.buffers)
    }
  }

  release (bytes: Uint8Array): void {
    this.buffers.give(bytes)
  }

  async close (): Promise<void> {
    try {
      await this.closeReads()
    } finally {
      this.buffers.clear()
    }
  }
}
