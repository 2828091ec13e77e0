/**
 * A manifest's chunk index space and the bitfields over it, in one place for every package.
 *
 * The index space: a manifest's distinct chunks in file order (`uniqueChunks`); a chunk that
 * several files share (or one file repeats) has one index, its first. Bitfields, the scheduler
 * and the control protocol all count in it, so they must all derive it the same way.
 *
 * Bitfields: bit `i` says whether chunk `i` is held. Bit 0 is the most significant bit of byte 0
 * (as in BitTorrent); bits past the last chunk are zero. Peers send them, so a bitfield that
 * arrives is checked (`fitsChunkCount`, `validateBitfield`) before anything counts on it.
 */

import { InvalidBitfieldError, InvalidChunkIndexError } from './errors.js'
import type { ChunkRef, ChunkRequest, Manifest } from './index.js'

/** The manifest's distinct chunks in file order: the index space of bitfields and the scheduler. */
export function uniqueChunks (manifest: Pick<Manifest, 'files'> & Partial<Pick<Manifest, 'blockSize'>>): ChunkRequest[] {
  const seen = new Set<string>()
  const out: ChunkRequest[] = []
  const blockSize = manifest.blockSize
  for (const file of manifest.files) {
    for (const chunk of file.chunks) {
      if (seen.has(chunk.cid)) continue
      seen.add(chunk.cid)
      // a version 3 manifest's block digests, for a chunk to be checked and passed on as it arrives
      out.push(blockSize !== undefined && chunk.blocks !== undefined
        ? { cid: chunk.cid, size: chunk.size, blocks: { blockSize, digests: Buffer.from(chunk.blocks, 'base64') } }
        : { cid: chunk.cid, size: chunk.size })
    }
  }
  return out
}

/** Index of the chunk holding byte `offset` of a file (its chunks tile it in order). */
export function chunkAt (chunks: readonly ChunkRef[], offset: number): number {
  let lo = 0
  let hi = chunks.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1
    if ((chunks[mid] as ChunkRef).offset <= offset) lo = mid
    else hi = mid - 1
  }
  return lo
}

/** Bytes a bitfield over `chunkCount` chunks takes. */
export function bitfieldLength (chunkCount: number): number {
  return (chunkCount + 7) >>> 3
}

/** An empty bitfield over `chunkCount` chunks. */
export function createBitfield (chunkCount: number): Uint8Array {
  return new Uint8Array(bitfieldLength(chunkCount))
}

/** Packs flags (truthy = held) into a bitfield. */
export function encodeBitfield (flags: ArrayLike<boolean | number>): Uint8Array {
  const bytes = createBitfield(flags.length)
  for (let i = 0; i < flags.length; i++) {
    if (flags[i] === true || (typeof flags[i] === 'number' && flags[i] !== 0)) {
      bytes[i >>> 3] = bytes[i >>> 3]! | (0x80 >>> (i & 7))
    }
  }
  return bytes
}

/** Unpacks a bitfield over `chunkCount` chunks; rejects one of the wrong length or with stray bits. */
export function decodeBitfield (bytes: Uint8Array, chunkCount: number): boolean[] {
  validateBitfield(bytes, chunkCount)
  const flags = new Array<boolean>(chunkCount)
  for (let i = 0; i < chunkCount; i++) flags[i] = (bytes[i >>> 3]! & (0x80 >>> (i & 7))) !== 0
  return flags
}

/** Whether `bytes` is exactly a bitfield over `chunkCount` chunks: its length, and no bit set past the last chunk. */
export function fitsChunkCount (bytes: Uint8Array, chunkCount: number): boolean {
  if (!(bytes instanceof Uint8Array) || bytes.length !== bitfieldLength(chunkCount)) return false
  const spare = bytes.length * 8 - chunkCount
  return spare === 0 || ((bytes[bytes.length - 1] ?? 0) & ((1 << spare) - 1)) === 0
}

/** Throws {@link InvalidBitfieldError} unless `bytes` is a well-formed bitfield over `chunkCount` chunks. */
export function validateBitfield (bytes: Uint8Array, chunkCount: number): void {
  if (!(bytes instanceof Uint8Array)) throw new InvalidBitfieldError('a bitfield must be a Uint8Array')
  if (fitsChunkCount(bytes, chunkCount)) return
  const expected = bitfieldLength(chunkCount)
  if (bytes.length !== expected) {
    throw new InvalidBitfieldError(`bitfield has ${bytes.length} bytes, expected ${expected} for ${chunkCount} chunks`)
  }
  throw new InvalidBitfieldError(`bitfield sets bits past chunk ${chunkCount - 1}`)
}

/** Whether the bitfield marks chunk `index` held; throws {@link InvalidChunkIndexError} for an index outside it. */
export function hasBit (bytes: Uint8Array, index: number): boolean {
  checkIndex(bytes, index)
  return (bytes[index >>> 3]! & (0x80 >>> (index & 7))) !== 0
}

/** Marks chunk `index` held; throws {@link InvalidChunkIndexError} for an index outside the bitfield. */
export function setBit (bytes: Uint8Array, index: number): void {
  checkIndex(bytes, index)
  bytes[index >>> 3] = bytes[index >>> 3]! | (0x80 >>> (index & 7))
}

/** How many chunks the bitfield marks held. */
export function countBits (bytes: Uint8Array): number {
  let count = 0
  for (let byte of bytes) {
    while (byte !== 0) {
      byte &= byte - 1
      count++
    }
  }
  return count
}

/** Whether `bytes` marks held every chunk `of` marks (two bitfields of one manifest; a shorter one lacks what it does not reach). */
export function holdsAll (bytes: Uint8Array, of: Uint8Array): boolean {
  for (let i = 0; i < of.length; i++) {
    if ((of[i]! & ~(bytes[i] ?? 0)) !== 0) return false
  }
  return true
}

/** The bitfield of what a store holds of `chunks` (a manifest's `uniqueChunks`). */
export function heldBitfield (chunks: readonly ChunkRequest[], has: (cid: string) => boolean): Uint8Array {
  const bytes = createBitfield(chunks.length)
  chunks.forEach((chunk, i) => { if (has(chunk.cid)) bytes[i >>> 3] = bytes[i >>> 3]! | (0x80 >>> (i & 7)) })
  return bytes
}

function checkIndex (bytes: Uint8Array, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= bytes.length * 8) {
    throw new InvalidChunkIndexError(index, bytes.length * 8)
  }
}
