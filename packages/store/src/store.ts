/**
 * The local store: each distinct file content is one plain file, filled in place.
 *
 * The code follows the design's seam: content files and their presence maps in content.ts, the
 * commit loop that makes writes durable and records them in commit.ts, and here the models (held
 * manifests, refs, pins, leases, gc) and the chunk API built on the other two.
 *
 * ## Layout under `dir`
 *
 * - `content/<key>`: the file's bytes and nothing else, created sparse at full size with
 *   ftruncate and filled chunk by chunk. `key` is a SHA-256 over the file's size and chunk list
 *   (offsets, sizes, CIDs), so identical content in different manifests (or twice in one) shares
 *   one file. A complete file is chmod 0444 and can be handed to the kernel (FUSE passthrough,
 *   mmap) as is; a present range is served with one pread.
 * - `content/<key>.have`: the presence journal, fixed-size self-checking records appended in
 *   order (see journal.ts). It is the only record of which chunks are present.
 * - `manifests/<manifestCid>`: the canonical manifest bytes, written atomically.
 * - `models.json`: held models (refs, pinned, lastUsed), rewritten atomically (temp file, fsync,
 *   rename, fsync of the directory) and validated with zod when loaded.
 * - `lock`: keeps a second process out (see lock.ts).
 *
 * ## Why a recorded chunk is never wrong
 *
 * putChunk hashes the bytes against the CID before anything touches the disk, pwrites them into
 * every slot (content file + offset) that needs that CID, and only then hands the slots to the
 * commit loop. A commit takes everything written since the previous one: it fdatasyncs the touched
 * content files, then appends one record per slot to each journal and fdatasyncs the journal.
 * Only after that are the slots marked present in memory and the puts resolved. A crash at any
 * point leaves, at worst, bytes on disk without a record (fetched again later) or a torn journal
 * tail (its checksum fails, it is ignored and truncated at the next open); never a record without
 * its bytes. Many concurrent puts share one pair of fsyncs, because puts arriving while a commit
 * is in flight all go into the next one. A put settles only after every write of its bytes has
 * (failed ones included), so its caller may reuse the buffer for other bytes from then on.
 *
 * A chunk may also be written elsewhere (a byte worker thread, by path, through its own
 * descriptors): planWrite names the content files and offsets that need it, the writer verifies,
 * pwrites and fdatasyncs, and recordWritten hands the slots to the same commit loop, without the
 * data fsync the writer already did. A slot whose content was removed meanwhile is not recorded,
 * and a slot already present is not recorded again.
 *
 * fillFromLocal copies a chunk that another content file already holds, re-hashing it on the
 * way, instead of fetching it. verify() re-hashes present chunks from disk; a chunk that no longer
 * matches is marked missing in memory at once and a "dropped" record is journaled, so the next
 * pull fetches it again.
 *
 * ## Index and lifecycle
 *
 * At open the store reads models.json, each held manifest and each journal, and builds in
 * memory: CID → slots, and per content file a presence map. Content files and manifests no held
 * model refers to (left by a crash between steps of addManifest or remove) are deleted then.
 * addManifest writes the manifest, creates missing content files, then records the model in
 * models.json; remove drops the model from models.json first, then deletes the content no other
 * held model uses. Structural changes and commits run one at a time (`exclusive`), so a journal
 * is never appended after its file was deleted. gc evicts unpinned models, least recently used
 * first, until the bytes present are within the budget; content shared with a model that stays
 * stays too.
 *
 * ## Leases
 *
 * A lease says a model is in use right now: a pull filling it, a file of it open in the FUSE
 * view. gc (budget or not) and remove() never take a leased model, so a pull never finds its
 * slots gone under it and a reader never loses the file it has open. Leases live in memory only:
 * they belong to the running process, and a restart ends every use they stood for. A pull takes
 * its lease before its manifest is added (addAndLease), so there is no moment in which a gc run
 * queued behind the add could evict the model it is about to fill. gc also collects models that
 * hold no bytes and that nothing leases, pins or names (the view adds manifests it is asked about
 * by CID with no name), once unused for a grace period (a `stat` is often followed by an open);
 * otherwise nothing would ever remove them.
 */
import { chmod, mkdir, open, readFile, readdir, stat, statfs } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { parseChunkCid, verifyChunk } from '@swarm/chunker'
import {
  AbortError,
  ChunkMissingError,
  ChunkVerificationError,
  DiskFullError,
  InvalidManifestError,
  NotFoundError,
  silentLogger
} from '@swarm/interface'
import {
  InvalidManifestCidError,
  ManifestCidMismatchError,
  decodeManifest,
  encodeManifest,
  formatRef,
  parseManifestCid,
  parseRef,
  totalBytes
} from '@swarm/manifest'
import {
  CONTENT_DIR,
  DEFAULT_MAX_OPEN_FILES,
  DEFAULT_PUT_SOURCE,
  DEFAULT_UNUSED_GRACE_MS,
  DISK_MARGIN_FRACTION,
  JOURNAL_SUFFIX,
  LOCAL_COPY_CONCURRENCY,
  LOCK_FILE,
  MANIFESTS_DIR,
  MAX_DISK_MARGIN_BYTES,
  MAX_WRITE_ROUNDS,
  MIN_DISK_MARGIN_BYTES,
  MODELS_FILE,
  PARTIAL_FILE_MODE,
  TEMP_SUFFIX
} from './constants.js'
import { CommitLog } from './commit.js'
import {
  clearPresent,
  contentKey,
  createContentFile,
  diskError,
  firstChunkAt,
  formatBytes,
  isComplete,
  openContentFile,
  slotChunk,
  writeFully
} from './content.js'
import type { Content, Slot } from './content.js'
import { ManifestConflictError, ModelLeasedError, StoreClosedError } from './errors.js'
import { FdPool } from './fd-pool.js'
import type { FileLease, OpenFile } from './fd-pool.js'
import { fsyncDir, isMissing, unlinkIfPresent, writeFileAtomic } from './fs-util.js'
import { acquireLock } from './lock.js'
import type { StoreLock } from './lock.js'
import { loadModelsFile, saveModelsFile } from './models-file.js'
import type { HeldModelRecord } from './models-file.js'
import type {
  AbortOptions,
  ChunkRef,
  ChunkRequest,
  ChunkStore,
  CidString,
  FileEntry,
  GcEvicted,
  GcReport,
  GcSkipped,
  HeldModel,
  Logger,
  Manifest,
  PutResult,
  ReadChunkOptions,
  StoreLease,
  StoredFile
} from '@swarm/interface'

