import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { ChunkArrivalFailedError, uniqueChunks } from '@swarm/interface'
import { blockDigests, encodeManifest } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterEach, describe, expect, it } from 'vitest'
import { ArrivingChunks, fetcher } from '../src/index.js'
import type { BlockDigests, ChunkFetchOptions, ChunkRequest, ChunkSource, Manifest } from '@swarm/interface'

const BLOCK = 64 * 1024
const SIZE = 5 * BLOCK + 100

function digestsOf (bytes: Uint8Array, blockSize = BLOCK): BlockDigests {
  return { blockSize, digests: Buffer.from(blockDigests(bytes, blockSize), 'base64') }
}

const take = (length: number): Uint8Array => new Uint8Array(length)

describe('arriving chunks', () => {
  it('hands out only bytes checked against their block digests, as copies, as they land', async () => {
    const bytes = randomBytes(SIZE)
    const arrivals = new ArrivingChunks()
    const cid = cidForBytes(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    expect(arrival).toBeDefined()
    const buffer = new Uint8Array(SIZE)
    buffer.set(bytes.subarray(0, BLOCK + 10))
    arrival?.land(buffer, BLOCK + 10)
    const reader = arrivals.open(cid)
    if (reader === undefined) throw new Error('not arriving')
    // the first block is whole and checked; the 10 bytes of the second are not handed out
    const first = await reader.read(0, SIZE, take)
    expect(Buffer.compare(first, bytes.subarray(0, BLOCK))).toBe(0)
    // a copy: what the buffer gets later does not reach it
    buffer.fill(0, 0, BLOCK)
    expect(Buffer.compare(first, bytes.subarray(0, BLOCK))).toBe(0)
    buffer.set(bytes.subarray(0, BLOCK))

    let second: Uint8Array | undefined
    const waiting = reader.read(BLOCK, SIZE, take).then(got => { second = got })
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(second).toBeUndefined()
    buffer.set(bytes.subarray(BLOCK, SIZE), BLOCK)
    arrival?.land(buffer, 3 * BLOCK + 5)
    await waiting
    expect(Buffer.compare(second as Uint8Array, bytes.subarray(BLOCK, 3 * BLOCK))).toBe(0)
    // the last block is shorter than the others
    arrival?.land(buffer, SIZE)
    const rest = await reader.read(3 * BLOCK, SIZE, take)
    expect(Buffer.compare(rest, bytes.subarray(3 * BLOCK))).toBe(0)
    reader.close()
  })

  it('fails its readers on a block that does not match, and hands out nothing more once one has failed', async () => {
    const bytes = randomBytes(SIZE)
    const arrivals = new ArrivingChunks()
    const cid = cidForBytes(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    const buffer = Buffer.from(bytes)
    buffer[2 * BLOCK + 7] = (buffer[2 * BLOCK + 7] as number) ^ 1
    arrival?.land(buffer, 2 * BLOCK)
    const reader = arrivals.open(cid)
    if (reader === undefined) throw new Error('not arriving')
    const good = await reader.read(0, SIZE, take)
    expect(Buffer.compare(good, bytes.subarray(0, 2 * BLOCK))).toBe(0)
    arrival?.land(buffer, SIZE)
    await expect(reader.read(2 * BLOCK, SIZE, take)).rejects.toThrow(ChunkArrivalFailedError)
    await expect(reader.read(2 * BLOCK, SIZE, take)).rejects.toThrow(/block 2 does not match its digest/)
    // bytes checked before the failure are not handed out either
    await expect(reader.read(0, SIZE, take)).rejects.toThrow(/block 2 does not match its digest/)
    expect(arrivals.open(cid)).toBeUndefined()
  })

  it('fails when its source starts over, in another buffer or from fewer bytes', async () => {
    const bytes = randomBytes(SIZE)
    const arrivals = new ArrivingChunks()
    for (const restart of [(a: NonNullable<ReturnType<ArrivingChunks['begin']>>) => { a.land(new Uint8Array(SIZE), 10) }, (a: NonNullable<ReturnType<ArrivingChunks['begin']>>, b: Uint8Array) => { a.land(b, BLOCK) }]) {
      const cid = cidForBytes(randomBytes(16))
      const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
      if (arrival === undefined) throw new Error('not registered')
      const buffer = Buffer.from(bytes)
      arrival.land(buffer, 2 * BLOCK)
      const reader = arrivals.open(cid)
      restart(arrival, buffer)
      await expect(reader?.read(0, SIZE, take)).rejects.toThrow(/started over/)
    }
  })

  it('gives the buffer back once the chunk is stored and no reader has it open; a failed one fails its waiting readers', async () => {
    const bytes = randomBytes(SIZE)
    const arrivals = new ArrivingChunks()
    const cid = cidForBytes(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    if (arrival === undefined) throw new Error('not registered')
    expect(arrivals.begin(cid, SIZE, digestsOf(bytes))).toBeUndefined()
    const buffer = Buffer.from(bytes)
    arrival.land(buffer, BLOCK)
    const reader = arrivals.open(cid)
    if (reader === undefined) throw new Error('not arriving')
    let freed = 0
    arrival.end({ bytes: buffer, free: () => { freed++ } })
    // stored: new readers go to the store, the open one reads the rest from here
    expect(arrivals.open(cid)).toBeUndefined()
    expect(freed).toBe(0)
    const all = await reader.read(0, SIZE, take)
    expect(Buffer.compare(all, bytes)).toBe(0)
    reader.close()
    reader.close()
    expect(freed).toBe(1)

    const other = arrivals.begin(cid, SIZE, digestsOf(bytes))
    other?.land(Buffer.from(bytes), BLOCK)
    const waiting = arrivals.open(cid)?.read(BLOCK, SIZE, take)
    other?.end({ reason: 'its source failed' })
    await expect(waiting).rejects.toThrow(/stopped arriving: its source failed/)
  })

  it('refuses digests that do not cover the chunk', () => {
    const arrivals = new ArrivingChunks()
    const bytes = randomBytes(SIZE)
    expect(arrivals.begin(cidForBytes(bytes), SIZE + BLOCK, digestsOf(bytes))).toBeUndefined()
    expect(arrivals.size).toBe(0)
  })
})

describe('fetcher with arriving chunks', () => {
  let dir: string | undefined
  afterEach(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  it('registers a chunk with block digests as its bytes land, tells the caller, and gives the buffer back after the last reader', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-arrivals-'))
    const bytes = randomBytes(SIZE)
    const cid = cidForBytes(bytes)
    const manifest: Manifest = { version: 3, chunkSize: 1024 * 1024, blockSize: BLOCK, files: [{ path: 'w.bin', size: SIZE, mode: 0o644, chunks: [{ cid, offset: 0, size: SIZE, blocks: blockDigests(bytes, BLOCK) }] }] }
    const store = await createStore({ dir })
    await store.addManifest(encodeManifest(manifest).cid, manifest)
    const request = uniqueChunks(manifest)[0] as ChunkRequest
    expect(request.blocks?.digests.byteLength).toBe(6 * 32)

    const arrivals = new ArrivingChunks()
    let landHalf!: () => void
    let landRest!: () => void
    const released: Uint8Array[] = []
    const buffer = new Uint8Array(SIZE)
    const source: ChunkSource = {
      name: 'peer:slow',
      kind: 'peer',
      async fetch (_request, options?: ChunkFetchOptions) {
        buffer.set(bytes.subarray(0, 2 * BLOCK))
        options?.onData?.(buffer, 2 * BLOCK)
        await new Promise<void>(resolve => { landHalf = resolve })
        buffer.set(bytes.subarray(2 * BLOCK), 2 * BLOCK)
        options?.onData?.(buffer, SIZE)
        await new Promise<void>(resolve => { landRest = resolve })
        return buffer
      },
      release (b) { released.push(b) }
    }
    const f = fetcher({ store, sources: [source], arrivals })
    let told = 0
    const fetching = f.fetch(request, { onReceiving: () => { told++ } })
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(told).toBe(1)
    const reader = arrivals.open(cid)
    if (reader === undefined) throw new Error('not arriving')
    const first = await reader.read(0, SIZE, take)
    expect(first.byteLength).toBe(2 * BLOCK)
    landHalf()
    await new Promise(resolve => setTimeout(resolve, 10))
    landRest()
    await fetching
    expect(store.hasChunk(cid)).toBe(true)
    expect(arrivals.size).toBe(0)
    // the open reader still holds the buffer
    expect(released).toHaveLength(0)
    const rest = await reader.read(2 * BLOCK, SIZE, take)
    expect(Buffer.compare(Buffer.concat([first, rest]), bytes)).toBe(0)
    reader.close()
    expect(released).toEqual([buffer])
    await store.close()
  })
})
