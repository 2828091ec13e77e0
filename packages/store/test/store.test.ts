import { spawnSync } from 'node:child_process'
import { appendFile, chmod, open, readFile, readdir, stat, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { ChunkMissingError, ChunkVerificationError, InvalidRefError, NotFoundError } from '@swarm/interface'
import { ManifestCidMismatchError, encodeManifest } from '@swarm/manifest'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { CorruptModelsFileError, ManifestConflictError, ModelLeasedError, StoreClosedError, StoreLockedError, createStore, verifyModel } from '../src/index.js'
import type { EvictDetails, Store } from '../src/index.js'
import { bytesFor, chunksOf, tempDir, testFile, testModel } from './helpers.js'
import type { TestModel } from './helpers.js'
import type { GcReport } from '@swarm/interface'

let dir: string
let cleanup: () => Promise<void>
const open_: Store[] = []

beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir())
})

afterEach(async () => {
  for (const store of open_.splice(0)) await store.close()
  await cleanup()
})

async function openStore (init: Partial<Parameters<typeof createStore>[0]> = {}): Promise<Store> {
  const store = await createStore({ dir, ...init })
  open_.push(store)
  return store
}

async function closeStore (store: Store): Promise<void> {
  await store.close()
  open_.splice(open_.indexOf(store), 1)
}

/** a model of `files` files, each of `chunks` distinct chunks of `size` bytes */
function simpleModel (seed: string, files = 2, chunks = 3, size = 1000): TestModel {
  return testModel(Array.from({ length: files }, (_, f) =>
    testFile(`${seed}-${f}.bin`, Array.from({ length: chunks }, (_, c) => bytesFor(`${seed}/${f}/${c}`, size)))))
}

function evictedBy (report: GcReport): string[] {
  return report.evicted.map(e => e.manifestCid)
}

async function putAll (store: Store, model: TestModel): Promise<void> {
  for (const [cid, bytes] of chunksOf(model)) await store.putChunk(cid, bytes)
}

