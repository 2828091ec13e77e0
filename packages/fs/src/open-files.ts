/**
 * The view's open files: handles, reads that fetch what is missing, the store's content files
 * behind them, and what adapters are told of those files.
 *
 * ## Reads
 *
 * A read of a complete file is one pread of the store's content file into the caller's buffer.
 * Otherwise the chunks under the range that are missing are fetched first, all at once, through
 * the fetcher (peers, then the origin; one fetch per CID however many readers wait), bounded by
 * `readTimeoutMs`, and only then are bytes read from the store, which has verified them. A chunk
 * that cannot be had fails the read with the reason logged. Every read also feeds the file's
 * prefetch stream (prefetcher.ts). A model evicted while a file is open is added back, and its
 * chunks are fetched again as they are read.
 *
 * A chunk's bytes are verified against its CID before the store writes them, and writing, the
 * data sync and the journal record take longer than the download itself. A reader at the front of
 * a lazy read would wait for all of that, so whoever stores a chunk may hand the view its bytes
 * between verification and the end of the write (`landing`): reads that need the chunk then copy
 * from those bytes, at once, and later ones do until the store has it. Only verified bytes are
 * ever handed over, so a source that lies never reaches a reader; the adapter is not told the
 * range is in the store's file until the store says so (`onArrival`).
 *
 * ## Leases, and store files that change under the view
 *
 * An open file holds a store lease on its model (`mount:<path>`) from its first open to its last
 * release, so gc and the cache budget leave it alone; an adapter that serves opens without the
 * view (the kernel adapter's passthrough) takes one with `hold` (the kernel adapter one per model,
 * let go 2 s after its last open file closes). `content` tells such an adapter
 * which store file holds a file's bytes, and which file that is (device, inode, birth time): the
 * file is looked at first and the store asked after, so what the store says can only describe
 * that file (see `describe`). What the store said of a model's files is reused for 100 ms, as
 * asking copies every file's presence, but only for files that have not changed since.
 *
 * ## Many small files
 *
 * A checkpoint of thousands of small files (orbax, zarr, tensorstore) is read one file after
 * another. The first listing of one of its directories, or open of one of its one-chunk files,
 * queues all its one-chunk files as one prefetch batch (see `prefetchSmallFiles`), and every
 * chunk that lands is announced (`onArrival`) so an adapter can serve the file itself at once.
 */

import { close as closeFd, fstatSync, open as openFd, read as readFd } from 'node:fs'
import { stat } from 'node:fs/promises'
import { ChunkMissingError, chunkAt, NotFoundError } from '@swarm/interface'
import { LRUCache } from 'lru-cache'
import { BY_CID, STORED_FILES_MIN_INTERVAL_MS, STORED_FILES_TTL_MS, TREE_CACHE_SIZE } from './constants.js'
import { BadHandleError, IsADirectoryError, NotADirectoryError, ReadOnlyError, ReadTimeoutError } from './errors.js'
import { Prefetcher } from './prefetcher.js'
import type { ChunkArrival, FileContent, FileIdentity, ModelFsInit, ViewStats } from './model-fs.js'
import type { Target } from './names.js'
import type { PrefetchFile, PrefetchStream } from './prefetcher.js'
import type { AbortOptions, ChunkRef, ChunkStore, CidString, FileEntry, Logger, Manifest, StoreLease, StoredFile } from '@swarm/interface'

/** One file of one model while it is open, shared by its handles. */
interface FileView {
  readonly key: string
  readonly cid: CidString
  /** in the manifest's files */
  readonly index: number
  readonly manifest: Manifest
  readonly entry: FileEntry
  readonly prefetchFile: PrefetchFile
  /** a read-only descriptor of the store's content file */
  fd?: number
  /** descriptors of content files the store has since replaced; closed with the view, as reads may still use them */
  readonly retired: number[]
  opening?: Promise<void>
  /** every chunk is in the content file: reads are one pread, nothing else */
  complete: boolean
  /**
   * 1 for chunks the store has confirmed are in this content file (a read through the store
   * covered them): later reads of them go straight to the descriptor
   */
  readonly confirmed: Uint8Array
  refs: number
  /** chunks before this index are known to be present */
  scan: number
  lastCompleteCheck: number
  /** when the descriptor was last found to name the store's current file */
  checkedAt: number
  /** keeps the model from eviction while the file is open */
  lease?: StoreLease
}

