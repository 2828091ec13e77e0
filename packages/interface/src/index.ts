/**
 * @packageDocumentation
 *
 * The vocabulary every Swarm package speaks. Nothing here does I/O.
 *
 * A model is a {@link Manifest}: files, each cut into content-addressed chunks
 * ({@link ChunkRef}, a CIDv1 raw/sha2-256). Bytes come from a {@link ChunkSource}
 * (a peer, the origin, the local store) and land in a {@link ChunkStore} only
 * after they hash to their CID. Names resolve to manifest CIDs only through an
 * {@link Origin}; peers are never trusted to name a model.
 *
 * @example
 *
 * ```ts
 * import type { ChunkSource } from '@swarm/interface'
 *
 * const source: ChunkSource = {
 *   name: 'origin',
 *   kind: 'origin',
 *   async fetch ({ cid, size }, { signal } = {}) { return await origin.getChunk(cid, { signal }) }
 * }
 * ```
 */

export * from './bitfield.js'
export * from './buffer-pool.js'
export * from './landing-limit.js'
export * from './errors.js'
export * from './logger.js'
export * from './redact.js'
export * from './origin-checks.js'
export * from './refs.js'
export * from './retry.js'
export * from './reader-spec.js'

/** Every async API takes this last and honours it. */
export interface AbortOptions {
  signal?: AbortSignal
}

/** A CIDv1 (raw codec, sha2-256) in its default base32 string form. */
export type CidString = string

/** One chunk of one file: its CID and where it sits in the file. */
export interface ChunkRef {
  cid: CidString
  /** byte offset in the file */
  offset: number
  /** bytes */
  size: number
  /**
   * Version 3 only: the SHA-256 digests of the chunk's blocks of the manifest's `blockSize`
   * (the last one shorter), concatenated, in base64
   */
  blocks?: string
}

/** A tensor of a safetensors file; `start`/`end` are absolute file offsets (end exclusive). */
export interface TensorInfo {
  name: string
  dtype: string
  shape: number[]
  start: number
  end: number
}

export interface FileEntry {
  /** relative POSIX path inside the model, e.g. `model-00001-of-00030.safetensors` */
  path: string
  size: number
  /** permission bits, e.g. 0o644 */
  mode: number
  chunks: ChunkRef[]
  /** present for `.safetensors` files, in file order */
  tensors?: TensorInfo[]
}

export const MANIFEST_VERSION = 1
/**
 * Version 2 is version 1 plus `metadata`, and is written only for a manifest that has some: a
 * manifest without metadata stays version 1 with the CID it always had, and a reader that knows
 * only version 1 refuses a version 2 manifest by its version, not by an unknown field.
 */
export const MANIFEST_VERSION_WITH_METADATA = 2
/**
 * Version 3 is version 1 or 2 plus `blockSize` and each chunk's `blocks`: the SHA-256 of every
 * block of the chunk, so a node can check a chunk's bytes, and pass them on, block by block
 * while the chunk still arrives. `metadata` stays optional. Readers of versions 1 and 2 refuse it
 * by its version.
 */
export const MANIFEST_VERSION_WITH_BLOCKS = 3
export type ManifestVersion = typeof MANIFEST_VERSION | typeof MANIFEST_VERSION_WITH_METADATA | typeof MANIFEST_VERSION_WITH_BLOCKS

/**
 * A model's content. Deliberately carries no name, tag or timestamp, so the same
 * bytes always get the same manifest CID.
 */
export interface Manifest {
  version: ManifestVersion
  /** the target chunk size the files were cut with */
  chunkSize: number
  /** version 3 only: the bytes of each block the chunks' `blocks` digests cover */
  blockSize?: number
  files: FileEntry[]
  /**
   * Version 2 only, and then not empty: where the content came from, as short strings
   * (`huggingface.repo`, `huggingface.revision`). Part of the content, so part of the CID.
   */
  metadata?: Record<string, string>
}

/** `name:tag` as resolved at the origin. */
export interface ModelRef {
  name: string
  tag: string
}

export interface RefEntry extends ModelRef {
  cid: CidString
}

/** What a fetch asks a source for. The size lets a source bound its read. */
export interface ChunkRequest {
  cid: CidString
  size: number
  /**
   * the chunk's block digests, where its manifest lists them (version 3): bytes checked block by
   * block may be passed on to peers while the rest of the chunk arrives
   */
  blocks?: BlockDigests
}

/** Bytes of one block digest (SHA-256) in {@link BlockDigests} and a version 3 manifest. */
export const BLOCK_DIGEST_BYTES = 32

/** The SHA-256 of each `blockSize` bytes of a chunk, the last block shorter, concatenated (32 bytes each). */
export interface BlockDigests {
  blockSize: number
  digests: Uint8Array
}

