/**
 * @packageDocumentation
 *
 * The layout every object-store origin shares, on any store of named objects (S3 keys, Azure
 * blobs, files under a directory, paths on a web server): `<prefix>chunks/<cid>`,
 * `<prefix>manifests/<cid>`, `<prefix>refs/<name>/<tag>` (a ref object's body is the manifest CID
 * as text; a name may hold `/`, so refs nest).
 *
 * Design:
 * - {@link ObjectStoreOrigin} is the whole {@link Origin} API on four things an adapter supplies:
 *   get, has, put and list objects by name. The adapter keeps what is its own: its client, its
 *   requests, auth, retries and URL parsing, and the mapping of its failures to the interface's
 *   errors (a missing object is NotFoundError, naming the `what` it is given).
 * - Every CID and ref is checked here before it becomes a name (`checkCid`, `formatRef`), so that
 *   no argument can name anything outside the layout: `..`, an absolute path, another kind's object.
 * - Listings come a page of names at a time, so each store's own paging (ListObjectsV2, List Blobs,
 *   one directory) bounds what is held at once. The refs of a page are resolved together
 *   (`resolveListedRefs`); a name under `refs/` that is no valid ref is skipped, never an error.
 * - The buffers a chunk GET reads into can come from a pool the origin keeps (`pooledChunks`):
 *   the caller gives them back with `release` once the bytes are written, so a pull of thousands
 *   of 4 MiB chunks reuses a few buffers instead of leaving each to the collector.
 * - A package of its own, not a module of @swarm/interface: checking a ref is @swarm/manifest's
 *   (`formatRef`), and the interface depends on nothing.
 *
 * @example
 *
 * ```ts
 * import { ObjectStoreOrigin } from '@swarm/origin-layout'
 *
 * class BlobOrigin extends ObjectStoreOrigin {
 *   constructor (init: BlobOriginInit) {
 *     super({ url: init.url, prefix: 'models/', logger: init.logger })
 *   }
 *   // a missing object: new NotFoundError(`${what} not found at ${this.url}`); with a `pool`, read into pool.take(size)
 *   protected async getObject (name: string, what: string, options: AbortOptions): Promise<Uint8Array> { … }
 *   protected async hasObject (name: string, options: AbortOptions): Promise<boolean> { … }
 *   protected async putObject (name: string, bytes: Uint8Array, put: ObjectPut, options: AbortOptions): Promise<void> { … }
 *   protected async * listNames (prefix: string, nested: boolean, options: AbortOptions): AsyncIterable<string[]> { … }
 *   protected async closeStore (): Promise<void> { … }
 * }
 * ```
 */

import { BufferPool, CID_PATTERN, InvalidRefError, checkCid, resolveListedRefs, silentLogger } from '@swarm/interface'
// the ref rules alone: the package's manifest schemas load zod, which every byte worker would carry
import { formatRef } from '@swarm/manifest/refs'
import { CHUNKS_PREFIX, CHUNK_POOL_IDLE_MS, CHUNK_POOL_MAX_FREE_BYTES, MANIFESTS_PREFIX, REFS_PREFIX } from './constants.js'
import type { AbortOptions, ChunkFetchOptions, CidString, Logger, ModelRef, Origin, RefEntry } from '@swarm/interface'

export { CHUNKS_PREFIX, CHUNK_POOL_IDLE_MS, CHUNK_POOL_MAX_FREE_BYTES, MANIFESTS_PREFIX, REFS_PREFIX } from './constants.js'

/** What a put writes, so that a store can label it and choose how to write it. */
export interface ObjectPut {
  /** for messages: `chunk <cid>`, `manifest <cid>`, `ref <name>:<tag>` */
  what: string
  /** chunks `application/octet-stream`, manifests `application/json`, refs `text/plain` */
  contentType: string
  /**
   * true for chunks and manifests: named by their content, so an object already there holds these
   * very bytes and may be left as it is; false for refs, whose tags move (the last writer wins)
   */
  contentAddressed: boolean
}

export interface ObjectStoreOriginInit {
  /** where the origin points, for logs and errors; never with credentials */
  url: string
  /** where the layout starts among the store's names: empty, or ending in `/` (default empty) */
  prefix?: string
  /** the origin logs through a child of it that names the origin */
  logger?: Logger
  /** chunk GETs read into buffers lent from a pool the origin keeps, given back by `release` (default false) */
  pooledChunks?: boolean
}

/** The ref that a name under `refs/` (without that prefix) stands for, or undefined where it is none. */
function refAt (rest: string): ModelRef | undefined {
  const slash = rest.lastIndexOf('/')
  if (slash <= 0) return undefined
  const ref = { name: rest.slice(0, slash), tag: rest.slice(slash + 1) }
  try {
    formatRef(ref)
  } catch {
    return undefined
  }
  return ref
}

/** An {@link Origin} on a store of named objects, in the layout above; see the package's design notes. */
export abstract class ObjectStoreOrigin implements Origin {
  readonly url: string
  protected readonly log: Logger
  private readonly prefix: string
  /** the buffers chunk GETs read into, with `pooledChunks`; `release` gives them back */
  private readonly chunkBuffers?: BufferPool

