import { describe, expect, it } from 'vitest'
import {
  bitfieldCount,
  bitfieldHas,
  bitfieldLength,
  bitfieldSet,
  decodeBitfield,
  encodeBitfield,
  InvalidBitfieldError,
  InvalidChunkIndexError
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
      expect(bitfieldCount(bytes)).toBe(flags.filter(Boolean).length)
      flags.forEach((flag, i) => expect(bitfieldHas(bytes, i)).toBe(flag))
    }
  })

  it('sets bits one at a time', () => {
    const bytes = new Uint8Array(bitfieldLength(20))
    bitfieldSet(bytes, 19)
    bitfieldSet(bytes, 3)
    expect(decodeBitfield(bytes, 20).flatMap((flag, i) => flag ? [i] : [])).toEqual([3, 19])
  })

  it('rejects a bitfield of the wrong length or with bits past the last chunk', () => {
    expect(() => decodeBitfield(new Uint8Array(3), 10)).toThrow(InvalidBitfieldError)
    expect(() => decodeBitfield(Uint8Array.from([0, 0x20]), 10)).toThrow(/past chunk 9/)
    expect(decodeBitfield(Uint8Array.from([0, 0x40]), 10)[9]).toBe(true)
  })

  it('rejects chunk indices outside the bitfield', () => {
    const bytes = new Uint8Array(2)
    expect(() => bitfieldHas(bytes, 16)).toThrow(InvalidChunkIndexError)
    expect(() => bitfieldHas(bytes, -1)).toThrow(InvalidChunkIndexError)
    expect(() => bitfieldSet(bytes, 1.5)).toThrow(InvalidChunkIndexError)
  })
})