describe('put and read', () => {
  it('stores chunks in place and reads them back, byte for byte', async () => {
    const store = await openStore()
    const model = simpleModel('a')
    await store.addManifest(model.cid, model.manifest, { ref: 'test/a:v1' })
    expect(store.missingChunks(model.cid)).toHaveLength(6)
    expect(store.files(model.cid).every(f => !f.complete)).toBe(true)

    for (const [cid, bytes] of chunksOf(model)) {
      expect(store.hasChunk(cid)).toBe(false)
      await expect(store.putChunk(cid, bytes)).resolves.toEqual({ written: true })
      expect(store.hasChunk(cid)).toBe(true)
      expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)
    }

    expect(store.missingChunks(model.cid)).toEqual([])
    for (const file of model.files) {
      const read = await store.read(model.cid, file.entry.path, 0, file.entry.size)
      expect(Buffer.from(read).equals(file.bytes)).toBe(true)
    }
    // the content file holds exactly the file's bytes, read-only once complete
    for (const stored of store.files(model.cid)) {
      const expected = model.files.find(f => f.entry.path === stored.entry.path)
      expect(stored.complete).toBe(true)
      expect(stored.path.startsWith(join(dir, 'content'))).toBe(true)
      expect((await readFile(stored.path)).equals(expected?.bytes ?? new Uint8Array())).toBe(true)
      expect((await stat(stored.path)).mode & 0o777).toBe(0o444)
    }
    const [held] = store.models()
    expect(held).toMatchObject({ manifestCid: model.cid, refs: ['test/a:v1'], pinned: false, totalBytes: 6000, presentBytes: 6000 })
    expect(Buffer.from(store.getManifestBytes(model.cid) ?? []).length).toBeGreaterThan(0)
    expect(store.getManifest(model.cid)?.files).toHaveLength(2)
  })

  it('keeps a partly filled file sparse at its full size', async () => {
    const store = await openStore()
    const model = testModel([testFile('big.bin', Array.from({ length: 64 }, (_, i) => bytesFor(`big/${i}`, 64 * 1024)))])
    await store.addManifest(model.cid, model.manifest)
    const [stored] = store.files(model.cid)
    const info = await stat(stored?.path ?? '')
    expect(info.size).toBe(64 * 64 * 1024)
    expect(info.blocks * 512).toBeLessThan(64 * 1024)
  })

  it('rejects bytes that do not match the CID and records nothing', async () => {
    const store = await openStore()
    const model = simpleModel('bad')
    await store.addManifest(model.cid, model.manifest)
    const [[cid, bytes]] = [...chunksOf(model)] as Array<[string, Uint8Array]>
    const wrong = Uint8Array.from(bytes)
    wrong[17] = (wrong[17] ?? 0) ^ 0xff

    const err = await store.putChunk(cid, wrong, { source: 'peer:x' }).catch(e => e)
    expect(err).toBeInstanceOf(ChunkVerificationError)
    expect(err).toMatchObject({ cid, source: 'peer:x' })
    expect(store.hasChunk(cid)).toBe(false)
    expect(store.missingChunks(model.cid).map(c => c.cid)).toContain(cid)
    // nothing in the journals, nothing written into the sparse files
    for (const stored of store.files(model.cid)) {
      expect((await stat(stored.path + '.have')).size).toBe(0)
      expect((await readFile(stored.path)).every(b => b === 0)).toBe(true)
    }
    await closeStore(store)
    const reopened = await openStore()
    expect(reopened.hasChunk(cid)).toBe(false)
  })

  it('rejects a chunk no held file needs', async () => {
    const store = await openStore()
    const stray = bytesFor('stray', 100)
    await expect(store.putChunk(cidForBytes(stray), stray)).rejects.toBeInstanceOf(NotFoundError)
  })

  it('fills every slot of a CID, within and across files and models, with one put', async () => {
    const store = await openStore()
    const x = bytesFor('x', 500)
    const y = bytesFor('y', 500)
    const z = bytesFor('z', 300)
    const first = testModel([testFile('a.bin', [x, y, x]), testFile('b.bin', [y, x])])
    const second = testModel([testFile('c.bin', [z, x])])
    await store.addManifest(first.cid, first.manifest)
    await store.addManifest(second.cid, second.manifest)

    await expect(store.putChunk(cidForBytes(x), x)).resolves.toEqual({ written: true })
    await expect(store.putChunk(cidForBytes(x), x)).resolves.toEqual({ written: false })
    expect(Buffer.from(await store.read(first.cid, 'a.bin', 1000, 500)).equals(x)).toBe(true)
    expect(Buffer.from(await store.read(first.cid, 'a.bin', 0, 500)).equals(x)).toBe(true)
    expect(Buffer.from(await store.read(first.cid, 'b.bin', 500, 500)).equals(x)).toBe(true)
    expect(Buffer.from(await store.read(second.cid, 'c.bin', 300, 500)).equals(x)).toBe(true)
    expect(store.missingChunks(first.cid)).toEqual([{ cid: cidForBytes(y), size: 500 }])
    expect(store.missingChunks(second.cid)).toEqual([{ cid: cidForBytes(z), size: 300 }])

    await store.putChunk(cidForBytes(y), y)
    expect(store.files(first.cid).map(f => f.complete)).toEqual([true, true])
    expect(store.files(second.cid).map(f => f.complete)).toEqual([false])
  })

  it('shares one content file between identical files', async () => {
    const store = await openStore()
    const same = [bytesFor('s0', 400), bytesFor('s1', 400)]
    const one = testModel([testFile('w.bin', same)])
    const two = testModel([testFile('renamed/w.bin', same), testFile('other.bin', [bytesFor('o', 10)])])
    await store.addManifest(one.cid, one.manifest)
    await store.addManifest(two.cid, two.manifest)
    expect(store.files(two.cid)[1]?.path).toBe(store.files(one.cid)[0]?.path)
    expect((await readdir(join(dir, 'content'))).filter(n => !n.endsWith('.have'))).toHaveLength(2)
  })

  it('lets concurrent puts finish together and all of them count', async () => {
    const store = await openStore()
    const model = simpleModel('many', 4, 25, 2048)
    await store.addManifest(model.cid, model.manifest)
    const results = await Promise.all([...chunksOf(model)].map(async ([cid, bytes]) => await store.putChunk(cid, bytes)))
    expect(results.every(r => r.written)).toBe(true)
    expect(store.missingChunks(model.cid)).toEqual([])
    const journals = await Promise.all(store.files(model.cid).map(async f => (await stat(f.path + '.have')).size))
    expect(journals).toEqual([25 * 16, 25 * 16, 25 * 16, 25 * 16])
  })

  it('creates empty files complete', async () => {
    const store = await openStore()
    const model = testModel([testFile('empty.txt', []), testFile('one.bin', [bytesFor('1', 10)])])
    await store.addManifest(model.cid, model.manifest)
    const empty = store.files(model.cid).find(f => f.entry.path === 'empty.txt')
    expect(empty?.complete).toBe(true)
    expect((await stat(empty?.path ?? '')).size).toBe(0)
    await expect(store.read(model.cid, 'empty.txt', 0, 0)).resolves.toHaveLength(0)
  })

  it('reads a chunk into the buffer the caller supplies', async () => {
    const store = await openStore()
    const model = simpleModel('into', 1, 2, 5000)
    await store.addManifest(model.cid, model.manifest)
    await putAll(store, model)
    const [cid, bytes] = [...chunksOf(model)][1] as [string, Uint8Array]
    const supplied = new Uint8Array(8192)
    const sizes: number[] = []

    const read = await store.readChunk(cid, { allocate: size => { sizes.push(size); return supplied } })

    expect(sizes).toEqual([5000])
    expect(read.buffer).toBe(supplied.buffer)
    expect(read.byteLength).toBe(5000)
    expect(Buffer.from(read).equals(bytes)).toBe(true)
    // a buffer of exactly the size comes back as it is
    const exact = new Uint8Array(5000)
    expect(await store.readChunk(cid, { allocate: () => exact })).toBe(exact)
    await expect(store.readChunk(cid, { allocate: () => new Uint8Array(4999) })).rejects.toBeInstanceOf(RangeError)
  })
})