/** whether `blocks` holds one digest for each block of a chunk of `size` bytes */
export function digestsCover (blocks: BlockDigests, size: number): boolean {
  return Number.isInteger(blocks.blockSize) && blocks.blockSize > 0 && size > 0 &&
    blocks.digests.byteLength === Math.ceil(size / blocks.blockSize) * BLOCK_DIGEST_BYTES
}

/**
 * Reported by a source as a chunk's bytes land: bytes `[0, filled)` of `buffer`, the buffer
 * `fetch` resolves with, are in place. `filled` only grows; a source that must start over (a
 * retried GET) reports a smaller `filled`, and whatever read ahead of it must stop.
 */
export type OnChunkData = (buffer: Uint8Array, filled: number) => void

/** A chunk fetch's options: its signal, and who hears of its bytes as they land. */
export interface ChunkFetchOptions extends AbortOptions {
  onData?: OnChunkData
}

export type SourceKind = 'local' | 'peer' | 'origin'

/**
 * Anything that can produce the bytes of a chunk: the origin, one peer, the local store.
 * Sources return bytes as received; the fetcher verifies them against the CID.
 */
export interface ChunkSource {
  /** stable and unique among sources, e.g. `origin` or `peer:12D3Koo…` */
  readonly name: string
  readonly kind: SourceKind
  /** `onData`: where the source can tell (peers, HTTP GETs read in place), as its bytes land */
  fetch(request: ChunkRequest, options?: ChunkFetchOptions): Promise<Uint8Array>
  /**
   * Called with bytes `fetch` returned once nothing reads them any more (stored or dropped), so
   * the source may reuse their memory for a later fetch. Optional on both sides: a source without
   * it lets the bytes be collected, and a caller that never calls it only loses that reuse.
   */
  release?(bytes: Uint8Array): void
  /**
   * The source described as plain data, so a worker thread can reach it with its own clients;
   * absent when it cannot be (then the fetcher fetches in its own thread).
   */
  readonly remote?: RemoteSource
}

/**
 * A chunk this node is receiving, as its data server may pass it on before it is whole
 * (`@swarm/fetcher`'s `ChunkArrivals` keeps them). Only bytes checked against the chunk's block
 * digests are ever handed out, and always as a copy.
 */
export interface ArrivingChunk {
  readonly size: number
  /**
   * Waits until bytes past `offset` are verified, then copies the verified bytes from `offset` on
   * (at most `maxLength`) into a buffer from `take` and returns it. Rejects with
   * ChunkArrivalFailedError when the chunk stops arriving here or a block fails its digest.
   */
  read(offset: number, maxLength: number, take: (length: number) => Uint8Array, options?: AbortOptions): Promise<Uint8Array>
  /** no more reads: the arriving bytes' memory may go back to their source */
  close(): void
}

/** Chunks arriving at this node, by CID. */
export interface ChunkArrivals {
  /** a reader of chunk `cid` while it arrives; undefined when it is not arriving (or not checkable block by block) */
  open(cid: CidString): ArrivingChunk | undefined
  /**
   * whether chunk `cid` is arriving (and `open` would give a reader now); a registry kept in
   * another thread answers asynchronously
   */
  arriving(cid: CidString): boolean | Promise<boolean>
}

/** A chunk source as a worker thread can reach it: the configured origin, or a peer's data address. */
export type RemoteSource =
  | { kind: 'origin' }
  /** `relay`: asked for a chunk the peer is still receiving (see @swarm/exchange's relay flag) */
  | { kind: 'peer', peerId: string, host: string, port: number, relay?: true }

/** What an origin can do beyond what every origin does; a missing field means true. */
export interface OriginCapabilities {
  /** `listChunks` enumerates every chunk held; false: it rejects with UnsupportedOperationError (an OCI registry lists no blobs) */
  listChunks: boolean
}

/** A model handed whole to an origin that stores files rather than chunks ({@link Origin.putModel}). */
export interface ModelUpload {
  ref: ModelRef
  manifestCid: CidString
  /** the manifest's canonical bytes */
  manifestBytes: Uint8Array
  manifest: Manifest
  /** the bytes of one of the manifest's files, start to end */
  readFile(path: string, options?: AbortOptions): AsyncIterable<Uint8Array>
}

/**
 * A digest the origin holds for content made of whole files of a model (and bytes between them),
 * beyond the chunk CIDs: an OCI layer digest. Checked once the files are complete, so a manifest
 * that lists the wrong chunks can never yield a file the origin's digest does not vouch for.
 */
export interface ContentCheck {
  /** for messages, e.g. `layer sha256:… (model.safetensors)` */
  what: string
  /** `sha256:<hex>` */
  digest: string
  size: number
  /** in order: a whole file of the manifest by path, or bytes the origin gave */
  parts: Array<{ path: string } | { bytes: Uint8Array }>
}

