/**
 * The view itself: paths to models and files, attributes, listings, and reads that fetch what is
 * missing. It knows nothing of FUSE; an adapter turns kernel requests into these calls and the
 * errors thrown here into errno values.
 *
 * Paths are resolved by `names.ts` (the layout, and where names come from); open files, reads,
 * leases and what adapters are told of the store's files are `open-files.ts`.
 */

import { silentLogger } from '@swarm/interface'
import {
  BY_CID,
  DEFAULT_NEGATIVE_TTL_MS,
  DEFAULT_READ_TIMEOUT_MS,
  DEFAULT_REFS_TTL_MS,
  DEFAULT_RESOLVE_TIMEOUT_MS,
  FILE_BLOCK_SIZE,
  S_IFDIR,
  S_IFLNK,
  S_IFREG
} from './constants.js'
import { NotADirectoryError, NotALinkError, ReadOnlyError, ViewClosedError } from './errors.js'
import { linkTarget } from './namespace.js'
import { Names } from './names.js'
import { OpenFiles } from './open-files.js'
import type { Target } from './names.js'
import type { PrefetchStats, ReadAheadOptions } from './prefetcher.js'
import type {
  AbortOptions,
  ChunkRef,
  ChunkRequest,
  ChunkSource,
  ChunkStore,
  CidString,
  FileEntry,
  Logger,
  ModelRef,
  RefEntry
} from '@swarm/interface'

/** The part of `@swarm/fetcher`'s Fetcher the view uses. */
export interface ChunkFetcher {
  fetch(request: ChunkRequest, options?: AbortOptions & { sources?: ChunkSource[] }): Promise<unknown>
}

/** Names and manifests from beyond the store: the agent's origin and peers. */
export interface ModelResolver {
  /** the manifest CID a name points to now; rejects with NotFoundError when there is none */
  resolveRef(ref: ModelRef, options?: AbortOptions): Promise<CidString>
  /** names to list besides those held (e.g. every ref at the origin) */
  listRefs?(options?: AbortOptions): Promise<RefEntry[]>
  /** fetches and verifies a manifest and adds it to the store, pulling none of its chunks */
  addManifest(manifestCid: CidString, options?: AbortOptions & { ref?: string }): Promise<void>
}

export interface ModelFsInit {
  store: ChunkStore
  fetcher: ChunkFetcher
  /**
   * sources for one chunk of a model, best first (peers holding it, then the origin); undefined
   * leaves the choice to the fetcher
   */
  sourcesFor?(manifestCid: CidString, chunk: ChunkRef): ChunkSource[] | undefined
  resolver?: ModelResolver
  readAhead?: ReadAheadOptions
  /** a read waits at most this long for its chunks (default 60 s) */
  readTimeoutMs?: number
  /** resolving a name or adding a manifest on lookup gives up after this long (default 10 s) */
  resolveTimeoutMs?: number
  /** a name or manifest that could not be had is not asked for again for this long (default 5 s) */
  negativeTtlMs?: number
  /** the resolver's list of names is reused for this long (default 30 s) */
  refsTtlMs?: number
  /** owner of every file (default: this process's) */
  uid?: number
  gid?: number
  /** timestamps of every file and directory (default: when the view was made) */
  mtime?: Date
  /**
   * Open files hold their model from eviction with a store lease (default true). False only to
   * test what readers get when a model open in the mount is evicted anyway.
   */
  leaseOpenFiles?: boolean
  logger?: Logger
}

export type NodeKind = 'file' | 'directory' | 'symlink'

export interface Attributes {
  kind: NodeKind
  /** type and permission bits, as st_mode */
  mode: number
  size: number
  nlink: number
  uid: number
  gid: number
  mtime: Date
  blksize: number
  /** 512-byte blocks */
  blocks: number
}

/** What statfs reports: the models held, in 4 KiB blocks; nothing is free, as nothing can be written. */
export interface FsStatistics {
  bsize: number
  frsize: number
  blocks: number
  bfree: number
  bavail: number
  files: number
  ffree: number
  favail: number
  namemax: number
}

export interface ViewStats {
  reads: number
  bytesRead: number
  /** reads that had to wait for chunks */
  readsWaited: number
  /** total time reads waited for chunks */
  waitMs: number
  /** chunks fetched because a read needed them now */
  chunksFetched: number
  /** reads that failed with an I/O error */
  failedReads: number
  /** reads answered wholly from chunks' verified bytes while the store was still writing them */
  readsFromMemory: number
  openFiles: number
  prefetch: PrefetchStats
}

export interface OpenOptions extends AbortOptions {}

/** A chunk now in the store, where it fills a file of a model (`path` as the view names it). */
export interface ChunkArrival {
  manifestCid: CidString
  path: string
  offset: number
  length: number
}