describe('ranges', () => {
  it('reads across chunk boundaries', async () => {
    const store = await openStore()
    const file = testFile('r.bin', [bytesFor('r0', 1000), bytesFor('r1', 700), bytesFor('r2', 1000), bytesFor('r3', 5)])
    const model = testModel([file])
    await store.addManifest(model.cid, model.manifest)
    await putAll(store, model)
    for (const [offset, length] of [[900, 1200], [0, 2705], [999, 2], [1700, 1005], [2704, 1], [0, 1]] as const) {
      const read = await store.read(model.cid, 'r.bin', offset, length)
      expect(Buffer.from(read).equals(file.bytes.subarray(offset, offset + length))).toBe(true)
    }
  })

  it('names the first missing chunk of a range', async () => {
    const store = await openStore()
    const chunks = [bytesFor('m0', 100), bytesFor('m1', 100), bytesFor('m2', 100), bytesFor('m3', 100)]
    const model = testModel([testFile('m.bin', chunks)])
    await store.addManifest(model.cid, model.manifest)
    await store.putChunk(cidForBytes(chunks[0] as Uint8Array), chunks[0] as Uint8Array)
    await store.putChunk(cidForBytes(chunks[3] as Uint8Array), chunks[3] as Uint8Array)

    const err = await store.read(model.cid, 'm.bin', 50, 300).catch(e => e)
    expect(err).toBeInstanceOf(ChunkMissingError)
    expect(err.cid).toBe(cidForBytes(chunks[1] as Uint8Array))
    await expect(store.read(model.cid, 'm.bin', 250, 100)).rejects.toMatchObject({ cid: cidForBytes(chunks[2] as Uint8Array) })
    await expect(store.read(model.cid, 'm.bin', 0, 100)).resolves.toHaveLength(100)
    await expect(store.read(model.cid, 'm.bin', 300, 100)).resolves.toHaveLength(100)
    await expect(store.readChunk(cidForBytes(chunks[1] as Uint8Array))).rejects.toBeInstanceOf(ChunkMissingError)
  })

  it('rejects ranges outside the file and unknown files', async () => {
    const store = await openStore()
    const model = simpleModel('o', 1, 1, 100)
    await store.addManifest(model.cid, model.manifest)
    await putAll(store, model)
    await expect(store.read(model.cid, 'o-0.bin', 50, 51)).rejects.toBeInstanceOf(RangeError)
    await expect(store.read(model.cid, 'o-0.bin', -1, 1)).rejects.toBeInstanceOf(RangeError)
    await expect(store.read(model.cid, 'nope.bin', 0, 1)).rejects.toBeInstanceOf(NotFoundError)
    await expect(store.read('bagaaiera' + 'x'.repeat(52), 'o-0.bin', 0, 1)).rejects.toBeInstanceOf(NotFoundError)
  })
})

describe('local copies', () => {
  it('fills chunks from another model\'s file instead of fetching them', async () => {
    const store = await openStore()
    const shared = [bytesFor('sh0', 800), bytesFor('sh1', 800)]
    const own = bytesFor('own', 800)
    const first = testModel([testFile('v1.bin', [...shared, bytesFor('old', 800)])])
    await store.addManifest(first.cid, first.manifest)
    await putAll(store, first)

    const second = testModel([testFile('v2.bin', [shared[0] as Uint8Array, own, shared[1] as Uint8Array])])
    await store.addManifest(second.cid, second.manifest)
    expect(store.missingChunks(second.cid)).toHaveLength(3)
    await expect(store.fillFromLocal(second.cid)).resolves.toBe(1600)
    expect(store.missingChunks(second.cid)).toEqual([{ cid: cidForBytes(own), size: 800 }])
    expect(Buffer.from(await store.read(second.cid, 'v2.bin', 1600, 800)).equals(shared[1] as Uint8Array)).toBe(true)
    await expect(store.fillFromLocal(second.cid)).resolves.toBe(0)
  })

  it('does not copy a local chunk that has rotted, and marks it missing', async () => {
    const store = await openStore()
    const shared = bytesFor('rot', 600)
    const first = testModel([testFile('one.bin', [shared])])
    await store.addManifest(first.cid, first.manifest)
    await putAll(store, first)
    const [stored] = store.files(first.cid)
    await chmod(stored?.path ?? '', 0o644)
    await writeFile(stored?.path ?? '', bytesFor('garbage', 600))

    const second = testModel([testFile('two.bin', [shared, bytesFor('two', 10)])])
    await store.addManifest(second.cid, second.manifest)
    await expect(store.fillFromLocal(second.cid)).resolves.toBe(0)
    expect(store.hasChunk(cidForBytes(shared))).toBe(false)
  })
})

