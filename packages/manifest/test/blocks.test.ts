import { randomBytes } from 'node:crypto'
import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { InvalidManifestError, uniqueChunks, type Manifest } from '@swarm/interface'
import { cidForBytes } from '@swarm/chunker'
import { blockDigests, decodeManifest, encodeManifest, validateManifest } from '../src/index.js'

const KiB = 1024

/** A version 3 manifest of one file of `size` random bytes cut in chunks of `chunkSize`, blocks of `blockSize`. */
function manifestOf (size: number, chunkSize: number, blockSize: number): { manifest: Manifest, bytes: Buffer } {
  const bytes = randomBytes(size)
  const chunks = []
  for (let offset = 0; offset < size; offset += chunkSize) {
    const chunk = bytes.subarray(offset, Math.min(size, offset + chunkSize))
    chunks.push({ cid: cidForBytes(chunk), offset, size: chunk.byteLength, blocks: blockDigests(chunk, blockSize) })
  }
  return { manifest: { version: 3, chunkSize, blockSize, files: [{ path: 'w.bin', size, mode: 0o644, chunks }] }, bytes }
}

function rejected (manifest: unknown): string {
  try {
    validateManifest(manifest)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidManifestError)
    return (err as Error).message
  }
  throw new Error('accepted')
}

describe('version 3: block digests', () => {
  it('lists each block\'s SHA-256, the last block shorter, and round-trips through its canonical bytes', () => {
    const { manifest, bytes } = manifestOf(300 * KiB + 7, 128 * KiB, 16 * KiB)
    const first = manifest.files[0]?.chunks[0]
    const digests = Buffer.from(first?.blocks ?? '', 'base64')
    expect(digests.byteLength).toBe(8 * 32)
    expect(digests.subarray(32, 64)).toEqual(createHash('sha256').update(bytes.subarray(16 * KiB, 32 * KiB)).digest())
    const last = manifest.files[0]?.chunks[2]
    expect(Buffer.from(last?.blocks ?? '', 'base64').byteLength).toBe(Math.ceil((44 * KiB + 7) / (16 * KiB)) * 32)
    const { bytes: encoded, cid } = encodeManifest(manifest)
    expect(decodeManifest(encoded, { expectedCid: cid })).toEqual(manifest)
  })

  it('gives each chunk request its digests, decoded; versions 1 and 2 give none', () => {
    const { manifest } = manifestOf(100 * KiB, 64 * KiB, 16 * KiB)
    const requests = uniqueChunks(manifest)
    expect(requests.map(r => r.blocks?.digests.byteLength)).toEqual([4 * 32, 3 * 32])
    expect(requests[0]?.blocks?.blockSize).toBe(16 * KiB)
    expect(Buffer.from(requests[1]?.blocks?.digests ?? []).toString('base64')).toBe(manifest.files[0]?.chunks[1]?.blocks)
    const v1: Manifest = { version: 1, chunkSize: manifest.chunkSize, files: manifest.files.map(f => ({ ...f, chunks: f.chunks.map(({ blocks: _, ...c }) => c) })) }
    expect(uniqueChunks(v1).every(r => r.blocks === undefined)).toBe(true)
  })

  it('refuses digests that do not cover their chunk, a missing block size, and digests outside version 3', () => {
    const { manifest } = manifestOf(100 * KiB, 64 * KiB, 16 * KiB)
    const short = structuredClone(manifest)
    const chunk = short.files[0]?.chunks[0]
    if (chunk === undefined) throw new Error('no chunk')
    chunk.blocks = Buffer.from(chunk.blocks ?? '', 'base64').subarray(32).toString('base64')
    expect(rejected(short)).toBe('invalid manifest: files[0].chunks[0].blocks: holds 96 bytes of digests; a chunk of 65536 bytes has 4 blocks of 16384, 128 bytes')

    const noBlockSize: Partial<Manifest> = structuredClone(manifest)
    delete noBlockSize.blockSize
    expect(rejected(noBlockSize)).toBe('invalid manifest: blockSize: is required in version 3')

    const missing = structuredClone(manifest)
    delete missing.files[0]?.chunks[1]?.blocks
    expect(rejected(missing)).toBe('invalid manifest: files[0].chunks[1].blocks: is required in version 3')

    expect(rejected({ ...manifest, version: 1 })).toMatch(/^invalid manifest: blockSize: needs version 3/)
    expect(rejected({ ...manifest, version: 1, blockSize: undefined })).toMatch(/^invalid manifest: files\[0\]\.chunks\[0\]\.blocks: needs version 3/)

    const notBase64 = structuredClone(manifest)
    const first = notBase64.files[0]?.chunks[0]
    if (first !== undefined) first.blocks = '@@@@'
    expect(rejected(notBase64)).toBe('invalid manifest: files[0].chunks[0].blocks "@@@@": must be the block digests in base64')

    expect(rejected({ ...manifest, blockSize: 1024 })).toMatch(/^invalid manifest: blockSize 1024: must be at least 16384/)
  })
})
