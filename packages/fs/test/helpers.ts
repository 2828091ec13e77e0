/** Real models for the view's tests: files cut into chunks as `swarm push` cuts them, a store, a fetcher, a source. */

import { createCipheriv, createHash } from 'node:crypto'
import { encodeSafetensorsHeader, hashChunks, llamaShapedTensors, parseSafetensorsHeader, planChunks } from '@swarm/chunker'
import { fetcher } from '@swarm/fetcher'
import { encodeManifest } from '@swarm/manifest'
import type { ChunkRequest, ChunkSource, FileEntry, Manifest } from '@swarm/interface'

export const MiB = 1024 * 1024

/** Incompressible, reproducible bytes. */
export function bytesFor (seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(length))
}

/** A safetensors file of a small Llama shape, with tensor data from `seed`. */
export function safetensorsBytes (seed: string, shape = { layers: 2, hidden: 256, intermediate: 768, vocab: 4096 }): Buffer {
  const encoded = encodeSafetensorsHeader(llamaShapedTensors(shape))
  const out = Buffer.alloc(encoded.size)
  out.set(encoded.header, 0)
  for (const tensor of encoded.tensors) out.set(bytesFor(`${seed}/${tensor.name}`, tensor.end - tensor.start), tensor.start)
  return out
}

export interface TestModel {
  manifest: Manifest
  cid: string
  files: Map<string, Buffer>
  chunks: Map<string, Uint8Array>
}

export function makeModel (files: Record<string, Buffer>, chunkSize = 1 * MiB): TestModel {
  const chunks = new Map<string, Uint8Array>()
  const entries: FileEntry[] = []
  for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => a < b ? -1 : 1)) {
    const layout = path.endsWith('.safetensors') ? parseSafetensorsHeader(bytes, bytes.length) : undefined
    const refs = hashChunks(bytes, planChunks({ size: bytes.length, chunkSize, ...(layout != null ? { layout } : {}) }))
    for (const ref of refs) chunks.set(ref.cid, bytes.subarray(ref.offset, ref.offset + ref.size))
    entries.push({ path, size: bytes.length, mode: 0o644, chunks: refs, ...(layout != null ? { tensors: layout.tensors } : {}) })
  }
  const manifest: Manifest = { version: 1, chunkSize, files: entries }
  return { manifest, cid: encodeManifest(manifest).cid, files: new Map(Object.entries(files)), chunks }
}

export interface CountingSource extends ChunkSource {
  /** CIDs asked for, in order */
  asked: string[]
  bytes: number
  /** CIDs that fail (as a source that lost them would) */
  missing: Set<string>
  delayMs: number
}

/** A source serving a model's chunks from memory, counting what it is asked for. */
export function memorySource (model: TestModel, name = 'origin'): CountingSource {
  const source: CountingSource = {
    name,
    kind: 'origin',
    asked: [],
    bytes: 0,
    missing: new Set(),
    delayMs: 0,
    async fetch ({ cid }: ChunkRequest, { signal } = {}): Promise<Uint8Array> {
      source.asked.push(cid)
      if (source.delayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, source.delayMs)
          signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
        })
      }
      const bytes = model.chunks.get(cid)
      if (bytes == null || source.missing.has(cid)) throw new Error(`${name} has no chunk ${cid}`)
      source.bytes += bytes.length
      return bytes
    }
  }
  return source
}

export { fetcher }