describe('durability', () => {
  it('keeps models, pins, refs and presence across a reopen', async () => {
    const store = await openStore()
    const a = simpleModel('ra')
    const b = simpleModel('rb')
    await store.addManifest(a.cid, a.manifest, { ref: 'ra' })
    await store.addManifest(b.cid, b.manifest, { ref: 'rb:v2' })
    await store.pin(a.cid, true)
    await putAll(store, a)
    const [bcid, bbytes] = [...chunksOf(b)][0] as [string, Uint8Array]
    await store.putChunk(bcid, bbytes)
    const before = store.models()
    await closeStore(store)
    await expect(store.putChunk(bcid, bbytes)).rejects.toBeInstanceOf(StoreClosedError)

    const reopened = await openStore()
    expect(reopened.models()).toEqual(before)
    expect(reopened.models().find(m => m.manifestCid === a.cid)).toMatchObject({ refs: ['ra:latest'], pinned: true, presentBytes: 6000 })
    expect(reopened.missingChunks(a.cid)).toEqual([])
    expect(reopened.missingChunks(b.cid)).toHaveLength(5)
    expect(Buffer.from(await reopened.readChunk(bcid)).equals(bbytes)).toBe(true)
    expect(Buffer.from(reopened.getManifestBytes(b.cid) ?? []).equals(encodeManifest(b.manifest).bytes)).toBe(true)
    expect(reopened.getManifest(b.cid)).toEqual(b.manifest)
  })

  it('ignores a torn journal tail and keeps appending after it', async () => {
    const store = await openStore()
    const chunks = [bytesFor('t0', 100), bytesFor('t1', 100), bytesFor('t2', 100)]
    const model = testModel([testFile('t.bin', chunks)])
    await store.addManifest(model.cid, model.manifest)
    await store.putChunk(cidForBytes(chunks[0] as Uint8Array), chunks[0] as Uint8Array)
    await store.putChunk(cidForBytes(chunks[1] as Uint8Array), chunks[1] as Uint8Array)
    const journal = (store.files(model.cid)[0]?.path ?? '') + '.have'
    await closeStore(store)

    // the second record torn half way, as a crash during its append would leave it
    expect((await stat(journal)).size).toBe(32)
    await truncate(journal, 16 + 9)
    let reopened = await openStore()
    expect(reopened.hasChunk(cidForBytes(chunks[0] as Uint8Array))).toBe(true)
    expect(reopened.hasChunk(cidForBytes(chunks[1] as Uint8Array))).toBe(false)
    await reopened.putChunk(cidForBytes(chunks[2] as Uint8Array), chunks[2] as Uint8Array)
    await closeStore(reopened)

    // a zero-filled tail, as some filesystems leave after a crash, and a record with a flipped bit
    const records = await readFile(journal)
    expect(records.length).toBe(32)
    const flipped = Buffer.from(records.subarray(0, 16))
    flipped[4] = (flipped[4] ?? 0) ^ 0x02
    await appendFile(journal, Buffer.concat([flipped, Buffer.alloc(16)]))
    reopened = await openStore()
    expect(reopened.missingChunks(model.cid)).toEqual([{ cid: cidForBytes(chunks[1] as Uint8Array), size: 100 }])
    expect((await stat(journal)).size).toBe(32)
  })

  it('starts a content file over when its size is wrong', async () => {
    const store = await openStore()
    const model = simpleModel('sz', 1, 2, 100)
    await store.addManifest(model.cid, model.manifest)
    await putAll(store, model)
    const path = store.files(model.cid)[0]?.path ?? ''
    await closeStore(store)
    await chmod(path, 0o644)
    await truncate(path, 150)
    const reopened = await openStore()
    expect(reopened.missingChunks(model.cid)).toHaveLength(2)
    expect((await stat(path)).size).toBe(200)
  })

  it('deletes files no held model refers to when it opens', async () => {
    const store = await openStore()
    const model = simpleModel('orph', 1, 1, 10)
    await store.addManifest(model.cid, model.manifest)
    await closeStore(store)
    await writeFile(join(dir, 'content', 'f'.repeat(64)), 'left over')
    await writeFile(join(dir, 'content', 'f'.repeat(64) + '.have'), '')
    await writeFile(join(dir, 'manifests', 'bagaaierasomethingelse'), '{}')
    const reopened = await openStore()
    expect((await readdir(join(dir, 'content'))).sort()).toHaveLength(2)
    expect(await readdir(join(dir, 'manifests'))).toEqual([model.cid])
    expect(reopened.models()).toHaveLength(1)
  })
})