interface Handle {
  readonly view: FileView
  readonly stream: PrefetchStream
}

const O_ACCMODE = 0o3
const O_RDONLY = 0
const O_TRUNC = 0o1000
const READ_RETRIES = 3
/** A model is marked used in the store (for least-recently-used eviction) at most this often. */
const TOUCH_INTERVAL_MS = 1000
/** How often a descriptor of a content file still being filled is checked against the store's file. */
const CONTENT_CHECK_INTERVAL_MS = 100

async function openReadOnly (path: string): Promise<number> {
  return await new Promise((resolve, reject) => { openFd(path, 'r', (err, fd) => { if (err != null) reject(err); else resolve(fd) }) })
}

async function pread (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    readFd(fd, buffer, offset, length, position, (err, bytesRead) => { if (err != null) reject(err); else resolve(bytesRead) })
  })
}

/** The kernel stamps ctime from a coarse clock, up to a tick behind the wall clock. */
const CTIME_SLACK_MS = 50

async function identityOf (path: string): Promise<(FileIdentity & { ctimeMs: number }) | undefined> {
  try {
    const st = await stat(path, { bigint: true })
    return { dev: st.dev, ino: st.ino, birthNs: st.birthtimeNs, ctimeMs: Number(st.ctimeNs / 1_000_000n) }
  } catch {
    return undefined
  }
}

/** Copies the part [from, to) of the file that `chunk` holds from the chunk's verified bytes into a read's buffer. */
function copyPart (bytes: Uint8Array, chunk: ChunkRef, buffer: Uint8Array, position: number, from: number, to: number): void {
  buffer.set(bytes.subarray(from - chunk.offset, to - chunk.offset), from - position)
}

function closeQuietly (fd: number): void {
  closeFd(fd, () => {})
}

/** A prefetch stream for a file that is already complete: nothing to fetch. */
const idleStream: PrefetchStream = {
  mode: 'sequential',
  window: 0,
  queued: () => [],
  read: () => {},
  close: () => {}
}

export class OpenFiles {
  private readonly store: ChunkStore
  private readonly prefetcher: Prefetcher
  private readonly handles = new Map<number, Handle>()
  private readonly views = new Map<string, FileView>()
  private readonly viewOf = new WeakMap<PrefetchFile, FileView>()
  /** a model's small files prefetched as one batch, from the first open of one of them */
  private readonly smallFiles = new Map<CidString, PrefetchStream>()
  /** the model each prefetched file (or batch) belongs to */
  private readonly modelOf = new WeakMap<PrefetchFile, CidString>()
  /** chunk CID → the file ranges it fills, per model */
  private readonly chunkFiles = new LRUCache<CidString, Map<CidString, Array<{ path: string, offset: number, size: number }>>>({ max: TREE_CACHE_SIZE })
  private readonly listeners = new Set<(arrival: ChunkArrival) => void>()
  /** how many times the store was asked for a model's files */
  private asks = 0
  /** when each model was last marked used */
  private readonly touchedAt = new Map<CidString, number>()
  /** the store's files of a model, as last asked (wall clock, ms): store.files() copies every file's presence */
  private readonly storedFiles = new Map<CidString, { files: StoredFile[], at: number }>()
  /** chunks verified and on their way into the store: their bytes, valid until the store has settled them */
  private readonly landed = new Map<CidString, Uint8Array>()
  /** reads waiting for a chunk, given its verified bytes the moment they land */
  private readonly awaitingLanding = new Map<CidString, Set<(bytes: Uint8Array) => void>>()
  private nextHandle = 1
  private readonly counters = { reads: 0, bytesRead: 0, readsWaited: 0, waitMs: 0, chunksFetched: 0, failedReads: 0, readsFromMemory: 0 }

