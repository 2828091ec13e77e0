/**
 * Publishing a model: walk the directory, cut each file into chunks (on tensor boundaries for
 * safetensors), hash each chunk as it is read, upload only what the origin lacks, then write the
 * manifest and, last of all, move the tag — so a reader that resolves the tag never sees a
 * manifest whose chunks are not all in place.
 *
 * Files are read one chunk at a time with a bounded number of chunks in flight, so memory stays
 * at `concurrency × chunkSize` whatever the model's size.
 *
 * An origin that stores whole files (`Origin.putModel`: an OCI registry, one layer per file) gets
 * no chunks: the files are still cut and hashed here for the manifest, then handed to it whole.
 *
 * The manifest is version 3 by default: each chunk's blocks are hashed too (`blockSize`, one
 * more SHA-256 pass over the bytes), so pulling nodes can pass a chunk on while it arrives.
 * `blockSize: 0` writes version 1 (or 2 with metadata), which older readers take.
 *
 * A Hugging Face cache snapshot (`hf-cache.ts`) is pushed with `linksWithin` set to its `blobs/`,
 * so a link that resolves anywhere else is refused before anything is uploaded, and with its
 * repository and revision as manifest metadata.
 */

import { createReadStream } from 'node:fs'
import { open, readdir, realpath, stat } from 'node:fs/promises'
import { join, relative, sep } from 'node:path'
import { cidForBytes, DEFAULT_CHUNK_SIZE, parseSafetensorsHeader, planChunks, safetensorsHeaderLength } from '@swarm/chunker'
import { blockDigests, DEFAULT_BLOCK_SIZE, encodeManifest, formatRef } from '@swarm/manifest'
import pLimit from 'p-limit'
import type { AbortOptions, ChunkRef, FileEntry, Logger, Manifest, ModelRef, Origin, TensorInfo } from '@swarm/interface'
import { SwarmError } from '@swarm/interface'

export interface PushOptions extends AbortOptions {
  origin: Origin
  ref: ModelRef
  chunkSize?: number
  /** bytes of each block whose digest the manifest lists (version 3; default 256 KiB); 0: none (version 1 or 2) */
  blockSize?: number
  concurrency?: number
  /** recorded in the manifest (version 2, or 3 with block digests), e.g. the Hugging Face revision */
  metadata?: Record<string, string>
  /** a real path every symbolic link must resolve inside (a Hugging Face cache's `blobs/`); others are refused */
  linksWithin?: string
  logger?: Logger
  onProgress?(progress: PushProgress): void
}

export interface PushProgress {
  totalBytes: number
  doneBytes: number
  uploadedChunks: number
  uploadedBytes: number
  skippedChunks: number
}

export interface PushResult extends PushProgress {
  manifestCid: string
  /** what the manifest records besides the files, when anything */
  metadata?: Record<string, string>
  ref: string
  files: number
  durationMs: number
}

export class PushSourceError extends SwarmError {
  override readonly code = 'ERR_PUSH_SOURCE'
}

async function listFiles (root: string, linksWithin?: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true })
    for (const entry of entries) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await walk(path)
      else if (entry.isFile()) out.push(path)
      else if (entry.isSymbolicLink()) {
        if (linksWithin !== undefined) {
          // after every link on the way: a chain that leaves and comes back is judged by where it ends
          const target = await realpath(path).catch(() => undefined)
          if (target === undefined || !target.startsWith(linksWithin + sep) || !(await stat(target)).isFile()) {
            throw new PushSourceError(`${relative(root, path)} links to ${target ?? 'nothing'}, not to a file inside ${linksWithin}; refusing to publish it`)
          }
          out.push(path)
          continue
        }
        // a link is published as the file it points to, if it points inside a regular file
        const target = await stat(path)
        if (target.isFile()) out.push(path)
        else if (target.isDirectory()) await walk(path)
      }
    }
  }
  await walk(root)
  return out.sort()
}

async function readSafetensorsLayout (fd: Awaited<ReturnType<typeof open>>, size: number, path: string): Promise<{ layout: ReturnType<typeof parseSafetensorsHeader> }> {
  const first8 = Buffer.alloc(8)
  await fd.read(first8, 0, 8, 0)
  let headerSize: number
  try {
    headerSize = safetensorsHeaderLength(first8)
    const prefix = Buffer.alloc(headerSize)
    await fd.read(prefix, 0, headerSize, 0)
    return { layout: parseSafetensorsHeader(prefix, size) }
  } catch (err) {
    throw new PushSourceError(`${path}: ${(err as Error).message}`)
  }
}