export type EvictReason = 'remove' | 'gc'

export interface EvictDetails {
  reason: EvictReason
  /** chunk CIDs the store held before and no longer holds in any file */
  droppedChunks: CidString[]
}

export interface StoreInit {
  /** data directory; created if missing */
  dir: string
  /** default budget for gc(): bytes present on disk, shared content counted once */
  budgetBytes?: number
  logger?: Logger
  /** called after a model leaves the store (remove or gc), e.g. to withdraw adverts */
  onEvict?(manifestCid: CidString, details: EvictDetails): void
  /** descriptors kept open at once; idle ones beyond this are closed */
  maxOpenFiles?: number
  /**
   * free space to keep beyond a model's missing bytes when it is added; default 1% of the file
   * system, at least 4 MiB and at most 1 GiB
   */
  diskMarginBytes?: number
  /** opens content files; tests pass one that injects faults at the descriptor */
  openFile?: OpenFile
  /** gc collects an unused model that holds no bytes only once it has not been used for this long */
  unusedGraceMs?: number
}

export interface PutChunkOptions extends AbortOptions {
  /** named in the ChunkVerificationError when the bytes do not match */
  source?: string
  /** called once the bytes have matched the CID, before they are written (a reader may take them from memory) */
  onVerified?(): void
}

/** Where a chunk is to be written by someone else (a worker thread): see {@link Store.planWrite}. */
export interface WritePlan {
  readonly cid: CidString
  /** the chunk's size as the held manifests list it */
  readonly size: number
  /** the store's data directory (for messages) */
  readonly dir: string
  /** every content file and offset that still needs the chunk; empty when it is present */
  readonly slots: ReadonlyArray<{ readonly path: string, readonly offset: number }>
}

export interface RecordWrittenOptions extends AbortOptions {
  /** named in logs */
  source?: string
}

export interface VerifyOptions extends AbortOptions {
  /** called after each chunk is re-hashed */
  onProgress?(progress: { checkedBytes: number, totalBytes: number }): void
}

export interface BadChunk {
  /** path of the file in the model */
  path: string
  cid: CidString
  offset: number
  size: number
}

export interface VerifyReport {
  manifestCid: CidString
  /** present chunks re-hashed (shared content once) */
  checkedChunks: number
  checkedBytes: number
  /** chunks whose bytes no longer match their CID; they are now recorded as missing */
  bad: BadChunk[]
  /** unique chunk CIDs of the model not present after the check, bad ones included */
  missingChunks: number
}

export interface StoreUsage {
  /** bytes present on disk, shared content counted once */
  presentBytes: number
  /** bytes of all content files once complete */
  totalBytes: number
}

export interface AddManifestOptions extends AbortOptions {
  /** `name:tag` to record for the model (moved here from whichever model had it) */
  ref?: string
  /**
   * refuse with DiskFullError when the model's missing bytes (plus a margin) do not fit in the
   * data directory's free space (default true); a reader that fetches only what it reads may
   * pass false
   */
  requireSpace?: boolean
}

export interface Store extends ChunkStore {
  /** absolute data directory */
  readonly dir: string
  addManifest(manifestCid: CidString, manifest: Manifest, options?: AddManifestOptions): Promise<void>
  /**
   * addManifest with a lease taken before the model is added, so no gc can evict it between the
   * two (a pull holds one from before its manifest is added until it ends). Released if the add fails.
   */
  addAndLease(manifestCid: CidString, manifest: Manifest, holder: string, options?: AddManifestOptions): Promise<StoreLease>
  putChunk(cid: CidString, bytes: Uint8Array, options?: PutChunkOptions): Promise<PutResult>
  /**
   * Where the bytes of `cid` go, for a writer outside this store (a worker thread) that verifies
   * them against the CID, pwrites them at each slot through its own descriptor and fdatasyncs
   * before it hands the plan to `recordWritten`. Rejects with NotFoundError when no held file
   * needs the chunk.
   */
  planWrite(cid: CidString): WritePlan
  /**
   * Records a plan's chunk as present, exactly as putChunk records what it wrote: the caller
   * vouches that the bytes were verified and are durable at every slot. A slot whose content was
   * removed since the plan is refused (not recorded); a slot already present is not recorded
   * again; a plan is recorded at most once. `written` is false when nothing was recorded.
   */
  recordWritten(plan: WritePlan, options?: RecordWrittenOptions): Promise<PutResult>
  /**
   * Where a present chunk's bytes lie, for a reader on another thread (a byte worker serving
   * peers): a content file and the chunk's offset in it; undefined when the chunk is absent. The
   * answer holds until the model leaves the store; a reader that opens the file after that finds
   * it gone.
   */
  locateChunk(cid: CidString): { path: string, offset: number, size: number } | undefined
  /** re-hashes every present chunk of a model from disk; bad ones become missing again */
  verify(manifestCid: CidString, options?: VerifyOptions): Promise<VerifyReport>
  usage(): StoreUsage
}



interface Model {
  readonly manifestCid: CidString
  readonly manifest: Manifest
  readonly bytes: Uint8Array
  readonly files: ReadonlyArray<{ entry: FileEntry, content: Content }>
  readonly fileByPath: ReadonlyMap<string, number>
  readonly totalBytes: number
  refs: string[]
  pinned: boolean
  lastUsed: number
}