describe('models', () => {
  it('adds idempotently and only under the CID the manifest hashes to', async () => {
    const store = await openStore()
    const model = simpleModel('idem')
    const other = simpleModel('other')
    await expect(store.addManifest(other.cid, model.manifest)).rejects.toBeInstanceOf(ManifestCidMismatchError)
    expect(store.models()).toEqual([])
    await Promise.all([store.addManifest(model.cid, model.manifest), store.addManifest(model.cid, model.manifest, { ref: 'idem:a' })])
    await store.addManifest(model.cid, model.manifest, { ref: 'idem:b' })
    await store.addManifest(model.cid, model.manifest, { ref: 'idem:a' })
    expect(store.models()).toHaveLength(1)
    expect(store.models()[0]?.refs.sort()).toEqual(['idem:a', 'idem:b'])
    await expect(store.addManifest(model.cid, model.manifest, { ref: 'Not A Ref' })).rejects.toBeInstanceOf(InvalidRefError)
  })

  it('moves a ref to the model it now names', async () => {
    const store = await openStore()
    const v1 = simpleModel('v1')
    const v2 = simpleModel('v2')
    await store.addManifest(v1.cid, v1.manifest, { ref: 'm:latest' })
    await store.addManifest(v2.cid, v2.manifest, { ref: 'm:latest' })
    const refs = Object.fromEntries(store.models().map(m => [m.manifestCid, m.refs]))
    expect(refs).toEqual({ [v1.cid]: [], [v2.cid]: ['m:latest'] })
  })

  it('removes a model but keeps content another model shares', async () => {
    const evicted: Array<[string, EvictDetails]> = []
    const store = await openStore({ onEvict: (cid, details) => evicted.push([cid, details]) })
    const shared = testFile('shared.bin', [bytesFor('sh-a', 300), bytesFor('sh-b', 300)])
    const onlyA = testFile('a-only.bin', [bytesFor('a-only', 300)])
    const a = testModel([shared, onlyA])
    const b = testModel([testFile('b/shared.bin', shared.chunks), testFile('b-only.bin', [bytesFor('b-only', 300)])])
    await store.addManifest(a.cid, a.manifest)
    await store.addManifest(b.cid, b.manifest)
    await putAll(store, a)
    await putAll(store, b)
    const aOnlyPath = store.files(a.cid).find(f => f.entry.path === 'a-only.bin')?.path ?? ''

    await store.remove(a.cid)
    expect(store.getManifest(a.cid)).toBeUndefined()
    await expect(stat(aOnlyPath)).rejects.toThrow(/ENOENT/)
    await expect(stat(aOnlyPath + '.have')).rejects.toThrow(/ENOENT/)
    expect(store.files(b.cid).every(f => f.complete)).toBe(true)
    expect(Buffer.from(await store.read(b.cid, 'b/shared.bin', 0, 600)).equals(shared.bytes)).toBe(true)
    expect(evicted).toEqual([[a.cid, { reason: 'remove', droppedChunks: [onlyA.entry.chunks[0]?.cid] }]])
    await expect(store.remove(a.cid)).rejects.toBeInstanceOf(NotFoundError)

    await store.remove(b.cid)
    expect(await readdir(join(dir, 'content'))).toEqual([])
    expect(await readdir(join(dir, 'manifests'))).toEqual([])
    await closeStore(store)
    expect((await openStore()).models()).toEqual([])
  })

  it('gc evicts least recently used unpinned models, never pinned ones', async () => {
    const evicted: string[] = []
    const store = await openStore({ onEvict: cid => evicted.push(cid) })
    const [pinned, older, newer] = [simpleModel('gp'), simpleModel('go'), simpleModel('gn')] as [TestModel, TestModel, TestModel]
    for (const model of [pinned, older, newer]) {
      await store.addManifest(model.cid, model.manifest)
      await putAll(store, model)
      await new Promise(resolve => setTimeout(resolve, 5))
      store.touch(model.cid)
    }
    await store.pin(pinned.cid, true)
    expect(store.usage().presentBytes).toBe(18000)

    await expect(store.gc()).resolves.toEqual({ evicted: [], skipped: [], presentBytes: 18000, budgetBytes: undefined })
    await expect(store.gc({ budgetBytes: 12000 })).resolves.toEqual({
      evicted: [{ manifestCid: older.cid, refs: [], reason: 'budget', freedBytes: 6000 }],
      skipped: [{ manifestCid: pinned.cid, refs: [], reason: 'pinned' }],
      presentBytes: 12000,
      budgetBytes: 12000
    })
    expect(store.usage().presentBytes).toBe(12000)
    expect(evictedBy(await store.gc({ budgetBytes: 0 }))).toEqual([newer.cid])
    expect(store.models().map(m => m.manifestCid)).toEqual([pinned.cid])
    expect(store.usage().presentBytes).toBe(6000)
    expect(evicted).toEqual([older.cid, newer.cid])
    await expect(store.read(pinned.cid, 'gp-0.bin', 0, 3000)).resolves.toHaveLength(3000)
  })

  it('gc follows touch and keeps content a pinned model shares', async () => {
    const store = await openStore({ budgetBytes: 6000 })
    const base = simpleModel('base')
    const first = simpleModel('first')
    const second = simpleModel('second')
    const copy = testModel([testFile('copy.bin', base.files[0]?.chunks ?? [])])
    for (const model of [base, first, second, copy]) {
      await store.addManifest(model.cid, model.manifest)
      await putAll(store, model)
      await new Promise(resolve => setTimeout(resolve, 5))
      store.touch(model.cid)
    }
    await store.pin(base.cid, true)
    await new Promise(resolve => setTimeout(resolve, 5))
    store.touch(first.cid)
    // copy is older than first but frees nothing (its only file is the pinned model's): it stays
    expect(evictedBy(await store.gc({ budgetBytes: 12000 }))).toEqual([second.cid])
    const report = await store.gc()
    expect(evictedBy(report)).toEqual([first.cid])
    expect(report.skipped).toEqual([
      { manifestCid: base.cid, refs: [], reason: 'pinned' },
      { manifestCid: copy.cid, refs: [], reason: 'shares-pinned' }
    ])
    expect(store.usage().presentBytes).toBe(6000)
    expect(evictedBy(await store.gc({ budgetBytes: 0 }))).toEqual([])
    expect(store.models().map(m => m.manifestCid).sort()).toEqual([base.cid, copy.cid].sort())
    expect(store.files(copy.cid)[0]?.complete).toBe(true)
    await expect(store.gc({ budgetBytes: -1 })).rejects.toBeInstanceOf(RangeError)
  })
})

