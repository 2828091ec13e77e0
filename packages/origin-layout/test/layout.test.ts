import { InvalidRefError, NotFoundError } from '@swarm/interface'
import { originConformanceTests, randomChunk } from '@swarm/origin-conformance'
import { describe, expect, it } from 'vitest'
import { ObjectStoreOrigin } from '../src/index.js'
import type { ObjectPut } from '../src/index.js'
import type { AbortOptions, BufferPool } from '@swarm/interface'

const JSON_CODEC = 0x0200

interface StoredObject {
  bytes: Uint8Array
  contentType: string
}

/** The smallest object store: flat names in a map, listed three names a page. */
class MemoryOrigin extends ObjectStoreOrigin {
  readonly objects = new Map<string, StoredObject>()

  /** the pool each getObject was given, in order */
  readonly poolsGiven: Array<BufferPool | undefined> = []
  closedStore = 0

  constructor (prefix?: string, pooledChunks?: boolean) {
    super({ url: 'memory://objects', ...(prefix !== undefined ? { prefix } : {}), ...(pooledChunks !== undefined ? { pooledChunks } : {}) })
  }

  protected override async closeStore (): Promise<void> {
    this.closedStore++
  }

  protected async getObject (name: string, what: string, { signal }: AbortOptions, pool?: BufferPool): Promise<Uint8Array> {
    signal?.throwIfAborted()
    this.poolsGiven.push(pool)
    const object = this.objects.get(name)
    if (object === undefined) throw new NotFoundError(`${what} not found at ${this.url}`)
    if (pool === undefined) return object.bytes.slice()
    const into = pool.take(object.bytes.byteLength)
    into.set(object.bytes)
    return into
  }

  protected async hasObject (name: string, { signal }: AbortOptions): Promise<boolean> {
    signal?.throwIfAborted()
    return this.objects.has(name)
  }

  protected async putObject (name: string, bytes: Uint8Array, { contentType, contentAddressed }: ObjectPut, { signal }: AbortOptions): Promise<void> {
    signal?.throwIfAborted()
    if (contentAddressed && this.objects.has(name)) return
    this.objects.set(name, { bytes: bytes.slice(), contentType })
  }

  protected async * listNames (prefix: string, _nested: boolean, { signal }: AbortOptions): AsyncIterable<string[]> {
    signal?.throwIfAborted()
    const names = [...this.objects.keys()].filter(name => name.startsWith(prefix))
    for (let i = 0; i < names.length; i += 3) yield names.slice(i, i + 3)
  }
}

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

originConformanceTests('ObjectStoreOrigin (in memory)', async () => {
  const origin = new MemoryOrigin('models/')
  return { origin, teardown: async () => { await origin.close() } }
})

describe('ObjectStoreOrigin', () => {
  it('names objects chunks/, manifests/ and refs/ under the prefix, with their content types', async () => {
    const origin = new MemoryOrigin('team/prod/')
    const chunk = randomChunk(32)
    const manifest = randomChunk(32, JSON_CODEC)
    await origin.putChunk(chunk.cid, chunk.bytes)
    await origin.putManifest(manifest.cid, manifest.bytes)
    await origin.putRef({ name: 'org/model', tag: 'v1' }, manifest.cid)
    expect([...origin.objects].map(([name, { contentType }]) => [name, contentType])).toEqual([
      [`team/prod/chunks/${chunk.cid}`, 'application/octet-stream'],
      [`team/prod/manifests/${manifest.cid}`, 'application/json'],
      ['team/prod/refs/org/model/v1', 'text/plain']
    ])
    expect(new TextDecoder().decode(origin.objects.get('team/prod/refs/org/model/v1')?.bytes)).toBe(manifest.cid)
  })

  it('says what is missing, and where', async () => {
    const origin = new MemoryOrigin()
    const { cid } = randomChunk(8)
    await expect(origin.getChunk(cid)).rejects.toThrow(`chunk ${cid} not found at memory://objects`)
    await expect(origin.resolveRef({ name: 'org/model', tag: 'v1' })).rejects.toThrow('ref org/model:v1 not found at memory://objects')
  })

  it('lists past names that are no chunk or ref, and refs that hold no CID', async () => {
    const origin = new MemoryOrigin()
    const chunk = randomChunk(16)
    const { cid } = randomChunk(16, JSON_CODEC)
    await origin.putChunk(chunk.cid, chunk.bytes)
    await origin.putRef({ name: 'org/model', tag: 'v1' }, cid)
    await origin.putRef({ name: 'solo', tag: 'latest' }, cid)
    const text = (body: string): StoredObject => ({ bytes: new TextEncoder().encode(body), contentType: 'text/plain' })
    for (const name of ['chunks/not-a-cid', `chunks/nested/${chunk.cid}`, 'refs/no-tag', 'refs/Upper/v1', 'refs/org/model/.hidden']) origin.objects.set(name, text(cid))
    origin.objects.set('refs/damaged/v1', text('garbage'))
    await expect(origin.resolveRef({ name: 'damaged', tag: 'v1' })).rejects.toBeInstanceOf(InvalidRefError)
    expect(await collect(origin.listChunks())).toEqual([chunk.cid])
    expect(await collect(origin.listRefs())).toEqual([{ name: 'org/model', tag: 'v1', cid }, { name: 'solo', tag: 'latest', cid }])
  })

  it('reads chunks into pooled buffers only where asked, takes them back on release, and drops them when closed', async () => {
    const plain = new MemoryOrigin()
    // the pool lends buffers of 64 KiB and more
    const chunk = randomChunk(256 * 1024)
    await plain.putChunk(chunk.cid, chunk.bytes)
    await plain.getChunk(chunk.cid)
    expect(plain.poolsGiven).toEqual([undefined])

    const pooled = new MemoryOrigin(undefined, true)
    await pooled.putChunk(chunk.cid, chunk.bytes)
    const first = await pooled.getChunk(chunk.cid)
    expect(Buffer.compare(first, chunk.bytes)).toBe(0)
    pooled.release(first)
    const second = await pooled.getChunk(chunk.cid)
    expect(Buffer.compare(second, chunk.bytes)).toBe(0)
    // the released buffer is the one the next read was lent
    expect(second.buffer).toBe(first.buffer)
    // manifests and refs are never read into the pool
    const manifest = randomChunk(32, JSON_CODEC)
    await pooled.putManifest(manifest.cid, manifest.bytes)
    await pooled.getManifest(manifest.cid)
    expect(pooled.poolsGiven.at(-1)).toBeUndefined()

    pooled.release(second)
    await pooled.close()
    expect(pooled.closedStore).toBe(1)
    // once closed, the pool holds nothing: the next read gets a buffer of its own
    expect((await pooled.getChunk(chunk.cid)).buffer).not.toBe(second.buffer)
  })
})
