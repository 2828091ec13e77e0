import { describe, expect, it } from 'vitest'
import {
  countBits,
  hasBit,
  bitfieldLength,
  setBit,
  decodeBitfield,
  encodeBitfield,
  InvalidBitfieldError,
  InvalidChunkIndexError,
  chunkAt,
  fitsChunkCount,
  heldBitfield,
  holdsAll,
  uniqueChunks
} from '../src/index.js'

describe('bitfields', () => {
  it('puts chunk 0 in the most significant bit of byte 0', () => {
    const bytes = encodeBitfield([true, false, false, false, false, false, false, false, false, true])
    expect(bytes).toEqual(Uint8Array.from([0x80, 0x40]))
    expect(bitfieldLength(10)).toBe(2)
  })

  it('round-trips flags of every length up to 70', () => {
    for (let n = 0; n <= 70; n++) {
      const flags = Array.from({ length: n }, (_, i) => (i * 7 + n) % 3 === 0)
      const bytes = encodeBitfield(flags)
      expect(bytes.length).toBe(Math.ceil(n / 8))
      expect(decodeBitfield(bytes, n)).toEqual(flags)
      expect(countBits(bytes)).toBe(flags.filter(Boolean).length)
      flags.forEach((flag, i) => expect(hasBit(bytes, i)).toBe(flag))
    }
  })

  it('says whether one bitfield holds every chunk another does', () => {
    const some = encodeBitfield([true, false, true, false, false, false, false, false, true])
    const more = encodeBitfield([true, true, true, false, false, false, false, false, true])
    expect(holdsAll(more, some)).toBe(true)
    expect(holdsAll(some, more)).toBe(false)
    expect(holdsAll(some, some)).toBe(true)
    expect(holdsAll(some, new Uint8Array(2))).toBe(true)
    // the last chunk only: lacking it shows in the second byte
    expect(holdsAll(encodeBitfield([true, false, true]), some)).toBe(false)
  })

  it('sets bits one at a time', () => {
    const bytes = new Uint8Array(bitfieldLength(20))
    setBit(bytes, 19)
    setBit(bytes, 3)
    expect(decodeBitfield(bytes, 20).flatMap((flag, i) => flag ? [i] : [])).toEqual([3, 19])
  })

  it('rejects a bitfield of the wrong length or with bits past the last chunk', () => {
    expect(() => decodeBitfield(new Uint8Array(3), 10)).toThrow(InvalidBitfieldError)
    expect(() => decodeBitfield(Uint8Array.from([0, 0x20]), 10)).toThrow(/past chunk 9/)
    expect(decodeBitfield(Uint8Array.from([0, 0x40]), 10)[9]).toBe(true)
  })

  it('rejects chunk indices outside the bitfield', () => {
    const bytes = new Uint8Array(2)
    expect(() => hasBit(bytes, 16)).toThrow(InvalidChunkIndexError)
    expect(() => hasBit(bytes, -1)).toThrow(InvalidChunkIndexError)
    expect(() => setBit(bytes, 1.5)).toThrow(InvalidChunkIndexError)
  })

  it('fits a chunk count only with its length and no bit past the last chunk', () => {
    expect(fitsChunkCount(new Uint8Array(2), 10)).toBe(true)
    expect(fitsChunkCount(new Uint8Array(2), 16)).toBe(true)
    expect(fitsChunkCount(new Uint8Array(1), 10)).toBe(false)
    expect(fitsChunkCount(new Uint8Array(3), 10)).toBe(false)
    expect(fitsChunkCount(Uint8Array.from([0, 0x20]), 10)).toBe(false)
    expect(fitsChunkCount([0, 0] as unknown as Uint8Array, 10)).toBe(false)
    expect(fitsChunkCount(new Uint8Array(0), 0)).toBe(true)
  })
})

describe('the chunk index space', () => {
  const file = (path: string, cids: string[]) => ({ path, chunks: cids.map((cid, i) => ({ cid, offset: i * 4, size: 4 })) })

  it('numbers distinct chunks in file order, a repeated chunk at its first place', () => {
    const chunks = uniqueChunks({ files: [file('a', ['x', 'y', 'x']), file('b', ['z', 'y'])] as never })
    expect(chunks.map(c => c.cid)).toEqual(['x', 'y', 'z'])
    expect(chunks.every(c => c.size === 4)).toBe(true)
  })

  it('makes the bitfield of what is held in that space', () => {
    const chunks = uniqueChunks({ files: [file('a', ['x', 'y', 'x']), file('b', ['z'])] as never })
    const bits = heldBitfield(chunks, cid => cid !== 'y')
    expect(decodeBitfield(bits, 3)).toEqual([true, false, true])
  })

  it('finds the chunk holding a byte offset', () => {
    const f = file('a', ['a', 'b', 'c', 'd'])
    expect(chunkAt(f.chunks, 0)).toBe(0)
    expect(chunkAt(f.chunks, 3)).toBe(0)
    expect(chunkAt(f.chunks, 4)).toBe(1)
    expect(chunkAt(f.chunks, 15)).toBe(3)
    expect(chunkAt(f.chunks, 99)).toBe(3)
  })
})