describe('leases', () => {
  it('keeps a leased model from gc and remove until the last lease is released', async () => {
    const store = await openStore()
    const [used, idle] = [simpleModel('lu'), simpleModel('li')] as [TestModel, TestModel]
    for (const model of [used, idle]) {
      await store.addManifest(model.cid, model.manifest)
      await putAll(store, model)
    }
    expect(() => store.lease(simpleModel('nope').cid, 'pull:x')).toThrow(NotFoundError)
    expect(() => store.lease(used.cid, '')).toThrow(TypeError)
    const pull = store.lease(used.cid, 'pull:lu')
    const reader = store.lease(used.cid, 'mount:/lu-0.bin')
    expect(pull).toMatchObject({ manifestCid: used.cid, holder: 'pull:lu' })
    expect(store.holders(used.cid)).toEqual(['pull:lu', 'mount:/lu-0.bin'])
    expect(store.holders(idle.cid)).toEqual([])

    const report = await store.gc({ budgetBytes: 0 })
    expect(evictedBy(report)).toEqual([idle.cid])
    expect(report.skipped).toEqual([{ manifestCid: used.cid, refs: [], reason: 'leased', holders: ['pull:lu', 'mount:/lu-0.bin'] }])
    expect(report.presentBytes).toBe(6000)
    const refused = await store.remove(used.cid).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(ModelLeasedError)
    expect((refused as Error).message).toContain('pull:lu, mount:/lu-0.bin')
    await expect(store.read(used.cid, 'lu-1.bin', 0, 3000)).resolves.toHaveLength(3000)

    pull.release()
    pull.release()
    expect(store.holders(used.cid)).toEqual(['mount:/lu-0.bin'])
    expect(evictedBy(await store.gc({ budgetBytes: 0 }))).toEqual([])
    reader.release()
    expect(store.holders(used.cid)).toEqual([])
    expect(evictedBy(await store.gc({ budgetBytes: 0 }))).toEqual([used.cid])
  })

  it('addAndLease holds the model from before it is added, so a gc queued behind the add cannot take it', async () => {
    const store = await openStore()
    const leased = simpleModel('al')
    const plain = simpleModel('ap')
    // both gc runs queue behind the adds; each model is empty, unnamed and unpinned, so only a lease keeps it
    const adding = store.addAndLease(leased.cid, leased.manifest, 'pull:al')
    const addingPlain = store.addManifest(plain.cid, plain.manifest)
    const gc = store.gc()
    const lease = await adding
    await addingPlain
    expect(evictedBy(await gc)).toEqual([plain.cid])
    expect(store.getManifest(leased.cid)).toBeDefined()
    expect(store.holders(leased.cid)).toEqual(['pull:al'])
    await putAll(store, leased)
    expect(store.missingChunks(leased.cid)).toEqual([])
    lease.release()

    // a failed add leaves no lease behind
    const bad = simpleModel('ab')
    await expect(store.addAndLease(simpleModel('other').cid, bad.manifest, 'pull:ab')).rejects.toBeInstanceOf(ManifestCidMismatchError)
    expect(store.holders(simpleModel('other').cid)).toEqual([])
  })

  it('collects models that hold no bytes and that nothing names, pins or leases', async () => {
    const evicted: Array<[string, EvictDetails]> = []
    const store = await openStore({ onEvict: (cid, details) => evicted.push([cid, details]) })
    const [unused, named, pinned, leased, full] = ['eu', 'en', 'ep', 'el', 'ef'].map(seed => simpleModel(seed)) as [TestModel, TestModel, TestModel, TestModel, TestModel]
    await store.addManifest(unused.cid, unused.manifest)
    await store.addManifest(named.cid, named.manifest, { ref: 'named:v1' })
    await store.addManifest(pinned.cid, pinned.manifest)
    await store.pin(pinned.cid, true)
    await store.addManifest(leased.cid, leased.manifest)
    const lease = store.lease(leased.cid, 'mount:/el-0.bin')
    await store.addManifest(full.cid, full.manifest)
    await putAll(store, full)

    const report = await store.gc()
    expect(report).toEqual({ evicted: [{ manifestCid: unused.cid, refs: [], reason: 'unused', freedBytes: 0 }], skipped: [], presentBytes: 6000, budgetBytes: undefined })
    expect(evicted).toEqual([[unused.cid, { reason: 'gc', droppedChunks: [] }]])
    expect(store.models().map(m => m.manifestCid).sort()).toEqual([named.cid, pinned.cid, leased.cid, full.cid].sort())
    await expect(readdir(join(dir, 'manifests'))).resolves.not.toContain(unused.cid)
    lease.release()
    expect(evictedBy(await store.gc())).toEqual([leased.cid])
  })
})