/**
 * Which file a path named when it was looked at: the store replaces a content file at the same
 * path when a model is evicted and added back, so an adapter that opens the path itself checks it
 * found this file. Inode numbers are reused; the birth time tells such files apart where the file
 * system records it (0 where it does not).
 */
export interface FileIdentity {
  dev: bigint
  ino: bigint
  birthNs: bigint
}

/**
 * Where a model file's bytes are, for an adapter that reads present bytes itself: the store's
 * content file, and which of its chunks are in it now.
 */
export interface FileContent {
  /** the store's file holding this file's bytes at their own offsets (sparse until complete) */
  backingPath: string
  /**
   * the file at `backingPath` when it was looked at, which `complete` and `present` describe;
   * undefined when there was none (then nothing may be read from the path)
   */
  identity?: FileIdentity
  complete: boolean
  size: number
  /** end offset of each chunk, ascending */
  chunkEnds: number[]
  /** 1 for each chunk present in the backing file */
  present: Uint8Array
}

/** The read-only file system of models. Every path is absolute (`/…`). */
export interface ModelFs {
  getattr(path: string, options?: AbortOptions): Promise<Attributes>
  readdir(path: string, options?: AbortOptions): Promise<string[]>
  readlink(path: string, options?: AbortOptions): Promise<string>
  /** `mode` as access(2): asking for write access rejects with ReadOnlyError */
  access(path: string, mode: number, options?: AbortOptions): Promise<void>
  /** a handle for `read`; `flags` as open(2): anything but read-only rejects with ReadOnlyError */
  open(path: string, flags: number, options?: OpenOptions): Promise<number>
  /** fills `buffer` from `position`; resolves with the bytes read (0 at the end of the file) */
  read(handle: number, buffer: Uint8Array, position: number, options?: AbortOptions): Promise<number>
  release(handle: number): Promise<void>
  /** where a file's bytes are in the store, and which are present */
  content(path: string, options?: AbortOptions): Promise<FileContent>
  /** content() of every file below a model's directory, by path relative to it, at the cost of one */
  contents(path: string, options?: AbortOptions): Promise<Map<string, FileContent>>
  /**
   * Keeps the model of the file at `path` from eviction while an adapter serves an open of it
   * without the view (a lease held as `mount:<path>`); resolves with the release.
   */
  hold(path: string, options?: AbortOptions): Promise<{ release(): void }>
  /** The store evicted a model: open files of it are read afresh (the adapter drops what it cached). */
  evicted(manifestCid: CidString): void
  /**
   * Calls `listener` for every file range a chunk fetched through the view now fills (by a read
   * or a prefetch), so an adapter reading the store's files itself learns of it at once.
   */
  onArrival(listener: (arrival: ChunkArrival) => void): () => void
  /**
   * Tells the view that bytes of an open file were read elsewhere (an adapter that served them
   * from the content file itself), so prefetching follows the reader as if it had read them here.
   */
  observe(handle: number, position: number, length: number): void
  /**
   * Bytes of chunk `cid` that have just been verified against it and are being written to the
   * store (a fetcher's `landing` hook calls it between the two):
   * reads that need the chunk are answered from them at once, without waiting for the write, its
   * sync and its journal record. Call the returned function once the store has settled them
   * (stored or refused); `bytes` must not change until then.
   */
  landing(cid: CidString, bytes: Uint8Array): () => void
  /** every change (write, create, rename, truncate, …) rejects with ReadOnlyError */
  change(path: string, operation: string): Promise<never>
  statfs(): FsStatistics
  stats(): ViewStats
  /** stops prefetching and closes every open file */
  close(): Promise<void>
}

const W_OK = 2
const STATFS_BLOCK = 4096
const MAX_U32 = 0xffffffff

class View implements ModelFs {
  private readonly store: ChunkStore
  private readonly uid: number
  private readonly gid: number
  private readonly mtime: Date
  private readonly names: Names
  private readonly files: OpenFiles
  private closed = false

