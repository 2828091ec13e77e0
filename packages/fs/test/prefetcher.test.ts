import { describe, expect, it } from 'vitest'
import { Prefetcher, chunkAt } from '../src/index.js'
import type { PrefetchFile, PrefetcherInit } from '../src/index.js'
import type { ChunkRef, TensorInfo } from '@swarm/interface'

const MiB = 1024 * 1024
const READ = 128 * 1024

function file (name: string, chunkCount: number, chunkSize = MiB, tensors?: TensorInfo[]): PrefetchFile {
  const chunks: ChunkRef[] = Array.from({ length: chunkCount }, (_, i) => ({ cid: `${name}-${i}`, offset: i * chunkSize, size: chunkSize }))
  return { path: name, size: chunkCount * chunkSize, chunks, ...(tensors != null ? { tensors } : {}) }
}

/** A prefetcher whose fetches complete only when the test says so, recording their order. */
function harness (init: Partial<PrefetcherInit> = {}): { prefetcher: Prefetcher, started: string[], present: Set<string>, finishAll(): Promise<void> } {
  const present = new Set<string>()
  const started: string[] = []
  const pending: Array<() => void> = []
  const prefetcher = new Prefetcher({
    initialBytes: 2 * MiB,
    maxBytes: 16 * MiB,
    concurrency: 1000,
    ...init,
    has: cid => present.has(cid),
    fetch: async (_file, chunk) => {
      started.push(chunk.cid)
      await new Promise<void>(resolve => pending.push(() => { present.add(chunk.cid); resolve() }))
    }
  })
  return {
    prefetcher,
    started,
    present,
    async finishAll () {
      while (pending.length > 0) pending.shift()?.()
      await new Promise(resolve => setTimeout(resolve, 0))
    }
  }
}