/** A light reader of an origin's chunks, described by {@link Origin.chunkReaderSpec}. */
export interface ChunkReaderSpec {
  /** the adapter whose reader opens it (`s3`) */
  adapter: string
  /** the reader's init, as the adapter defines it; may hold credentials, so never logged */
  init: unknown
  /** ms since the epoch after which it must be asked for again (credentials that expire); absent: never */
  expiresAt?: number
}

/** What reads chunks in a thread that does not hold the origin: `getChunk` and `release` as {@link Origin}'s. */
export interface ChunkReader {
  getChunk(cid: CidString, options?: AbortOptions): Promise<Uint8Array>
  release?(bytes: Uint8Array): void
  /** as {@link Origin.addChunkLocation}, where it reads an origin whose chunks must be located for it */
  addChunkLocation?(cid: CidString, location: unknown): void
  close(): Promise<void>
}

/**
 * Object storage holding chunks, manifests and refs. Layout under the origin's prefix:
 * `chunks/<cid>`, `manifests/<cid>`, `refs/<name>/<tag>` (the ref object's body is the manifest CID).
 * A missing object rejects with {@link NotFoundError}.
 */
export interface Origin {
  /** where it points, for logs and errors (credentials never appear here) */
  readonly url: string
  /**
   * false when another instance opened from the same settings cannot read the chunks this one
   * reads (it learned where they are as it went, e.g. the OCI origin's chunk manifests derived
   * from layers): byte workers then leave this origin's reads to the thread that holds it, unless
   * it can say where each chunk lies (`chunkLocation`) to another instance (`addChunkLocation`).
   * Absent means true.
   */
  readonly reopenable?: boolean
  /** Optional: where chunk `cid` lies, as plain data another instance takes in `addChunkLocation`; undefined when this one does not know */
  chunkLocation?(cid: CidString): unknown
  /** Optional: learns where chunk `cid` lies from another instance's `chunkLocation`; TypeError for what is not such a location */
  addChunkLocation?(cid: CidString, location: unknown): void
  /** `onData`: where the adapter can tell, as the chunk's bytes land (see {@link OnChunkData}) */
  getChunk(cid: CidString, options?: ChunkFetchOptions): Promise<Uint8Array>
  /**
   * Optional: takes back bytes `getChunk` returned once nothing reads them any more, so a later
   * `getChunk` may reuse their memory (see {@link ChunkSource.release}).
   */
  release?(bytes: Uint8Array): void
  /**
   * Optional: what another thread needs to read this origin's chunks without opening the whole
   * adapter (its control clients, their SDK): plain data, structured-cloneable, opened there with
   * the adapter's light reader. Byte workers ask for it so that each need not load what only the
   * main thread uses. Undefined: it has none to offer as set up (the thread opens the adapter).
   */
  chunkReaderSpec?(options?: AbortOptions): Promise<ChunkReaderSpec | undefined>
  hasChunk(cid: CidString, options?: AbortOptions): Promise<boolean>
  putChunk(cid: CidString, bytes: Uint8Array, options?: AbortOptions): Promise<void>
  /** every chunk CID the origin holds */
  listChunks(options?: AbortOptions): AsyncIterable<CidString>
  getManifest(cid: CidString, options?: AbortOptions): Promise<Uint8Array>
  putManifest(cid: CidString, bytes: Uint8Array, options?: AbortOptions): Promise<void>
  resolveRef(ref: ModelRef, options?: AbortOptions): Promise<CidString>
  putRef(ref: ModelRef, cid: CidString, options?: AbortOptions): Promise<void>
  listRefs(options?: AbortOptions): AsyncIterable<RefEntry>
  close(): Promise<void>
  /** what this origin cannot do; absent: everything */
  readonly capabilities?: Partial<OriginCapabilities>
  /**
   * Optional: publishes a model whole, file by file, in place of `putChunk` per chunk, then
   * `putManifest` and `putRef` (an OCI registry, where each file is a layer). `swarm push` uses it
   * when present.
   */
  putModel?(upload: ModelUpload, options?: AbortOptions): Promise<void>
  /** Optional: digests to check a pulled model's complete files against (see {@link ContentCheck}); empty when it has none. */
  contentChecks?(manifestCid: CidString, options?: AbortOptions): Promise<ContentCheck[]>
}

/** A model the local store holds, fully or in part. */
export interface HeldModel {
  manifestCid: CidString
  /** names it was pulled or pushed under, `name:tag` */
  refs: string[]
  pinned: boolean
  /** bytes of the manifest's files */
  totalBytes: number
  /** bytes present locally */
  presentBytes: number
  /** ms since epoch */
  lastUsed: number
}

