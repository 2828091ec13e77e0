import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { encodeManifest } from '@swarm/manifest'
import type { FileEntry, Manifest } from '@swarm/interface'

/** Deterministic pseudo-random bytes: the same seed always gives the same chunk (AES-CTR keystream). */
export function bytesFor (seed: string, size: number): Uint8Array {
  const key = createHash('sha256').update(seed).digest()
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16))
  return new Uint8Array(cipher.update(Buffer.alloc(size)))
}

export interface TestFile {
  entry: FileEntry
  /** the file's bytes, chunk by chunk */
  chunks: Uint8Array[]
  bytes: Uint8Array
}

/** A file entry made of exactly these chunks, in order (repeats allowed). */
export function testFile (path: string, chunks: Uint8Array[]): TestFile {
  let offset = 0
  const refs = chunks.map(chunk => {
    const ref = { cid: cidForBytes(chunk), offset, size: chunk.byteLength }
    offset += chunk.byteLength
    return ref
  })
  const bytes = new Uint8Array(offset)
  let at = 0
  for (const chunk of chunks) {
    bytes.set(chunk, at)
    at += chunk.byteLength
  }
  return { entry: { path, size: offset, mode: 0o644, chunks: refs }, chunks, bytes }
}

export interface TestModel {
  manifest: Manifest
  cid: string
  files: TestFile[]
}

export function testModel (files: TestFile[]): TestModel {
  const chunkSize = Math.max(1, ...files.flatMap(f => f.entry.chunks.map(c => c.size)))
  const manifest: Manifest = { version: 1, chunkSize, files: files.map(f => f.entry) }
  return { manifest, cid: encodeManifest(manifest).cid, files }
}

/** Every distinct (cid, bytes) pair of a model. */
export function chunksOf (model: TestModel): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>()
  for (const file of model.files) {
    file.entry.chunks.forEach((ref, i) => out.set(ref.cid, file.chunks[i] as Uint8Array))
  }
  return out
}

export async function tempDir (): Promise<{ path: string, cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'swarm-store-'))
  return { path, cleanup: async () => { await rm(path, { recursive: true, force: true }) } }
}