/** Opens (creating if needed) the store in `init.dir`; rejects with StoreLockedError if another process has it open. */
export async function createStore (init: StoreInit, options: AbortOptions = {}): Promise<Store> {
  if (typeof init.dir !== 'string' || init.dir === '') throw new TypeError('store dir must be a non-empty path')
  if (init.budgetBytes !== undefined) checkBudget(init.budgetBytes)
  const maxOpenFiles = init.maxOpenFiles ?? DEFAULT_MAX_OPEN_FILES
  if (!Number.isSafeInteger(maxOpenFiles) || maxOpenFiles < 1) throw new TypeError(`maxOpenFiles must be a positive integer, got ${maxOpenFiles}`)
  if (init.unusedGraceMs !== undefined && (!Number.isFinite(init.unusedGraceMs) || init.unusedGraceMs < 0)) throw new RangeError(`unusedGraceMs must be a non-negative number, got ${init.unusedGraceMs}`)
  if (init.diskMarginBytes !== undefined && (!Number.isSafeInteger(init.diskMarginBytes) || init.diskMarginBytes < 0)) throw new RangeError(`diskMarginBytes must be a non-negative integer, got ${init.diskMarginBytes}`)
  throwIfAborted(options.signal)
  const dir = resolve(init.dir)
  await mkdir(join(dir, CONTENT_DIR), { recursive: true })
  await mkdir(join(dir, MANIFESTS_DIR), { recursive: true })
  const lock = await acquireLock(dir, join(dir, LOCK_FILE))
  const store = new LocalStore(dir, init, maxOpenFiles, lock)
  try {
    await store.load(options)
  } catch (err) {
    await store.close()
    throw err
  }
  return store
}

/** Re-hashes every present chunk of a held model from disk; see {@link Store.verify}. */
export async function verifyModel (store: Store, manifestCid: CidString, options?: VerifyOptions): Promise<VerifyReport> {
  return await store.verify(manifestCid, options)
}

class LocalStore implements Store {
  readonly dir: string
  private readonly contentDir: string
  private readonly manifestsDir: string
  private readonly modelsPath: string
  private readonly log: Logger
  private readonly pool: FdPool
  private readonly held = new Map<CidString, Model>()
  private readonly contents = new Map<string, Content>()
  private readonly slotsByCid = new Map<CidString, Slot[]>()
  private readonly adding = new Map<CidString, Promise<Model>>()
  /** manifest CID → open leases (id → holder); an entry may precede the model (addAndLease) */
  private readonly leases = new Map<CidString, Map<number, string>>()
  private nextLeaseId = 0
  private readonly inflight = new Set<Promise<unknown>>()
  /** the slots behind each plan handed out and not yet recorded */
  private readonly plans = new WeakMap<WritePlan, Slot[]>()
  private readonly commits: CommitLog
  private exclusiveTail: Promise<void> = Promise.resolve()
  private persistTail: Promise<void> = Promise.resolve()
  private persistQueued: Promise<void> | undefined
  private closed = false
  private closing: Promise<void> | undefined

  constructor (dir: string, private readonly init: StoreInit, maxOpenFiles: number, private readonly lock: StoreLock) {
    this.dir = dir
    this.contentDir = join(dir, CONTENT_DIR)
    this.manifestsDir = join(dir, MANIFESTS_DIR)
    this.modelsPath = join(dir, MODELS_FILE)
    this.log = (init.logger ?? silentLogger).child({ component: 'store' })
    this.pool = new FdPool(maxOpenFiles, init.openFile)
    this.commits = new CommitLog({ pool: this.pool, log: this.log, exclusive: async fn => await this.exclusive(fn), diskError: async (err, doing) => await diskError(dir, err, doing) })
  }

  // ---- open -------------------------------------------------------------------------------

  async load (options: AbortOptions): Promise<void> {
    const records = await loadModelsFile(this.modelsPath)
    let dropped = false
    for (const record of records) {
      throwIfAborted(options.signal)
      const manifest = await this.loadManifest(record.manifestCid)
      if (manifest === undefined) {
        dropped = true
        continue
      }
      const files: Array<{ entry: FileEntry, content: Content }> = []
      for (const entry of manifest.manifest.files) {
        const key = contentKey(entry)
        const content = this.contents.get(key) ?? this.register(await openContentFile(this.contentDir, key, entry, this.log))
        content.users.add(record.manifestCid)
        files.push({ entry, content })
      }
      this.held.set(record.manifestCid, makeModel(record.manifestCid, manifest.manifest, manifest.bytes, files, record))
    }
    if (dropped) await this.persistModels()
    await this.removeOrphans()
    this.log.debug({ models: this.held.size, contents: this.contents.size }, 'store opened')
  }

  /** a held manifest, or undefined (logged) when its file is gone or damaged so the model is dropped */
  private async loadManifest (manifestCid: CidString): Promise<{ manifest: Manifest, bytes: Uint8Array } | undefined> {
    let bytes: Uint8Array
    try {
      bytes = await readFile(join(this.manifestsDir, manifestCid))
    } catch (err) {
      if (!isMissing(err)) throw err
      this.log.warn({ manifestCid }, 'manifest of a held model is missing; dropping the model')
      return undefined
    }
    try {
      const manifest = decodeManifest(bytes, { expectedCid: manifestCid })
      checkLayout(manifest)
      return { manifest, bytes }
    } catch (err) {
      if (!(err instanceof InvalidManifestError || err instanceof ManifestCidMismatchError || err instanceof InvalidManifestCidError)) throw err
      this.log.warn({ manifestCid, err: err.message }, 'manifest of a held model is damaged; dropping the model')
      return undefined
    }
  }



  private register (content: Content): Content {
    this.contents.set(content.key, content)
    content.chunks.forEach((chunk, index) => {
      const slots = this.slotsByCid.get(chunk.cid)
      if (slots === undefined) this.slotsByCid.set(chunk.cid, [{ content, index }])
      else slots.push({ content, index })
    })
    return content
  }

  private unregister (content: Content): void {
    content.removed = true
    this.contents.delete(content.key)
    for (const chunk of new Set(content.chunks.map(c => c.cid))) {
      const slots = this.slotsByCid.get(chunk)?.filter(slot => slot.content !== content)
      if (slots === undefined || slots.length === 0) this.slotsByCid.delete(chunk)
      else this.slotsByCid.set(chunk, slots)
    }
  }

  private async removeOrphans (): Promise<void> {
    let removed = 0
    for (const name of await readdir(this.contentDir)) {
      const key = name.endsWith(JOURNAL_SUFFIX) ? name.slice(0, -JOURNAL_SUFFIX.length) : name
      if (this.contents.has(key)) continue
      await unlinkIfPresent(join(this.contentDir, name))
      removed++
    }
    for (const name of await readdir(this.manifestsDir)) {
      if (this.held.has(name)) continue
      await unlinkIfPresent(join(this.manifestsDir, name))
      removed++
    }
    await unlinkIfPresent(this.modelsPath + TEMP_SUFFIX)
    if (removed > 0) {
      await fsyncDir(this.contentDir)
      this.log.info({ removed }, 'removed files no held model refers to')
    }
  }

