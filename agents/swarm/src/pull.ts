/**
 * Pulling a model without an agent: resolve the name at the origin (only the origin names models),
 * have the manifest (`@swarm/pull`'s resolver: the store, else the origin, verified), record it in
 * the store, then run the same pull engine the agent runs (`PullSession`) with no peers: the
 * origin is its only source. A rerun after a crash or a kill starts from what the store's journal
 * says is present, so only the missing chunks are fetched again.
 *
 * `--to DIR` copies the finished files out of the store with reflinks where the file system has
 * them (a copy otherwise): a later edit of DIR can never reach the store's bytes, which peers and
 * the FUSE view serve.
 */

import { createHash, randomBytes } from 'node:crypto'
import { constants, createReadStream } from 'node:fs'
import { copyFile, lstat, mkdir, open, rename, rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { DEFAULT_PULL_CONCURRENCY, fetcher as createFetcher, originSource } from '@swarm/fetcher'
import { DigestMismatchError, SwarmError, silentLogger } from '@swarm/interface'
import { PullSession, resolveManifest } from '@swarm/pull'
import type { AbortOptions, ChunkStore, CidString, Logger, Manifest, ModelRef, Origin, TransferProgress } from '@swarm/interface'

export interface PullModelOptions extends AbortOptions {
  store: ChunkStore
  origin: Origin
  manifestCid: string
  /** `name:tag` recorded in the store when the pull came from a name */
  ref?: string
  /** origin requests at once */
  concurrency?: number
  logger?: Logger
  onProgress?(progress: TransferProgress): void
}

export interface PullSummary {
  manifestCid: CidString
  progress: TransferProgress
  durationMs: number
}

export async function resolveManifestCid (origin: Origin, ref: ModelRef, options: AbortOptions = {}): Promise<string> {
  return await origin.resolveRef(ref, options)
}

/** Fetches, verifies and records a manifest unless the store already holds it. */
export async function ensureManifest (store: ChunkStore, origin: Origin, manifestCid: string, options: AbortOptions & { ref?: string } = {}): Promise<Manifest> {
  const manifest = await resolveManifest(manifestCid, { store, origin }, options)
  await store.addManifest(manifestCid, manifest, options)
  return manifest
}

export async function pullModel (options: PullModelOptions): Promise<PullSummary> {
  const { store, origin, manifestCid, signal } = options
  const manifest = await ensureManifest(store, origin, manifestCid, { signal, ref: options.ref })
  store.touch(manifestCid)
  const concurrency = options.concurrency ?? DEFAULT_PULL_CONCURRENCY
  const session = new PullSession({
    manifestCid,
    manifest,
    store,
    fetcher: createFetcher({ store, sources: [], logger: options.logger }),
    sources: { origin: originSource(origin), peer: () => undefined },
    logger: options.logger ?? silentLogger,
    // alone, every request goes to the origin: `concurrency` of them at once
    maxInflightOrigin: concurrency,
    scheduler: { fleetInflightOrigin: concurrency, maxInflightTotal: concurrency }
  })
  const result = await session.run({ onProgress: options.onProgress, signal })
  await checkOriginContent(store, origin, manifestCid, { signal })
  return { manifestCid, progress: result.progress, durationMs: result.durationMs }
}

/**
 * Checks a complete model's files against digests the origin holds beyond chunk CIDs (an OCI
 * layer digest, `Origin.contentChecks`). Chunks are verified one by one as they land; only this
 * shows that the manifest named the right chunks for the origin's files, so a wrong manifest
 * (a tampered referrer, chunks served by CID from elsewhere) never yields a file that is placed.
 */
export async function checkOriginContent (store: ChunkStore, origin: Origin | undefined, manifestCid: string, options: AbortOptions = {}): Promise<void> {
  if (origin?.contentChecks == null) return
  const checks = await origin.contentChecks(manifestCid, options)
  const files = new Map(store.files(manifestCid).map(file => [file.entry.path, file]))
  for (const check of checks) {
    const hash = createHash('sha256')
    let size = 0
    for (const part of check.parts) {
      if ('bytes' in part) {
        hash.update(part.bytes)
        size += part.bytes.byteLength
        continue
      }
      const file = files.get(part.path)
      if (file?.complete !== true) throw new Error(`${part.path} is not complete in the store; ${check.what} cannot be checked`)
      for await (const piece of createReadStream(file.path, { signal: options.signal, highWaterMark: 1024 * 1024 })) {
        hash.update(piece as Buffer)
        size += (piece as Buffer).byteLength
      }
    }
    const digest = `sha256:${hash.digest('hex')}`
    if (digest !== check.digest || size !== check.size) {
      throw new DigestMismatchError(check.digest, digest, `${check.what}: the pulled files make ${size} bytes hashing to ${digest}, not the ${check.size} bytes of ${check.digest} the origin lists; the manifest named the wrong chunks for them, and they were not placed`)
    }
  }
}

/** Copies a held, complete model's files into `dir` (reflink where possible). */
/** A path under `--to` that is not what it must be: a planted link, or a file where a directory goes. */
export class UnsafeTargetError extends SwarmError {
  override readonly code = 'ERR_UNSAFE_TARGET'
}

/**
 * Copies a complete model out of the store into `dir`. Whoever else can write under `dir` must
 * not be able to redirect the copy: directories inside it are made one level at a time and
 * refused when they are links; each file is written to a fresh temporary name created
 * exclusively (so a link planted there is never followed), fsynced, then renamed over the
 * target (a link at the target is replaced, not followed), and the directory is fsynced so the
 * rename survives a crash. A failure removes the temporary file.
 */
export async function placeFiles (store: ChunkStore, manifestCid: string, dir: string): Promise<number> {
  const files = store.files(manifestCid)
  for (const file of files) {
    if (!file.complete) throw new Error(`${file.entry.path} is not complete in the store`)
  }
  const root = resolve(dir)
  await mkdir(root, { recursive: true })
  let bytes = 0
  const touched = new Set<string>()
  for (const file of files) {
    const segments = file.entry.path.split('/')
    const parent = await makeDirectories(root, segments.slice(0, -1))
    const target = join(parent, segments[segments.length - 1] as string)
    const temp = join(parent, `.${segments[segments.length - 1] as string}.swarm-partial-${randomBytes(8).toString('hex')}`)
    try {
      // COPYFILE_EXCL: created with O_CREAT|O_EXCL, which fails on any existing name, a link included
      await copyFile(file.path, temp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE)
      const handle = await open(temp, constants.O_RDONLY | constants.O_NOFOLLOW)
      try {
        await handle.chmod(file.entry.mode & 0o777 | 0o200)
        await handle.sync()
      } finally {
        await handle.close()
      }
      await rename(temp, target)
    } catch (err) {
      await rm(temp, { force: true }).catch(() => {})
      throw err
    }
    touched.add(parent)
    bytes += file.entry.size
  }
  for (const parent of touched) await syncDirectory(parent)
  return bytes
}

/** `root/segments…`, each made if missing and refused when it is a link or not a directory. */
async function makeDirectories (root: string, segments: string[]): Promise<string> {
  let at = root
  for (const segment of segments) {
    at = join(at, segment)
    try {
      await mkdir(at)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    const stat = await lstat(at)
    if (stat.isSymbolicLink()) throw new UnsafeTargetError(`${at} is a symbolic link; swarm does not write through links under --to`)
    if (!stat.isDirectory()) throw new UnsafeTargetError(`${at} exists and is not a directory`)
  }
  return at
}

async function syncDirectory (path: string): Promise<void> {
  const handle = await open(path, constants.O_RDONLY | constants.O_DIRECTORY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