describe('manifests that disagree', () => {
  /** a manifest whose one file is `cid` claimed to be `size` bytes */
  function liar (cid: string, size: number): TestModel {
    const entry = { path: 'liar.bin', size, mode: 0o644, chunks: [{ cid, offset: 0, size }] }
    const manifest = { version: 1 as const, chunkSize: size, files: [entry] }
    return { manifest, cid: encodeManifest(manifest).cid, files: [] }
  }

  it('refuses at addManifest a manifest that gives a held chunk another size, naming both, and the held model fills as before', async () => {
    const store = await openStore()
    const legit = simpleModel('cl')
    await store.addManifest(legit.cid, legit.manifest, { ref: 'legit:v1' })
    const [first, ...rest] = [...chunksOf(legit)]
    const [cid, bytes] = first as [string, Uint8Array]
    await store.putChunk(cid, bytes)
    const bad = liar(rest[0]?.[0] ?? '', 500)

    const refused = await store.addManifest(bad.cid, bad.manifest).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(ManifestConflictError)
    expect((refused as Error).message).toContain(bad.cid)
    expect((refused as Error).message).toContain(legit.cid)
    expect(refused).toMatchObject({ manifestCid: bad.cid, heldManifestCid: legit.cid, chunkCid: rest[0]?.[0], size: 500, heldSize: 1000 })
    expect(store.getManifest(bad.cid)).toBeUndefined()
    await expect(readdir(join(dir, 'manifests'))).resolves.toEqual([legit.cid])

    for (const [c, b] of rest) await expect(store.putChunk(c, b, { source: 'peer-1' })).resolves.toEqual({ written: true })
    expect(store.missingChunks(legit.cid)).toEqual([])
    for (const file of legit.files) expect(Buffer.from(await store.read(legit.cid, file.entry.path, 0, file.entry.size)).equals(file.bytes)).toBe(true)
  })

  it('a conflicting manifest that holds nothing and that nothing uses gives way to a new one', async () => {
    const store = await openStore()
    const legit = simpleModel('cg')
    const [[cid]] = [...chunksOf(legit)] as Array<[string, Uint8Array]>
    const squatter = liar(cid ?? '', 700)
    await store.addManifest(squatter.cid, squatter.manifest)
    await store.addManifest(legit.cid, legit.manifest)
    expect(store.getManifest(squatter.cid)).toBeUndefined()
    await putAll(store, legit)
    expect(store.missingChunks(legit.cid)).toEqual([])

    // named, it is in use: then the newcomer is refused instead
    const named = liar(cid ?? '', 800)
    const other = simpleModel('cg2')
    await store.addManifest(other.cid, other.manifest)
    await expect(store.addManifest(named.cid, named.manifest, { ref: 'liar:v1' })).rejects.toBeInstanceOf(ManifestConflictError)
  })

  it('refuses a manifest that lists one chunk with two sizes', async () => {
    const store = await openStore()
    const chunk = bytesFor('twice', 1000)
    const cid = cidForBytes(chunk)
    const manifest = { version: 1 as const, chunkSize: 1000, files: [
      { path: 'a.bin', size: 1000, mode: 0o644, chunks: [{ cid, offset: 0, size: 1000 }] },
      { path: 'b.bin', size: 900, mode: 0o644, chunks: [{ cid, offset: 0, size: 900 }] }
    ] }
    await expect(store.addManifest(encodeManifest(manifest).cid, manifest)).rejects.toThrow(/listed as 1000 bytes and as 900/)
  })
})

