import { describe, expect, it } from 'vitest'
import type { TensorInfo } from '@swarm/interface'
import { seededRandom } from '@swarm/scheduler'
import {
  ChunkOutOfRangeError,
  cidForBytes,
  DEFAULT_CHUNK_SIZE,
  hashChunks,
  InvalidChunkSizeError,
  InvalidFileSizeError,
  InvalidLayoutError,
  LARGE_TENSOR_FRACTION,
  llamaShapedTensors,
  MAX_CHUNK_SIZE,
  MIN_CHUNK_SIZE,
  parseSafetensorsHeader,
  planChunks,
  verifyChunk,
  type PlannedChunk,
  type SafetensorsLayout,
  type TensorSpec
} from '../src/index.js'
import { expectTiling, randomInt, safetensorsFile } from './fixtures.js'

const MiB = 1024 * 1024

/** A random layout: a mix of tiny, small and large tensors with occasional gaps and trailing bytes. */
function randomLayout (next: () => number, chunkSize: number, headerSize = randomInt(next, 8, 3 * MiB)): { layout: SafetensorsLayout, size: number } {
  const tensors: TensorInfo[] = []
  let offset = headerSize
  const count = randomInt(next, 0, 60)
  for (let i = 0; i < count; i++) {
    if (next() < 0.15) offset += randomInt(next, 1, 10_000)
    const kind = next()
    const bytes = kind < 0.1
      ? 0
      : kind < 0.4
        ? randomInt(next, 1, 4096)
        : kind < 0.7 ? randomInt(next, 4096, Math.floor(chunkSize * LARGE_TENSOR_FRACTION)) : randomInt(next, Math.ceil(chunkSize * LARGE_TENSOR_FRACTION), 3 * chunkSize)
    tensors.push({ name: `t${i}`, dtype: 'U8', shape: [bytes], start: offset, end: offset + bytes })
    offset += bytes
  }
  if (next() < 0.3) offset += randomInt(next, 1, 50_000)
  return { layout: { headerSize, tensors }, size: offset }
}

/** Each tensor's span: from its start to the next tensor's start, or to the end of the file. */
function spans (layout: SafetensorsLayout, size: number): Array<{ name: string, start: number, end: number }> {
  return layout.tensors.map((tensor, i) => ({ name: tensor.name, start: tensor.start, end: layout.tensors[i + 1]?.start ?? size }))
}

function chunkStarting (chunks: PlannedChunk[], offset: number): PlannedChunk | undefined {
  return chunks.find(chunk => chunk.offset === offset)
}

