/**
 * Held models: the in-memory record of a held manifest and its content files, and the checks a
 * manifest passes before the store holds it (its layout, chunk sizes that agree with held
 * ones). Adding a model and its refs and pins are store.ts, removing one gc.ts, the disk space
 * it needs space.ts.
 */
import { parseChunkCid } from '@swarm/chunker'
import { InvalidManifestError } from '@swarm/interface'
import { totalBytes } from '@swarm/manifest'
import { slotChunk } from './content.js'
import type { Content, Slot } from './content.js'
import { ManifestConflictError } from './errors.js'
import type { HeldModelRecord } from './models-file.js'
import type { ChunkRequest, CidString, FileEntry, HeldModel, Manifest } from '@swarm/interface'

export interface Model {
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

export function makeModel (
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
export function modelPresentBytes (model: Model): number {
  let bytes = 0
  for (const content of new Set(model.files.map(file => file.content))) bytes += content.presentBytes
  return bytes
}

/** the model's chunks not present, each CID once */
export function modelMissingChunks (model: Model): ChunkRequest[] {
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

/** the model as the store lists it */
export function heldModel (model: Model): HeldModel {
  return {
    manifestCid: model.manifestCid,
    refs: [...model.refs],
    pinned: model.pinned,
    totalBytes: model.totalBytes,
    presentBytes: model.files.reduce((sum, file) => sum + file.content.presentBytes, 0),
    lastUsed: model.lastUsed
  }
}

/** the model as models.json records it */
export function modelRecord (model: Model): HeldModelRecord {
  return {
    manifestCid: model.manifestCid,
    refs: [...model.refs],
    pinned: model.pinned,
    lastUsed: model.lastUsed
  }
}

/**
 * Chunks must tile each file in order, so no two slots overlap and a write can never land on
 * another chunk's bytes; paths must be unique, so a path names one file; a CID has one size.
 */
export function checkLayout (manifest: Manifest): void {
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

/**
 * The held models that list a chunk of `manifest` with another size than it does, each with the
 * error that names the first such chunk; empty when there are none.
 */
export function findSizeConflicts (slotsByCid: ReadonlyMap<CidString, readonly Slot[]>, manifestCid: CidString, manifest: Manifest): Map<CidString, ManifestConflictError> {
  const conflicting = new Map<CidString, ManifestConflictError>()
  for (const file of manifest.files) {
    for (const chunk of file.chunks) {
      const slot = slotsByCid.get(chunk.cid)?.[0]
      if (slot === undefined) continue
      const heldSize = slotChunk(slot).size
      if (heldSize === chunk.size) continue
      for (const user of slot.content.users) {
        if (!conflicting.has(user)) conflicting.set(user, new ManifestConflictError(manifestCid, user, chunk.cid, chunk.size, heldSize))
      }
    }
  }
  return conflicting
}

export function checkBudget (budgetBytes: number): void {
  if (!Number.isFinite(budgetBytes) || budgetBytes < 0) throw new RangeError(`budgetBytes must be a non-negative number, got ${budgetBytes}`)
}
