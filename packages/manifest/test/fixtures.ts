import type { FileEntry, Manifest } from '@swarm/interface'
import { cidForBytes, hashChunks, planChunks } from '@swarm/chunker'

export const MiB = 1024 * 1024

/** A file entry whose chunks are the real CIDs of `size` bytes derived from `seed`. */
export function fileEntry (path: string, size: number, seed = path, chunkSize = MiB): FileEntry {
  const bytes = new Uint8Array(size)
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed.length * 7 + (seed.charCodeAt(i % seed.length) || 0)) & 0xff
  return { path, size, mode: 0o644, chunks: hashChunks(bytes, planChunks({ size, chunkSize })) }
}

let sample: Manifest | undefined

/** A small valid manifest with real chunk CIDs; a fresh copy each call. */
export function sampleManifest (): Manifest {
  sample ??= {
    version: 1,
    chunkSize: MiB,
    files: [
      { ...fileEntry('model.safetensors', 2 * MiB + 300), tensors: [{ name: 'w', dtype: 'F16', shape: [4, 2], start: 16, end: 32 }, { name: 'b', dtype: 'F16', shape: [3], start: 32, end: 38 }] },
      fileEntry('config.json', 120),
      { ...fileEntry('tokenizer/vocab.txt', 3000), mode: 0o600 },
      fileEntry('empty', 0)
    ]
  }
  return structuredClone(sample)
}

/** A chunk CID for tests that only need a well-formed one. */
export const someCid = cidForBytes(new Uint8Array([1, 2, 3]))