  // ---- models -----------------------------------------------------------------------------

  async addManifest (manifestCid: CidString, manifest: Manifest, options: AddManifestOptions = {}): Promise<void> {
    await this.track(async () => {
      throwIfAborted(options.signal)
      // the canonical form, so 'llama' and 'llama:latest' are one ref
      const ref = options.ref === undefined ? undefined : formatRef(parseRef(options.ref))
      const requireSpace = options.requireSpace !== false
      let model = this.held.get(manifestCid)
      if (model !== undefined && requireSpace) await this.checkSpace(manifestCid, await this.unallocatedBytes(model.files.map(f => f.content)))
      if (model === undefined) {
        let adding = this.adding.get(manifestCid)
        if (adding === undefined) {
          adding = this.addModel(manifestCid, manifest, requireSpace).finally(() => this.adding.delete(manifestCid))
          this.adding.set(manifestCid, adding)
        }
        model = await adding
      }
      if (ref !== undefined && !model.refs.includes(ref)) {
        // a name:tag names one model: moving it here takes it from whichever held it before
        for (const other of this.held.values()) other.refs = other.refs.filter(r => r !== ref)
        model.refs.push(ref)
        await this.persistModels()
      }
    })
  }

  private async addModel (manifestCid: CidString, manifest: Manifest, requireSpace: boolean): Promise<Model> {
    // a CID is also a file name here: nothing but a canonical manifest CID gets that far
    if (parseManifestCid(manifestCid) !== manifestCid) throw new InvalidManifestCidError(`${manifestCid} is not in canonical base32 form`)
    const encoded = encodeManifest(manifest)
    if (encoded.cid !== manifestCid) throw new ManifestCidMismatchError(manifestCid, encoded.cid)
    // our own copy, exactly what the canonical bytes say
    const canonical = decodeManifest(encoded.bytes, { expectedCid: manifestCid })
    checkLayout(canonical)
    return await this.exclusive(async () => {
      const existing = this.held.get(manifestCid)
      if (existing !== undefined) return existing
      await this.resolveSizeConflicts(manifestCid, canonical)
      if (requireSpace) {
        // content another model already has counts only for what it has yet to take on disk
        const fresh = new Map<string, number>()
        const held: Content[] = []
        for (const entry of canonical.files) {
          const key = contentKey(entry)
          const content = this.contents.get(key)
          if (content === undefined) fresh.set(key, entry.size)
          else held.push(content)
        }
        await this.checkSpace(manifestCid, [...fresh.values()].reduce((sum, n) => sum + n, 0) + await this.unallocatedBytes(held))
      }
      await writeFileAtomic(join(this.manifestsDir, manifestCid), encoded.bytes)
      const files: Array<{ entry: FileEntry, content: Content }> = []
      try {
        for (const entry of canonical.files) {
          const key = contentKey(entry)
          const content = this.contents.get(key) ?? this.register(await createContentFile(this.contentDir, key, entry))
          content.users.add(manifestCid)
          files.push({ entry, content })
        }
        await fsyncDir(this.contentDir)
      } catch (err) {
        await this.releaseContents(manifestCid, files.map(f => f.content))
        throw err
      }
      const model = makeModel(manifestCid, canonical, encoded.bytes, files, { refs: [], pinned: false, lastUsed: Date.now() })
      this.held.set(manifestCid, model)
      await this.persistModels()
      this.log.info({ manifestCid, files: files.length, bytes: model.totalBytes }, 'model added')
      return model
    })
  }

  /**
   * Refuses a manifest that lists a chunk with another size than a held one does, so a put never
   * meets slots of one CID that disagree (whichever size the bytes had, some slot would refuse
   * them, and the source would be blamed). A held model that conflicts but holds no bytes and
   * that nothing uses gives way instead: a manifest someone merely looked up by CID must not
   * keep a real model out. The caller holds `exclusive`.
   */
  private async resolveSizeConflicts (manifestCid: CidString, manifest: Manifest): Promise<void> {
    const conflicting = new Map<CidString, ManifestConflictError>()
    for (const file of manifest.files) {
      for (const chunk of file.chunks) {
        const slot = this.slotsByCid.get(chunk.cid)?.[0]
        if (slot === undefined) continue
        const heldSize = slotChunk(slot).size
        if (heldSize === chunk.size) continue
        for (const user of slot.content.users) {
          if (!conflicting.has(user)) conflicting.set(user, new ManifestConflictError(manifestCid, user, chunk.cid, chunk.size, heldSize))
        }
      }
    }
    if (conflicting.size === 0) return
    for (const [user, error] of conflicting) {
      const model = this.held.get(user)
      if (model === undefined || !this.isUnused(model)) throw error
    }
    for (const user of conflicting.keys()) {
      this.log.warn({ manifestCid, gaveWay: user }, 'an unused manifest that conflicts with a new one was removed')
      await this.removeModel(user, 'gc')
    }
  }

  /**
   * bytes these (sparse) content files have yet to take on disk, each counted once: their size
   * less the blocks already allocated, which include chunks written but never recorded (a write
   * that met a full disk), so those are not counted twice
   */
  private async unallocatedBytes (contents: readonly Content[]): Promise<number> {
    let bytes = 0
    for (const content of new Set(contents)) {
      const missing = content.size - content.presentBytes
      if (missing === 0) continue
      const info = await stat(content.dataPath).catch(() => undefined)
      bytes += info === undefined ? missing : Math.max(0, Math.min(missing, content.size - info.blocks * 512))
    }
    return bytes
  }

