import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ChunkUnavailableError, NotFoundError } from '@swarm/interface'
import { formatRef } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { verifyChunk } from '@swarm/chunker'
import { BadHandleError, IsADirectoryError, NotADirectoryError, NotALinkError, ReadOnlyError, ReadTimeoutError, modelFs } from '../src/index.js'
import { MiB, bytesFor, fetcher, makeModel, memorySource, safetensorsBytes } from './helpers.js'
import type { ModelFs, ModelFsInit, ModelResolver } from '../src/index.js'
import type { CountingSource, TestModel } from './helpers.js'
import type { ModelRef, RefEntry } from '@swarm/interface'
import type { Store } from '@swarm/store'

const READ = 128 * 1024

async function readAll (view: ModelFs, path: string, piece = READ): Promise<Buffer> {
  const { size } = await view.getattr(path)
  const handle = await view.open(path, 0)
  const out = Buffer.alloc(size)
  try {
    for (let at = 0; at < size; at += piece) {
      const n = await view.read(handle, out.subarray(at, Math.min(size, at + piece)), at)
      expect(n).toBe(Math.min(piece, size - at))
    }
  } finally {
    await view.release(handle)
  }
  return out
}

async function until (condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** A resolver over a fixed set of names and models, as the origin would answer. */
function resolverFor (store: Store, models: TestModel[], refs: RefEntry[]): ModelResolver & { resolves: string[], added: string[] } {
  const resolver = {
    resolves: [] as string[],
    added: [] as string[],
    async resolveRef (ref: ModelRef) {
      resolver.resolves.push(formatRef(ref))
      const entry = refs.find(r => r.name === ref.name && r.tag === ref.tag)
      if (entry == null) throw new NotFoundError(`no ref ${formatRef(ref)}`)
      return entry.cid
    },
    async listRefs () { return refs },
    async addManifest (cid: string, options: { ref?: string } = {}) {
      resolver.added.push(cid)
      const model = models.find(m => m.cid === cid)
      if (model == null) throw new NotFoundError(`no manifest ${cid}`)
      await store.addManifest(cid, model.manifest, options.ref != null ? { ref: options.ref } : {})
    }
  }
  return resolver
}

describe('model view', () => {
  let dir: string
  let store: Store
  let model: TestModel
  let source: CountingSource
  let view: ModelFs

  function makeView (init: Partial<ModelFsInit> = {}): ModelFs {
    view = modelFs({ store, fetcher: fetcher({ store, sources: [source] }), readAhead: { initialBytes: 1, maxBytes: 1 }, ...init })
    return view
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fs-'))
    store = await createStore({ dir: join(dir, 'store') })
    model = makeModel({
      'model.safetensors': safetensorsBytes('base'),
      'config.json': Buffer.from('{"hidden_size": 256}\n'),
      'weights/extra.bin': bytesFor('extra', 5 * MiB + 12345),
      'weights/deep/notes.txt': Buffer.from('notes\n')
    })
    source = memorySource(model)
  })

  afterEach(async () => {
    await view?.close()
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  describe('layout', () => {
    beforeEach(async () => {
      await store.addManifest(model.cid, model.manifest, { ref: 'llama:latest' })
      await store.addManifest(model.cid, model.manifest, { ref: 'llama:v1' })
      await store.addManifest(model.cid, model.manifest, { ref: 'org/team/model:v2' })
      makeView()
    })

    it('lists names, tags and by-cid at the root, and names with "/" as directories', async () => {
      expect(await view.readdir('/')).toEqual(['by-cid', 'llama', 'llama@v1', 'org'])
      expect(await view.readdir('/org')).toEqual(['team'])
      expect(await view.readdir('/org/team')).toEqual(['model@v2'])
      expect(await view.readdir('/by-cid')).toEqual([model.cid])
    })

    it('names are relative links to the immutable by-cid directory', async () => {
      expect(await view.readlink('/llama')).toBe(`by-cid/${model.cid}`)
      expect(await view.readlink('/llama@latest')).toBe(`by-cid/${model.cid}`)
      expect(await view.readlink('/llama@v1')).toBe(`by-cid/${model.cid}`)
      expect(await view.readlink('/org/team/model@v2')).toBe(`../../by-cid/${model.cid}`)
      const link = await view.getattr('/org/team/model@v2')
      expect(link.kind).toBe('symlink')
      expect(link.size).toBe(`../../by-cid/${model.cid}`.length)
    })

    it('has the manifest\'s files, directories, sizes and read-only modes', async () => {
      const root = `/by-cid/${model.cid}`
      expect(await view.readdir(root)).toEqual(['config.json', 'model.safetensors', 'weights'])
      expect(await view.readdir(`${root}/weights`)).toEqual(['deep', 'extra.bin'])
      expect(await view.readdir(`${root}/weights/deep`)).toEqual(['notes.txt'])
      const file = await view.getattr(`${root}/weights/extra.bin`)
      expect(file).toMatchObject({ kind: 'file', size: 5 * MiB + 12345, nlink: 1 })
      expect(file.mode & 0o7777).toBe(0o444)
      expect(file.mode & 0o170000).toBe(0o100000)
      const directory = await view.getattr(`${root}/weights`)
      expect(directory.kind).toBe('directory')
      expect(directory.mode & 0o222).toBe(0)
      // a caller that does not follow links itself still gets there through a name
      expect((await view.getattr('/llama@v1/config.json')).size).toBe(model.files.get('config.json')?.length)
    })

    it('unknown paths do not exist; wrong kinds get their own errors', async () => {
      for (const path of ['/nope', '/llama@v9', '/org/other', `/by-cid/${model.cid}/missing.bin`, '/by-cid/not-a-cid', '/by-cid/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy', '/Upper', '/a:b']) {
        await expect(view.getattr(path), path).rejects.toBeInstanceOf(NotFoundError)
      }
      await expect(view.readdir(`/by-cid/${model.cid}/config.json`)).rejects.toBeInstanceOf(NotADirectoryError)
      await expect(view.readlink(`/by-cid/${model.cid}`)).rejects.toBeInstanceOf(NotALinkError)
      await expect(view.open(`/by-cid/${model.cid}/weights`, 0)).rejects.toBeInstanceOf(IsADirectoryError)
      await expect(view.getattr('relative')).rejects.toBeInstanceOf(NotFoundError)
    })

    it('refuses every change with ReadOnlyError', async () => {
      const file = `/by-cid/${model.cid}/config.json`
      await expect(view.open(file, 1)).rejects.toBeInstanceOf(ReadOnlyError)
      await expect(view.open(file, 2)).rejects.toBeInstanceOf(ReadOnlyError)
      await expect(view.open(file, 0o1000)).rejects.toBeInstanceOf(ReadOnlyError)
      await expect(view.access(file, 2)).rejects.toBeInstanceOf(ReadOnlyError)
      await expect(view.access(file, 4)).resolves.toBeUndefined()
      for (const operation of ['write', 'create', 'rename', 'truncate', 'unlink', 'mkdir']) {
        await expect(view.change(file, operation)).rejects.toBeInstanceOf(ReadOnlyError)
      }
    })

    it('statfs counts the models held and nothing free', () => {
      const stats = view.statfs()
      const total = model.manifest.files.reduce((sum, f) => sum + f.size, 0)
      expect(stats.blocks).toBe(Math.ceil(total / 4096))
      expect(stats.files).toBe(4)
      expect(stats.bfree).toBe(0)
    })

    it('rejects bad handles and bad settings', async () => {
      await expect(view.read(999, Buffer.alloc(10), 0)).rejects.toBeInstanceOf(BadHandleError)
      const handle = await view.open(`/by-cid/${model.cid}/config.json`, 0)
      await view.release(handle)
      await expect(view.release(handle)).rejects.toBeInstanceOf(BadHandleError)
      expect(() => modelFs({ store, fetcher: fetcher({ store, sources: [] }), readTimeoutMs: -1 })).toThrow(RangeError)
      expect(() => modelFs({ store, fetcher: fetcher({ store, sources: [] }), readAhead: { initialBytes: 10, maxBytes: 5 } })).toThrow(RangeError)
    })
  })

  describe('reads', () => {
    beforeEach(async () => {
      await store.addManifest(model.cid, model.manifest, { ref: 'llama:latest' })
    })

    it('a read fetches exactly the chunks under its range, nothing else', async () => {
      makeView()
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const chunks = model.manifest.files.find(f => f.path === 'weights/extra.bin')?.chunks ?? []
      const third = chunks[2]
      if (third == null) throw new Error('expected several chunks')
      const handle = await view.open(path, 0)
      const buffer = Buffer.alloc(1000)
      expect(await view.read(handle, buffer, third.offset + 100)).toBe(1000)
      expect(buffer).toEqual(model.files.get('weights/extra.bin')?.subarray(third.offset + 100, third.offset + 1100))
      expect(source.asked).toEqual([third.cid])
      // a range across a boundary needs both sides
      const across = Buffer.alloc(2000)
      await view.read(handle, across, third.offset + third.size - 1000)
      expect(source.asked).toEqual([third.cid, chunks[3]?.cid])
      await view.release(handle)
    })

    it('every byte of every file reads back identical, and reads past the end return 0', async () => {
      makeView({ readAhead: {} })
      for (const [path, bytes] of model.files) {
        expect((await readAll(view, `/by-cid/${model.cid}/${path}`)).equals(bytes), path).toBe(true)
      }
      const handle = await view.open(`/by-cid/${model.cid}/config.json`, 0)
      expect(await view.read(handle, Buffer.alloc(10), 1_000_000)).toBe(0)
      await view.release(handle)
      // complete now: read again straight from the content file
      expect((await readAll(view, `/by-cid/${model.cid}/weights/extra.bin`, 3 * MiB)).equals(model.files.get('weights/extra.bin') as Buffer)).toBe(true)
      expect(view.stats().failedReads).toBe(0)
    })

    it('concurrent readers of one chunk share one fetch', async () => {
      makeView()
      source.delayMs = 50
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const handles = await Promise.all(Array.from({ length: 16 }, async () => await view.open(path, 0)))
      const buffers = handles.map(() => Buffer.alloc(4096))
      await Promise.all(handles.map(async (handle, i) => await view.read(handle, buffers[i] as Buffer, i * 4096)))
      expect(source.asked).toHaveLength(1)
      for (const [i, buffer] of buffers.entries()) expect(buffer.equals(model.files.get('weights/extra.bin')?.subarray(i * 4096, (i + 1) * 4096) as Buffer)).toBe(true)
      await Promise.all(handles.map(async handle => { await view.release(handle) }))
    })

    it('a chunk nobody has fails the read, and a silent source fails it within the read bound', async () => {
      makeView({ readTimeoutMs: 300 })
      const entry = model.manifest.files.find(f => f.path === 'weights/extra.bin')
      const first = entry?.chunks[0]
      if (first == null) throw new Error('no chunk')
      source.missing.add(first.cid)
      const handle = await view.open(`/by-cid/${model.cid}/weights/extra.bin`, 0)
      await expect(view.read(handle, Buffer.alloc(100), 0)).rejects.toBeInstanceOf(ChunkUnavailableError)
      source.missing.clear()
      source.delayMs = 60_000
      const started = Date.now()
      await expect(view.read(handle, Buffer.alloc(100), 0)).rejects.toBeInstanceOf(ReadTimeoutError)
      expect(Date.now() - started).toBeLessThan(5000)
      expect(view.stats().failedReads).toBe(2)
      await view.release(handle)
    })

    it('an open file holds its model: remove is refused and gc skips it until the last release', async () => {
      makeView()
      for (const [cid, bytes] of model.chunks) await store.putChunk(cid, bytes)
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const first = await view.open(path, 0)
      const second = await view.open(path, 0)
      expect(store.holders(model.cid)).toEqual([`mount:${path}`])
      await expect(store.remove(model.cid)).rejects.toMatchObject({ code: 'ERR_MODEL_LEASED' })
      expect((await store.gc({ budgetBytes: 0 })).skipped).toMatchObject([{ manifestCid: model.cid, reason: 'leased' }])
      await view.release(first)
      expect(store.holders(model.cid)).toEqual([`mount:${path}`])
      await view.release(second)
      expect(store.holders(model.cid)).toEqual([])
      // an adapter that serves opens itself holds the model the same way
      const hold = await view.hold(path)
      expect(store.holders(model.cid)).toEqual([`mount:${path}`])
      hold.release()
      hold.release()
      expect(store.holders(model.cid)).toEqual([])
      await store.remove(model.cid)
      expect(store.getManifest(model.cid)).toBeUndefined()
    })

    it('describes a file by the store file\'s identity; one evicted and added back is another file, with nothing present', async () => {
      makeView()
      for (const [cid, bytes] of model.chunks) await store.putChunk(cid, bytes)
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const before = await view.content(path)
      expect(before.complete).toBe(true)
      expect(before.identity?.ino).toBeGreaterThan(0n)
      const all = await view.contents(`/by-cid/${model.cid}`)
      expect([...all.keys()].sort()).toEqual([...model.files.keys()].sort())
      expect(all.get('weights/extra.bin')).toEqual(before)
      // nobody tells the view: the new file's ctime says the answer it reused is older than the file
      await store.remove(model.cid)
      await store.addManifest(model.cid, model.manifest)
      const after = await view.content(path)
      expect(after.backingPath).toBe(before.backingPath)
      expect(after.identity).not.toEqual(before.identity)
      expect(after.complete).toBe(false)
      expect(after.present.every(bit => bit === 0)).toBe(true)
      const listed = await view.contents(`/by-cid/${model.cid}/weights`)
      expect(listed.get('extra.bin')?.complete).toBe(false)
    })

    it('a checkpoint\'s small files come as one batch from the first open of one, and each arrival is announced', async () => {
      const files: Record<string, Buffer> = {}
      for (let i = 0; i < 40; i++) files[`state/layer_${i % 4}/shard_${i}.zarr`] = bytesFor(`shard ${i}`, 2048 + i * 100)
      const checkpoint = makeModel(files)
      await store.addManifest(checkpoint.cid, checkpoint.manifest)
      const counting = memorySource(checkpoint)
      view = modelFs({ store, fetcher: fetcher({ store, sources: [counting] }) })
      const arrivals: string[] = []
      const stop = view.onArrival(a => { arrivals.push(a.path) })
      const handle = await view.open(`/by-cid/${checkpoint.cid}/state/layer_1/shard_1.zarr`, 0)
      await until(() => checkpoint.manifest.files.every(f => store.hasChunk(f.chunks[0]?.cid as string)))
      expect(counting.asked.length).toBe(40)
      // those beside the opened file went first
      expect(counting.asked.slice(0, 10).map(cid => checkpoint.manifest.files.find(f => f.chunks[0]?.cid === cid)?.path.split('/')[1])).toEqual(Array.from({ length: 10 }, () => 'layer_1'))
      expect(new Set(arrivals)).toEqual(new Set(checkpoint.manifest.files.map(f => `/by-cid/${checkpoint.cid}/${f.path}`)))
      stop()
      const out = Buffer.alloc(8192)
      const n = await view.read(handle, out, 0)
      expect(out.subarray(0, n).equals(files['state/layer_1/shard_1.zarr'] as Buffer)).toBe(true)
      await view.release(handle)
    })

    it('takes a model evicted while open back and goes on reading', async () => {
      // no lease, as if the model were evicted anyway
      makeView({ leaseOpenFiles: false })
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const handle = await view.open(path, 0)
      const first = Buffer.alloc(1000)
      await view.read(handle, first, 0)
      await store.remove(model.cid)
      expect(store.getManifest(model.cid)).toBeUndefined()
      const again = Buffer.alloc(1000)
      expect(await view.read(handle, again, 0)).toBe(1000)
      expect(again.equals(model.files.get('weights/extra.bin')?.subarray(0, 1000) as Buffer)).toBe(true)
      expect(store.getManifest(model.cid)).toBeDefined()
      await view.release(handle)
    })

    it('reads stay right when the model is evicted and added back by someone else while open', async () => {
      makeView({ leaseOpenFiles: false })
      const path = `/by-cid/${model.cid}/weights/extra.bin`
      const original = model.files.get('weights/extra.bin') as Buffer
      const handle = await view.open(path, 0)
      const piece = Buffer.alloc(64 * 1024)
      await view.read(handle, piece, 0)
      await store.remove(model.cid)
      await store.addManifest(model.cid, model.manifest)
      await new Promise(resolve => setTimeout(resolve, 150))
      for (const at of [0, 64 * 1024, 3 * MiB]) {
        const out = Buffer.alloc(64 * 1024)
        expect(await view.read(handle, out, at)).toBe(out.length)
        expect(out.equals(original.subarray(at, at + out.length)), `at ${at}`).toBe(true)
      }
      // the new content file has what was read since
      expect((await store.read(model.cid, 'weights/extra.bin', 3 * MiB, 1000)).equals(original.subarray(3 * MiB, 3 * MiB + 1000))).toBe(true)
      await view.release(handle)
    })

    it('content another held model already has is copied locally, not fetched', async () => {
      makeView()
      // pull the whole model
      for (const [cid, bytes] of model.chunks) await store.putChunk(cid, bytes)
      const other = makeModel({ 'renamed.bin': model.files.get('weights/extra.bin') as Buffer, 'new.txt': Buffer.from('new\n') })
      await store.addManifest(other.cid, other.manifest)
      const bytes = await readAll(view, `/by-cid/${other.cid}/renamed.bin`)
      expect(bytes.equals(model.files.get('weights/extra.bin') as Buffer)).toBe(true)
      expect(source.asked).toEqual([])
    })
  })

  describe('reads from verified bytes in memory', () => {
    const path = (): string => `/by-cid/${model.cid}/weights/extra.bin`
    const original = (): Buffer => model.files.get('weights/extra.bin') as Buffer

    beforeEach(async () => {
      await store.addManifest(model.cid, model.manifest, { ref: 'llama:latest' })
    })

    /**
     * The store on a disk that is slow to write: bytes are verified at once (the store's own
     * check, with `onVerified` after it, as `putChunk` does), then written once the test lets them.
     */
    function slowDisk (): { store: Store, writeAll(): void } {
      let open!: () => void
      const gate = new Promise<void>(resolve => { open = resolve })
      const putChunk: Store['putChunk'] = async (cid, bytes, options = {}) => {
        if (!verifyChunk(cid, bytes)) return await store.putChunk(cid, bytes, options)
        options.onVerified?.()
        await gate
        return await store.putChunk(cid, bytes, { ...options, onVerified: undefined })
      }
      const slow = new Proxy(store, {
        get (target, property) {
          if (property === 'putChunk') return putChunk
          const value: unknown = Reflect.get(target, property, target)
          return typeof value === 'function' ? value.bind(target) : value
        }
      })
      return { store: slow, writeAll: open }
    }

    it('a read waiting for a chunk is answered from its verified bytes before the store has written them, and so is the next', async () => {
      const disk = slowDisk()
      makeView({ fetcher: fetcher({ store: disk.store, sources: [source], landing: (cid, bytes) => view.landing(cid, bytes) }) })
      const chunks = model.manifest.files.find(f => f.path === 'weights/extra.bin')?.chunks ?? []
      const second = chunks[1]
      if (second == null) throw new Error('expected several chunks')
      const handle = await view.open(path(), 0)
      const first = Buffer.alloc(4096)
      expect(await view.read(handle, first, second.offset + 10)).toBe(4096)
      expect(first.equals(original().subarray(second.offset + 10, second.offset + 10 + 4096))).toBe(true)
      expect(store.hasChunk(second.cid)).toBe(false)
      // the chunk is still on its way to disk: a later read has it from memory too, without a fetch
      const next = Buffer.alloc(8192)
      expect(await view.read(handle, next, second.offset + 100_000)).toBe(8192)
      expect(next.equals(original().subarray(second.offset + 100_000, second.offset + 108_192))).toBe(true)
      expect(source.asked).toEqual([second.cid])
      expect(view.stats().readsFromMemory).toBe(2)
      disk.writeAll()
      await until(() => store.hasChunk(second.cid))
      // in the store now: read from there
      const stored = Buffer.alloc(4096)
      expect(await view.read(handle, stored, second.offset + 10)).toBe(4096)
      expect(stored.equals(first)).toBe(true)
      expect(view.stats().readsFromMemory).toBe(2)
      expect(source.asked).toEqual([second.cid])
      await view.release(handle)
    })

    it('a read across a chunk in the store and one landing takes each from where it is', async () => {
      const disk = slowDisk()
      makeView({ fetcher: fetcher({ store: disk.store, sources: [source], landing: (cid, bytes) => view.landing(cid, bytes) }) })
      const chunks = model.manifest.files.find(f => f.path === 'weights/extra.bin')?.chunks ?? []
      const [a, b] = chunks
      if (a == null || b == null) throw new Error('expected several chunks')
      await store.putChunk(a.cid, model.chunks.get(a.cid) as Uint8Array)
      const handle = await view.open(path(), 0)
      const across = Buffer.alloc(3000)
      expect(await view.read(handle, across, b.offset - 1000)).toBe(3000)
      expect(across.equals(original().subarray(b.offset - 1000, b.offset + 2000))).toBe(true)
      expect(store.hasChunk(b.cid)).toBe(false)
      disk.writeAll()
      await view.release(handle)
    })

    it('prefetched chunks are read from memory while they are written, and the whole file reads back identical', async () => {
      const disk = slowDisk()
      makeView({ fetcher: fetcher({ store: disk.store, sources: [source], landing: (cid, bytes) => view.landing(cid, bytes) }), readAhead: { initialBytes: 8 * MiB, maxBytes: 8 * MiB } })
      const handle = await view.open(path(), 0)
      const out = Buffer.alloc(original().length)
      // every chunk is prefetched and lands; none is written until the end
      for (let at = 0; at < out.length; at += READ) {
        expect(await view.read(handle, out.subarray(at, Math.min(out.length, at + READ)), at)).toBe(Math.min(READ, out.length - at))
      }
      expect(out.equals(original())).toBe(true)
      expect(view.stats().readsFromMemory).toBe(Math.ceil(out.length / READ))
      disk.writeAll()
      await until(() => view.stats().prefetch.inflight === 0)
      await view.release(handle)
      expect((await readAll(view, path())).equals(original())).toBe(true)
    })

    it('a read that failed is not written into when a chunk it waited for lands later', async () => {
      const chunks = model.manifest.files.find(f => f.path === 'weights/extra.bin')?.chunks ?? []
      const [a, b] = chunks
      if (a == null || b == null) throw new Error('expected several chunks')
      // a is lost; b comes, slowly
      const slowB: CountingSource = {
        ...memorySource(model),
        async fetch (request) {
          if (request.cid === a.cid) throw new Error('lost')
          await new Promise(resolve => setTimeout(resolve, 200))
          return model.chunks.get(request.cid) as Uint8Array
        }
      }
      makeView({ fetcher: fetcher({ store, sources: [slowB], landing: (cid, bytes) => view.landing(cid, bytes) }) })
      const handle = await view.open(path(), 0)
      const buffer = Buffer.alloc(4096)
      await expect(view.read(handle, buffer, b.offset - 2048)).rejects.toThrow(ChunkUnavailableError)
      await until(() => store.hasChunk(b.cid))
      expect(buffer.every(byte => byte === 0)).toBe(true)
      await view.release(handle)
    })

    it('bytes from a source that lies never reach a reader: only verified bytes land', async () => {
      const liar: CountingSource = {
        ...memorySource(model, 'liar'),
        async fetch (request) {
          liar.asked.push(request.cid)
          const bytes = Buffer.from(model.chunks.get(request.cid) as Uint8Array)
          bytes[bytes.length >> 1] ^= 0xff
          return bytes
        }
      }
      const landed: Array<{ cid: string, right: boolean }> = []
      const spy = {
        landing (cid: string, bytes: Uint8Array) {
          landed.push({ cid, right: Buffer.from(bytes).equals(model.chunks.get(cid) as Uint8Array) })
          return view.landing(cid, bytes)
        }
      }
      // the liar alone: reads fail, nothing lands
      makeView({ fetcher: fetcher({ store, sources: [liar], landing: (cid, bytes) => spy.landing(cid, bytes) }), readAhead: { initialBytes: 4 * MiB, maxBytes: 4 * MiB } })
      const handle = await view.open(path(), 0)
      await expect(view.read(handle, Buffer.alloc(4096), 0)).rejects.toThrow(ChunkUnavailableError)
      expect(landed).toEqual([])
      await view.release(handle)
      await view.close()
      // the liar first, an honest source after: every byte read is right, and only right bytes landed
      makeView({ fetcher: fetcher({ store, sources: [liar, source], landing: (cid, bytes) => spy.landing(cid, bytes) }), readAhead: { initialBytes: 4 * MiB, maxBytes: 4 * MiB } })
      expect((await readAll(view, path())).equals(original())).toBe(true)
      expect(landed.length).toBeGreaterThan(0)
      expect(landed.every(l => l.right)).toBe(true)
      expect(liar.asked.length).toBeGreaterThan(0)
    })
  })

  describe('names not held', () => {
    it('resolves a name at the resolver, adds the manifest on lookup and pulls nothing', async () => {
      const resolver = resolverFor(store, [model], [{ name: 'remote', tag: 'latest', cid: model.cid }, { name: 'org/remote', tag: 'v3', cid: model.cid }])
      makeView({ resolver })
      expect(await view.readdir('/')).toEqual(['by-cid', 'org', 'remote'])
      expect(await view.readlink('/remote')).toBe(`by-cid/${model.cid}`)
      expect(store.getManifest(model.cid)).toBeUndefined()
      expect((await view.readdir(`/by-cid/${model.cid}`)).sort()).toEqual(['config.json', 'model.safetensors', 'weights'])
      expect(resolver.added).toEqual([model.cid])
      expect(store.models().find(m => m.manifestCid === model.cid)?.refs).toEqual(['remote:latest'])
      expect(source.asked).toEqual([])
      const bytes = await readAll(view, `/by-cid/${model.cid}/config.json`)
      expect(bytes.equals(model.files.get('config.json') as Buffer)).toBe(true)
    })

    it('asks the resolver for a name nobody listed, and remembers a miss for a while', async () => {
      const resolver = resolverFor(store, [model], [])
      resolver.listRefs = async () => []
      const refs: RefEntry[] = []
      resolver.resolveRef = async (ref: ModelRef) => {
        resolver.resolves.push(formatRef(ref))
        const entry = refs.find(r => r.name === ref.name && r.tag === ref.tag)
        if (entry == null) throw new NotFoundError('no such ref')
        return entry.cid
      }
      makeView({ resolver, negativeTtlMs: 200 })
      await expect(view.getattr('/late@v1')).rejects.toBeInstanceOf(NotFoundError)
      await expect(view.getattr('/late@v1')).rejects.toBeInstanceOf(NotFoundError)
      expect(resolver.resolves).toEqual(['late:v1'])
      refs.push({ name: 'late', tag: 'v1', cid: model.cid })
      await new Promise(resolve => setTimeout(resolve, 250))
      expect(await view.readlink('/late@v1')).toBe(`by-cid/${model.cid}`)
      expect(resolver.resolves).toEqual(['late:v1', 'late:v1'])
      await expect(view.getattr('/by-cid/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')).rejects.toBeInstanceOf(NotFoundError)
    })
  })

  describe('prefetch', () => {
    it('a sequential reader has chunks fetched ahead of it', async () => {
      const big = makeModel({ 'big.bin': bytesFor('big', 24 * MiB) })
      source = memorySource(big)
      await store.addManifest(big.cid, big.manifest)
      makeView({ readAhead: { initialBytes: 2 * MiB, maxBytes: 8 * MiB } })
      const path = `/by-cid/${big.cid}/big.bin`
      const handle = await view.open(path, 0)
      const buffer = Buffer.alloc(READ)
      for (let at = 0; at < 4 * MiB; at += READ) await view.read(handle, buffer, at)
      await until(() => view.stats().prefetch.inflight === 0)
      const chunks = big.manifest.files[0]?.chunks ?? []
      const ahead = chunks.filter(c => c.offset >= 4 * MiB && store.hasChunk(c.cid))
      expect(ahead.length).toBeGreaterThanOrEqual(2)
      // bounded by the window: the far end of the file is untouched
      expect(store.hasChunk(chunks[chunks.length - 1]?.cid as string)).toBe(false)
      expect(view.stats().prefetch.chunks).toBeGreaterThanOrEqual(2)
      await view.release(handle)
    })

    it('safetensors: the header is fetched on open; the last tensor alone costs that tensor, the header and one window', async () => {
      const shape = { layers: 4, hidden: 512, intermediate: 1536, vocab: 8192 }
      const st = makeModel({ 'model.safetensors': safetensorsBytes('st', shape) }, 1 * MiB)
      source = memorySource(st)
      await store.addManifest(st.cid, st.manifest)
      const window = 2 * MiB
      makeView({ readAhead: { initialBytes: window, maxBytes: window } })
      const entry = st.manifest.files[0]
      if (entry?.tensors == null) throw new Error('no tensor table')
      const handle = await view.open(`/by-cid/${st.cid}/model.safetensors`, 0)
      const header = entry.chunks[0]
      await until(() => store.hasChunk(header?.cid as string))
      const last = entry.tensors[entry.tensors.length - 1]
      if (last == null) throw new Error('no tensors')
      const bytes = Buffer.alloc(last.end - last.start)
      for (let at = 0; at < bytes.length; at += READ) await view.read(handle, bytes.subarray(at, Math.min(bytes.length, at + READ)), last.start + at)
      await until(() => view.stats().prefetch.inflight === 0)
      expect(bytes.equals(st.files.get('model.safetensors')?.subarray(last.start, last.end) as Buffer)).toBe(true)
      const tensorChunks = entry.chunks.filter(c => c.offset < last.end && c.offset + c.size > last.start)
      const tensorBytes = tensorChunks.reduce((sum, c) => sum + c.size, 0)
      const fileBytes = entry.size
      expect(source.bytes).toBeGreaterThanOrEqual(tensorBytes)
      expect(source.bytes).toBeLessThanOrEqual(tensorBytes + (header?.size ?? 0) + window + 1 * MiB)
      expect(source.bytes).toBeLessThan(fileBytes / 2)
      await view.release(handle)
    })

    it('scattered page-sized reads switch the file to whole-file prefetch', async () => {
      const big = makeModel({ 'big.bin': bytesFor('scatter', 16 * MiB) })
      source = memorySource(big)
      await store.addManifest(big.cid, big.manifest)
      makeView({ readAhead: { initialBytes: 1 * MiB, maxBytes: 4 * MiB, randomReadsForWholeFile: 3 } })
      const handle = await view.open(`/by-cid/${big.cid}/big.bin`, 0)
      const page = Buffer.alloc(4096)
      for (const at of [13 * MiB, 2 * MiB, 9 * MiB + 4096]) await view.read(handle, page, at)
      expect(view.stats().prefetch.wholeFile).toBe(1)
      const chunks = big.manifest.files[0]?.chunks ?? []
      await until(() => chunks.every(c => store.hasChunk(c.cid)))
      expect(new Set(source.asked).size).toBe(chunks.length)
      // and the file is then read straight from the store
      expect((await readAll(view, `/by-cid/${big.cid}/big.bin`, 1 * MiB)).equals(big.files.get('big.bin') as Buffer)).toBe(true)
      await view.release(handle)
    })
  })
})