describe('prefetcher', () => {
  it('chunkAt finds the chunk holding an offset', () => {
    const f = file('f', 4)
    expect(chunkAt(f.chunks, 0)).toBe(0)
    expect(chunkAt(f.chunks, MiB - 1)).toBe(0)
    expect(chunkAt(f.chunks, MiB)).toBe(1)
    expect(chunkAt(f.chunks, 4 * MiB - 1)).toBe(3)
  })

  it('a sequential reader gets a window that doubles up to the maximum', async () => {
    const { prefetcher, started, finishAll } = harness()
    const stream = prefetcher.open(file('seq', 64))
    stream.read(0, READ)
    // the read's own chunk is the read's business; the window covers the 2 MiB after it
    expect(started).toEqual(['seq-1', 'seq-2'])
    const windows: number[] = []
    for (let at = READ; at < 40 * MiB; at += READ) {
      stream.read(at, READ)
      windows.push(stream.window)
      await finishAll()
    }
    expect(windows[0]).toBe(2 * MiB)
    expect(Math.max(...windows)).toBe(16 * MiB)
    expect(windows).toEqual([...windows].sort((a, b) => a - b))
    // everything up to the reader plus one full window, in order, each once
    expect(started).toEqual(Array.from({ length: started.length }, (_, i) => `seq-${i + 1}`))
    expect(started.length).toBeGreaterThanOrEqual(40 + 15)
    expect(started.length).toBeLessThanOrEqual(40 + 17)
  })

  it('a jump drops what was queued and starts small again', () => {
    const { prefetcher, started } = harness({ concurrency: 1 })
    const stream = prefetcher.open(file('jump', 64))
    for (let at = 0; at < 8 * MiB; at += READ) stream.read(at, READ)
    expect(stream.window).toBe(16 * MiB)
    expect(stream.queued().length).toBeGreaterThan(5)
    stream.read(40 * MiB, READ)
    expect(stream.window).toBe(2 * MiB)
    expect(stream.queued()).toEqual([41, 42])
    expect(started).toEqual(['jump-1'])
  })

  it('scattered reads switch to the whole file, starting where the reader is and wrapping around', () => {
    const { prefetcher, started } = harness({ concurrency: 1, randomReadsForWholeFile: 3 })
    const stream = prefetcher.open(file('rand', 40))
    stream.read(30 * MiB, 4096)
    stream.read(2 * MiB, 4096)
    expect(stream.mode).toBe('sequential')
    stream.read(20 * MiB, 4096)
    expect(stream.mode).toBe('whole-file')
    expect(prefetcher.stats().wholeFile).toBe(1)
    // chunk 31 was started after the first read (concurrency 1); every other one is queued once
    expect(started).toEqual(['rand-31'])
    const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)
    expect(stream.queued()).toEqual([...range(20, 31), ...range(32, 40), ...range(0, 20)])
    // a later fault elsewhere moves that region to the front
    stream.read(1 * MiB, 4096)
    expect(stream.queued()).toEqual([...range(1, 31), ...range(32, 40), 0])
  })

  it('a read inside a tensor queues the rest of that tensor beyond the window', () => {
    const tensors: TensorInfo[] = [
      { name: 'small', dtype: 'BF16', shape: [8], start: 64, end: MiB },
      { name: 'big', dtype: 'BF16', shape: [8], start: MiB, end: 30 * MiB },
      { name: 'tail', dtype: 'BF16', shape: [8], start: 30 * MiB, end: 32 * MiB }
    ]
    const { prefetcher } = harness({ concurrency: 1, initialBytes: MiB, maxBytes: 64 * MiB })
    const stream = prefetcher.open(file('st', 32, MiB, tensors))
    stream.read(20 * MiB, READ)
    const queued = stream.queued()
    // 21..29 is the rest of 'big'; one more window follows
    for (let i = 21; i < 30; i++) expect(queued).toContain(i)
    expect(Math.max(...queued)).toBeLessThanOrEqual(30)
  })

  it('on open of a safetensors file: the header, then the first tensors in file order', () => {
    const tensors: TensorInfo[] = [
      { name: 'a', dtype: 'BF16', shape: [8], start: 2 * MiB + 100, end: 5 * MiB },
      { name: 'b', dtype: 'BF16', shape: [8], start: 5 * MiB, end: 20 * MiB }
    ]
    const { prefetcher, started } = harness({ concurrency: 1 })
    const stream = prefetcher.open(file('hdr', 20, MiB, tensors))
    expect([...started, ...stream.queued().map(i => `hdr-${i}`)]).toEqual(['hdr-0', 'hdr-1', 'hdr-2', 'hdr-3', 'hdr-4'])
  })

  it('never runs more than `concurrency` at once, and shares them round-robin between files', async () => {
    const { prefetcher, started, finishAll } = harness({ concurrency: 4, randomReadsForWholeFile: 1 })
    const a = prefetcher.open(file('a', 50))
    const b = prefetcher.open(file('b', 50))
    a.read(10 * MiB, 4096)
    expect(started).toHaveLength(4)
    expect(prefetcher.stats().inflight).toBe(4)
    b.read(10 * MiB, 4096)
    expect(started).toHaveLength(4)
    await finishAll()
    const next = started.slice(4, 8)
    expect(next.filter(cid => cid.startsWith('a-')).length).toBe(2)
    expect(next.filter(cid => cid.startsWith('b-')).length).toBe(2)
    a.close()
    await finishAll()
    expect(started.slice(8).every(cid => cid.startsWith('b-'))).toBe(true)
    prefetcher.close()
  })

  it('skips chunks already present and rejects bad settings', () => {
    const { prefetcher, present, started } = harness()
    present.add('p-1')
    const stream = prefetcher.open(file('p', 8))
    stream.read(0, READ)
    expect(started).toEqual(['p-2'])
    expect(() => new Prefetcher({ has: () => false, fetch: async () => {}, maxBytes: 0 })).toThrow(RangeError)
    expect(() => new Prefetcher({ has: () => false, fetch: async () => {}, concurrency: 1.5 })).toThrow(RangeError)
    expect(() => new Prefetcher({ has: () => false, fetch: async () => {}, initialBytes: 4 * MiB, maxBytes: MiB })).toThrow(RangeError)
    // a maximum alone below the default start is the start too
    expect(new Prefetcher({ has: () => false, fetch: async () => {}, maxBytes: MiB }).initialBytes).toBe(MiB)
  })
})
