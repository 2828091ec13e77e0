import { getEventListeners } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { ChunkUnavailableError } from '@swarm/interface'
import { createStore } from '@swarm/store'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { SourceTimeoutError, fetcher, originSource } from '../src/index.js'
import { lyingCopy, randomModel } from './model.js'
import type { Fetcher } from '../src/index.js'
import type { Model } from './model.js'
import type { ChunkRequest, ChunkSource, ChunkStore, Origin } from '@swarm/interface'

const CHUNK = 256 * 1024

function makeModel (chunkCount: number): Model {
  return randomModel(chunkCount, CHUNK, 1024 * 1024)
}

/** A source with programmable behaviour, counting what it was asked. */
function source (name: string, model: Model, behaviour: { delayMs?: number, lie?: boolean, silent?: boolean, fail?: boolean } = {}): ChunkSource & { calls: number, aborted: number } {
  const s = {
    name,
    kind: name === 'origin' ? 'origin' as const : 'peer' as const,
    calls: 0,
    aborted: 0,
    async fetch ({ cid }: ChunkRequest, { signal }: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
      s.calls++
      await new Promise<void>((resolve, reject) => {
        if (behaviour.silent !== true) setTimeout(resolve, behaviour.delayMs ?? 0)
        signal?.addEventListener('abort', () => { s.aborted++; reject(signal.reason) }, { once: true })
      })
      if (behaviour.fail === true) throw new Error(`${name} is down`)
      const bytes = model.chunks.get(cid)
      if (bytes == null) throw new Error('unknown chunk')
      return behaviour.lie === true ? lyingCopy(bytes) : bytes
    }
  }
  return s
}

/** Every missing chunk of a held model, one fetch each (whole pulls are `@swarm/pull`'s, tested there). */
async function fetchAll (f: Fetcher, store: ChunkStore, manifestCid: string): Promise<void> {
  for (const request of store.missingChunks(manifestCid)) await f.fetch(request)
}

