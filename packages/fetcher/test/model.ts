import { randomBytes } from 'node:crypto'
import { cidForBytes } from '@swarm/chunker'
import { encodeManifest } from '@swarm/manifest'
import type { Manifest } from '@swarm/interface'

export interface Model { manifest: Manifest, cid: string, chunks: Map<string, Uint8Array>, bytes: number }

/** A model of `chunkCount` random chunks of `chunkBytes` each in one file, `weights.bin`, under a manifest of `chunkSize`. */
export function randomModel (chunkCount: number, chunkBytes: number, chunkSize = chunkBytes): Model {
  const chunks = new Map<string, Uint8Array>()
  const refs = []
  for (let i = 0; i < chunkCount; i++) {
    const bytes = randomBytes(chunkBytes)
    const cid = cidForBytes(bytes)
    chunks.set(cid, bytes)
    refs.push({ cid, offset: i * chunkBytes, size: chunkBytes })
  }
  const manifest: Manifest = { version: 1, chunkSize, files: [{ path: 'weights.bin', size: chunkCount * chunkBytes, mode: 0o644, chunks: refs }] }
  return { manifest, cid: encodeManifest(manifest).cid, chunks, bytes: chunkCount * chunkBytes }
}

/** What a lying source sends instead of `bytes`: as many bytes, the first one wrong. */
export function lyingCopy (bytes: Uint8Array): Uint8Array {
  const wrong = Uint8Array.from(bytes)
  wrong[0] = (wrong[0] ?? 0) ^ 0xff
  return wrong
}
