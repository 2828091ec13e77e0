import { describe, expect, it } from 'vitest'
import {
  encodeSafetensorsHeader,
  IncompleteHeaderError,
  InvalidFileSizeError,
  InvalidSafetensorsError,
  llamaShapedTensors,
  MAX_SAFETENSORS_HEADER,
  parseSafetensorsHeader,
  safetensorsHeaderLength
} from '../src/index.js'

/** A file prefix holding `json` as the header, padded as given, with the length prefix. */
function headerBytes (json: string | Uint8Array, declaredLength?: bigint): Uint8Array {
  const body = typeof json === 'string' ? new TextEncoder().encode(json) : json
  const bytes = new Uint8Array(8 + body.length)
  new DataView(bytes.buffer).setBigUint64(0, declaredLength ?? BigInt(body.length), true)
  bytes.set(body, 8)
  return bytes
}

function entry (dtype: string, shape: number[], begin: number, end: number): object {
  return { dtype, shape, data_offsets: [begin, end] }
}

describe('encodeSafetensorsHeader', () => {
  it('writes the reference layout: compact JSON, metadata first, space padding to 8 bytes', () => {
    const { header, tensors, size } = encodeSafetensorsHeader(
      [{ name: 'b', dtype: 'F32', shape: [2, 3] }, { name: 'a', dtype: 'F16', shape: [5] }],
      { format: 'pt' }
    )
    const json = '{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"a":{"dtype":"F16","shape":[5],"data_offsets":[24,34]}}'
    const padded = Math.ceil(json.length / 8) * 8
    expect(header.length).toBe(8 + padded)
    expect(new DataView(header.buffer).getBigUint64(0, true)).toBe(BigInt(padded))
    expect(new TextDecoder().decode(header.subarray(8))).toBe(json + ' '.repeat(padded - json.length))
    expect(size).toBe(header.length + 34)
    expect(tensors).toEqual([
      { name: 'b', dtype: 'F32', shape: [2, 3], start: header.length, end: header.length + 24 },
      { name: 'a', dtype: 'F16', shape: [5], start: header.length + 24, end: header.length + 34 }
    ])
  })

  it('round-trips through parseSafetensorsHeader', () => {
    const specs = llamaShapedTensors({ layers: 3, hidden: 64, intermediate: 172, vocab: 1000, kvHidden: 16, dtype: 'F16' })
    const { header, tensors, size } = encodeSafetensorsHeader(specs, { format: 'pt' })
    expect(header.length % 8).toBe(0)
    expect(safetensorsHeaderLength(header.subarray(0, 8), size)).toBe(header.length)
    const layout = parseSafetensorsHeader(header, size)
    expect(layout.headerSize).toBe(header.length)
    expect(layout.tensors).toEqual(tensors)
    expect(tensors.at(-1)?.end).toBe(size)
  })

  it('rejects unknown dtypes, bad shapes and duplicate names', () => {
    expect(() => encodeSafetensorsHeader([{ name: 'x', dtype: 'F12', shape: [1] }])).toThrow(/tensor "x": unknown dtype "F12"/)
    expect(() => encodeSafetensorsHeader([{ name: 'x', dtype: 'F16', shape: [-1] }])).toThrow(/tensor "x": shape \[-1\] must be a list of non-negative integers/)
    expect(() => encodeSafetensorsHeader([{ name: 'x', dtype: 'F16', shape: [1.5] }])).toThrow(InvalidSafetensorsError)
    expect(() => encodeSafetensorsHeader([{ name: 'x', dtype: 'F16', shape: [1] }, { name: 'x', dtype: 'F16', shape: [1] }])).toThrow(/tensor "x" appears twice/)
    expect(() => encodeSafetensorsHeader([{ name: '__metadata__', dtype: 'F16', shape: [1] }])).toThrow(/cannot be named __metadata__/)
    expect(() => encodeSafetensorsHeader([{ name: '', dtype: 'F16', shape: [1] }])).toThrow(/non-empty/)
  })
})

