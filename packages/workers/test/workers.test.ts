import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { threadId } from 'node:worker_threads'
import { cidForBytes } from '@swarm/chunker'
import { SourceTimeoutError, fetcher, originSource } from '@swarm/fetcher'
import { AbortError, ChunkUnavailableError, ChunkVerificationError } from '@swarm/interface'
import { encodeManifest } from '@swarm/manifest'
import { fileOrigin } from '@swarm/origin-file'
import { JOURNAL_SUFFIX, contentKey, createStore } from '@swarm/store'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { PoolClosedError, SyncFailedError, WorkerDiedError, chunkWorkers, decodeChunkError, workerPool } from '../src/index.js'
import type { ChunkWorkerReport, WorkerPool } from '../src/index.js'
import type { Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

const echoWorker = new URL('./fixtures/echo-worker.mjs', import.meta.url)
const chunkWorker = new URL('./fixtures/chunk-worker.mjs', import.meta.url)
const CHUNK = 256 * 1024
/** bytes of one journal record (see the store's journal.ts) */
const RECORD = 16

/** Waits until `check` holds (vitest's waitFor retries until the callback stops throwing). */
async function until (check: () => boolean): Promise<void> {
  await vi.waitFor(() => { if (!check()) throw new Error('not yet') }, { timeout: 10_000, interval: 10 })
}

describe('worker pool', () => {
  let pool: WorkerPool | undefined
  afterEach(async () => { await pool?.close() })

  it('runs jobs on threads of its own, spread over its workers', async () => {
    pool = workerPool({ script: echoWorker, size: 3 })
    const answers = await Promise.all(Array.from({ length: 12 }, async (_, i) => await pool!.run<{ threadId: number, value: number }>({ value: i, waitMs: 20 })))
    expect(answers.map(a => a.value)).toEqual(Array.from({ length: 12 }, (_, i) => i))
    const threads = new Set(answers.map(a => a.threadId))
    expect(threads.has(threadId)).toBe(false)
    expect(threads.size).toBe(3)
    const cpu = await pool.threadCpu()
    expect(cpu.map(t => t.name)).toEqual(['main', 'worker-0', 'worker-1', 'worker-2'])
    for (const t of cpu) expect(t.userSeconds + t.systemSeconds).toBeGreaterThan(0)
  })

  it('keeps jobs with one affinity key on at most `spread` workers', async () => {
    pool = workerPool({ script: echoWorker, size: 4 })
    const answers = await Promise.all(Array.from({ length: 16 }, async () => await pool!.run<{ threadId: number }>({ waitMs: 20 }, { affinity: { key: 'peer-a', spread: 2 } })))
    expect(new Set(answers.map(a => a.threadId)).size).toBe(2)
  })

  it('hands back a worker\'s error by name and code', async () => {
    pool = workerPool({ script: echoWorker, size: 1 })
    const err = await pool.run({ fail: true }).catch((e: Error) => e)
    expect(err).toMatchObject({ name: 'PeerBusyError', code: 'ERR_PEER_BUSY', message: 'as asked' })
  })

  it('fails the jobs of a worker that exits as retryable, and starts another', async () => {
    pool = workerPool({ script: echoWorker, size: 1 })
    const first = await pool.run<{ threadId: number }>({})
    const held = pool.run({ waitMs: 200 })
    const err = await pool.run({ exit: true }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(WorkerDiedError)
    expect((err as WorkerDiedError).retryable).toBe(true)
    await expect(held).rejects.toBeInstanceOf(WorkerDiedError)
    const after = await pool.run<{ threadId: number }>({})
    expect(after.threadId).not.toBe(first.threadId)
    expect(pool.stats.restarts).toBe(1)
  })

  it('rejects an aborted job at once and refuses work once closed', async () => {
    pool = workerPool({ script: echoWorker, size: 1 })
    const controller = new AbortController()
    const job = pool.run({ waitMs: 5_000 }, { signal: controller.signal })
    controller.abort()
    await expect(job).rejects.toBeInstanceOf(AbortError)
    await pool.close()
    await expect(pool.run({})).rejects.toBeInstanceOf(PoolClosedError)
  })

  it('hands a broadcast to every worker', async () => {
    pool = workerPool({ script: echoWorker, size: 2 })
    // threads start at the first job; a broadcast before it has no worker to reach
    await pool.run({})
    pool.broadcast({ disconnect: 'peer-a' })
    const answers = await Promise.all(Array.from({ length: 4 }, async () => await pool!.run<{ threadId: number, control: unknown }>({ waitMs: 20 })))
    expect(new Set(answers.map(a => a.threadId)).size).toBe(2)
    for (const answer of answers) expect(answer.control).toEqual({ disconnect: 'peer-a' })
  })

  it('starts every thread on start(), before any job, and only once', async () => {
    pool = workerPool({ script: echoWorker, size: 3 })
    expect(await pool.threadReports()).toEqual([])
    pool.start()
    pool.start()
    const reports = await pool.threadReports()
    expect(reports.map(r => r.name).sort()).toEqual(['worker-0', 'worker-1', 'worker-2'])
    // a broadcast now reaches them all, with no job run yet
    pool.broadcast({ disconnect: 'peer-b' })
    const answers = await Promise.all(Array.from({ length: 6 }, async () => await pool!.run<{ threadId: number, control: unknown }>({ waitMs: 20 })))
    expect(new Set(answers.map(a => a.threadId)).size).toBe(3)
    for (const answer of answers) expect(answer.control).toEqual({ disconnect: 'peer-b' })
    expect(pool.stats.restarts).toBe(0)
  })

  it('answers a worker\'s questions and takes its notes on the main thread, naming the worker, and says when a worker has gone', async () => {
    const told: Array<{ message: unknown, worker: number }> = []
    const gone: number[] = []
    pool = workerPool({
      script: echoWorker,
      size: 1,
      answer: async (message, worker) => {
        const { n } = message as { n: number }
        if (n < 0) throw Object.assign(new Error('no negatives'), { name: 'InvalidRequestError' })
        return { twice: 2 * n, worker }
      },
      told: (message, worker) => { told.push({ message, worker }) },
      gone: worker => { gone.push(worker) }
    })
    expect(await pool.run({ ask: { n: 21 } })).toMatchObject({ answer: { twice: 42, worker: 0 } })
    expect(told).toEqual([{ message: { asking: { n: 21 } }, worker: 0 }])
    expect(await pool.run({ ask: { n: -1 } })).toMatchObject({ askFailed: { name: 'InvalidRequestError', message: 'no negatives' } })
    expect(gone).toEqual([])
    await pool.run({ exit: true }).catch(() => {})
    await until(() => gone.length === 1)
    expect(gone).toEqual([0])
  })

  it('fails a worker\'s question in a pool that answers none', async () => {
    pool = workerPool({ script: echoWorker, size: 1 })
    expect(await pool.run({ ask: { n: 1 } })).toMatchObject({ askFailed: { name: 'UnsupportedOperationError' } })
  })

  it('refuses a size that is not a positive integer', () => {
    expect(() => workerPool({ script: echoWorker, size: 0 })).toThrow(RangeError)
  })
})

describe('chunk jobs through the fetcher', () => {
  let dir: string
  let store: Store
  let pool: WorkerPool | undefined
  let manifest: Manifest
  let manifestCid: string
  const chunks = new Map<string, Uint8Array>()
  let url: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-workers-'))
    await mkdir(join(dir, 'origin'))
    url = pathToFileURL(join(dir, 'origin')).href
    const origin = fileOrigin({ url })
    chunks.clear()
    const refs = []
    for (let i = 0; i < 8; i++) {
      const bytes = randomBytes(CHUNK)
      const cid = cidForBytes(bytes)
      chunks.set(cid, bytes)
      refs.push({ cid, offset: i * CHUNK, size: CHUNK })
      await origin.putChunk(cid, bytes)
    }
    await origin.close()
    manifest = { version: 1, chunkSize: CHUNK, files: [{ path: 'weights.bin', size: refs.length * CHUNK, mode: 0o644, chunks: refs }] }
    manifestCid = encodeManifest(manifest).cid
    store = await createStore({ dir: join(dir, 'store') })
    await store.addManifest(manifestCid, manifest)
  })

  afterEach(async () => {
    await pool?.close()
    pool = undefined
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  function start (hooks: Record<string, unknown> = {}, size = 2, sourceTimeoutMs?: number): ReturnType<typeof fetcher> & { bad: string[] } {
    pool = workerPool({ script: chunkWorker, size, workerData: { url, hooks: { dir, ...hooks } }, decodeError: decodeChunkError })
    const origin = fileOrigin({ url })
    const bad: string[] = []
    const f = fetcher({ store, sources: [originSource(origin)], workers: chunkWorkers({ pool }), onBadSource: (_, cid) => { bad.push(cid) }, ...(sourceTimeoutMs !== undefined ? { sourceTimeoutMs } : {}) })
    return Object.assign(f, { bad })
  }

  /** every missing chunk of the manifest through the fetcher, `concurrency` at a time */
  async function fetchMissing (f: ReturnType<typeof start>, concurrency = 4): Promise<void> {
    const queue = store.missingChunks(manifestCid)
    await Promise.all(Array.from({ length: concurrency }, async () => {
      for (let next = queue.shift(); next != null; next = queue.shift()) await f.fetch(next)
    }))
  }

  async function journalRecords (): Promise<number> {
    const key = contentKey(manifest.files[0]!)
    return (await stat(join(dir, 'store', 'content', key + JOURNAL_SUFFIX))).size / RECORD
  }

  it('stores every chunk verified and durable, written by the workers', async () => {
    const f = start()
    await fetchMissing(f, 4)
    expect(store.missingChunks(manifestCid)).toEqual([])
    const report = await store.verify(manifestCid)
    expect(report.bad).toEqual([])
    const file = store.files(manifestCid)[0]!
    expect(file.complete).toBe(true)
    const bytes = await readFile(file.path)
    manifest.files[0]!.chunks.forEach(ref => { expect(bytes.subarray(ref.offset, ref.offset + ref.size).equals(chunks.get(ref.cid)!)).toBe(true) })
    expect(await journalRecords()).toBe(8)
    const cpu = await pool!.threadCpu()
    expect(cpu.find(t => t.name === 'worker-0')!.userSeconds + cpu.find(t => t.name === 'worker-1')!.userSeconds).toBeGreaterThan(0)
  })

  it('fetches a chunk again when its worker dies mid-chunk, and records it once', async () => {
    const target = manifest.files[0]!.chunks[3]!
    const f = start({ dieOn: target.cid })
    const result = await f.fetch({ cid: target.cid, size: target.size })
    expect(result.kind).toBe('origin')
    expect(existsSync(join(dir, 'died'))).toBe(true)
    expect(pool!.stats.restarts).toBe(1)
    expect(store.hasChunk(target.cid)).toBe(true)
    expect(Buffer.from(await store.readChunk(target.cid)).equals(chunks.get(target.cid)!)).toBe(true)
    expect(await journalRecords()).toBe(1)
    // the rest goes through the replacement
    await fetchMissing(f)
    expect(await journalRecords()).toBe(8)
    expect((await store.verify(manifestCid)).bad).toEqual([])
  })

  it('aborts the fetch inside the worker', async () => {
    const target = manifest.files[0]!.chunks[1]!
    const f = start({ hangOn: target.cid })
    const controller = new AbortController()
    const fetching = f.fetch({ cid: target.cid, size: target.size }, { signal: controller.signal })
    await new Promise(resolve => setTimeout(resolve, 100))
    controller.abort()
    await expect(fetching).rejects.toBeInstanceOf(AbortError)
    await until(() => existsSync(join(dir, `aborted-${target.cid}`)))
    expect(store.hasChunk(target.cid)).toBe(false)
    expect(await journalRecords()).toBe(0)
  })

  it('ends a job past the source timeout inside the worker, as a timeout, and records nothing', async () => {
    const target = manifest.files[0]!.chunks[2]!
    const f = start({ hangOn: target.cid }, 2, 200)
    const err = await f.fetch({ cid: target.cid, size: target.size }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(ChunkUnavailableError)
    expect((err as ChunkUnavailableError).causes.map(c => c.error)).toEqual([expect.any(SourceTimeoutError)])
    await until(() => existsSync(join(dir, `aborted-${target.cid}`)))
    expect(store.hasChunk(target.cid)).toBe(false)
    expect(await journalRecords()).toBe(0)
  })

  it('reports bad bytes as bad data from that source and records nothing', async () => {
    const target = manifest.files[0]!.chunks[0]!
    const f = start({ corrupt: true })
    const err = await f.fetch({ cid: target.cid, size: target.size }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(ChunkUnavailableError)
    expect((err as ChunkUnavailableError).causes[0]?.error).toBeInstanceOf(ChunkVerificationError)
    expect(f.bad).toEqual([target.cid])
    expect(store.hasChunk(target.cid)).toBe(false)
    expect(store.missingChunks(manifestCid)).toHaveLength(8)
    expect(await journalRecords()).toBe(0)
  })

  it('shares one fdatasync among the chunks written to a file meanwhile', async () => {
    const f = start({}, 1)
    await fetchMissing(f, 8)
    expect(await journalRecords()).toBe(8)
    const [report] = await pool!.threadReports()
    const { files } = report!.info as ChunkWorkerReport
    expect(files.writes).toBe(8)
    expect(files.syncs).toBeGreaterThanOrEqual(1)
    expect(files.syncs).toBeLessThan(8)
    expect(files.retired).toBe(0)
    expect(report!.memory.heapUsed).toBeGreaterThan(0)
  })

  it('fails every chunk a failed sync covered, records none of them, and writes the next through a fresh descriptor', async () => {
    const f = start({ syncFault: { holdMs: 1_000 } }, 1)
    const [first, ...covered] = manifest.files[0]!.chunks.slice(0, 5)
    // the first chunk's sync is held; the others are written meanwhile and share the next sync, which fails
    const firstDone = f.fetch({ cid: first!.cid, size: first!.size })
    await until(() => existsSync(join(dir, 'sync-held')))
    const results = await Promise.allSettled(covered.map(async ref => await f.fetch({ cid: ref.cid, size: ref.size })))
    expect((await firstDone).kind).toBe('origin')
    for (const result of results) {
      expect(result.status).toBe('rejected')
      const err = (result as PromiseRejectedResult).reason as ChunkUnavailableError
      expect(err).toBeInstanceOf(ChunkUnavailableError)
      expect(err.causes[0]?.error).toBeInstanceOf(SyncFailedError)
    }
    for (const ref of covered) expect(store.hasChunk(ref.cid)).toBe(false)
    expect(await journalRecords()).toBe(1)
    const [report] = await pool!.threadReports()
    expect(report!.info).toMatchObject({ sources: { opens: 1 }, files: { syncs: 2, writes: 5, retired: 1 } })
    // the retired descriptor is never used again: the rest goes through a fresh one, whose syncs succeed
    await fetchMissing(f, 4)
    expect(await journalRecords()).toBe(8)
    expect((await store.verify(manifestCid)).bad).toEqual([])
    const [after] = await pool!.threadReports()
    expect((after!.info as ChunkWorkerReport & { sources: { opens: number } }).sources.opens).toBeGreaterThanOrEqual(2)
  })
})