  /** refuses a model whose missing bytes, plus a margin, exceed the data directory's free space */
  private async checkSpace (manifestCid: CidString, neededBytes: number): Promise<void> {
    if (neededBytes === 0) return
    const fs = await statfs(this.dir)
    const freeBytes = fs.bavail * fs.bsize
    const margin = this.init.diskMarginBytes ?? Math.min(MAX_DISK_MARGIN_BYTES, Math.max(MIN_DISK_MARGIN_BYTES, Math.round(fs.blocks * fs.bsize * DISK_MARGIN_FRACTION)))
    if (neededBytes + margin <= freeBytes) return
    throw new DiskFullError(this.dir, neededBytes + margin, freeBytes,
      `disk full: model ${manifestCid} needs ${formatBytes(neededBytes)} more plus a margin of ${formatBytes(margin)}, but the file system of the data dir ${this.dir} has ${formatBytes(freeBytes)} free; free space or lower the cache budget (swarm gc), then pull again`)
  }


  /** holds no bytes, and no lease, pin or name keeps it */
  private isUnused (model: Model): boolean {
    return modelPresentBytes(model) === 0 && model.refs.length === 0 && !model.pinned && !this.isLeased(model.manifestCid)
  }

  getManifest (manifestCid: CidString): Manifest | undefined {
    return this.held.get(manifestCid)?.manifest
  }

  getManifestBytes (manifestCid: CidString): Uint8Array | undefined {
    return this.held.get(manifestCid)?.bytes.slice()
  }

  models (): HeldModel[] {
    return [...this.held.values()].map(model => ({
      manifestCid: model.manifestCid,
      refs: [...model.refs],
      pinned: model.pinned,
      totalBytes: model.totalBytes,
      presentBytes: model.files.reduce((sum, file) => sum + file.content.presentBytes, 0),
      lastUsed: model.lastUsed
    }))
  }

  files (manifestCid: CidString): StoredFile[] {
    return this.requireModel(manifestCid).files.map(({ entry, content }) => ({
      entry,
      path: content.dataPath,
      complete: isComplete(content),
      present: Uint8Array.from(content.present)
    }))
  }

  usage (): StoreUsage {
    let presentBytes = 0
    let total = 0
    for (const content of this.contents.values()) {
      presentBytes += content.presentBytes
      total += content.size
    }
    return { presentBytes, totalBytes: total }
  }

  async pin (manifestCid: CidString, pinned: boolean): Promise<void> {
    await this.track(async () => {
      const model = this.requireModel(manifestCid)
      if (model.pinned === pinned) return
      model.pinned = pinned
      await this.persistModels()
    })
  }

  touch (manifestCid: CidString): void {
    this.assertOpen()
    const model = this.requireModel(manifestCid)
    model.lastUsed = Math.max(Date.now(), model.lastUsed)
    this.persistModels().catch(err => { this.log.error({ err }, 'could not save models.json') })
  }

  async addAndLease (manifestCid: CidString, manifest: Manifest, holder: string, options: AddManifestOptions = {}): Promise<StoreLease> {
    this.assertOpen()
    const lease = this.openLease(manifestCid, holder)
    try {
      await this.addManifest(manifestCid, manifest, options)
    } catch (err) {
      lease.release()
      throw err
    }
    return lease
  }

  lease (manifestCid: CidString, holder: string): StoreLease {
    this.assertOpen()
    this.requireModel(manifestCid)
    return this.openLease(manifestCid, holder)
  }

  holders (manifestCid: CidString): string[] {
    return [...new Set(this.leases.get(manifestCid)?.values())]
  }

  private openLease (manifestCid: CidString, holder: string): StoreLease {
    if (typeof holder !== 'string' || holder === '') throw new TypeError('a lease needs a non-empty holder name')
    const id = this.nextLeaseId++
    let open = this.leases.get(manifestCid)
    if (open === undefined) {
      open = new Map()
      this.leases.set(manifestCid, open)
    }
    open.set(id, holder)
    let released = false
    return {
      manifestCid,
      holder,
      release: () => {
        if (released) return
        released = true
        const current = this.leases.get(manifestCid)
        current?.delete(id)
        if (current?.size === 0) this.leases.delete(manifestCid)
      }
    }
  }

  private isLeased (manifestCid: CidString): boolean {
    return (this.leases.get(manifestCid)?.size ?? 0) > 0
  }

  async remove (manifestCid: CidString): Promise<void> {
    await this.track(async () => {
      this.requireModel(manifestCid)
      this.refuseIfLeased(manifestCid)
      await this.exclusive(async () => {
        // it may have gone, or been leased, while we waited our turn
        if (!this.held.has(manifestCid)) return
        this.refuseIfLeased(manifestCid)
        await this.removeModel(manifestCid, 'remove')
      })
    })
  }

  private refuseIfLeased (manifestCid: CidString): void {
    if (this.isLeased(manifestCid)) throw new ModelLeasedError(manifestCid, this.holders(manifestCid))
  }

  async gc (options: AbortOptions & { budgetBytes?: number } = {}): Promise<GcReport> {
    return await this.track(async () => {
      const budget = options.budgetBytes ?? this.init.budgetBytes
      if (budget !== undefined) checkBudget(budget)
      return await this.exclusive(async () => {
        const evicted: GcEvicted[] = []
        const skipped: GcSkipped[] = []
        const evict = async (model: Model, reason: GcEvicted['reason']): Promise<void> => {
          const before = this.usage().presentBytes
          await this.removeModel(model.manifestCid, 'gc')
          evicted.push({ manifestCid: model.manifestCid, refs: [...model.refs], reason, freedBytes: before - this.usage().presentBytes })
        }
        // a manifest added only to be looked at (the view's by-cid) that never got bytes: nothing
        // would ever remove it, and it costs a name in every listing and an advert
        const grace = this.init.unusedGraceMs ?? DEFAULT_UNUSED_GRACE_MS
        for (const model of [...this.held.values()]) {
          if (!this.isUnused(model) || Date.now() - model.lastUsed < grace) continue
          throwIfAborted(options.signal)
          await evict(model, 'unused')
        }
        if (budget !== undefined) {
          const candidates = [...this.held.values()].sort((a, b) => a.lastUsed - b.lastUsed)
          for (const model of candidates) {
            if (this.usage().presentBytes <= budget) break
            throwIfAborted(options.signal)
            const kept = this.keepReason(model)
            if (kept !== undefined) {
              skipped.push(kept)
              continue
            }
            await evict(model, 'budget')
          }
        }
        const { presentBytes } = this.usage()
        if (budget !== undefined && presentBytes > budget) {
          this.log.warn({ presentBytes, budgetBytes: budget, skipped: skipped.map(s => `${s.manifestCid} (${s.reason})`) }, 'over budget with nothing left to evict')
        }
        return { evicted, skipped, presentBytes, budgetBytes: budget }
      })
    })
  }

