/**
 * Pulling a model: resolve the name at the origin (only the origin names models), fetch and
 * verify the manifest, record it in the store, then let the fetcher bring in every missing chunk.
 * A rerun after a crash or a kill starts from what the store's journal says is present, so only
 * the missing chunks are fetched again.
 *
 * `--to DIR` copies the finished files out of the store with reflinks where the file system has
 * them (a copy otherwise): a later edit of DIR can never reach the store's bytes, which peers and
 * the FUSE view serve.
 */

import { constants } from 'node:fs'
import { chmod, copyFile, mkdir, rename } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fetcher as createFetcher, originSource } from '@swarm/fetcher'
import { decodeManifest } from '@swarm/manifest'
import type { PullSummary } from '@swarm/fetcher'
import type { AbortOptions, ChunkSource, ChunkStore, Logger, Manifest, ModelRef, Origin, TransferProgress } from '@swarm/interface'

export interface PullModelOptions extends AbortOptions {
  store: ChunkStore
  origin: Origin
  manifestCid: string
  /** `name:tag` recorded in the store when the pull came from a name */
  ref?: string
  concurrency?: number
  /** extra sources tried before the origin (peers) */
  sources?: ChunkSource[]
  logger?: Logger
  onProgress?(progress: TransferProgress): void
}

export async function resolveManifestCid (origin: Origin, ref: ModelRef, options: AbortOptions = {}): Promise<string> {
  return await origin.resolveRef(ref, options)
}

/** Fetches, verifies and records a manifest unless the store already holds it. */
export async function ensureManifest (store: ChunkStore, origin: Origin, manifestCid: string, options: AbortOptions & { ref?: string } = {}): Promise<Manifest> {
  let manifest = store.getManifest(manifestCid)
  if (manifest == null) {
    const bytes = await origin.getManifest(manifestCid, options)
    manifest = decodeManifest(bytes, { expectedCid: manifestCid })
  }
  await store.addManifest(manifestCid, manifest, options)
  return manifest
}

export async function pullModel (options: PullModelOptions): Promise<PullSummary> {
  const { store, origin, manifestCid, signal } = options
  await ensureManifest(store, origin, manifestCid, { signal, ref: options.ref })
  const fetch = createFetcher({
    store,
    sources: [...(options.sources ?? []), originSource(origin)],
    logger: options.logger
  })
  return await fetch.pull(manifestCid, { concurrency: options.concurrency, onProgress: options.onProgress, signal })
}

/** Copies a held, complete model's files into `dir` (reflink where possible). */
export async function placeFiles (store: ChunkStore, manifestCid: string, dir: string): Promise<number> {
  let bytes = 0
  for (const file of store.files(manifestCid)) {
    if (!file.complete) throw new Error(`${file.entry.path} is not complete in the store`)
    const target = join(dir, ...file.entry.path.split('/'))
    await mkdir(dirname(target), { recursive: true })
    const temp = `${target}.swarm-partial-${process.pid}`
    await copyFile(file.path, temp, constants.COPYFILE_FICLONE)
    await chmod(temp, file.entry.mode & 0o777 | 0o200)
    await rename(temp, target)
    bytes += file.entry.size
  }
  return bytes
}