/** Where one file of a held model lives in the store. */
export interface StoredFile {
  entry: FileEntry
  /** absolute path of the store's file for this content; sparse until complete */
  path: string
  complete: boolean
  /** 1 for each chunk of `entry.chunks` present in that file (a copy) */
  present: Uint8Array
}

export interface PutResult {
  /** false when the chunk was already present and nothing was written */
  written: boolean
}

export interface ReadChunkOptions extends AbortOptions {
  /**
   * Supplies the buffer a chunk is read into, given its size: at least that long, and the result
   * is then a view of it (a server reading into buffers it reuses). Without it a fresh buffer is
   * allocated. A store may ignore it, so compare the result's memory before reusing the buffer.
   */
  allocate?(size: number): Uint8Array
}

/**
 * A hold on a held model: while any lease on it is open, gc and the cache budget skip it and
 * remove() refuses it. `holder` says who holds it (`pull:<id>`, `mount:<path>`) in reports.
 */
export interface StoreLease {
  readonly manifestCid: CidString
  readonly holder: string
  /** ends the hold; calling it again does nothing */
  release(): void
}

/** Why gc kept a model it would otherwise have evicted. */
export type GcSkipReason = 'pinned' | 'leased' | 'shares-pinned'

export interface GcSkipped {
  manifestCid: CidString
  refs: string[]
  reason: GcSkipReason
  /** who holds it, for `leased` */
  holders?: string[]
}

export interface GcEvicted {
  manifestCid: CidString
  refs: string[]
  /** `budget`: evicted to fit the budget; `unused`: held no bytes and nothing used or named it */
  reason: 'budget' | 'unused'
  /** bytes this eviction freed on disk (content shared with a model that stays frees nothing) */
  freedBytes: number
}

export interface GcReport {
  evicted: GcEvicted[]
  /** models gc would have evicted to fit the budget but kept, and why */
  skipped: GcSkipped[]
  /** bytes present on disk after gc, shared content counted once */
  presentBytes: number
  /** the budget gc worked to; undefined when it had none (then it collects only unused models) */
  budgetBytes?: number
}

/**
 * The node's local store. Each distinct file content is one file, filled in place.
 * `putChunk` verifies bytes against the CID before anything is written or recorded.
 */
export interface ChunkStore {
  /** Records a manifest as held and makes room for its files. Idempotent. */
  addManifest(manifestCid: CidString, manifest: Manifest, options?: AbortOptions & { ref?: string }): Promise<void>
  getManifest(manifestCid: CidString): Manifest | undefined
  /** raw canonical bytes of a held manifest, as first verified */
  getManifestBytes(manifestCid: CidString): Uint8Array | undefined
  /** whether a chunk is present in any local file */
  hasChunk(cid: CidString): boolean
  /** the chunks of a held manifest not yet present (unique by CID, in file order) */
  missingChunks(manifestCid: CidString): ChunkRequest[]
  /** bytes of a present chunk (one pread) */
  readChunk(cid: CidString, options?: ReadChunkOptions): Promise<Uint8Array>
  /**
   * verifies `bytes` against `cid`, writes them wherever a held file needs them, then records
   * them; `onVerified` runs once they have matched, before they are written
   */
  putChunk(cid: CidString, bytes: Uint8Array, options?: AbortOptions & { onVerified?(): void }): Promise<PutResult>
  /** fills chunks of this manifest that another local file already holds; returns bytes copied */
  fillFromLocal(manifestCid: CidString, options?: AbortOptions): Promise<number>
  /** reads a range of a held file; rejects with ChunkMissingError if part of it is not present */
  read(manifestCid: CidString, path: string, offset: number, length: number, options?: AbortOptions): Promise<Uint8Array>
  files(manifestCid: CidString): StoredFile[]
  models(): HeldModel[]
  pin(manifestCid: CidString, pinned: boolean): Promise<void>
  touch(manifestCid: CidString): void
  /** keeps a held model from eviction until the lease is released; throws NotFoundError when it is not held */
  lease(manifestCid: CidString, holder: string): StoreLease
  /** who holds leases on a model, in the order they were taken (empty when none) */
  holders(manifestCid: CidString): string[]
  /** drops a held model and whatever content no other held model shares; refused while it is leased */
  remove(manifestCid: CidString): Promise<void>
  /**
   * Collects models that hold no bytes and that nothing uses (no lease, no pin, no name), then
   * evicts least-recently-used models that are neither pinned nor leased until under budget.
   */
  gc(options?: AbortOptions & { budgetBytes?: number }): Promise<GcReport>
  close(): Promise<void>
}

/** Byte counts of a pull, by where the bytes came from. */
export interface TransferProgress {
  totalBytes: number
  doneBytes: number
  totalChunks: number
  doneChunks: number
  bytesBySource: Record<SourceKind, number>
}