  constructor (init: ModelFsInit) {
    this.store = init.store
    const log = (init.logger ?? silentLogger).child({ component: 'fs' })
    const readTimeoutMs = init.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS
    const resolveTimeoutMs = init.resolveTimeoutMs ?? DEFAULT_RESOLVE_TIMEOUT_MS
    const negativeTtlMs = init.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS
    const refsTtlMs = init.refsTtlMs ?? DEFAULT_REFS_TTL_MS
    for (const [name, value] of Object.entries({ readTimeoutMs, resolveTimeoutMs, negativeTtlMs, refsTtlMs })) {
      if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`)
    }
    this.uid = init.uid ?? process.getuid?.() ?? 0
    this.gid = init.gid ?? process.getgid?.() ?? 0
    this.mtime = init.mtime ?? new Date()
    this.names = new Names(init, log, { resolveTimeoutMs, negativeTtlMs, refsTtlMs })
    this.files = new OpenFiles(init, log, readTimeoutMs)
  }

  // ---- metadata ---------------------------------------------------------------------------

  async getattr (path: string, options: AbortOptions = {}): Promise<Attributes> {
    const target = await this.resolve(path, options.signal)
    switch (target.kind) {
      case 'alias':
        return this.attributes('symlink', S_IFLNK | 0o777, linkTarget(target.cid, target.depth).length)
      case 'model-file': {
        const entry = target.manifest.files[target.index] as FileEntry
        return this.attributes('file', S_IFREG | (entry.mode & 0o555) | 0o444, entry.size)
      }
      default:
        return this.attributes('directory', S_IFDIR | 0o555, 0)
    }
  }

  private attributes (kind: NodeKind, mode: number, size: number): Attributes {
    return {
      kind,
      mode,
      size,
      nlink: kind === 'directory' ? 2 : 1,
      uid: this.uid,
      gid: this.gid,
      mtime: this.mtime,
      blksize: FILE_BLOCK_SIZE,
      blocks: Math.ceil(size / 512)
    }
  }

  async readdir (path: string, options: AbortOptions = {}): Promise<string[]> {
    const target = await this.resolve(path, options.signal)
    switch (target.kind) {
      case 'root':
        return [BY_CID, ...[...(await this.names.namespace(options.signal)).listed].filter(name => name !== BY_CID).sort()]
      case 'by-cid':
        return this.store.models().map(m => m.manifestCid).sort()
      case 'namespace':
        return [...target.node.listed].sort()
      case 'model-dir': {
        // a listing comes before the reads: a checkpoint's small files start coming now
        const manifest = this.store.getManifest(target.cid)
        if (manifest !== undefined) this.files.prefetchSmallFiles(target.cid, manifest, target.dir === '' ? '' : `${target.dir}/`)
        return [...(target.tree.dirs.get(target.dir) ?? [])]
      }
      default:
        throw new NotADirectoryError(path)
    }
  }

  async readlink (path: string, options: AbortOptions = {}): Promise<string> {
    const target = await this.resolve(path, options.signal)
    if (target.kind !== 'alias') throw new NotALinkError(path)
    return linkTarget(target.cid, target.depth)
  }

  async access (path: string, mode: number, options: AbortOptions = {}): Promise<void> {
    await this.resolve(path, options.signal)
    if ((mode & W_OK) !== 0) throw new ReadOnlyError(path, 'write access to')
  }

  async change (path: string, operation: string): Promise<never> {
    throw new ReadOnlyError(path, operation)
  }

  statfs (): FsStatistics {
    let bytes = 0
    let files = 0
    for (const model of this.store.models()) {
      bytes += model.totalBytes
      files += this.store.getManifest(model.manifestCid)?.files.length ?? 0
    }
    return {
      bsize: STATFS_BLOCK,
      frsize: STATFS_BLOCK,
      blocks: Math.min(MAX_U32, Math.ceil(bytes / STATFS_BLOCK)),
      bfree: 0,
      bavail: 0,
      files: Math.min(MAX_U32, files),
      ffree: 0,
      favail: 0,
      namemax: 255
    }
  }

  stats (): ViewStats {
    return this.files.stats()
  }

  // ---- files ------------------------------------------------------------------------------

  async open (path: string, flags: number, options: OpenOptions = {}): Promise<number> {
    return await this.files.open(await this.resolve(path, options.signal), path, flags)
  }

  async release (handle: number): Promise<void> {
    await this.files.release(handle)
  }

  async hold (path: string, options: AbortOptions = {}): Promise<{ release(): void }> {
    return this.files.hold(await this.resolve(path, options.signal), path)
  }

  evicted (manifestCid: CidString): void {
    this.files.evicted(manifestCid)
    this.names.evicted()
  }

  onArrival (listener: (arrival: ChunkArrival) => void): () => void {
    return this.files.onArrival(listener)
  }

  async content (path: string, options: AbortOptions = {}): Promise<FileContent> {
    return await this.files.content(await this.resolve(path, options.signal), path)
  }

  async contents (path: string, options: AbortOptions = {}): Promise<Map<string, FileContent>> {
    return await this.files.contents(await this.resolve(path, options.signal), path)
  }

  observe (handle: number, position: number, length: number): void {
    this.files.observe(handle, position, length)
  }

  async read (handle: number, buffer: Uint8Array, position: number, options: AbortOptions = {}): Promise<number> {
    return await this.files.read(handle, buffer, position, options)
  }

  landing (cid: CidString, bytes: Uint8Array): () => void {
    if (this.closed) return () => {}
    return this.files.landing(cid, bytes)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.files.close()
  }

  private async resolve (path: string, signal?: AbortSignal): Promise<Target> {
    if (this.closed) throw new ViewClosedError()
    return await this.names.resolve(path, signal)
  }
}

/** The read-only view of the models in `init.store`; see the module comment for the layout. */
export function modelFs (init: ModelFsInit): ModelFs {
  return new View(init)
}