describe('verify', () => {
  it('finds chunks that rotted on disk and makes them missing until fetched again', async () => {
    const store = await openStore()
    const model = simpleModel('ver', 2, 3, 1000)
    await store.addManifest(model.cid, model.manifest)
    await putAll(store, model)
    await expect(verifyModel(store, model.cid)).resolves.toMatchObject({ checkedChunks: 6, checkedBytes: 6000, bad: [], missingChunks: 0 })

    const target = store.files(model.cid).find(f => f.entry.path === 'ver-1.bin')
    await chmod(target?.path ?? '', 0o644)
    const handle = await open(target?.path ?? '', 'r+')
    await handle.write(Buffer.from('rot'), 0, 3, 1500)
    await handle.close()
    await chmod(target?.path ?? '', 0o444)

    const progress: number[] = []
    const report = await verifyModel(store, model.cid, { onProgress: p => progress.push(p.checkedBytes) })
    const badCid = model.files[1]?.entry.chunks[1]?.cid
    expect(report.bad).toEqual([{ path: 'ver-1.bin', cid: badCid, offset: 1000, size: 1000 }])
    expect(report.missingChunks).toBe(1)
    expect(progress.at(-1)).toBe(6000)
    expect(store.hasChunk(badCid ?? '')).toBe(false)
    expect(store.files(model.cid).find(f => f.entry.path === 'ver-1.bin')?.complete).toBe(false)
    expect((await stat(target?.path ?? '')).mode & 0o777).toBe(0o644)
    await expect(store.read(model.cid, 'ver-1.bin', 1400, 200)).rejects.toMatchObject({ cid: badCid })

    await closeStore(store)
    const reopened = await openStore()
    expect(reopened.missingChunks(model.cid)).toEqual([{ cid: badCid, size: 1000 }])
    await reopened.putChunk(badCid ?? '', chunksOf(model).get(badCid ?? '') ?? new Uint8Array())
    expect((await readFile(target?.path ?? '')).equals(model.files[1]?.bytes ?? new Uint8Array())).toBe(true)
    expect((await verifyModel(reopened, model.cid)).bad).toEqual([])
  })
})

describe('opening', () => {
  it('refuses a second opener while the first holds the directory', async () => {
    const store = await openStore()
    const err = await createStore({ dir }).catch(e => e)
    expect(err).toBeInstanceOf(StoreLockedError)
    expect(err.pid).toBe(process.pid)
    expect(err.message).toContain(dir)
    await closeStore(store)
    await expect(openStore()).resolves.toBeDefined()
  })

  it('takes over a lock left by a process that is gone', async () => {
    const gone = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
    await writeFile(join(dir, 'lock'), `${gone.stdout}\n`)
    const store = await openStore()
    expect((await readFile(join(dir, 'lock'), 'utf8')).split(' ')[0]?.trim()).toBe(String(process.pid))
    await closeStore(store)
    await expect(stat(join(dir, 'lock'))).rejects.toThrow(/ENOENT/)
  })

  it('says clearly that models.json is corrupt', async () => {
    const store = await openStore()
    const model = simpleModel('cm', 1, 1, 10)
    await store.addManifest(model.cid, model.manifest)
    await closeStore(store)

    await writeFile(join(dir, 'models.json'), '{"version":1,"models":[{"manifestCid":')
    await expect(createStore({ dir })).rejects.toThrow(CorruptModelsFileError)
    await writeFile(join(dir, 'models.json'), JSON.stringify({ version: 1, models: [{ manifestCid: model.cid, refs: [], pinned: 'yes', lastUsed: 1 }] }))
    const err = await createStore({ dir }).catch(e => e)
    expect(err).toBeInstanceOf(CorruptModelsFileError)
    expect(err.message).toMatch(/models\.json.*pinned/s)
    await writeFile(join(dir, 'models.json'), JSON.stringify({ version: 1, models: [{ manifestCid: '../../etc/passwd', refs: [], pinned: false, lastUsed: 1 }] }))
    await expect(createStore({ dir })).rejects.toThrow(/manifest CID/)

    // a failed open lets go of the lock
    await writeFile(join(dir, 'models.json'), JSON.stringify({ version: 1, models: [{ manifestCid: model.cid, refs: ['cm:latest'], pinned: true, lastUsed: 1 }] }))
    const reopened = await openStore()
    expect(reopened.models()).toMatchObject([{ manifestCid: model.cid, refs: ['cm:latest'], pinned: true }])
  })

  it('drops a held model whose manifest file is damaged', async () => {
    const store = await openStore()
    const keep = simpleModel('keep', 1, 1, 10)
    const lose = simpleModel('lose', 1, 1, 10)
    await store.addManifest(keep.cid, keep.manifest)
    await store.addManifest(lose.cid, lose.manifest)
    await closeStore(store)
    await writeFile(join(dir, 'manifests', lose.cid), '{"version":1}')
    const reopened = await openStore()
    expect(reopened.models().map(m => m.manifestCid)).toEqual([keep.cid])
    expect(JSON.parse(await readFile(join(dir, 'models.json'), 'utf8')).models).toHaveLength(1)
  })

  it('rejects a bad budget', async () => {
    await expect(createStore({ dir, budgetBytes: -5 })).rejects.toBeInstanceOf(RangeError)
  })
})