describe('fetcher', () => {
  let dir: string
  let store: ChunkStore

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fetcher-'))
    store = await createStore({ dir })
  })

  afterEach(async () => {
    await store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('fetches every chunk, verified, and says where each came from', async () => {
    const model = makeModel(8)
    await store.addManifest(model.cid, model.manifest)
    const origin = source('origin', model)
    const f = fetcher({ store, sources: [origin] })
    const results = []
    for (const request of store.missingChunks(model.cid)) results.push(await f.fetch(request))
    expect(results.map(r => [r.kind, r.bytes])).toEqual(new Array(8).fill(['origin', CHUNK]))
    expect(store.missingChunks(model.cid)).toEqual([])
    // present now: a fetch is a no-op
    expect(await f.fetch({ cid: [...model.chunks.keys()][0] as string, size: CHUNK })).toEqual({ source: 'local', kind: 'local', bytes: 0 })
    const all = await store.read(model.cid, 'weights.bin', 0, 8 * CHUNK)
    expect(Buffer.compare(Buffer.from(all), Buffer.concat([...model.chunks.values()]))).toBe(0)
  })

  it('never stores bytes from a lying source, reports it, and takes the next source', async () => {
    const model = makeModel(4)
    await store.addManifest(model.cid, model.manifest)
    const liar = source('peer:liar', model, { lie: true })
    const origin = source('origin', model)
    const bad: string[] = []
    await fetchAll(fetcher({ store, sources: [liar, origin], onBadSource: s => bad.push(s.name) }), store, model.cid)
    expect(bad).toEqual(['peer:liar', 'peer:liar', 'peer:liar', 'peer:liar'])
    for (const [cid, bytes] of model.chunks) {
      expect(Buffer.compare(Buffer.from(await store.readChunk(cid)), Buffer.from(bytes))).toBe(0)
    }
  })

  it('hedges a silent source and aborts the loser', async () => {
    const model = makeModel(1)
    await store.addManifest(model.cid, model.manifest)
    const silent = source('peer:silent', model, { silent: true })
    const origin = source('origin', model)
    const started = performance.now()
    const [request] = store.missingChunks(model.cid)
    const result = await fetcher({ store, sources: [silent, origin], hedgeAfterMs: 50 }).fetch(request as ChunkRequest)
    expect(result.source).toBe('origin')
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(silent.aborted).toBe(1)
  })

  it('gives up on a source silent past the source timeout, as a timeout, and takes the next source', async () => {
    const model = makeModel(2)
    await store.addManifest(model.cid, model.manifest)
    const [first, second] = store.missingChunks(model.cid) as [ChunkRequest, ChunkRequest]
    // no hedge before the timeout: only the deadline moves the fetch on
    const silent = source('peer:silent', model, { silent: true })
    const origin = source('origin', model)
    const result = await fetcher({ store, sources: [silent, origin], hedgeAfterMs: 60_000, sourceTimeoutMs: 100 }).fetch(first)
    expect(result.source).toBe('origin')
    expect(silent.aborted).toBe(1)
    // with nothing after it, the timeout is the cause the caller reads
    const err = await fetcher({ store, sources: [silent], hedgeAfterMs: 60_000, sourceTimeoutMs: 100 }).fetch(second).catch((e: Error) => e)
    expect(err).toBeInstanceOf(ChunkUnavailableError)
    expect((err as ChunkUnavailableError).causes.map(c => c.error)).toEqual([expect.any(SourceTimeoutError)])
    expect(store.missingChunks(model.cid)).toEqual([second])
  })

  it('shares one fetch between concurrent requests for the same chunk', async () => {
    const model = makeModel(1)
    await store.addManifest(model.cid, model.manifest)
    const origin = source('origin', model, { delayMs: 30 })
    const f = fetcher({ store, sources: [origin] })
    const [request] = store.missingChunks(model.cid)
    await Promise.all(Array.from({ length: 10 }, async () => await f.fetch(request as ChunkRequest)))
    expect(origin.calls).toBe(1)
  })

  it('one waiter aborting does not abort the fetch others still wait for', async () => {
    const model = makeModel(1)
    await store.addManifest(model.cid, model.manifest)
    const origin = source('origin', model, { delayMs: 100 })
    const f = fetcher({ store, sources: [origin] })
    const [request] = store.missingChunks(model.cid) as ChunkRequest[]
    const quitter = new AbortController()
    const first = f.fetch(request as ChunkRequest, { signal: quitter.signal })
    const second = f.fetch(request as ChunkRequest)
    quitter.abort()
    await expect(first).rejects.toThrow(/abort/i)
    await expect(second).resolves.toMatchObject({ source: 'origin' })
    expect(origin.aborted).toBe(0)
    expect(store.hasChunk(request.cid)).toBe(true)
  })

  it('fetches in flight add no abort listener to the caller\'s signal, and its abort still ends each one', async () => {
    const model = makeModel(24)
    await store.addManifest(model.cid, model.manifest)
    const silent = source('origin', model, { silent: true })
    const f = fetcher({ store, sources: [silent], hedgeAfterMs: 60_000 })
    // one signal for many fetches, as a pull or a mount passes it
    const controller = new AbortController()
    const pending = store.missingChunks(model.cid).map(async request => await f.fetch(request, { signal: controller.signal }))
    await new Promise(resolve => setTimeout(resolve, 20))
    expect(silent.calls).toBe(24)
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
    controller.abort()
    for (const fetch of pending) await expect(fetch).rejects.toThrow(/abort/i)
    // the last waiter gone, each shared fetch was aborted at its source
    expect(silent.aborted).toBe(24)
  })

  it('fails with every cause when no source can deliver', async () => {
    const model = makeModel(1)
    await store.addManifest(model.cid, model.manifest)
    const err = await fetchAll(fetcher({ store, sources: [source('peer:a', model, { fail: true }), source('origin', model, { lie: true })] }), store, model.cid).catch(e => e)
    expect(err).toBeInstanceOf(ChunkUnavailableError)
    expect(err.message).toMatch(/peer:a: peer:a is down/)
    expect(err.message).toMatch(/origin: .*failed verification/)
    expect(store.missingChunks(model.cid)).toHaveLength(1)
  })

  it('gives bytes back to their source only once the store is done with them, stored or refused', async () => {
    const model = makeModel(2)
    await store.addManifest(model.cid, model.manifest)
    const [first, second] = [...model.chunks.keys()] as [string, string]
    const settled = new Set<Uint8Array>()
    // the store as the fetcher sees it, noting which bytes putChunk is done with
    const watched = {
      hasChunk: (cid: string) => store.hasChunk(cid),
      putChunk: async (cid: string, bytes: Uint8Array, options?: { signal?: AbortSignal }) => {
        try {
          return await store.putChunk(cid, bytes, options)
        } finally {
          settled.add(bytes)
        }
      }
    } as unknown as ChunkStore
    const releases: Array<{ source: string, bytes: Uint8Array, afterPut: boolean }> = []
    const releasing = (s: ChunkSource): ChunkSource => ({ ...s, fetch: s.fetch.bind(s), release: bytes => { releases.push({ source: s.name, bytes, afterPut: settled.has(bytes) }) } })
    const liar = releasing(source('peer:liar', model, { lie: true }))
    const honest = releasing(source('peer:honest', model))
    const f = fetcher({ store: watched, sources: [liar, honest] })

    await f.fetch({ cid: first, size: CHUNK })
    await f.fetch({ cid: second, size: CHUNK })

    expect(releases.map(r => r.source)).toEqual(['peer:liar', 'peer:honest', 'peer:liar', 'peer:honest'])
    expect(releases.every(r => r.afterPut)).toBe(true)
    expect(new Set(releases.map(r => r.bytes)).size).toBe(4)
    expect(store.hasChunk(first) && store.hasChunk(second)).toBe(true)
  })

  it('lends a chunk\'s bytes to `landing` only once they have matched the CID, and takes them back before their source does', async () => {
    const model = makeModel(2)
    await store.addManifest(model.cid, model.manifest)
    const events: string[] = []
    const releasing = (s: ChunkSource): ChunkSource => ({ ...s, fetch: s.fetch.bind(s), release: () => { events.push(`release ${s.name}`) } })
    const liar = releasing(source('peer:liar', model, { lie: true }))
    const honest = releasing(source('peer:honest', model))
    const f = fetcher({
      store,
      sources: [liar, honest],
      landing (cid, bytes) {
        events.push(`landing ${Buffer.from(bytes).equals(model.chunks.get(cid) as Uint8Array) ? 'right' : 'wrong'} ${store.hasChunk(cid) ? 'stored' : 'unstored'}`)
        return () => { events.push(`settled ${store.hasChunk(cid) ? 'stored' : 'unstored'}`) }
      }
    })
    await fetchAll(f, store, model.cid)
    // the liar's bytes are refused before anything is lent; the honest copy is lent before it is
    // written, taken back once stored, and only then given back to its source
    expect(events).toEqual(new Array(2).fill(['release peer:liar', 'landing right unstored', 'settled stored', 'release peer:honest']).flat())
  })

  it('gives back bytes that arrive after the fetch was abandoned', async () => {
    const model = makeModel(1)
    await store.addManifest(model.cid, model.manifest)
    const [cid] = [...model.chunks.keys()] as [string]
    const released: Uint8Array[] = []
    let deliver!: () => void
    const late: ChunkSource = {
      name: 'peer:late',
      kind: 'peer',
      // ignores the abort, as a source whose bytes are already on their way may
      fetch: async () => { await new Promise<void>(resolve => { deliver = resolve }); return model.chunks.get(cid) as Uint8Array },
      release: bytes => { released.push(bytes) }
    }
    const controller = new AbortController()
    const fetching = fetcher({ store, sources: [late] }).fetch({ cid, size: CHUNK }, { signal: controller.signal })
    await new Promise(resolve => setTimeout(resolve, 10))
    controller.abort()
    await expect(fetching).rejects.toThrow()
    deliver()
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(released).toEqual([model.chunks.get(cid)])
    expect(store.hasChunk(cid)).toBe(false)
  })

  it('gives the origin back its bytes once they are stored', async () => {
    const model = makeModel(2)
    await store.addManifest(model.cid, model.manifest)
    const released: Array<{ bytes: Uint8Array, stored: boolean }> = []
    const origin = {
      url: 'memory://',
      getChunk: async (cid: string) => Uint8Array.from(model.chunks.get(cid) as Uint8Array),
      release: (bytes: Uint8Array) => { released.push({ bytes, stored: store.hasChunk(cidForBytes(bytes)) }) }
    } as unknown as Origin
    await fetchAll(fetcher({ store, sources: [originSource(origin)] }), store, model.cid)
    expect(released).toHaveLength(2)
    expect(released.every(r => r.stored)).toBe(true)
    expect(new Set(released.map(r => r.bytes)).size).toBe(2)
    // an origin without release is fine too
    const plain = { url: 'memory://', getChunk: origin.getChunk } as unknown as Origin
    expect(() => { originSource(plain).release?.(new Uint8Array(1)) }).not.toThrow()
  })
})

describe('originSource', () => {
  const origin = {
    url: 'test://origin',
    getChunk: async () => new Uint8Array(0),
    hasChunk: async () => false,
    putChunk: async () => {},
    async * listChunks () {}
  }

  it('describes an origin to byte workers unless it cannot be opened again elsewhere', () => {
    expect(originSource(origin).remote).toEqual({ kind: 'origin' })
    expect(originSource({ ...origin, reopenable: true }).remote).toEqual({ kind: 'origin' })
    expect(originSource({ ...origin, reopenable: false }).remote).toBeUndefined()
    // one that can say where its chunks lie is read in a worker too, told where each lies
    expect(originSource({ ...origin, reopenable: false, chunkLocation: () => undefined }).remote).toEqual({ kind: 'origin' })
  })
})