describe('llamaShapedTensors', () => {
  it('lists the Hugging Face Llama tensors with their shapes', () => {
    const tensors = llamaShapedTensors({ layers: 2, hidden: 8, intermediate: 24, vocab: 100, kvHidden: 4 })
    expect(tensors).toHaveLength(2 + 9 * 2 + 1)
    expect(tensors[0]).toEqual({ name: 'model.embed_tokens.weight', dtype: 'BF16', shape: [100, 8] })
    expect(tensors.at(-1)).toEqual({ name: 'lm_head.weight', dtype: 'BF16', shape: [100, 8] })
    const byName = new Map(tensors.map(t => [t.name, t.shape]))
    expect(byName.get('model.layers.1.self_attn.q_proj.weight')).toEqual([8, 8])
    expect(byName.get('model.layers.1.self_attn.k_proj.weight')).toEqual([4, 8])
    expect(byName.get('model.layers.1.self_attn.v_proj.weight')).toEqual([4, 8])
    expect(byName.get('model.layers.0.self_attn.o_proj.weight')).toEqual([8, 8])
    expect(byName.get('model.layers.0.mlp.gate_proj.weight')).toEqual([24, 8])
    expect(byName.get('model.layers.0.mlp.up_proj.weight')).toEqual([24, 8])
    expect(byName.get('model.layers.0.mlp.down_proj.weight')).toEqual([8, 24])
    expect(byName.get('model.layers.0.input_layernorm.weight')).toEqual([8])
    expect(byName.get('model.layers.0.post_attention_layernorm.weight')).toEqual([8])
    expect(byName.get('model.norm.weight')).toEqual([8])
    expect(new Set(tensors.map(t => t.name)).size).toBe(tensors.length)
  })

  it('rejects dimensions that are not positive integers', () => {
    expect(() => llamaShapedTensors({ layers: 0, hidden: 8, intermediate: 24, vocab: 100 })).toThrow(/layers must be a positive integer, got 0/)
    expect(() => llamaShapedTensors({ layers: 1, hidden: 8.5, intermediate: 24, vocab: 100 })).toThrow(/hidden must be a positive integer/)
  })
})

describe('safetensorsHeaderLength', () => {
  it('reads 8 + N from the little-endian prefix', () => {
    const first8 = new Uint8Array(8)
    new DataView(first8.buffer).setBigUint64(0, 0x01_02_03n, true)
    expect(safetensorsHeaderLength(first8)).toBe(8 + 0x01_02_03)
  })

  it('refuses a length over the limit, past the file, or too few bytes', () => {
    const first8 = new Uint8Array(8)
    new DataView(first8.buffer).setBigUint64(0, BigInt(MAX_SAFETENSORS_HEADER) + 1n, true)
    expect(() => safetensorsHeaderLength(first8)).toThrow(InvalidSafetensorsError)
    expect(() => safetensorsHeaderLength(first8)).toThrow(/exceeds the limit of 104857600 bytes/)
    new DataView(first8.buffer).setBigUint64(0, 2n ** 63n, true)
    expect(() => safetensorsHeaderLength(first8)).toThrow(/exceeds the limit/)
    new DataView(first8.buffer).setBigUint64(0, 100n, true)
    expect(() => safetensorsHeaderLength(first8, 50)).toThrow(/header length 100 runs past the end of the 50-byte file/)
    expect(() => safetensorsHeaderLength(first8.subarray(0, 5))).toThrow(IncompleteHeaderError)
    expect(() => safetensorsHeaderLength(first8, 4)).toThrow(/file is 4 bytes, too short/)
    expect(() => safetensorsHeaderLength(first8, -1)).toThrow(InvalidFileSizeError)
  })
})

