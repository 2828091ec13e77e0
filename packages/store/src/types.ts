/**
 * The store's public shape: the Store interface and the options, plans and reports its methods
 * take and give. createStore (store.ts) opens one; how it works is described there.
 */
import type { OpenFile } from './fd-pool.js'
import type { VerifyOptions, VerifyReport } from './verify.js'
import type {
  AbortOptions,
  ChunkStore,
  CidString,
  Logger,
  Manifest,
  PutResult,
  StoreLease
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
