/**
 * The local store: each distinct file content is one plain file, filled in place.
 *
 * The code follows the design's seam: content files and their presence maps in content.ts, the
 * commit loop that makes writes durable and records them in commit.ts, and here the models (held
 * manifests, refs, pins) and the chunk API built on the other two. Around the models: the record
 * of one and the checks a manifest passes to be held in model.ts, the disk space it needs in
 * space.ts, what is read back and cleaned up at open in open.ts, leases in leases.ts, gc and the
 * removal of a model in gc.ts, and the re-hashing of what is held in verify.ts. The Store
 * interface and its options are in types.ts.
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
 * way, instead of fetching it. verify() re-hashes present chunks from disk and marks the ones that
 * no longer match missing again (see verify.ts).
 *
 * ## Index and lifecycle
 *
 * At open the store reads models.json, each held manifest and each journal, and builds in
 * memory: CID → slots, and per content file a presence map. Content files and manifests no held
 * model refers to (left by a crash between steps of addManifest or remove) are deleted then.
 * addManifest writes the manifest, creates missing content files, then records the model in
 * models.json; remove drops the model from models.json first, then deletes the content no other
 * held model uses. Structural changes and commits run one at a time (`exclusive`), so a journal
 * is never appended after its file was deleted. gc evicts models to a budget (see gc.ts), and
 * neither gc nor remove() takes a model that a lease says is in use (see leases.ts).
 */
import { mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { verifyChunk } from '@swarm/chunker'
import { ChunkMissingError, ChunkVerificationError, NotFoundError, silentLogger } from '@swarm/interface'
import {
  InvalidManifestCidError,
  ManifestCidMismatchError,
  canonicalManifest,
  formatRef,
  parseManifestCid,
  parseRef
} from '@swarm/manifest'
import { forEachLimit, throwIfAborted } from './async-util.js'
import {
  CONTENT_DIR,
  DEFAULT_MAX_OPEN_FILES,
  DEFAULT_PUT_SOURCE,
  LOCAL_COPY_CONCURRENCY,
  LOCK_FILE,
  MANIFESTS_DIR,
  MAX_WRITE_ROUNDS,
  MODELS_FILE
} from './constants.js'
import { CommitLog } from './commit.js'
import {
  ContentIndex,
  contentKey,
  createContentFile,
  diskError,
  firstChunkAt,
  isComplete,
  openContentFile,
  slotChunk,
  writeFully
} from './content.js'
import type { Content, Slot } from './content.js'
import { ModelLeasedError, StoreClosedError } from './errors.js'
import { FdPool } from './fd-pool.js'
import type { FileLease } from './fd-pool.js'
import { fsyncDir, writeFileAtomic } from './fs-util.js'
import { collectGarbage, isUnused, releaseContents, removeModel } from './gc.js'
import type { GcStore } from './gc.js'
import { Leases } from './leases.js'
import { acquireLock } from './lock.js'
import type { StoreLock } from './lock.js'
import { checkBudget, checkLayout, findSizeConflicts, heldModel, makeModel, modelMissingChunks, modelRecord } from './model.js'
import type { Model } from './model.js'
import { loadModelsFile, saveModelsFile } from './models-file.js'
import type { HeldModelRecord } from './models-file.js'
import { loadManifest, removeOrphans } from './open.js'
import { bytesToAdd, checkSpace, unallocatedBytes } from './space.js'
import type { AddManifestOptions, PutChunkOptions, RecordWrittenOptions, Store, StoreInit, StoreUsage, WritePlan } from './types.js'
import { readVerified, verifyPresent } from './verify.js'
import type { VerifyOptions, VerifyReport, VerifyStore } from './verify.js'
import type {
  AbortOptions,
  ChunkRequest,
  CidString,
  FileEntry,
  GcReport,
  HeldModel,
  Logger,
  Manifest,
  PutResult,
  ReadChunkOptions,
  StoreLease,
  StoredFile
} from '@swarm/interface'

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

class LocalStore implements Store {
  readonly dir: string
  private readonly contentDir: string
  private readonly manifestsDir: string
  private readonly modelsPath: string
  private readonly log: Logger
  private readonly pool: FdPool
  private readonly held = new Map<CidString, Model>()
  private readonly index = new ContentIndex()
  private readonly adding = new Map<CidString, Promise<Model>>()
  private readonly leases = new Leases()
  private readonly inflight = new Set<Promise<unknown>>()
  /** the slots behind each plan handed out and not yet recorded */
  private readonly plans = new WeakMap<WritePlan, Slot[]>()
  private readonly commits: CommitLog
  /** what gc.ts and verify.ts work on */
  private readonly gcStore: GcStore
  private readonly verifyStore: VerifyStore
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
    this.gcStore = {
      held: this.held,
      index: this.index,
      leases: this.leases,
      pool: this.pool,
      log: this.log,
      manifestsDir: this.manifestsDir,
      init,
      presentBytes: () => this.usage().presentBytes,
      persistModels: async () => await this.persistModels()
    }
    this.verifyStore = { log: this.log, pool: this.pool, commits: this.commits, presentSlot: cid => this.index.presentSlot(cid) }
  }

  // ---- open -------------------------------------------------------------------------------

  async load (options: AbortOptions): Promise<void> {
    const records = await loadModelsFile(this.modelsPath)
    let dropped = false
    for (const record of records) {
      throwIfAborted(options.signal)
      const manifest = await loadManifest(this.manifestsDir, record.manifestCid, this.log)
      if (manifest === undefined) {
        dropped = true
        continue
      }
      const files: Array<{ entry: FileEntry, content: Content }> = []
      for (const entry of manifest.manifest.files) {
        const key = contentKey(entry)
        const content = this.index.contents.get(key) ?? this.index.register(await openContentFile(this.contentDir, key, entry, this.log))
        content.users.add(record.manifestCid)
        files.push({ entry, content })
      }
      this.held.set(record.manifestCid, makeModel(record.manifestCid, manifest.manifest, manifest.bytes, files, record))
    }
    if (dropped) await this.persistModels()
    await removeOrphans({ contentDir: this.contentDir, manifestsDir: this.manifestsDir, modelsPath: this.modelsPath }, this.index.contents, this.held, this.log)
    this.log.debug({ models: this.held.size, contents: this.index.contents.size }, 'store opened')
  }

  // ---- models -----------------------------------------------------------------------------

  async addManifest (manifestCid: CidString, manifest: Manifest, options: AddManifestOptions = {}): Promise<void> {
    await this.track(async () => {
      throwIfAborted(options.signal)
      // the canonical form, so 'llama' and 'llama:latest' are one ref
      const ref = options.ref === undefined ? undefined : formatRef(parseRef(options.ref))
      const requireSpace = options.requireSpace !== false
      let model = this.held.get(manifestCid)
      if (model !== undefined && requireSpace) await checkSpace(this.dir, this.init.diskMarginBytes, manifestCid, await unallocatedBytes(model.files.map(f => f.content)))
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
    // our own copy, exactly what the canonical bytes say
    const { manifest: canonical, ...encoded } = canonicalManifest(manifest)
    if (encoded.cid !== manifestCid) throw new ManifestCidMismatchError(manifestCid, encoded.cid)
    checkLayout(canonical)
    return await this.exclusive(async () => {
      const existing = this.held.get(manifestCid)
      if (existing !== undefined) return existing
      await this.resolveSizeConflicts(manifestCid, canonical)
      if (requireSpace) await checkSpace(this.dir, this.init.diskMarginBytes, manifestCid, await bytesToAdd(canonical, this.index.contents))
      await writeFileAtomic(join(this.manifestsDir, manifestCid), encoded.bytes)
      const files: Array<{ entry: FileEntry, content: Content }> = []
      try {
        for (const entry of canonical.files) {
          const key = contentKey(entry)
          const content = this.index.contents.get(key) ?? this.index.register(await createContentFile(this.contentDir, key, entry))
          content.users.add(manifestCid)
          files.push({ entry, content })
        }
        await fsyncDir(this.contentDir)
      } catch (err) {
        await releaseContents(this.gcStore, manifestCid, files.map(f => f.content))
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
    const conflicting = findSizeConflicts(this.index.slotsByCid, manifestCid, manifest)
    if (conflicting.size === 0) return
    for (const [user, error] of conflicting) {
      const model = this.held.get(user)
      if (model === undefined || !isUnused(model, this.leases)) throw error
    }
    for (const user of conflicting.keys()) {
      this.log.warn({ manifestCid, gaveWay: user }, 'an unused manifest that conflicts with a new one was removed')
      await removeModel(this.gcStore, user, 'gc')
    }
  }

  getManifest (manifestCid: CidString): Manifest | undefined {
    return this.held.get(manifestCid)?.manifest
  }

  getManifestBytes (manifestCid: CidString): Uint8Array | undefined {
    return this.held.get(manifestCid)?.bytes.slice()
  }

  models (): HeldModel[] {
    return [...this.held.values()].map(heldModel)
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
    for (const content of this.index.contents.values()) {
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
    const lease = this.leases.open(manifestCid, holder)
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
    return this.leases.open(manifestCid, holder)
  }

  holders (manifestCid: CidString): string[] {
    return this.leases.holders(manifestCid)
  }

  async remove (manifestCid: CidString): Promise<void> {
    await this.track(async () => {
      this.requireModel(manifestCid)
      this.refuseIfLeased(manifestCid)
      await this.exclusive(async () => {
        // it may have gone, or been leased, while we waited our turn
        if (!this.held.has(manifestCid)) return
        this.refuseIfLeased(manifestCid)
        await removeModel(this.gcStore, manifestCid, 'remove')
      })
    })
  }

  private refuseIfLeased (manifestCid: CidString): void {
    if (this.leases.isLeased(manifestCid)) throw new ModelLeasedError(manifestCid, this.holders(manifestCid))
  }

  async gc (options: AbortOptions & { budgetBytes?: number } = {}): Promise<GcReport> {
    return await this.track(async () => {
      const budget = options.budgetBytes ?? this.init.budgetBytes
      if (budget !== undefined) checkBudget(budget)
      return await this.exclusive(async () => await collectGarbage(this.gcStore, { budgetBytes: budget, unusedGraceMs: this.init.unusedGraceMs, signal: options.signal }))
    })
  }

  // ---- chunks -----------------------------------------------------------------------------

  hasChunk (cid: CidString): boolean {
    return this.index.presentSlot(cid) !== undefined
  }

  missingChunks (manifestCid: CidString): ChunkRequest[] {
    return modelMissingChunks(this.requireModel(manifestCid))
  }

  async readChunk (cid: CidString, options: ReadChunkOptions = {}): Promise<Uint8Array> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const slot = this.index.presentSlot(cid)
      if (slot === undefined) throw new ChunkMissingError(cid)
      const chunk = slotChunk(slot)
      return await this.readRange(slot.content, chunk.offset, chunk.size, options.allocate)
    })
  }

  locateChunk (cid: CidString): { path: string, offset: number, size: number } | undefined {
    this.assertOpen()
    const slot = this.index.presentSlot(cid)
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
      const slots = this.index.slotsByCid.get(cid)
      if (slots === undefined || slots.length === 0) throw new NotFoundError(`no held file needs chunk ${cid}`)
      options.onVerified?.()
      const written = await this.writeSlots(cid, bytes, slots, source)
      return { written: written > 0 }
    })
  }

  planWrite (cid: CidString): WritePlan {
    this.assertOpen()
    const slots = this.index.slotsByCid.get(cid)
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
        const bytes = await readVerified(this.verifyStore, cid)
        if (bytes === undefined) return
        const slots = this.index.slotsByCid.get(cid) ?? []
        const written = await this.writeSlots(cid, bytes, slots, 'local')
        copied += written * bytes.byteLength
      })
      if (copied > 0) this.log.debug({ manifestCid, bytes: copied }, 'filled from local content')
      return copied
    })
  }

  async verify (manifestCid: CidString, options: VerifyOptions = {}): Promise<VerifyReport> {
    return await this.track(async () => {
      this.assertOpen()
      throwIfAborted(options.signal)
      const report = await verifyPresent(this.verifyStore, this.requireModel(manifestCid), options)
      return { ...report, missingChunks: this.missingChunks(manifestCid).length }
    })
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
    return [...this.held.values()].map(modelRecord)
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