  constructor (private readonly init: ModelFsInit, private readonly log: Logger, private readonly readTimeoutMs: number) {
    this.store = init.store
    this.prefetcher = new Prefetcher({
      ...init.readAhead,
      logger: init.logger,
      has: cid => this.store.hasChunk(cid),
      fetch: async (file, chunk, options) => {
        const cid = this.modelOf.get(file)
        if (cid === undefined) return
        await this.init.fetcher.fetch({ cid: chunk.cid, size: chunk.size }, { signal: options.signal, sources: this.init.sourcesFor?.(cid, chunk) })
        this.arrived(cid, chunk.cid)
      }
    })
  }

  async open (target: Target, path: string, flags: number): Promise<number> {
    if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) throw new ReadOnlyError(path, 'open for writing')
    if (target.kind === 'alias') throw new NotFoundError(`${path} is a link; open what it points to`)
    if (target.kind !== 'model-file') throw new IsADirectoryError(path)
    const key = `${target.cid}/${target.index}`
    let view = this.views.get(key)
    if (view === undefined) {
      const entry = target.manifest.files[target.index] as FileEntry
      view = {
        key,
        cid: target.cid,
        index: target.index,
        manifest: target.manifest,
        entry,
        prefetchFile: { path: entry.path, size: entry.size, chunks: entry.chunks, ...(entry.tensors != null ? { tensors: entry.tensors } : {}) },
        retired: [],
        complete: false,
        confirmed: new Uint8Array(entry.chunks.length),
        refs: 0,
        scan: 0,
        lastCompleteCheck: -Infinity,
        checkedAt: -Infinity
      }
      this.views.set(key, view)
      this.viewOf.set(view.prefetchFile, view)
      this.modelOf.set(view.prefetchFile, view.cid)
      await this.openContent(view)
    }
    if (view.refs++ === 0) view.lease = this.leaseOf(target.cid, path)
    if (view.entry.chunks.length === 1) this.prefetchSmallFiles(target.cid, target.manifest, view.entry.path)
    // once a second at most: each touch saves the store's list of models, and a checkpoint's
    // thousands of files open in a burst
    const now = Date.now()
    if (now - (this.touchedAt.get(target.cid) ?? -Infinity) >= TOUCH_INTERVAL_MS) {
      this.touchedAt.set(target.cid, now)
      this.store.touch(target.cid)
    }
    const handle = this.nextHandle++
    this.handles.set(handle, { view, stream: view.complete ? idleStream : this.prefetcher.open(view.prefetchFile) })
    return handle
  }

  async release (handle: number): Promise<void> {
    const open = this.handles.get(handle)
    if (open === undefined) throw new BadHandleError(handle)
    this.handles.delete(handle)
    open.stream.close()
    const { view } = open
    if (--view.refs === 0) {
      this.views.delete(view.key)
      view.lease?.release()
      if (view.fd !== undefined) closeQuietly(view.fd)
      for (const fd of view.retired) closeQuietly(fd)
    }
  }

  /** A lease on a held model for an open file; undefined when it is not held (evicted meanwhile: reads add it back). */
  private leaseOf (cid: CidString, path: string): StoreLease | undefined {
    if (this.init.leaseOpenFiles === false) return undefined
    try {
      return this.store.lease(cid, `mount:${path}`)
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err
      return undefined
    }
  }

  hold (target: Target, path: string): { release(): void } {
    if (target.kind !== 'model-file') throw new IsADirectoryError(path)
    return this.leaseOf(target.cid, path) ?? { release () {} }
  }

  evicted (manifestCid: CidString): void {
    this.storedFiles.delete(manifestCid)
    this.smallFiles.get(manifestCid)?.close()
    this.smallFiles.delete(manifestCid)
    for (const view of this.views.values()) {
      if (view.cid === manifestCid) this.forgetContent(view)
    }
  }

  onArrival (listener: (arrival: ChunkArrival) => void): () => void {
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  private arrived (manifestCid: CidString, chunkCid: CidString): void {
    if (this.listeners.size === 0) return
    let byChunk = this.chunkFiles.get(manifestCid)
    if (byChunk === undefined) {
      const manifest = this.store.getManifest(manifestCid)
      if (manifest === undefined) return
      byChunk = new Map()
      for (const file of manifest.files) {
        for (const chunk of file.chunks) {
          let ranges = byChunk.get(chunk.cid)
          if (ranges === undefined) byChunk.set(chunk.cid, ranges = [])
          ranges.push({ path: `/${BY_CID}/${manifestCid}/${file.path}`, offset: chunk.offset, size: chunk.size })
        }
      }
      this.chunkFiles.set(manifestCid, byChunk)
    }
    for (const range of byChunk.get(chunkCid) ?? []) {
      for (const listener of this.listeners) listener({ manifestCid, path: range.path, offset: range.offset, length: range.size })
    }
  }

  /**
   * A checkpoint of many small files (one chunk each: orbax, zarr, tensorstore) is read one file
   * after another, and a read that waited for each file's chunk would wait once per file on a
   * round trip and a store sync. So the first listing of one of its directories, or the first
   * open of such a file, queues the model's small files as one batch: those beside it first,
   * then the rest in path order, up to the largest read-ahead in bytes. The fetches overlap, and
   * their syncs are shared.
   */
  prefetchSmallFiles (cid: CidString, manifest: Manifest, from: string): void {
    if (this.smallFiles.has(cid)) return
    const dir = from.includes('/') ? from.slice(0, from.lastIndexOf('/') + 1) : ''
    const small = manifest.files.filter(file => file.chunks.length === 1)
    const beside = small.filter(file => file.path >= from && file.path.startsWith(dir) && !file.path.slice(dir.length).includes('/'))
    const chunks: ChunkRef[] = []
    const seen = new Set<CidString>()
    let size = 0
    for (const file of [...beside, ...small]) {
      const chunk = file.chunks[0] as ChunkRef
      if (seen.has(chunk.cid) || this.store.hasChunk(chunk.cid)) continue
      if (size + chunk.size > this.prefetcher.maxBytes) break
      seen.add(chunk.cid)
      chunks.push({ cid: chunk.cid, offset: size, size: chunk.size })
      size += chunk.size
    }
    const batch: PrefetchFile = { path: `${cid}: ${chunks.length} small files`, size, chunks }
    this.modelOf.set(batch, cid)
    this.smallFiles.set(cid, this.prefetcher.openWhole(batch))
  }

  /** The store's files of a held model, reused for a moment: asking is O(files), and lookups come in bursts. */
  private storedFilesOf (cid: CidString): { files: StoredFile[], at: number } {
    const cached = this.storedFiles.get(cid)
    if (cached !== undefined && Date.now() - cached.at < STORED_FILES_TTL_MS) return cached
    return this.askStore(cid)
  }

  private askStore (cid: CidString): { files: StoredFile[], at: number } {
    this.asks++
    const taken = { files: this.store.files(cid), at: Date.now() }
    this.storedFiles.set(cid, taken)
    return taken
  }

  /**
   * What the store says now, for a file that changed since its last answer; undefined when it
   * was asked less than STORED_FILES_MIN_INTERVAL_MS ago: a model whose files are being filled
   * changes all the time, and asking is O(files). The caller then says less (nothing present),
   * which is never wrong, and learns more at its next look.
   */
  private askStoreAgain (cid: CidString): { files: StoredFile[], at: number } | undefined {
    const cached = this.storedFiles.get(cid)
    if (cached !== undefined && Date.now() - cached.at < STORED_FILES_MIN_INTERVAL_MS) return undefined
    return this.askStore(cid)
  }

  /**
   * What the store says of a content file, and which file that is. The store's word must be
   * about the file found at the path: one evicted and added back since would otherwise be
   * described by its predecessor (complete, where the new one is empty). So the file is looked at
   * first, and a cached answer is used only when the file has not changed (ctime: data, creation,
   * rename) since that answer was taken; otherwise the store is asked again, after the look.
   */
  private describe (cid: CidString, index: number, entry: FileEntry, identity: (FileIdentity & { ctimeMs: number }) | undefined, taken: { files: StoredFile[], at: number }, path: string, mayAsk = false): FileContent {
    let stored = taken.files[index]
    let understate = false
    // without an identity nothing will be read from the path, whatever the store says
    if (identity !== undefined && identity.ctimeMs >= taken.at - CTIME_SLACK_MS) {
      const again = mayAsk ? this.askStore(cid) : this.askStoreAgain(cid)
      if (again !== undefined) stored = again.files[index]
      else understate = true
    }
    if (stored === undefined || stored.entry.path !== entry.path) throw new NotFoundError(`${path} is not in the store`)
    return {
      backingPath: stored.path,
      ...(identity !== undefined ? { identity: { dev: identity.dev, ino: identity.ino, birthNs: identity.birthNs } } : {}),
      complete: stored.complete && !understate,
      size: entry.size,
      chunkEnds: entry.chunks.map(chunk => chunk.offset + chunk.size),
      present: understate ? new Uint8Array(stored.present.length) : stored.present
    }
  }

  async content (target: Target, path: string): Promise<FileContent> {
    if (target.kind === 'alias') throw new NotFoundError(`${path} is a link; ask for what it points to`)
    if (target.kind !== 'model-file') throw new IsADirectoryError(path)
    const entry = target.manifest.files[target.index] as FileEntry
    const asks = this.asks
    const taken = this.storedFilesOf(target.cid)
    const known = taken.files[target.index]
    if (known === undefined || known.entry.path !== entry.path) throw new NotFoundError(`${path} is not in the store`)
    // the store was asked just now for the path alone: it may be asked once more, after the look
    const askedForPath = this.asks !== asks
    return this.describe(target.cid, target.index, entry, await identityOf(known.path), this.storedFilesOf(target.cid), path, askedForPath)
  }

  async contents (target: Target, path: string): Promise<Map<string, FileContent>> {
    if (target.kind !== 'model-dir') throw new NotADirectoryError(path)
    const manifest = this.store.getManifest(target.cid)
    if (manifest === undefined) throw new NotFoundError(`${path} is not in the store`)
    const prefix = target.dir === '' ? '' : `${target.dir}/`
    const below = [...target.tree.files].filter(([file]) => file.startsWith(prefix))
    const taken = this.storedFilesOf(target.cid)
    // every file looked at first, in parallel; then one answer of the store for all of them
    const identities = await Promise.all(below.map(async ([, index]) => {
      const known = taken.files[index]
      return known === undefined ? undefined : await identityOf(known.path)
    }))
    const fresh = identities.some(identity => identity !== undefined && identity.ctimeMs >= taken.at - CTIME_SLACK_MS) ? this.askStore(target.cid) : taken
    const out = new Map<string, FileContent>()
    below.forEach(([file, index], i) => {
      const identity = identities[i]
      // the store was asked after every look above, so a fresh answer describes what was seen
      const usable = identity !== undefined && (fresh !== taken || identity.ctimeMs < taken.at - CTIME_SLACK_MS) ? { ...identity, ctimeMs: -Infinity } : identity
      out.set(file.slice(prefix.length), this.describe(target.cid, index, manifest.files[index] as FileEntry, usable, fresh, `${path}/${file.slice(prefix.length)}`))
    })
    return out
  }

  observe (handle: number, position: number, length: number): void {
    const open = this.handles.get(handle)
    if (open === undefined || !Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length <= 0) return
    open.stream.read(position, length)
  }

  async read (handle: number, buffer: Uint8Array, position: number, options: AbortOptions = {}): Promise<number> {
    const open = this.handles.get(handle)
    if (open === undefined) throw new BadHandleError(handle)
    const { view, stream } = open
    const { entry } = view
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`read position must be a non-negative integer, got ${String(position)}`)
    if (position >= entry.size || buffer.byteLength === 0) return 0
    const length = Math.min(buffer.byteLength, entry.size - position)
    this.counters.reads++
    try {
      if (view.complete && view.fd !== undefined) return await this.readFromContent(view.fd, buffer, length, position)
      if (!this.isHeld(view.cid)) {
        this.log.info({ manifestCid: view.cid }, 'model evicted while open: adding it back')
        this.forgetContent(view)
        await this.store.addManifest(view.cid, view.manifest, options)
      }
      stream.read(position, length)
      const fromStore = await this.gather(view, buffer, position, length, options.signal)
      if (fromStore.length === 0) {
        this.counters.readsFromMemory++
        this.counters.bytesRead += length
      }
      for (const [from, to] of fromStore) {
        const part = buffer.subarray(from - position, to - position)
        if (this.isConfirmed(view, from, to - from) && this.contentIsCurrent(view)) {
          await this.readFromContent(view.fd as number, part, to - from, from)
        } else {
          await this.readPartial(view, part, from, to - from, options.signal)
          this.counters.bytesRead += to - from
        }
      }
      this.noticeComplete(view)
      return length
    } catch (err) {
      this.counters.failedReads++
      const cid = (err as { cid?: string }).cid
      this.log.warn({ path: entry.path, manifestCid: view.cid, cid, position, length, err: (err as Error).message }, 'read failed')
      throw err
    }
  }

  private async readFromContent (fd: number, buffer: Uint8Array, length: number, position: number): Promise<number> {
    let done = 0
    while (done < length) {
      const bytesRead = await pread(fd, buffer, done, length - done, position + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    this.counters.bytesRead += done
    return done
  }

  /**
   * Bytes of a chunk verified against its CID and on their way into the store: reads that need
   * the chunk copy from them until `done` is called, which the caller does once the store has
   * settled them (stored or refused); until then `bytes` must not change.
   */
  landing (cid: CidString, bytes: Uint8Array): () => void {
    this.landed.set(cid, bytes)
    const waiting = this.awaitingLanding.get(cid)
    if (waiting !== undefined) {
      this.awaitingLanding.delete(cid)
      for (const give of waiting) give(bytes)
    }
    return () => {
      if (this.landed.get(cid) === bytes) this.landed.delete(cid)
    }
  }

  /**
   * Has every chunk under the range: fetches the missing ones, all at once, and copies into
   * `buffer` the parts of chunks whose verified bytes are landing. Resolves with the ranges (file
   * offsets, ascending) still to be read from the store: none when memory served them all.
   */
  private async gather (view: FileView, buffer: Uint8Array, position: number, length: number, signal?: AbortSignal): Promise<Array<[number, number]>> {
    const { chunks } = view.entry
    const end = position + length
    const fromStore: Array<[number, number]> = []
    const waits: Array<Promise<void>> = []
    let over = false
    for (let index = chunkAt(chunks, position); index < chunks.length; index++) {
      const chunk = chunks[index] as ChunkRef
      if (chunk.offset >= end) break
      const from = Math.max(position, chunk.offset)
      const to = Math.min(end, chunk.offset + chunk.size)
      if (this.store.hasChunk(chunk.cid)) {
        fromStore.push([from, to])
        continue
      }
      const bytes = this.landed.get(chunk.cid)
      if (bytes !== undefined && bytes.byteLength === chunk.size) {
        copyPart(bytes, chunk, buffer, position, from, to)
        continue
      }
      waits.push(this.awaitChunk(view, chunk, signal, landed => {
        // a manifest that gives a CID another size than its bytes have is the store's to refuse;
        // and once the read has failed its buffer is no longer its own (an adapter may reuse it)
        if (landed.byteLength !== chunk.size || over) return false
        copyPart(landed, chunk, buffer, position, from, to)
        return true
      }).then(inMemory => { if (!inMemory) fromStore.push([from, to]) }))
    }
    if (waits.length > 0) {
      const started = performance.now()
      this.counters.readsWaited++
      try {
        await Promise.all(waits)
      } finally {
        over = true
        this.counters.waitMs += performance.now() - started
      }
    }
    // adjacent ranges are one read
    fromStore.sort((a, b) => a[0] - b[0])
    const merged: Array<[number, number]> = []
    for (const range of fromStore) {
      const last = merged[merged.length - 1]
      if (last !== undefined && last[1] === range[0]) last[1] = range[1]
      else merged.push([range[0], range[1]])
    }
    return merged
  }

  /**
   * Fetches a missing chunk for a read: resolves true when its verified bytes landed first and
   * `copy` took what the read needs of them, false when the store has it.
   */
  private async awaitChunk (view: FileView, chunk: ChunkRef, signal: AbortSignal | undefined, copy: (bytes: Uint8Array) => boolean): Promise<boolean> {
    return await new Promise<boolean>((resolve, reject) => {
      let settled = false
      const give = (bytes: Uint8Array): void => {
        if (settled || !copy(bytes)) return
        settled = true
        resolve(true)
      }
      let waiting = this.awaitingLanding.get(chunk.cid)
      if (waiting === undefined) this.awaitingLanding.set(chunk.cid, waiting = new Set())
      waiting.add(give)
      const leave = (): void => {
        waiting.delete(give)
        if (waiting.size === 0 && this.awaitingLanding.get(chunk.cid) === waiting) this.awaitingLanding.delete(chunk.cid)
      }
      // the fetch goes on after the bytes landed (write, sync): its outcome is then the store's business
      this.fetchNow(view, chunk, signal).then(() => {
        leave()
        if (settled) return
        settled = true
        resolve(false)
      }, (err: unknown) => {
        leave()
        if (settled) return
        settled = true
        reject(err)
      })
    })
  }

  private async fetchNow (view: FileView, chunk: ChunkRef, signal?: AbortSignal): Promise<void> {
    const timeout = AbortSignal.timeout(this.readTimeoutMs)
    const combined = signal == null ? timeout : AbortSignal.any([timeout, signal])
    try {
      await this.init.fetcher.fetch({ cid: chunk.cid, size: chunk.size }, { signal: combined, sources: this.init.sourcesFor?.(view.cid, chunk) })
      this.counters.chunksFetched++
      this.arrived(view.cid, chunk.cid)
    } catch (err) {
      if (timeout.aborted && signal?.aborted !== true) throw new ReadTimeoutError(chunk.cid, view.entry.path, this.readTimeoutMs)
      throw err
    }
  }

  /** Bytes of a file not yet complete, through the store; fills what the store finds missing and tries again. */
  private async readPartial (view: FileView, buffer: Uint8Array, position: number, length: number, signal?: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        const bytes = await this.store.read(view.cid, view.entry.path, position, length, { signal })
        buffer.set(bytes)
        this.confirm(view, position, length)
        return
      } catch (err) {
        if (attempt >= READ_RETRIES) throw err
        if (err instanceof ChunkMissingError) {
          const chunk = view.entry.chunks.find(c => c.cid === err.cid)
          if (chunk === undefined) throw err
          if (this.store.hasChunk(chunk.cid)) {
            // present in another file of the store (shared content): copy it over, verified again on the way
            await this.store.putChunk(chunk.cid, await this.store.readChunk(chunk.cid, { signal }), { signal })
          } else {
            await this.fetchNow(view, chunk, signal)
          }
        } else if (err instanceof NotFoundError && !this.isHeld(view.cid)) {
          this.forgetContent(view)
          await this.store.addManifest(view.cid, view.manifest, { signal })
        } else {
          throw err
        }
      }
    }
  }

  /** whether the store has confirmed every chunk under the range is in this file's content */
  private isConfirmed (view: FileView, position: number, length: number): boolean {
    if (view.fd === undefined) return false
    const { chunks } = view.entry
    const end = position + length
    for (let index = chunkAt(chunks, position); index < chunks.length && (chunks[index] as ChunkRef).offset < end; index++) {
      if (view.confirmed[index] !== 1) return false
    }
    return true
  }

  private confirm (view: FileView, position: number, length: number): void {
    const { chunks } = view.entry
    const end = position + length
    for (let index = chunkAt(chunks, position); index < chunks.length && (chunks[index] as ChunkRef).offset < end; index++) view.confirmed[index] = 1
    if (view.fd === undefined) void this.openContent(view)
  }

  /**
   * Whether the descriptor still names the store's file. One the store deleted (its model
   * evicted, perhaps added again since as a new, empty file) would still read right for the
   * chunks confirmed in it, but it holds the deleted file's space, and chunks fetched since land
   * in the new file: so it is let go and the new file opened.
   */
  private contentIsCurrent (view: FileView): boolean {
    if (view.fd === undefined) return false
    // an eviction shows at once (the model is not held); this catches one undone again meanwhile
    const now = performance.now()
    if (now - view.checkedAt < CONTENT_CHECK_INTERVAL_MS) return true
    try {
      if (fstatSync(view.fd).nlink > 0) {
        view.checkedAt = now
        return true
      }
    } catch {}
    this.forgetContent(view)
    return false
  }

  private forgetContent (view: FileView): void {
    if (view.fd !== undefined) view.retired.push(view.fd)
    view.fd = undefined
    view.checkedAt = -Infinity
    view.complete = false
    view.confirmed.fill(0)
    view.scan = 0
  }

  /** Once every chunk of an open file is present, its reads are one pread each. */
  private noticeComplete (view: FileView): void {
    const { chunks } = view.entry
    while (view.scan < chunks.length && this.store.hasChunk((chunks[view.scan] as ChunkRef).cid)) view.scan++
    if (view.scan < chunks.length) return
    const now = performance.now()
    if (now - view.lastCompleteCheck < 1000) return
    view.lastCompleteCheck = now
    void this.openContent(view)
  }

  /** Opens the content file (again, when the store replaced it) and notes whether it is complete. */
  private async openContent (view: FileView): Promise<void> {
    view.opening ??= (async () => {
      let taken
      try {
        taken = this.storedFilesOf(view.cid)
      } catch {
        return
      }
      const known = taken.files[view.index]
      if (known === undefined || known.entry.path !== view.entry.path) return
      if (view.fd !== undefined && !this.contentIsCurrent(view)) return
      if (view.fd === undefined) {
        try {
          const fd = await openReadOnly(known.path)
          if (view.fd !== undefined || !this.views.has(view.key)) {
            closeQuietly(fd)
            return
          }
          view.fd = fd
        } catch (err) {
          this.log.debug({ path: known.path, err: (err as Error).message }, 'content file could not be opened; reading through the store')
          return
        }
      }
      // what the store says must be about the file the descriptor names: asked again unless that
      // file has not changed (data, links) since the last answer
      let ctimeMs: number
      try {
        const st = fstatSync(view.fd, { bigint: true })
        if (st.nlink === 0n) {
          this.forgetContent(view)
          return
        }
        ctimeMs = Number(st.ctimeNs / 1_000_000n)
      } catch {
        return
      }
      // asked too recently to ask again: not known complete yet (noticeComplete looks again)
      const stored = ctimeMs < taken.at - CTIME_SLACK_MS ? known : this.askStoreAgain(view.cid)?.files[view.index]
      // complete: every chunk is in this very file, which the store no longer changes
      if (stored?.complete === true && stored.path === known.path) {
        view.complete = true
        view.confirmed.fill(1)
      }
    })().finally(() => { view.opening = undefined })
    await view.opening
  }

  close (): void {
    this.prefetcher.close()
    for (const view of this.views.values()) {
      if (view.fd !== undefined) closeQuietly(view.fd)
      for (const fd of view.retired) closeQuietly(fd)
    }
    this.views.clear()
    this.handles.clear()
  }

  stats (): ViewStats {
    return { ...this.counters, openFiles: this.handles.size, prefetch: this.prefetcher.stats() }
  }

  private isHeld (cid: CidString): boolean {
    return this.store.getManifest(cid) !== undefined
  }
}
