/**
 * Garbage collection: gc evicts unpinned models, least recently used first, until the bytes
 * present are within the budget; content shared with a model that stays stays too. It never
 * takes a leased model (see leases.ts). gc also collects models that hold no bytes and that
 * nothing leases, pins or names (the view adds manifests it is asked about by CID with no name),
 * once unused for a grace period (a `stat` is often followed by an open); otherwise nothing would
 * ever remove them.
 *
 * This module picks the models to evict and says why it keeps the others, and removes a model
 * (for gc, for remove(), or to make way for a manifest it conflicts with) together with the
 * content no other held model uses. The store runs all of it under `exclusive`.
 */
import { join } from 'node:path'
import { throwIfAborted } from './async-util.js'
import { DEFAULT_UNUSED_GRACE_MS } from './constants.js'
import { unlinkIfPresent } from './fs-util.js'
import { modelPresentBytes } from './model.js'
import type { Content, ContentIndex } from './content.js'
import type { FdPool } from './fd-pool.js'
import type { Leases } from './leases.js'
import type { Model } from './model.js'
import type { EvictReason, StoreInit } from './types.js'
import type { AbortOptions, CidString, GcEvicted, GcReport, GcSkipped, Logger } from '@swarm/interface'

/** what gc and removal need of the store */
export interface GcStore {
  readonly held: Map<CidString, Model>
  readonly index: ContentIndex
  readonly leases: Leases
  readonly pool: FdPool
  readonly log: Logger
  readonly manifestsDir: string
  /** for onEvict */
  readonly init: StoreInit
  /** bytes present on disk, shared content counted once */
  presentBytes(): number
  /** saves models.json */
  persistModels(): Promise<void>
}

export interface GcOptions extends AbortOptions {
  /** the budget to work to, checked by the caller; undefined to collect only unused models */
  budgetBytes?: number
  unusedGraceMs?: number
}

/** evicts unused models, then models to fit the budget; the caller holds `exclusive` */
export async function collectGarbage (store: GcStore, options: GcOptions): Promise<GcReport> {
  const budget = options.budgetBytes
  const evicted: GcEvicted[] = []
  const skipped: GcSkipped[] = []
  const evict = async (model: Model, reason: GcEvicted['reason']): Promise<void> => {
    const before = store.presentBytes()
    await removeModel(store, model.manifestCid, 'gc')
    evicted.push({ manifestCid: model.manifestCid, refs: [...model.refs], reason, freedBytes: before - store.presentBytes() })
  }
  // a manifest added only to be looked at (the view's by-cid) that never got bytes: nothing
  // would ever remove it, and it costs a name in every listing and an advert
  const grace = options.unusedGraceMs ?? DEFAULT_UNUSED_GRACE_MS
  for (const model of [...store.held.values()]) {
    if (!isUnused(model, store.leases) || Date.now() - model.lastUsed < grace) continue
    throwIfAborted(options.signal)
    await evict(model, 'unused')
  }
  if (budget !== undefined) {
    const candidates = [...store.held.values()].sort((a, b) => a.lastUsed - b.lastUsed)
    for (const model of candidates) {
      if (store.presentBytes() <= budget) break
      throwIfAborted(options.signal)
      const kept = keepReason(store, model)
      if (kept !== undefined) {
        skipped.push(kept)
        continue
      }
      await evict(model, 'budget')
    }
  }
  const presentBytes = store.presentBytes()
  if (budget !== undefined && presentBytes > budget) {
    store.log.warn({ presentBytes, budgetBytes: budget, skipped: skipped.map(s => `${s.manifestCid} (${s.reason})`) }, 'over budget with nothing left to evict')
  }
  return { evicted, skipped, presentBytes, budgetBytes: budget }
}

/** holds no bytes, and no lease, pin or name keeps it */
export function isUnused (model: Model, leases: Leases): boolean {
  return modelPresentBytes(model) === 0 && model.refs.length === 0 && !model.pinned && !leases.isLeased(model.manifestCid)
}

/** why gc must keep `model`, or undefined when it may go */
function keepReason (store: GcStore, model: Model): GcSkipped | undefined {
  const base = { manifestCid: model.manifestCid, refs: [...model.refs] }
  if (model.pinned) return { ...base, reason: 'pinned' }
  if (store.leases.isLeased(model.manifestCid)) return { ...base, reason: 'leased', holders: store.leases.holders(model.manifestCid) }
  // a model whose every file is also a pinned model's frees nothing: keep its name
  if (model.files.every(file => [...file.content.users].some(user => store.held.get(user)?.pinned === true))) return { ...base, reason: 'shares-pinned' }
  return undefined
}

/** drops a model and the content only it used; the caller holds `exclusive` */
export async function removeModel (store: GcStore, manifestCid: CidString, reason: EvictReason): Promise<void> {
  const model = store.held.get(manifestCid)
  if (model === undefined) return
  const heldBefore = new Set<CidString>()
  for (const { content } of model.files) {
    content.chunks.forEach((chunk, index) => { if (content.present[index] === 1) heldBefore.add(chunk.cid) })
  }
  // forgotten durably first: a crash after this leaves only orphans, deleted at the next open
  store.held.delete(manifestCid)
  await store.persistModels()
  await releaseContents(store, manifestCid, model.files.map(f => f.content))
  await unlinkIfPresent(join(store.manifestsDir, manifestCid))
  const droppedChunks = [...heldBefore].filter(cid => store.index.presentSlot(cid) === undefined)
  store.log.info({ manifestCid, reason, droppedChunks: droppedChunks.length }, 'model removed')
  try {
    store.init.onEvict?.(manifestCid, { reason, droppedChunks })
  } catch (err) {
    store.log.error({ err, manifestCid }, 'onEvict threw')
  }
}

/** drops `manifestCid` as a user of `contents` and deletes those no one else uses; the caller holds `exclusive` */
export async function releaseContents (store: GcStore, manifestCid: CidString, contents: Content[]): Promise<void> {
  for (const content of new Set(contents)) {
    content.users.delete(manifestCid)
    if (content.users.size > 0 || content.removed) continue
    store.index.unregister(content)
    store.pool.forget(content.dataPath)
    store.pool.forget(content.journalPath)
    await unlinkIfPresent(content.journalPath)
    await unlinkIfPresent(content.dataPath)
  }
}
