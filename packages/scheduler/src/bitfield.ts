/**
 * Chunk bitfields as peers exchange them: bit `i` says whether chunk `i` of a manifest's unique
 * chunk list is held. Bit 0 is the most significant bit of byte 0 (as in BitTorrent, and as
 * `@swarm/p2p` carries them); bits past the last chunk are zero.
 */

import { InvalidBitfieldError, InvalidChunkIndexError } from './errors.js'

/** Bytes a bitfield over `chunkCount` chunks takes. */
export function bitfieldLength (chunkCount: number): number {
  return (chunkCount + 7) >>> 3
}

/** Packs flags (truthy = held) into a bitfield. */
export function encodeBitfield (flags: ArrayLike<boolean | number>): Uint8Array {
  const bytes = new Uint8Array(bitfieldLength(flags.length))
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

/** Throws {@link InvalidBitfieldError} unless `bytes` is a well-formed bitfield over `chunkCount` chunks. */
export function validateBitfield (bytes: Uint8Array, chunkCount: number): void {
  if (!(bytes instanceof Uint8Array)) throw new InvalidBitfieldError('a bitfield must be a Uint8Array')
  const expected = bitfieldLength(chunkCount)
  if (bytes.length !== expected) {
    throw new InvalidBitfieldError(`bitfield has ${bytes.length} bytes, expected ${expected} for ${chunkCount} chunks`)
  }
  const spare = expected * 8 - chunkCount
  if (spare > 0 && (bytes[expected - 1]! & ((1 << spare) - 1)) !== 0) {
    throw new InvalidBitfieldError(`bitfield sets bits past chunk ${chunkCount - 1}`)
  }
}

/** Whether the bitfield marks chunk `index` held. */
export function bitfieldHas (bytes: Uint8Array, index: number): boolean {
  checkIndex(bytes, index)
  return (bytes[index >>> 3]! & (0x80 >>> (index & 7))) !== 0
}

/** Marks chunk `index` held. */
export function bitfieldSet (bytes: Uint8Array, index: number): void {
  checkIndex(bytes, index)
  bytes[index >>> 3] = bytes[index >>> 3]! | (0x80 >>> (index & 7))
}

/** How many chunks the bitfield marks held. */
export function bitfieldCount (bytes: Uint8Array): number {
  let count = 0
  for (let byte of bytes) {
    while (byte !== 0) {
      byte &= byte - 1
      count++
    }
  }
  return count
}

function checkIndex (bytes: Uint8Array, index: number): void {
  if (!Number.isInteger(index) || index < 0 || index >= bytes.length * 8) {
    throw new InvalidChunkIndexError(index, bytes.length * 8)
  }
}