  /** why gc must keep `model`, or undefined when it may go */
  private keepReason (model: Model): GcSkipped | undefined {
    const base = { manifestCid: model.manifestCid, refs: [...model.refs] }
    if (model.pinned) return { ...base, reason: 'pinned' }
    if (this.isLeased(model.manifestCid)) return { ...base, reason: 'leased', holders: this.holders(model.manifestCid) }
    // a model whose every file is also a pinned model's frees nothing: keep its name
    if (model.files.every(file => [...file.content.users].some(user => this.held.get(user)?.pinned === true))) return { ...base, reason: 'shares-pinned' }
    return undefined
  }

  /** drops a model and the content only it used; the caller holds `exclusive` */
  private async removeModel (manifestCid: CidString, reason: 'remove' | 'gc'): Promise<void> {
    const model = this.held.get(manifestCid)
    if (model === undefined) return
    const heldBefore = new Set<CidString>()
    for (const { content } of model.files) {
      content.chunks.forEach((chunk, index) => { if (content.present[index] === 1) heldBefore.add(chunk.cid) })
    }
    // forgotten durably first: a crash after this leaves only orphans, deleted at the next open
    this.held.delete(manifestCid)
    await this.persistModels()
    await this.releaseContents(manifestCid, model.files.map(f => f.content))
    await unlinkIfPresent(join(this.manifestsDir, manifestCid))
    const droppedChunks = [...heldBefore].filter(cid => !this.hasChunk(cid))
    this.log.info({ manifestCid, reason, droppedChunks: droppedChunks.length }, 'model removed')
    try {
      this.init.onEvict?.(manifestCid, { reason, droppedChunks })
    } catch (err) {
      this.log.error({ err, manifestCid }, 'onEvict threw')
    }
  }

  /** drops `manifestCid` as a user of `contents` and deletes those no one else uses; the caller holds `exclusive` */
  private async releaseContents (manifestCid: CidString, contents: Content[]): Promise<void> {
    for (const content of new Set(contents)) {
      content.users.delete(manifestCid)
      if (content.users.size > 0 || content.removed) continue
      this.unregister(content)
      this.pool.forget(content.dataPath)
      this.pool.forget(content.journalPath)
      await unlinkIfPresent(content.journalPath)
      await unlinkIfPresent(content.dataPath)
    }
  }

  // ---- chunks -----------------------------------------------------------------------------

  hasChunk (cid: CidString): boolean {
    return this.presentSlot(cid) !== undefined
  }

  missingChunks (manifestCid: CidString): ChunkRequest[] {
    const model = this.requireModel(manifestCid)
    const seen = new Set<CidString>()
    const missing: ChunkRequest[] = []
    for (const { content } of model.files) {
      content.chunks.forEach((chunk, index) => {
        if (content.present[index] === 1 || seen.has(chunk.cid)) return
        seen.add(chunk.cid)
        missing.push({ cid: chunk.cid, size: chunk.size })
      })
    }
    return missing
  }

