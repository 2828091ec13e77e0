/**
 * Chunk bitfields as the control protocol carries them: bit `i` says whether chunk `i` of a
 * manifest (in the manifest's chunk order) is present. Bit 0 is the most significant bit of
 * byte 0, as in BitTorrent; trailing bits of the last byte are zero.
 */

import { InvalidChunkStateError } from './errors.js'

export function bitfieldLength (chunkCount: number): number {
  return Math.ceil(chunkCount / 8)
}

export function createBitfield (chunkCount: number): Uint8Array {
  return new Uint8Array(bitfieldLength(chunkCount))
}

export function hasBit (bitfield: Uint8Array, index: number): boolean {
  return ((bitfield[index >> 3] ?? 0) & (0x80 >> (index & 7))) !== 0
}

export function setBit (bitfield: Uint8Array, index: number): void {
  const byte = index >> 3
  if (byte >= bitfield.length || index < 0) {
    throw new InvalidChunkStateError(`chunk index ${index} is outside a bitfield of ${bitfield.length * 8} bits`)
  }
  bitfield[byte] = (bitfield[byte] ?? 0) | (0x80 >> (index & 7))
}

/** How many chunks the bitfield marks present. */
export function countBits (bitfield: Uint8Array): number {
  let count = 0
  for (let byte of bitfield) {
    while (byte !== 0) {
      byte &= byte - 1
      count++
    }
  }
  return count
}

/** Whether `bitfield` is exactly the bitfield of `chunkCount` chunks: its length, and no bit set past the last chunk. */
export function fitsChunkCount (bitfield: Uint8Array, chunkCount: number): boolean {
  if (!(bitfield instanceof Uint8Array) || bitfield.length !== bitfieldLength(chunkCount)) {
    return false
  }
  const spareBits = bitfield.length * 8 - chunkCount
  return spareBits === 0 || ((bitfield[bitfield.length - 1] ?? 0) & ((1 << spareBits) - 1)) === 0
}