describe('parseSafetensorsHeader', () => {
  const valid = JSON.stringify({ w: entry('F16', [2, 2], 0, 8), b: entry('F32', [1], 8, 12) })

  it('returns absolute offsets sorted by start, ignoring metadata', () => {
    const json = JSON.stringify({ late: entry('U8', [4], 10, 14), __metadata__: { k: 'v' }, early: entry('I64', [1], 0, 8) })
    const prefix = headerBytes(json)
    const layout = parseSafetensorsHeader(prefix, prefix.length + 20)
    expect(layout.headerSize).toBe(prefix.length)
    expect(layout.tensors).toEqual([
      { name: 'early', dtype: 'I64', shape: [1], start: prefix.length, end: prefix.length + 8 },
      { name: 'late', dtype: 'U8', shape: [4], start: prefix.length + 10, end: prefix.length + 14 }
    ])
  })

  it('accepts a prefix longer than the header and dtypes it does not know', () => {
    const json = JSON.stringify({ x: entry('F4', [3], 0, 2) })
    const prefix = headerBytes(json)
    const longer = new Uint8Array(prefix.length + 100)
    longer.set(prefix)
    expect(parseSafetensorsHeader(longer, longer.length).tensors).toEqual([{ name: 'x', dtype: 'F4', shape: [3], start: prefix.length, end: prefix.length + 2 }])
  })

  it('names a prefix that stops short of the header', () => {
    const prefix = headerBytes(valid)
    expect(() => parseSafetensorsHeader(prefix.subarray(0, 20), prefix.length + 12)).toThrow(IncompleteHeaderError)
    expect(() => parseSafetensorsHeader(prefix.subarray(0, 20), prefix.length + 12)).toThrow(`the header needs ${prefix.length} bytes (8 + ${prefix.length - 8}), but only 20 were given`)
  })

  const rejections: Array<[string, Uint8Array, number | undefined, RegExp]> = [
    ['a header over the limit', headerBytes('{}', BigInt(MAX_SAFETENSORS_HEADER) + 8n), undefined, /exceeds the limit/],
    ['a header that is not UTF-8', headerBytes(new Uint8Array([0x7b, 0xff, 0x7d])), undefined, /not valid UTF-8/],
    ['a header that is not JSON', headerBytes('{"w": '), undefined, /header is not valid JSON/],
    ['a header that is not an object', headerBytes('[1,2]'), undefined, /header must be a JSON object, got an array/],
    ['an entry that is not an object', headerBytes('{"w":5}'), undefined, /tensor "w": /],
    ['an entry without dtype', headerBytes(JSON.stringify({ w: { shape: [1], data_offsets: [0, 1] } })), undefined, /tensor "w": dtype: /],
    ['a negative dimension', headerBytes(JSON.stringify({ w: entry('U8', [-1], 0, 1) })), undefined, /tensor "w": shape\.0: shape dimensions must be non-negative integers/],
    ['a fractional offset', headerBytes(JSON.stringify({ w: entry('U8', [1], 0.5, 1) })), undefined, /tensor "w": data_offsets\.0: /],
    ['three offsets', headerBytes(JSON.stringify({ w: { dtype: 'U8', shape: [1], data_offsets: [0, 1, 2] } })), undefined, /tensor "w": data_offsets/],
    ['offsets that end before they begin', headerBytes(JSON.stringify({ w: entry('U8', [0], 4, 2) })), undefined, /tensor "w": data_offsets \[4, 2\] end before they begin/],
    ['offsets past the data region', headerBytes(JSON.stringify({ w: entry('U8', [8], 0, 8) })), 5, /tensor "w": data_offsets \[0, 8\] reach past the data region, which holds 5 bytes/],
    ['a size that disagrees with dtype and shape', headerBytes(JSON.stringify({ w: entry('F32', [2], 0, 6) })), undefined, /tensor "w": F32 \[2\] needs 8 bytes, but data_offsets \[0, 6\] span 6/],
    ['overlapping tensors', headerBytes(JSON.stringify({ a: entry('U8', [8], 0, 8), b: entry('U8', [4], 6, 10) })), undefined, /tensors "a" \[0, 8\) and "b" \[6, 10\) overlap/],
    ['a tensor inside another', headerBytes(JSON.stringify({ a: entry('U8', [10], 0, 10), b: entry('U8', [2], 2, 4), c: entry('U8', [2], 5, 7) })), undefined, /tensors "a" \[0, 10\) and "b" \[2, 4\) overlap/],
    ['metadata that is not strings', headerBytes(JSON.stringify({ __metadata__: { n: 1 } })), undefined, /__metadata__ values must be strings/]
  ]
  for (const [what, prefix, dataBytes, message] of rejections) {
    it(`rejects ${what}`, () => {
      const fileSize = prefix.length + (dataBytes ?? 64)
      expect(() => parseSafetensorsHeader(prefix, fileSize)).toThrow(InvalidSafetensorsError)
      expect(() => parseSafetensorsHeader(prefix, fileSize)).toThrow(message)
    })
  }

  it('rejects a length prefix that runs past the file before reading further', () => {
    expect(() => parseSafetensorsHeader(headerBytes(valid), 30)).toThrow(/runs past the end of the 30-byte file/)
  })

  it('accepts gaps between tensors and trailing bytes', () => {
    const prefix = headerBytes(JSON.stringify({ a: entry('U8', [4], 0, 4), b: entry('U8', [4], 10, 14) }))
    const layout = parseSafetensorsHeader(prefix, prefix.length + 100)
    expect(layout.tensors.map(t => [t.start - prefix.length, t.end - prefix.length])).toEqual([[0, 4], [10, 14]])
  })

  it('accepts empty tensors next to others', () => {
    const prefix = headerBytes(JSON.stringify({ a: entry('U8', [4], 0, 4), e: entry('U8', [0], 4, 4), b: entry('U8', [4], 4, 8) }))
    expect(parseSafetensorsHeader(prefix, prefix.length + 8).tensors.map(t => t.name)).toEqual(['a', 'e', 'b'])
  })
})
