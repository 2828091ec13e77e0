/**
 * Disk space: a model is added only when its missing bytes, plus a margin, fit in the free space
 * of the data directory's file system (unless its caller says it fetches only what it reads).
 * Content files are sparse, so what a model still needs is what its content files have yet to
 * take on disk.
 */
import { stat, statfs } from 'node:fs/promises'
import { DiskFullError } from '@swarm/interface'
import { DISK_MARGIN_FRACTION, MAX_DISK_MARGIN_BYTES, MIN_DISK_MARGIN_BYTES } from './constants.js'
import { contentKey, formatBytes } from './content.js'
import type { Content } from './content.js'
import type { CidString, Manifest } from '@swarm/interface'

/** bytes a manifest not yet held needs on disk, given the content files held now (`contents`, by key) */
export async function bytesToAdd (manifest: Manifest, contents: ReadonlyMap<string, Content>): Promise<number> {
  // content another model already has counts only for what it has yet to take on disk
  const fresh = new Map<string, number>()
  const held: Content[] = []
  for (const entry of manifest.files) {
    const key = contentKey(entry)
    const content = contents.get(key)
    if (content === undefined) fresh.set(key, entry.size)
    else held.push(content)
  }
  return [...fresh.values()].reduce((sum, n) => sum + n, 0) + await unallocatedBytes(held)
}

/**
 * bytes these (sparse) content files have yet to take on disk, each counted once: their size
 * less the blocks already allocated, which include chunks written but never recorded (a write
 * that met a full disk), so those are not counted twice
 */
export async function unallocatedBytes (contents: readonly Content[]): Promise<number> {
  let bytes = 0
  for (const content of new Set(contents)) {
    const missing = content.size - content.presentBytes
    if (missing === 0) continue
    const info = await stat(content.dataPath).catch(() => undefined)
    bytes += info === undefined ? missing : Math.max(0, Math.min(missing, content.size - info.blocks * 512))
  }
  return bytes
}

/**
 * refuses a model whose missing bytes, plus a margin, exceed the data directory's free space;
 * `diskMarginBytes` is the store's setting, undefined for the default
 */
export async function checkSpace (dir: string, diskMarginBytes: number | undefined, manifestCid: CidString, neededBytes: number): Promise<void> {
  if (neededBytes === 0) return
  const fs = await statfs(dir)
  const freeBytes = fs.bavail * fs.bsize
  const margin = diskMarginBytes ?? Math.min(MAX_DISK_MARGIN_BYTES, Math.max(MIN_DISK_MARGIN_BYTES, Math.round(fs.blocks * fs.bsize * DISK_MARGIN_FRACTION)))
  if (neededBytes + margin <= freeBytes) return
  throw new DiskFullError(dir, neededBytes + margin, freeBytes,
    `disk full: model ${manifestCid} needs ${formatBytes(neededBytes)} more plus a margin of ${formatBytes(margin)}, but the file system of the data dir ${dir} has ${formatBytes(freeBytes)} free; free space or lower the cache budget (swarm gc), then pull again`)
}