  async readChunk (cid: CidString, options: ReadChunkOptions = {}): Promise<Uint8Array> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const slot = this.presentSlot(cid)
      if (slot === undefined) throw new ChunkMissingError(cid)
      const chunk = slotChunk(slot)
      return await this.readRange(slot.content, chunk.offset, chunk.size, options.allocate)
    })
  }

  locateChunk (cid: CidString): { path: string, offset: number, size: number } | undefined {
    this.assertOpen()
    const slot = this.presentSlot(cid)
    if (slot === undefined) return undefined
    const chunk = slotChunk(slot)
    return { path: slot.content.dataPath, offset: chunk.offset, size: chunk.size }
  }

  async read (manifestCid: CidString, path: string, offset: number, length: number, options: AbortOptions = {}): Promise<Uint8Array> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const model = this.requireModel(manifestCid)
      const fileIndex = model.fileByPath.get(path)
      const file = fileIndex === undefined ? undefined : model.files[fileIndex]
      if (file === undefined) throw new NotFoundError(`model ${manifestCid} has no file ${JSON.stringify(path)}`)
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > file.entry.size) {
        throw new RangeError(`range ${offset}+${length} is outside ${path} (${file.entry.size} bytes)`)
      }
      if (length === 0) return new Uint8Array(0)
      const { content } = file
      const end = offset + length
      for (let index = firstChunkAt(content.chunks, offset); index < content.chunks.length; index++) {
        const chunk = content.chunks[index]
        if (chunk === undefined || chunk.offset >= end) break
        if (content.present[index] !== 1) throw new ChunkMissingError(chunk.cid, `chunk ${chunk.cid} of ${path} (bytes ${chunk.offset}–${chunk.offset + chunk.size}) is not present locally`)
      }
      // the content file holds the file's bytes at their own offsets: one pread, whatever the chunking
      return await this.readRange(content, offset, length)
    })
  }

  async putChunk (cid: CidString, bytes: Uint8Array, options: PutChunkOptions = {}): Promise<PutResult> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const source = options.source ?? DEFAULT_PUT_SOURCE
      if (!verifyChunk(cid, bytes)) throw new ChunkVerificationError(cid, source)
      const slots = this.slotsByCid.get(cid)
      if (slots === undefined || slots.length === 0) throw new NotFoundError(`no held file needs chunk ${cid}`)
      options.onVerified?.()
      const written = await this.writeSlots(cid, bytes, slots, source)
      return { written: written > 0 }
    })
  }

  planWrite (cid: CidString): WritePlan {
    this.assertOpen()
    const slots = this.slotsByCid.get(cid)
    if (slots === undefined || slots.length === 0) throw new NotFoundError(`no held file needs chunk ${cid}`)
    const size = slotChunk(slots[0] as Slot).size
    const missing = slots.filter(slot => slot.content.present[slot.index] !== 1 && !slot.content.removed)
    const plan: WritePlan = Object.freeze({
      cid,
      size,
      dir: this.dir,
      slots: Object.freeze(missing.map(slot => Object.freeze({ path: slot.content.dataPath, offset: slotChunk(slot).offset })))
    })
    this.plans.set(plan, missing)
    return plan
  }

  async recordWritten (plan: WritePlan, options: RecordWrittenOptions = {}): Promise<PutResult> {
    return await this.track(async () => {
      const slots = this.plans.get(plan)
      if (slots === undefined) throw new TypeError(`plan for chunk ${plan.cid} was not made by this store, or was recorded already`)
      // at most once, even if the caller retries after a failure: a new plan is needed then
      this.plans.delete(plan)
      throwIfAborted(options.signal)
      let written = 0
      await Promise.all(slots.map(async ({ content, index }) => {
        if (content.removed || content.present[index] === 1) return
        // a put of the same bytes in flight records the slot itself
        const pending = content.pending.get(index)
        if (pending !== undefined) await pending
        if (content.removed || content.present[index] === 1) return
        const record = this.commits.commit({ kind: 'present', content, index })
        const settled: Promise<void> = record.then(() => {}, () => {}).finally(() => {
          if (content.pending.get(index) === settled) content.pending.delete(index)
        })
        content.pending.set(index, settled)
        await record
        if (!content.removed && content.present[index] === 1) written++
      }))
      if (written > 0) this.log.trace({ cid: plan.cid, slots: written, source: options.source }, 'chunk written elsewhere recorded')
      return { written: written > 0 }
    })
  }

  async fillFromLocal (manifestCid: CidString, options: AbortOptions = {}): Promise<number> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const wanted = this.missingChunks(manifestCid).filter(request => this.hasChunk(request.cid))
      let copied = 0
      await forEachLimit(wanted, LOCAL_COPY_CONCURRENCY, async ({ cid }) => {
        throwIfAborted(options.signal)
        const bytes = await this.readVerified(cid)
        if (bytes === undefined) return
        const slots = this.slotsByCid.get(cid) ?? []
        const written = await this.writeSlots(cid, bytes, slots, 'local')
        copied += written * bytes.byteLength
      })
      if (copied > 0) this.log.debug({ manifestCid, bytes: copied }, 'filled from local content')
      return copied
    })
  }

  /** bytes of `cid` from a present slot that still hashes right; slots that do not are marked missing */
  private async readVerified (cid: CidString): Promise<Uint8Array | undefined> {
    for (let slot = this.presentSlot(cid); slot !== undefined; slot = this.presentSlot(cid)) {
      const chunk = slotChunk(slot)
      const bytes = await this.readRange(slot.content, chunk.offset, chunk.size)
      if (verifyChunk(cid, bytes)) return bytes
      this.log.warn({ cid, key: slot.content.key, offset: chunk.offset }, 'local chunk no longer matches its CID; marking it missing')
      await this.markMissing(slot.content, slot.index)
    }
    return undefined
  }

  async verify (manifestCid: CidString, options: VerifyOptions = {}): Promise<VerifyReport> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const model = this.requireModel(manifestCid)
      const work: Array<{ path: string, content: Content, index: number, chunk: ChunkRef }> = []
      const seen = new Set<Content>()
      for (const { entry, content } of model.files) {
        if (seen.has(content)) continue
        seen.add(content)
        content.chunks.forEach((chunk, index) => {
          if (content.present[index] === 1) work.push({ path: entry.path, content, index, chunk })
        })
      }
      const total = work.reduce((sum, item) => sum + item.chunk.size, 0)
      const bad: BadChunk[] = []
      let checkedChunks = 0
      let checkedBytes = 0
      await forEachLimit(work, LOCAL_COPY_CONCURRENCY, async ({ path, content, index, chunk }) => {
        throwIfAborted(options.signal)
        if (content.removed || content.present[index] !== 1) return
        const bytes = await this.readRange(content, chunk.offset, chunk.size)
        if (!verifyChunk(chunk.cid, bytes)) {
          bad.push({ path, cid: chunk.cid, offset: chunk.offset, size: chunk.size })
          await this.markMissing(content, index)
        }
        checkedChunks++
        checkedBytes += chunk.size
        options.onProgress?.({ checkedBytes, totalBytes: total })
      })
      if (bad.length > 0) this.log.warn({ manifestCid, bad: bad.length }, 'chunks failed verification and are missing again')
      bad.sort((a, b) => a.path.localeCompare(b.path) || a.offset - b.offset)
      return { manifestCid, checkedChunks, checkedBytes, bad, missingChunks: this.missingChunks(manifestCid).length }
    })
  }

  private presentSlot (cid: CidString): Slot | undefined {
    return this.slotsByCid.get(cid)?.find(slot => slot.content.present[slot.index] === 1)
  }

  /** writes verified bytes into every slot of `cid` still missing; resolves once all are durable, with the number this call wrote */
  private async writeSlots (cid: CidString, bytes: Uint8Array, slots: readonly Slot[], source: string): Promise<number> {
    for (const slot of slots) {
      const expected = slotChunk(slot).size
      // held manifests agree on every CID's size (addManifest sees to it), but all of them may
      // lie: bytes that hash right yet differ in length must not spill into the next chunk
      if (expected !== bytes.byteLength) {
        throw new ChunkVerificationError(cid, source, `chunk ${cid} from ${source} is ${bytes.byteLength} bytes, a held manifest says ${expected}`)
      }
    }
    let written = 0
    // a write we waited on may fail; then the next round writes that slot itself
    for (let round = 0; round < MAX_WRITE_ROUNDS; round++) {
      const writes: Array<Promise<boolean>> = []
      const waits: Array<Promise<void>> = []
      for (const { content, index } of slots) {
        if (content.present[index] === 1 || content.removed) continue
        const pending = content.pending.get(index)
        if (pending !== undefined) {
          waits.push(pending)
          continue
        }
        const write = this.writeSlot(content, index, bytes)
        const settled: Promise<void> = write.then(() => {}, () => {}).finally(() => {
          if (content.pending.get(index) === settled) content.pending.delete(index)
        })
        content.pending.set(index, settled)
        writes.push(write)
      }
      // every write settles before the put does: the caller may reuse `bytes` once it has
      const results = await Promise.allSettled(writes)
      for (const result of results) if (result.status === 'rejected') throw result.reason
      written += results.filter(result => result.status === 'fulfilled' && result.value).length
      if (waits.length === 0) break
      await Promise.all(waits)
    }
    return written
  }

  /** true once the slot is written and recorded; false when its content went away meanwhile */
  private async writeSlot (content: Content, index: number, bytes: Uint8Array): Promise<boolean> {
    const chunk = content.chunks[index]
    if (chunk === undefined) throw new RangeError(`no chunk ${index} in ${content.key}`)
    let lease: FileLease
    try {
      lease = await this.pool.acquire(content.dataPath, 'r+')
    } catch (err) {
      if (content.removed) return false
      throw err
    }
    if (content.removed) {
      lease.release()
      return false
    }
    try {
      await writeFully(lease.handle, bytes, chunk.offset)
    } catch (err) {
      lease.release()
      throw await diskError(this.dir, err, `writing chunk ${chunk.cid}`)
    }
    await this.commits.commit({ kind: 'present', content, index, lease })
    return !content.removed
  }

  /** forgets a present chunk at once and journals that; the next pull fetches it again */
  private async markMissing (content: Content, index: number): Promise<void> {
    if (content.present[index] !== 1 || content.removed) return
    if (content.sealed) {
      // writable again before anyone may try to fill the slot
      await chmod(content.dataPath, PARTIAL_FILE_MODE)
      content.sealed = false
    }
    if (content.present[index] !== 1) return
    clearPresent(content, index)
    await this.commits.commit({ kind: 'dropped', content, index })
  }







  // ---- plumbing ---------------------------------------------------------------------------

  /** settles only once no read into the buffer is left running, so a caller may reuse `allocate`'s buffer then */
  private async readRange (content: Content, offset: number, length: number, allocate?: (size: number) => Uint8Array): Promise<Uint8Array> {
    return await this.pool.read(content.dataPath, offset, length, allocate)
  }

  /** runs `fn` alone among structural changes and commits */
  private async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.exclusiveTail.then(fn)
    this.exclusiveTail = run.then(() => {}, () => {})
    return await run
  }

  /** saves models.json; calls made while a save waits to start share it */
  private async persistModels (): Promise<void> {
    if (this.persistQueued !== undefined) return await this.persistQueued
    const save = this.persistTail.then(async () => {
      this.persistQueued = undefined
      await saveModelsFile(this.modelsPath, this.modelRecords())
    })
    this.persistQueued = save
    this.persistTail = save.catch(() => {})
    await save
  }

  private modelRecords (): HeldModelRecord[] {
    return [...this.held.values()].map(model => ({
      manifestCid: model.manifestCid,
      refs: [...model.refs],
      pinned: model.pinned,
      lastUsed: model.lastUsed
    }))
  }

  private requireModel (manifestCid: CidString): Model {
    const model = this.held.get(manifestCid)
    if (model === undefined) throw new NotFoundError(`model ${manifestCid} is not in the store`)
    return model
  }

  private assertOpen (): void {
    if (this.closed) throw new StoreClosedError(this.dir)
  }

  private async track<T> (fn: () => Promise<T>): Promise<T> {
    this.assertOpen()
    const run = fn()
    this.inflight.add(run)
    try {
      return await run
    } finally {
      this.inflight.delete(run)
    }
  }

  async close (): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true
      while (this.inflight.size > 0) await Promise.allSettled([...this.inflight])
      await this.commits.idle()
      await this.persistTail
      await this.pool.closeAll()
      await this.lock.release()
    })()
    await this.closing
  }
}


