/**
 * @packageDocumentation
 *
 * Swarm's local store: every distinct file content is one plain file under `dir/content/`,
 * created sparse and filled in place as verified chunks arrive, with a journal of which chunks
 * are durably present. Peers and the FUSE view read present ranges straight from those files;
 * a complete file is read-only and holds exactly the model file's bytes. Held models, pins and
 * last use survive restarts; gc evicts models neither pinned nor leased, least recently used first,
 * to a budget.
 * The design (layout, crash safety, group commit) is described in store.ts.
 *
 * @example
 *
 * ```ts
 * import { createStore, verifyModel } from '@swarm/store'
 *
 * const store = await createStore({ dir: '/var/lib/swarm', budgetBytes: 200e9, logger })
 * // leased from before it is added until the pull ends: no gc can evict it meanwhile
 * const lease = await store.addAndLease(manifestCid, manifest, 'pull:1', { ref: 'llama-3-8b:latest' })
 * try {
 *   await store.fillFromLocal(manifestCid)
 *   for (const { cid } of store.missingChunks(manifestCid)) {
 *     await store.putChunk(cid, await source.fetch({ cid, size }), { source: source.name })
 *   }
 * } finally {
 *   lease.release()
 * }
 * const header = await store.read(manifestCid, 'model.safetensors', 0, 8)
 * const report = await verifyModel(store, manifestCid)
 * const { evicted, skipped } = await store.gc()
 * await store.close()
 * ```
 */

export { createStore } from './store.js'
export { verifyModel } from './verify.js'
export { contentKey } from './content.js'
export type {
  Store,
  AddManifestOptions,
  StoreInit,
  StoreUsage,
  PutChunkOptions,
  WritePlan,
  RecordWrittenOptions,
  EvictDetails,
  EvictReason
} from './types.js'
export type { VerifyOptions, VerifyReport, BadChunk } from './verify.js'
export { StoreLockedError, CorruptModelsFileError, StoreClosedError, ModelLeasedError, ManifestConflictError, ContentSyncError } from './errors.js'
export type { OpenFile, OpenMode } from './fd-pool.js'
export * from './constants.js'