export async function pushDirectory (dir: string, options: PushOptions): Promise<PushResult> {
  const started = performance.now()
  const { origin, signal } = options
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE
  const limit = pLimit(options.concurrency ?? 8)
  const rootStat = await stat(dir).catch(() => undefined)
  if (rootStat?.isDirectory() !== true) throw new PushSourceError(`${dir} is not a directory`)
  const paths = await listFiles(dir, options.linksWithin)
  if (paths.length === 0) throw new PushSourceError(`${dir} holds no files`)

  const sizes = await Promise.all(paths.map(async p => (await stat(p)).size))
  const progress: PushProgress = { totalBytes: sizes.reduce((a, b) => a + b, 0), doneBytes: 0, uploadedChunks: 0, uploadedBytes: 0, skippedChunks: 0 }
  const seen = new Map<string, Promise<void>>()
  const files: FileEntry[] = []

  for (const [i, path] of paths.entries()) {
    signal?.throwIfAborted()
    const size = sizes[i] as number
    const rel = relative(dir, path).split(sep).join('/')
    const fd = await open(path, 'r')
    try {
      const info = await fd.stat()
      let tensors: TensorInfo[] | undefined
      let plan
      if (rel.endsWith('.safetensors') && size >= 8) {
        const { layout } = await readSafetensorsLayout(fd, size, rel)
        tensors = layout.tensors
        plan = planChunks({ size, chunkSize, layout })
      } else {
        plan = planChunks({ size, chunkSize })
      }
      const chunks: ChunkRef[] = await Promise.all(plan.map(async ({ offset, size: length }) => await limit(async () => {
        signal?.throwIfAborted()
        const bytes = Buffer.allocUnsafe(length)
        const { bytesRead } = await fd.read(bytes, 0, length, offset)
        if (bytesRead !== length) throw new PushSourceError(`${rel} changed while being pushed (short read at ${offset})`)
        const cid = cidForBytes(bytes)
        let upload = seen.get(cid)
        if (upload == null && origin.putModel != null) {
          upload = Promise.resolve()
          seen.set(cid, upload)
        }
        if (upload == null) {
          upload = (async () => {
            if (await origin.hasChunk(cid, { signal })) {
              progress.skippedChunks++
              return
            }
            await origin.putChunk(cid, bytes, { signal })
            progress.uploadedChunks++
            progress.uploadedBytes += length
          })()
          seen.set(cid, upload)
        }
        await upload
        progress.doneBytes += length
        options.onProgress?.({ ...progress })
        return blockSize > 0 ? { cid, offset, size: length, blocks: blockDigests(bytes, blockSize) } : { cid, offset, size: length }
      })))
      const entry: FileEntry = { path: rel, size, mode: info.mode & 0o777, chunks }
      if (tensors != null) entry.tensors = tensors
      files.push(entry)
    } finally {
      await fd.close()
    }
  }

  const metadata = options.metadata !== undefined && Object.keys(options.metadata).length > 0 ? options.metadata : undefined
  const manifest: Manifest = blockSize > 0
    ? { version: 3, chunkSize, blockSize, files, ...(metadata !== undefined ? { metadata } : {}) }
    : metadata !== undefined ? { version: 2, chunkSize, files, metadata } : { version: 1, chunkSize, files }
  const { bytes, cid: manifestCid } = encodeManifest(manifest)
  if (origin.putModel != null) {
    const sources = new Map(paths.map(path => [relative(dir, path).split(sep).join('/'), path]))
    await origin.putModel({
      ref: options.ref,
      manifestCid,
      manifestBytes: bytes,
      manifest,
      readFile: (path, { signal: readSignal } = {}) => createReadStream(sources.get(path) as string, { signal: readSignal, highWaterMark: 1024 * 1024 })
    }, { signal })
  } else {
    await origin.putManifest(manifestCid, bytes, { signal })
    await origin.putRef(options.ref, manifestCid, { signal })
  }
  options.logger?.info({ ref: formatRef(options.ref), manifestCid, ...progress }, 'pushed')
  return { ...progress, manifestCid, ref: formatRef(options.ref), files: files.length, durationMs: performance.now() - started, ...(metadata !== undefined ? { metadata } : {}) }
}