function makeModel (
  manifestCid: CidString,
  manifest: Manifest,
  bytes: Uint8Array,
  files: Array<{ entry: FileEntry, content: Content }>,
  record: Pick<HeldModelRecord, 'refs' | 'pinned' | 'lastUsed'>
): Model {
  return {
    manifestCid,
    manifest,
    bytes,
    files,
    fileByPath: new Map(files.map((file, i) => [file.entry.path, i])),
    totalBytes: totalBytes(manifest),
    refs: [...record.refs],
    pinned: record.pinned,
    lastUsed: record.lastUsed
  }
}

/** bytes of the model present on disk; a content file listed twice counts once */
function modelPresentBytes (model: Model): number {
  let bytes = 0
  for (const content of new Set(model.files.map(file => file.content))) bytes += content.presentBytes
  return bytes
}







/**
 * Chunks must tile each file in order, so no two slots overlap and a write can never land on
 * another chunk's bytes; paths must be unique, so a path names one file; a CID has one size.
 */
function checkLayout (manifest: Manifest): void {
  const paths = new Set<string>()
  const sizes = new Map<CidString, number>()
  for (const file of manifest.files) {
    if (paths.has(file.path)) throw new InvalidManifestError(`file ${JSON.stringify(file.path)} is listed twice`)
    paths.add(file.path)
    let next = 0
    for (const chunk of file.chunks) {
      if (chunk.offset !== next) throw new InvalidManifestError(`${file.path}: chunk at offset ${chunk.offset}, expected ${next}; chunks must tile the file in order`)
      if (!Number.isSafeInteger(chunk.size) || chunk.size <= 0) throw new InvalidManifestError(`${file.path}: chunk at offset ${chunk.offset} has size ${chunk.size}`)
      try {
        parseChunkCid(chunk.cid)
      } catch (err) {
        throw new InvalidManifestError(`${file.path}: ${(err as Error).message}`)
      }
      const size = sizes.get(chunk.cid)
      if (size !== undefined && size !== chunk.size) throw new InvalidManifestError(`chunk ${chunk.cid} is listed as ${size} bytes and as ${chunk.size}`)
      sizes.set(chunk.cid, chunk.size)
      next += chunk.size
    }
    if (next !== file.size) throw new InvalidManifestError(`${file.path}: chunks cover ${next} bytes of ${file.size}`)
  }
}

function checkBudget (budgetBytes: number): void {
  if (!Number.isFinite(budgetBytes) || budgetBytes < 0) throw new RangeError(`budgetBytes must be a non-negative number, got ${budgetBytes}`)
}



async function forEachLimit<T> (items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T
      await fn(item)
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortError()
}
