import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { ArrivingChunks, fetcher } from '@swarm/fetcher'
import { ChunkArrivalFailedError, ChunkVerificationError } from '@swarm/interface'
import { blockDigests } from '@swarm/manifest'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SharedArrivalWriter, chunkWorkers, decodeChunkError, openSharedArrival, settleSharedArrival, sharedArrivalReadable, workerPool } from '../src/index.js'
import type { SharedArrival, WorkerPool } from '../src/index.js'
import { createStore } from '@swarm/store'
import { encodeManifest } from '@swarm/manifest'
import type { ArrivingChunk, BlockDigests, ChunkSource, Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

const arrivingWorker = new URL('./fixtures/arriving-worker.mjs', import.meta.url)
const BLOCK = 16 * 1024
const SIZE = 5 * BLOCK + 1000

function digestsOf (bytes: Uint8Array): BlockDigests {
  return { blockSize: BLOCK, digests: Buffer.from(blockDigests(bytes, BLOCK), 'base64') }
}

/** every byte a reader hands out, from offset 0 to its end */
async function readAll (reader: ArrivingChunk): Promise<Buffer> {
  const pieces: Uint8Array[] = []
  for (let offset = 0; offset < reader.size;) {
    const piece = await reader.read(offset, 4 * BLOCK, length => Buffer.alloc(length))
    pieces.push(piece)
    offset += piece.byteLength
  }
  return Buffer.concat(pieces)
}

/** reads block by block until the reader fails (or the chunk ends); what it handed out, and why it stopped */
async function readUntilFailure (reader: ArrivingChunk): Promise<{ handedOut: Buffer, error: unknown }> {
  const pieces: Uint8Array[] = []
  let error: unknown
  try {
    for (let offset = 0; offset < reader.size;) {
      const piece = await reader.read(offset, BLOCK, length => Buffer.alloc(length))
      pieces.push(piece)
      offset += piece.byteLength
    }
  } catch (err) {
    error = err
  }
  reader.close()
  return { handedOut: Buffer.concat(pieces), error }
}

describe('an arrival shared between threads, in one thread', () => {
  const bytes = randomBytes(SIZE)
  const blocks = digestsOf(bytes)

  function begin (): { writer: SharedArrivalWriter, memory: Buffer } {
    const memory = Buffer.from(new SharedArrayBuffer(SIZE))
    const writer = SharedArrivalWriter.begin('bafy-test', SIZE, blocks, memory)
    if (writer === undefined) throw new Error('not shared')
    return { writer, memory }
  }

  /** The whole chunk lands at once, and its source says it is whole. */
  function landWhole (writer: SharedArrivalWriter, memory: Buffer): void {
    memory.set(bytes)
    writer.land(memory, SIZE)
    writer.whole()
  }

  it('is not shared from memory of one thread, nor with digests that do not cover the chunk', () => {
    expect(SharedArrivalWriter.begin('bafy-test', SIZE, blocks, Buffer.alloc(SIZE))).toBeUndefined()
    expect(SharedArrivalWriter.begin('bafy-test', SIZE + BLOCK, blocks, Buffer.from(new SharedArrayBuffer(SIZE + BLOCK)))).toBeUndefined()
  })

  it('hands out whole checked blocks as they land, then the short last one once whole', async () => {
    const { writer, memory } = begin()
    const reader = openSharedArrival(writer.shared)!
    memory.set(bytes.subarray(0, BLOCK + 10))
    writer.land(memory, BLOCK + 10)
    const first = await reader.read(0, 4 * BLOCK, length => Buffer.alloc(length))
    expect(Buffer.from(first)).toEqual(bytes.subarray(0, BLOCK))
    // the next block is not whole yet: the read waits for it
    let second: Uint8Array | undefined
    const reading = reader.read(BLOCK, 4 * BLOCK, length => Buffer.alloc(length)).then(piece => { second = piece })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(second).toBeUndefined()
    // all but the last byte
    memory.set(bytes.subarray(BLOCK + 10, SIZE - 1), BLOCK + 10)
    writer.land(memory, SIZE - 1)
    await reading
    expect(Buffer.from(second!)).toEqual(bytes.subarray(BLOCK, 5 * BLOCK))
    // the last block, shorter than the others, is handed out only once the chunk is whole
    let last: Uint8Array | undefined
    const readingLast = reader.read(5 * BLOCK, 4 * BLOCK, length => Buffer.alloc(length)).then(piece => { last = piece })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(last).toBeUndefined()
    memory.set(bytes.subarray(SIZE - 1), SIZE - 1)
    writer.land(memory, SIZE)
    await readingLast
    expect(Buffer.from(last!)).toEqual(bytes.subarray(5 * BLOCK))
    reader.close()
  })

  it('checks the copy it hands out: bytes changed in the memory after they landed fail the reader, never reach it', async () => {
    const { writer, memory } = begin()
    const reader = openSharedArrival(writer.shared)!
    memory.set(bytes)
    writer.land(memory, 2 * BLOCK)
    expect(Buffer.from(await reader.read(0, BLOCK, length => Buffer.alloc(length)))).toEqual(bytes.subarray(0, BLOCK))
    // another thread writes into the memory (a source starting over in it, a reuse): the block no longer matches
    memory[BLOCK + 5] ^= 0xff
    await expect(reader.read(BLOCK, BLOCK, length => Buffer.alloc(length))).rejects.toThrow(ChunkArrivalFailedError)
    await expect(reader.read(2 * BLOCK, BLOCK, length => Buffer.alloc(length))).rejects.toThrow(ChunkArrivalFailedError)
    writer.fail()
  })

  it('reads unaligned offsets and pieces smaller than a block from one checked copy', async () => {
    const { writer, memory } = begin()
    const reader = openSharedArrival(writer.shared)!
    landWhole(writer, memory)
    const pieces: Uint8Array[] = []
    for (let offset = 0; offset < SIZE;) {
      const piece = await reader.read(offset, 5000, length => Buffer.alloc(length))
      expect(piece.byteLength).toBeLessThanOrEqual(5000)
      pieces.push(piece)
      offset += piece.byteLength
    }
    expect(Buffer.concat(pieces)).toEqual(bytes)
    reader.close()
  })

  it('stops waiting readers when the arrival fails, and opens no reader after', async () => {
    const { writer, memory } = begin()
    const reader = openSharedArrival(writer.shared)!
    memory.set(bytes.subarray(0, BLOCK))
    writer.land(memory, BLOCK)
    const waiting = reader.read(BLOCK, BLOCK, length => Buffer.alloc(length))
    writer.fail()
    await expect(waiting).rejects.toThrow(ChunkArrivalFailedError)
    expect(sharedArrivalReadable(writer.shared)).toBe(false)
    expect(openSharedArrival(writer.shared)).toBeUndefined()
  })

  it('a source that lands in other memory, or fewer bytes, fails the arrival', async () => {
    const { writer, memory } = begin()
    memory.set(bytes)
    writer.land(memory, 2 * BLOCK)
    writer.land(memory, BLOCK)
    expect(sharedArrivalReadable(writer.shared)).toBe(false)
    const other = begin()
    other.writer.land(Buffer.from(new SharedArrayBuffer(SIZE)), BLOCK)
    expect(sharedArrivalReadable(other.writer.shared)).toBe(false)
  })

  it('gives its memory back only once no reader has it open, and is read whole by a reader that stays', async () => {
    const { writer, memory } = begin()
    const reader = openSharedArrival(writer.shared)!
    landWhole(writer, memory)
    // recorded on the main thread: only the readers hold it now
    settleSharedArrival(writer.shared)
    let closed = false
    const closing = writer.close().then(() => { closed = true })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(closed).toBe(false)
    // stored whole: a relay asking now still gets a reader
    const late = openSharedArrival(writer.shared)!
    expect(late).toBeDefined()
    expect(await readAll(reader)).toEqual(bytes)
    reader.close()
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(closed).toBe(false)
    expect(await readAll(late)).toEqual(bytes)
    late.close()
    await closing
    expect(closed).toBe(true)
    expect(openSharedArrival(writer.shared)).toBeUndefined()
  })

  it('closes at once with no reader, and then opens none', async () => {
    const { writer } = begin()
    await writer.close()
    expect(openSharedArrival(writer.shared)).toBeUndefined()
  })

  it('keeps a whole arrival open to new readers until the main thread settles it', async () => {
    const { writer, memory } = begin()
    landWhole(writer, memory)
    let closed = false
    const closing = writer.close().then(() => { closed = true })
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(closed).toBe(false)
    const reader = openSharedArrival(writer.shared)!
    expect(await readAll(reader)).toEqual(bytes)
    reader.close()
    settleSharedArrival(writer.shared)
    await closing
    expect(openSharedArrival(writer.shared)).toBeUndefined()
  })
})

describe('an arrival shared between threads, across a byte worker', () => {
  let pool: WorkerPool | undefined
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'swarm-shared-arrival-')) })
  afterEach(async () => {
    await pool?.close()
    pool = undefined
    await rm(dir, { recursive: true, force: true })
  })

  async function start (chunks: Record<string, Uint8Array>, hooks: { stepMs: number, lieAtBlock?: Record<string, number>, dieAtBlock?: Record<string, number> }): Promise<WorkerPool> {
    pool = workerPool({ script: arrivingWorker, size: 1, workerData: { chunks, blockSize: BLOCK, dir, ...hooks }, decodeError: decodeChunkError })
    return pool
  }

  async function released (p: WorkerPool): Promise<number> {
    const [report] = await p.threadReports()
    return ((report?.info as { sources: { released: number } }).sources).released
  }

  it('is read on this thread while it lands in the worker, checked, and its memory given back after the last reader', async () => {
    const bytes = randomBytes(SIZE)
    const cid = cidForBytes(bytes)
    const p = await start({ [cid]: bytes }, { stepMs: 40 })
    const path = join(dir, 'content')
    await writeFile(path, Buffer.alloc(SIZE))
    let shared: SharedArrival | undefined
    let jobDone = false
    const job = chunkWorkers({ pool: p }).fetchChunk({ cid, size: SIZE, source: { kind: 'origin' }, sourceName: 'origin', slots: [{ path, offset: 0 }], blocks: digestsOf(bytes) },
      { onArriving: s => { shared = s } }).then(() => { jobDone = true })
    await vi.waitFor(() => { if (shared === undefined) throw new Error('not yet') }, { timeout: 5_000, interval: 5 })
    const reader = openSharedArrival(shared!)!
    const first = await reader.read(0, BLOCK, length => Buffer.alloc(length))
    // cut through: the first block was handed out while the rest still arrived
    expect(jobDone).toBe(false)
    expect(Buffer.from(first)).toEqual(bytes.subarray(0, BLOCK))
    await job
    expect(await readFile(path)).toEqual(bytes)
    // stored, and still read whole from the worker's memory, which it has not taken back
    expect(await released(p)).toBe(0)
    const rest = await reader.read(BLOCK, SIZE, length => Buffer.alloc(length))
    expect(Buffer.concat([first, rest])).toEqual(bytes)
    reader.close()
    // whole, and open to new readers until the main thread has recorded the chunk and says so
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(await released(p)).toBe(0)
    const late = openSharedArrival(shared!)
    expect(late).toBeDefined()
    late?.close()
    settleSharedArrival(shared!)
    await vi.waitFor(async () => { if (await released(p) !== 1) throw new Error('not yet') }, { timeout: 5_000, interval: 20 })
    expect(openSharedArrival(shared!)).toBeUndefined()
  })

  it('a lying source: readers get the blocks before the lie and an error, never the lie; the job fails verification', async () => {
    const bytes = randomBytes(SIZE)
    const cid = cidForBytes(bytes)
    const p = await start({ [cid]: bytes }, { stepMs: 20, lieAtBlock: { [cid]: 2 } })
    const path = join(dir, 'content')
    await writeFile(path, Buffer.alloc(SIZE))
    let shared: SharedArrival | undefined
    const job = chunkWorkers({ pool: p }).fetchChunk({ cid, size: SIZE, source: { kind: 'origin' }, sourceName: 'origin', slots: [{ path, offset: 0 }], blocks: digestsOf(bytes) },
      { onArriving: s => { shared = s } })
    const failed = expect(job).rejects.toThrow(ChunkVerificationError)
    await vi.waitFor(() => { if (shared === undefined) throw new Error('not yet') }, { timeout: 5_000, interval: 5 })
    const { handedOut, error } = await readUntilFailure(openSharedArrival(shared!)!)
    expect(error).toBeInstanceOf(ChunkArrivalFailedError)
    expect(handedOut).toEqual(bytes.subarray(0, 2 * BLOCK))
    await failed
  })

  /**
   * A fetch through the fetcher, its one source read by the worker, into a real store; `body`
   * runs once the fetcher has told the caller the chunk is arriving
   */
  async function fetchedThroughWorker (hooks: { stepMs: number, dieAtBlock?: boolean }, body: (t: { cid: string, bytes: Buffer, arrivals: ArrivingChunks, fetching: Promise<unknown> }) => Promise<void>): Promise<Store> {
    const bytes = randomBytes(SIZE)
    const cid = cidForBytes(bytes)
    const p = await start({ [cid]: bytes }, { stepMs: hooks.stepMs, ...(hooks.dieAtBlock === true ? { dieAtBlock: { [cid]: 2 } } : {}) })
    const manifest: Manifest = { version: 1, chunkSize: SIZE, files: [{ path: 'weights.bin', size: SIZE, mode: 0o644, chunks: [{ cid, offset: 0, size: SIZE }] }] }
    const store = await createStore({ dir: join(dir, 'store') })
    try {
      await store.addManifest(encodeManifest(manifest).cid, manifest)
      const arrivals = new ArrivingChunks()
      const unreachable: ChunkSource = { name: 'origin', kind: 'origin', remote: { kind: 'origin' }, fetch: async () => { throw new Error('read in the worker only') } }
      const fetch = fetcher({ store, sources: [unreachable], workers: chunkWorkers({ pool: p }), arrivals })
      let told = false
      const fetching = fetch.fetch({ cid, size: SIZE, blocks: digestsOf(bytes) }, { onReceiving: () => { told = true } })
      await vi.waitFor(() => { if (!told) throw new Error('not yet') }, { timeout: 5_000, interval: 5 })
      await body({ cid, bytes, arrivals, fetching })
      expect(await fetching).toMatchObject({ source: 'origin', bytes: SIZE })
      expect(store.hasChunk(cid)).toBe(true)
      return store
    } finally {
      await store.close()
    }
  }

  it('through the fetcher: registered as arriving while a worker receives it, told to the caller, then stored and let go', async () => {
    let arrivals: ArrivingChunks | undefined
    let cid = ''
    await fetchedThroughWorker({ stepMs: 40 }, async t => {
      ({ arrivals, cid } = t)
      expect(t.arrivals.arriving(cid)).toBe(true)
      expect(t.arrivals.share(cid)?.cid).toBe(cid)
      const reader = t.arrivals.open(cid)!
      expect(await readAll(reader)).toEqual(t.bytes)
      reader.close()
    })
    expect(arrivals?.arriving(cid)).toBe(false)
    expect(arrivals?.open(cid)).toBeUndefined()
  })

  it('a worker that dies mid-chunk: the readers of what it shared fail at once, and the chunk is fetched again and stored', async () => {
    await fetchedThroughWorker({ stepMs: 40, dieAtBlock: true }, async ({ cid, bytes, arrivals }) => {
      const startedAt = performance.now()
      const { handedOut, error } = await readUntilFailure(arrivals.open(cid)!)
      expect(error).toBeInstanceOf(ChunkArrivalFailedError)
      // told by the main thread once the pool saw the worker go, not left waiting for bytes that never come
      expect(performance.now() - startedAt).toBeLessThan(5_000)
      // what was handed out was checked: a prefix of the chunk
      expect(bytes.subarray(0, handedOut.byteLength)).toEqual(handedOut)
    })
  })
})
