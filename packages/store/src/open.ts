/**
 * Opening the store: reading back the manifests of the held models, and deleting what a crash
 * between the steps of addManifest or remove left that no held model refers to (see "Index and
 * lifecycle" in store.ts).
 */
import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidManifestError } from '@swarm/interface'
import { InvalidManifestCidError, ManifestCidMismatchError, decodeManifest } from '@swarm/manifest'
import { JOURNAL_SUFFIX, TEMP_SUFFIX } from './constants.js'
import { fsyncDir, isMissing, unlinkIfPresent } from './fs-util.js'
import { checkLayout } from './model.js'
import type { CidString, Logger, Manifest } from '@swarm/interface'

/** where the store keeps what it holds */
export interface StorePaths {
  readonly contentDir: string
  readonly manifestsDir: string
  readonly modelsPath: string
}

/** a held manifest, or undefined (logged) when its file is gone or damaged so the model is dropped */
export async function loadManifest (manifestsDir: string, manifestCid: CidString, log: Logger): Promise<{ manifest: Manifest, bytes: Uint8Array } | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(join(manifestsDir, manifestCid))
  } catch (err) {
    if (!isMissing(err)) throw err
    log.warn({ manifestCid }, 'manifest of a held model is missing; dropping the model')
    return undefined
  }
  try {
    const manifest = decodeManifest(bytes, { expectedCid: manifestCid })
    checkLayout(manifest)
    return { manifest, bytes }
  } catch (err) {
    if (!(err instanceof InvalidManifestError || err instanceof ManifestCidMismatchError || err instanceof InvalidManifestCidError)) throw err
    log.warn({ manifestCid, err: err.message }, 'manifest of a held model is damaged; dropping the model')
    return undefined
  }
}

/** deletes the content files (by key) and manifests (by CID) the store does not hold, and a models.json save a crash cut short */
export async function removeOrphans (paths: StorePaths, contents: ReadonlyMap<string, unknown>, held: ReadonlyMap<CidString, unknown>, log: Logger): Promise<void> {
  let removed = 0
  for (const name of await readdir(paths.contentDir)) {
    const key = name.endsWith(JOURNAL_SUFFIX) ? name.slice(0, -JOURNAL_SUFFIX.length) : name
    if (contents.has(key)) continue
    await unlinkIfPresent(join(paths.contentDir, name))
    removed++
  }
  for (const name of await readdir(paths.manifestsDir)) {
    if (held.has(name)) continue
    await unlinkIfPresent(join(paths.manifestsDir, name))
    removed++
  }
  await unlinkIfPresent(paths.modelsPath + TEMP_SUFFIX)
  if (removed > 0) {
    await fsyncDir(paths.contentDir)
    log.info({ removed }, 'removed files no held model refers to')
  }
}