describe('planChunks without a layout', () => {
  it('gives a zero-byte file no chunks', () => {
    expect(planChunks({ size: 0 })).toEqual([])
  })

  it('cuts fixed-size chunks, the last one shorter', () => {
    expect(planChunks({ size: 2 * DEFAULT_CHUNK_SIZE + 5 })).toEqual([
      { offset: 0, size: DEFAULT_CHUNK_SIZE },
      { offset: DEFAULT_CHUNK_SIZE, size: DEFAULT_CHUNK_SIZE },
      { offset: 2 * DEFAULT_CHUNK_SIZE, size: 5 }
    ])
    expect(planChunks({ size: 2 * MIN_CHUNK_SIZE, chunkSize: MIN_CHUNK_SIZE })).toEqual([
      { offset: 0, size: MIN_CHUNK_SIZE },
      { offset: MIN_CHUNK_SIZE, size: MIN_CHUNK_SIZE }
    ])
  })

  it('tiles files of random sizes exactly', () => {
    const next = seededRandom(1)
    for (let i = 0; i < 300; i++) {
      const chunkSize = randomInt(next, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
      const size = next() < 0.1 ? randomInt(next, 0, 10) : randomInt(next, 0, 20 * chunkSize)
      const chunks = planChunks({ size, chunkSize })
      expectTiling(chunks, size, chunkSize)
      expect(chunks.length).toBe(Math.ceil(size / chunkSize))
      expect(chunks.slice(0, -1).every(chunk => chunk.size === chunkSize)).toBe(true)
    }
  })

  it('handles sizes far beyond 2^32', () => {
    const size = 2 ** 40 + 123
    const chunks = planChunks({ size, chunkSize: MAX_CHUNK_SIZE })
    expectTiling(chunks, size, MAX_CHUNK_SIZE)
  })
})

describe('planChunks input checks', () => {
  for (const chunkSize of [MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, MIN_CHUNK_SIZE + 0.5, Number.NaN, 0]) {
    it(`rejects chunk size ${chunkSize}`, () => {
      expect(() => planChunks({ size: 10, chunkSize })).toThrow(InvalidChunkSizeError)
      expect(() => planChunks({ size: 10, chunkSize })).toThrow(`chunk size must be an integer from 1048576 (1 MiB) to 67108864 (64 MiB) bytes, got ${chunkSize}`)
    })
  }

  for (const size of [-1, 1.5, Number.NaN, 2 ** 53]) {
    it(`rejects file size ${size}`, () => {
      expect(() => planChunks({ size })).toThrow(InvalidFileSizeError)
      expect(() => planChunks({ size })).toThrow(`file size must be a non-negative integer, got ${size}`)
    })
  }

  it('rejects layouts that do not fit the file', () => {
    const tensor = (name: string, start: number, end: number): TensorInfo => ({ name, dtype: 'U8', shape: [end - start], start, end })
    expect(() => planChunks({ size: 100, layout: { headerSize: 200, tensors: [] } })).toThrow(/layout header size 200 does not fit a 100-byte file/)
    expect(() => planChunks({ size: 100, layout: { headerSize: 16, tensors: [tensor('w', 16, 120)] } })).toThrow(/tensor "w" \[16, 120\) lies outside the data region \[16, 100\)/)
    expect(() => planChunks({ size: 100, layout: { headerSize: 16, tensors: [tensor('w', 8, 20)] } })).toThrow(InvalidLayoutError)
    expect(() => planChunks({ size: 100, layout: { headerSize: 16, tensors: [tensor('a', 16, 40), tensor('b', 30, 50)] } })).toThrow(/tensors "a" and "b" overlap/)
  })
})

describe('planChunks with a safetensors layout', () => {
  it('keeps the header to itself and cuts large tensors from their own start', () => {
    const chunkSize = MIN_CHUNK_SIZE
    const headerSize = 1000
    const big = 2 * chunkSize + 10
    const small = 1000
    const layout: SafetensorsLayout = {
      headerSize,
      tensors: [
        { name: 'big', dtype: 'U8', shape: [big], start: headerSize, end: headerSize + big },
        { name: 'small', dtype: 'U8', shape: [small], start: headerSize + big, end: headerSize + big + small }
      ]
    }
    expect(planChunks({ size: headerSize + big + small, chunkSize, layout })).toEqual([
      { offset: 0, size: headerSize },
      { offset: headerSize, size: chunkSize },
      { offset: headerSize + chunkSize, size: chunkSize },
      { offset: headerSize + 2 * chunkSize, size: 10 },
      { offset: headerSize + big, size: small }
    ])
  })

  it('covers a header without tensors and the bytes after it', () => {
    const chunks = planChunks({ size: 5000, chunkSize: MIN_CHUNK_SIZE, layout: { headerSize: 100, tensors: [] } })
    expect(chunks).toEqual([{ offset: 0, size: 100 }, { offset: 100, size: 4900 }])
  })

  it('tiles random layouts and honours its rules', () => {
    const next = seededRandom(2)
    for (let i = 0; i < 200; i++) {
      const chunkSize = randomInt(next, MIN_CHUNK_SIZE, 4 * MIN_CHUNK_SIZE)
      const { layout, size } = randomLayout(next, chunkSize)
      const chunks = planChunks({ size, chunkSize, layout })
      expectTiling(chunks, size, chunkSize)
      const starts = new Set(chunks.map(chunk => chunk.offset))
      const ends = new Set(chunks.map(chunk => chunk.offset + chunk.size))
      const dataStart = layout.tensors[0]?.start
      if (dataStart !== undefined && dataStart < size) {
        // the header is never packed together with tensor bytes
        expect(starts.has(dataStart)).toBe(true)
      }
      for (const span of spans(layout, size)) {
        if (span.end - span.start < chunkSize * LARGE_TENSOR_FRACTION) continue
        for (let offset = span.start; offset < span.end; offset += chunkSize) {
          expect(chunkStarting(chunks, offset)?.size).toBe(Math.min(chunkSize, span.end - offset))
        }
        expect(ends.has(span.end)).toBe(true)
      }
    }
  })

  it('plans the same chunks for tensors however far their offsets shift', () => {
    const next = seededRandom(3)
    for (let i = 0; i < 100; i++) {
      const chunkSize = MIN_CHUNK_SIZE
      const seed = randomInt(next, 0, 2 ** 31)
      const shift = randomInt(next, 1, 3 * MiB)
      const { layout, size } = randomLayout(seededRandom(seed), chunkSize, 64)
      const shifted: SafetensorsLayout = {
        headerSize: 64 + shift,
        tensors: layout.tensors.map(t => ({ ...t, start: t.start + shift, end: t.end + shift }))
      }
      const dataStart = layout.tensors[0]?.start ?? size
      const original = planChunks({ size, chunkSize, layout }).filter(c => c.offset >= dataStart)
      const moved = planChunks({ size: size + shift, chunkSize, layout: shifted }).filter(c => c.offset >= dataStart + shift)
      expect(moved.map(c => ({ offset: c.offset - shift, size: c.size }))).toEqual(original)
    }
  })

  it('is deterministic and ignores the order tensors are listed in', () => {
    const { layout, size } = randomLayout(seededRandom(4), DEFAULT_CHUNK_SIZE)
    const reversed = { ...layout, tensors: [...layout.tensors].reverse() }
    expect(planChunks({ size, layout: reversed })).toEqual(planChunks({ size, layout }))
  })
})

describe('chunks shared between versions of a model', () => {
  const chunkSize = MIN_CHUNK_SIZE
  const shape = { layers: 4, hidden: 256, intermediate: 688, vocab: 4000, dtype: 'F16' }

  function plannedFile (specs: TensorSpec[], seedOf?: (name: string) => string): { refs: ReturnType<typeof hashChunks>, tensors: TensorInfo[], headerSize: number, size: number } {
    const { bytes } = safetensorsFile(specs, seedOf)
    // parse the header back, as a real push would
    const layout = parseSafetensorsHeader(bytes, bytes.length)
    const plan = planChunks({ size: bytes.length, chunkSize, layout })
    expectTiling(plan, bytes.length, chunkSize)
    return { refs: hashChunks(bytes, plan), tensors: layout.tensors, headerSize: layout.headerSize, size: bytes.length }
  }

  /** CIDs of the chunks that overlap none of the given byte ranges. */
  function cidsAvoiding (refs: ReturnType<typeof hashChunks>, ranges: Array<{ start: number, end: number }>): string[] {
    return refs
      .filter(ref => !ranges.some(range => ref.offset < range.end && range.start < ref.offset + ref.size))
      .map(ref => ref.cid)
  }

  it('differ only in the header and the chunks of changed or resized tensors', () => {
    const v1Specs = llamaShapedTensors(shape)
    const changed = new Set(['model.layers.1.self_attn.q_proj.weight', 'model.layers.2.mlp.up_proj.weight', 'model.layers.3.post_attention_layernorm.weight'])
    const resized = 'model.embed_tokens.weight'
    const v2Specs = v1Specs.map(spec => spec.name === resized ? { ...spec, shape: [shape.vocab + 77, shape.hidden] } : spec)

    const v1 = plannedFile(v1Specs)
    const v2 = plannedFile(v2Specs, name => changed.has(name) || name === resized ? `${name}@v2` : name)

    // the test means something only if offsets moved and the plan mixes packed and split tensors
    const shift = (v2.tensors.at(-1)?.start ?? 0) - (v1.tensors.at(-1)?.start ?? 0)
    expect(shift).toBe(77 * shape.hidden * 2)
    expect(v1.refs.some(ref => v1.tensors.filter(t => t.start >= ref.offset && t.end <= ref.offset + ref.size).length > 1)).toBe(true)
    expect(v1.refs.filter(ref => ref.offset >= (v1.tensors[0]?.start ?? 0) && ref.offset < (v1.tensors[0]?.end ?? 0)).length).toBeGreaterThan(1)

    const touched = (file: typeof v1): Array<{ start: number, end: number }> => [
      { start: 0, end: file.headerSize },
      ...file.tensors.filter(t => changed.has(t.name) || t.name === resized)
    ]
    const v1Kept = cidsAvoiding(v1.refs, touched(v1))
    const v2Kept = cidsAvoiding(v2.refs, touched(v2))
    const v1All = new Set(v1.refs.map(ref => ref.cid))
    const v2All = new Set(v2.refs.map(ref => ref.cid))

    // every chunk away from the header and the changed tensors is shared, in both directions
    expect(v1Kept.length).toBeGreaterThan(v1.refs.length / 2)
    expect(v1Kept.filter(cid => !v2All.has(cid))).toEqual([])
    expect(v2Kept.filter(cid => !v1All.has(cid))).toEqual([])
    expect(v2Kept.length).toBe(v1Kept.length)

    // and the changed tensors' chunks really are new
    const v2New = v2.refs.filter(ref => !v1All.has(ref.cid))
    for (const name of [...changed, resized]) {
      const tensor = v2.tensors.find(t => t.name === name)
      expect(v2New.some(ref => tensor !== undefined && ref.offset < tensor.end && tensor.start < ref.offset + ref.size)).toBe(true)
    }
  })

  it('keep most of a long run of small tensors when one of them is resized', () => {
    const layernorms = (n: number, resizedIndex?: number): TensorSpec[] => Array.from({ length: n }, (_, i) => ({
      name: `blocks.${i}.norm.weight`,
      dtype: 'F32',
      shape: [i === resizedIndex ? 5000 : 1000 + (i * 7919) % 9000]
    }))
    const big = (name: string): TensorSpec => ({ name, dtype: 'F32', shape: [chunkSize] })
    const v1Specs = [big('first'), ...layernorms(400), big('last')]
    const v2Specs = [big('first'), ...layernorms(400, 150), big('last')]
    const v1 = plannedFile(v1Specs)
    const v2 = plannedFile(v2Specs)

    const run = (file: typeof v1): typeof v1.refs => {
      const first = file.tensors.find(t => t.name === 'first')
      const last = file.tensors.find(t => t.name === 'last')
      return file.refs.filter(ref => first !== undefined && last !== undefined && ref.offset >= first.end && ref.offset < last.start)
    }
    const v1Run = run(v1)
    const v2Run = run(v2)
    expect(v1Run.length).toBeGreaterThan(10)
    const v1Cids = new Set(v1Run.map(ref => ref.cid))
    const unshared = v2Run.filter(ref => !v1Cids.has(ref.cid))
    // greedy packing alone would re-cut every chunk after the resized tensor
    expect(unshared.length).toBeGreaterThan(0)
    expect(unshared.length).toBeLessThanOrEqual(3)
    const resized = v2.tensors.find(t => t.name === 'blocks.150.norm.weight')
    const lastRunChunk = v2Run.at(-1)
    expect(lastRunChunk !== undefined && v1Cids.has(lastRunChunk.cid)).toBe(true)
    expect(unshared.every(ref => resized !== undefined && ref.offset + ref.size >= resized.start - chunkSize && ref.offset <= resized.end + chunkSize)).toBe(true)
  })
})

describe('hashChunks', () => {
  it('gives each planned range the CID of its bytes', () => {
    const { bytes } = safetensorsFile(llamaShapedTensors({ layers: 1, hidden: 128, intermediate: 512, vocab: 5000 }))
    const plan = planChunks({ size: bytes.length, chunkSize: MIN_CHUNK_SIZE })
    const refs = hashChunks(bytes, plan)
    expect(refs.map(({ offset, size }) => ({ offset, size }))).toEqual(plan)
    for (const ref of refs) {
      const slice = bytes.subarray(ref.offset, ref.offset + ref.size)
      expect(ref.cid).toBe(cidForBytes(slice))
      expect(verifyChunk(ref.cid, slice)).toBe(true)
    }
    expect(new Set(refs.map(ref => ref.cid)).size).toBe(refs.length)
  })

  it('rejects a plan reaching past the bytes', () => {
    expect(() => hashChunks(new Uint8Array(10), [{ offset: 5, size: 6 }])).toThrow(ChunkOutOfRangeError)
    expect(() => hashChunks(new Uint8Array(10), [{ offset: 5, size: 6 }])).toThrow('chunk [5, +6) lies outside the 10 bytes given')
  })
})