  constructor (init: ObjectStoreOriginInit) {
    this.url = init.url
    this.prefix = init.prefix ?? ''
    this.log = (init.logger ?? silentLogger).child({ origin: this.url })
    if (init.pooledChunks === true) this.chunkBuffers = new BufferPool({ maxFreeBytes: CHUNK_POOL_MAX_FREE_BYTES, idleMs: CHUNK_POOL_IDLE_MS })
  }

  /**
   * The whole object `name`. A missing one rejects with NotFoundError naming `what` (`chunk <cid>`,
   * `manifest <cid>`, `ref <name>:<tag>`); with a `pool`, the bytes may be lent from it. An adapter
   * that reads a body in place reports its bytes as they land (`options.onData`); others need not.
   */
  protected abstract getObject (name: string, what: string, options: ChunkFetchOptions, pool?: BufferPool): Promise<Uint8Array>

  /** Whether the object `name` exists. */
  protected abstract hasObject (name: string, options: AbortOptions): Promise<boolean>

  /** Writes the object `name` whole: readers see the old object or the new one, never part of one. */
  protected abstract putObject (name: string, bytes: Uint8Array, put: ObjectPut, options: AbortOptions): Promise<void>

  /**
   * The names of the objects under `prefix` (which ends in `/`), whole, a page at a time, in any
   * order; nothing where nothing is there. `nested`: names below may hold more `/` (refs) and are
   * listed too; otherwise only those directly under it matter (chunks), so a store of directories
   * need not descend. A store of flat keys may list everything under the prefix either way.
   */
  protected abstract listNames (prefix: string, nested: boolean, options: AbortOptions): AsyncIterable<string[]>

  /** Lets go of the adapter's clients and connections; `close` calls it, then drops the pooled buffers. */
  protected async closeStore (): Promise<void> {}

  /** Bytes a getChunk returned, no longer needed: their buffer goes back to the pool, if the origin keeps one. */
  release (bytes: Uint8Array): void {
    this.chunkBuffers?.give(bytes)
  }

  async close (): Promise<void> {
    try {
      await this.closeStore()
    } finally {
      this.chunkBuffers?.clear()
    }
  }

  async getChunk (cid: CidString, options: ChunkFetchOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    return await this.getObject(this.chunkName(cid), `chunk ${cid}`, options, this.chunkBuffers)
  }

  async hasChunk (cid: CidString, options: AbortOptions = {}): Promise<boolean> {
    checkCid(cid)
    return await this.hasObject(this.chunkName(cid), options)
  }

  async putChunk (cid: CidString, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    await this.putObject(this.chunkName(cid), bytes, { what: `chunk ${cid}`, contentType: 'application/octet-stream', contentAddressed: true }, options)
  }

  async * listChunks (options: AbortOptions = {}): AsyncIterable<CidString> {
    const prefix = `${this.prefix}${CHUNKS_PREFIX}`
    for await (const names of this.listNames(prefix, false, options)) {
      for (const name of names) {
        const cid = name.slice(prefix.length)
        if (CID_PATTERN.test(cid)) yield cid
      }
    }
  }

  async getManifest (cid: CidString, options: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    return await this.getObject(`${this.prefix}${MANIFESTS_PREFIX}${cid}`, `manifest ${cid}`, options)
  }

  async putManifest (cid: CidString, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    await this.putObject(`${this.prefix}${MANIFESTS_PREFIX}${cid}`, bytes, { what: `manifest ${cid}`, contentType: 'application/json', contentAddressed: true }, options)
  }

  async resolveRef (ref: ModelRef, options: AbortOptions = {}): Promise<CidString> {
    const text = formatRef(ref)
    const bytes = await this.getObject(this.refName(ref), `ref ${text}`, options)
    const cid = new TextDecoder().decode(bytes).trim()
    if (!CID_PATTERN.test(cid)) throw new InvalidRefError(`ref ${text} at ${this.url} does not hold a CID`)
    return cid
  }

  async putRef (ref: ModelRef, cid: CidString, options: AbortOptions = {}): Promise<void> {
    const text = formatRef(ref)
    checkCid(cid)
    await this.putObject(this.refName(ref), new TextEncoder().encode(cid), { what: `ref ${text}`, contentType: 'text/plain', contentAddressed: false }, options)
  }

  async * listRefs (options: AbortOptions = {}): AsyncIterable<RefEntry> {
    const prefix = `${this.prefix}${REFS_PREFIX}`
    for await (const names of this.listNames(prefix, true, options)) {
      const refs: ModelRef[] = []
      for (const name of names) {
        const ref = refAt(name.slice(prefix.length))
        if (ref === undefined) {
          this.log.debug({ object: name }, 'skipping an object under refs/ that is not a valid ref')
          continue
        }
        refs.push(ref)
      }
      yield * resolveListedRefs(refs, async ref => await this.resolveRef(ref, options), this.log)
    }
  }

  /** The name of chunk `cid`'s object. */
  protected chunkName (cid: CidString): string {
    return `${this.prefix}${CHUNKS_PREFIX}${cid}`
  }

  /** The name of ref `ref`'s object; a checked name nests (`refs/org/model/latest`). */
  private refName (ref: ModelRef): string {
    return `${this.prefix}${REFS_PREFIX}${ref.name}/${ref.tag}`
  }
}
