import { afterEach, describe, expect, it } from 'vitest'
import { BufferPool, dataClient, dataServer, peerSource } from '../src/index.js'
import { MemoryStore, identity, randomChunk, rogueServer, within } from './helpers.js'
import { shareBufferPoolMemory } from '@swarm/interface'
import type { AbortOptions, ReadChunkOptions } from '@swarm/interface'
import type { TLSSocket } from 'node:tls'

const MiB = 1024 * 1024
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

describe('buffer pool', () => {
  it('lends buffers of the size asked for and lends given-back memory again', () => {
    const pool = new BufferPool()
    const first = pool.take(MiB + 5)
    expect(first.byteLength).toBe(MiB + 5)
    pool.give(first)
    expect(pool.retainedBytes).toBeGreaterThanOrEqual(MiB + 5)
    const second = pool.take(MiB + 5)
    expect(second.buffer).toBe(first.buffer)
    expect(pool.retainedBytes).toBe(0)
    // a size of the same class shares the memory too
    pool.give(second)
    expect(pool.take(MiB + 100).buffer).toBe(first.buffer)
  })

  it('ignores a second give, so memory is never lent to two holders', () => {
    const pool = new BufferPool()
    const stale = pool.take(MiB)
    pool.give(stale)
    const current = pool.take(MiB)
    expect(current.buffer).toBe(stale.buffer)
    pool.give(stale) // a holder that gives back twice
    expect(pool.retainedBytes).toBe(0)
    expect(pool.take(MiB).buffer).not.toBe(current.buffer)
  })

  it('ignores buffers it did not lend, and views cut from lent ones', () => {
    const pool = new BufferPool()
    pool.give(Buffer.allocUnsafe(MiB))
    const lent = pool.take(MiB)
    pool.give(lent.subarray(0, 10))
    expect(pool.retainedBytes).toBe(0)
  })

  it('does not pool small buffers', () => {
    const pool = new BufferPool()
    const small = pool.take(100)
    expect(small.byteLength).toBe(100)
    pool.give(small)
    expect(pool.retainedBytes).toBe(0)
  })

  it('keeps at most maxFreeBytes, dropping other sizes first', () => {
    const pool = new BufferPool({ maxFreeBytes: 3 * MiB })
    const a = pool.take(MiB)
    const b = pool.take(2 * MiB)
    const c = pool.take(2 * MiB)
    pool.give(a)
    pool.give(b)
    expect(pool.retainedBytes).toBe(3 * MiB)
    pool.give(c) // no room: the 1 MiB buffer goes, the 2 MiB ones cannot both stay
    expect(pool.retainedBytes).toBe(2 * MiB)
    expect(pool.take(2 * MiB).buffer).toBe(b.buffer)
  })

  it('drops its free buffers once unused for idleMs', async () => {
    const pool = new BufferPool({ idleMs: 50 })
    pool.give(pool.take(MiB))
    expect(pool.retainedBytes).toBe(MiB)
    await within((async () => { while (pool.retainedBytes > 0) await new Promise(resolve => setTimeout(resolve, 10)) })(), 2000, 'the idle drop')
  })
})

/** A store that reads into the buffer the server supplies, the way the real store does. */
class AllocatingStore extends MemoryStore {
  readonly buffers: ArrayBufferLike[] = []

  override async readChunk (cid: string, options: ReadChunkOptions & AbortOptions = {}): Promise<Uint8Array> {
    const allocate = options.allocate
    if (allocate == null) return await super.readChunk(cid, options)
    return await super.readChunk(cid, {
      ...options,
      allocate: size => {
        const out = allocate(size)
        this.buffers.push(out.buffer)
        return out
      }
    })
  }
}

describe('payload memory', () => {
  async function setup (): Promise<{ store: AllocatingStore, peer: { peerId: string, host: string, port: number }, client: ReturnType<typeof dataClient> }> {
    const serverId = await identity()
    const store = new AllocatingStore()
    const server = dataServer({ privateKey: serverId.privateKey, store, isAdmitted: () => true })
    const { port } = await server.start()
    cleanups.push(async () => { await server.stop() })
    const client = dataClient({ privateKey: (await identity()).privateKey })
    cleanups.push(async () => { await client.close() })
    return { store, peer: { peerId: serverId.peerId, host: '127.0.0.1', port }, client }
  }

  it('reads the next response into the memory of released bytes, and never into unreleased ones', async () => {
    const { store, peer, client } = await setup()
    const chunks = await Promise.all([1, 2, 3].map(async () => await randomChunk(2 * MiB)))
    for (const { cid, bytes } of chunks) store.chunks.set(cid, bytes)
    const [a, b, c] = chunks as [typeof chunks[0], typeof chunks[0], typeof chunks[0]]

    const first = await client.fetch(peer, { cid: a.cid, size: a.bytes.length })
    expect(Buffer.compare(first, a.bytes)).toBe(0)
    client.release(first)
    const second = await client.fetch(peer, { cid: b.cid, size: b.bytes.length })
    expect(second.buffer).toBe(first.buffer)
    expect(Buffer.compare(second, b.bytes)).toBe(0)

    // `second` is still held: the next response must not land in it
    const third = await peerSource(client, peer).fetch({ cid: c.cid, size: c.bytes.length })
    expect(third.buffer).not.toBe(second.buffer)
    expect(Buffer.compare(second, b.bytes)).toBe(0)
    expect(Buffer.compare(third, c.bytes)).toBe(0)
  })

  it('lands responses in shared memory where pools are made shared, as in an agent\'s byte workers, reporting them as they land', async () => {
    shareBufferPoolMemory(true)
    let shared: Awaited<ReturnType<typeof setup>>
    try {
      shared = await setup()
    } finally {
      shareBufferPoolMemory(false)
    }
    const { store, peer, client } = shared
    const { cid, bytes } = await randomChunk(2 * MiB)
    store.chunks.set(cid, bytes)
    const reports: Uint8Array[] = []
    const got = await client.fetch(peer, { cid, size: bytes.length }, { onData: buffer => { reports.push(buffer) } })
    expect(got.buffer).toBeInstanceOf(SharedArrayBuffer)
    expect(Buffer.compare(got, bytes)).toBe(0)
    expect(reports.length).toBeGreaterThan(0)
    expect(reports.every(buffer => buffer === got)).toBe(true)
    // pools made after are this thread's own again
    expect(new BufferPool().take(MiB).buffer).toBeInstanceOf(ArrayBuffer)
    expect(new BufferPool({ shared: true }).take(MiB).buffer).toBeInstanceOf(SharedArrayBuffer)
  })

  it('serves chunks from read buffers it reuses once written', async () => {
    const { store, peer, client } = await setup()
    const chunks = await Promise.all([1, 2].map(async () => await randomChunk(MiB)))
    for (const { cid, bytes } of chunks) store.chunks.set(cid, bytes)

    for (const { cid, bytes } of chunks) {
      const got = await client.fetch(peer, { cid, size: bytes.length })
      expect(Buffer.compare(got, bytes)).toBe(0)
    }
    expect(store.buffers).toHaveLength(2)
    expect(store.buffers[1]).toBe(store.buffers[0])
  })
})

describe('reading responses in place', () => {
  /** A server with a valid certificate that answers the client's first two GETs with `write`. */
  async function scripted (write: (socket: TLSSocket, ids: number[]) => void): Promise<{ peer: { peerId: string, host: string, port: number } }> {
    const serverId = await identity()
    const server = await rogueServer(serverId.privateKey, socket => {
      const ids: number[] = []
      let pending = Buffer.alloc(0)
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk])
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
          ids.push(pending.readUInt32BE(5))
          pending = pending.subarray(4 + pending.readUInt32BE(0))
        }
        if (ids.length === 2) write(socket, ids)
      })
    })
    cleanups.push(async () => { await server.close() })
    return { peer: { peerId: serverId.peerId, host: '127.0.0.1', port: server.port } }
  }

  function response (id: number, payload: Uint8Array): Buffer {
    const frame = Buffer.alloc(9 + payload.length)
    frame.writeUInt32BE(5 + payload.length, 0)
    frame.writeUInt32BE(id, 4)
    frame[8] = 0
    frame.set(payload, 9)
    return frame
  }

  it('splits frames wherever the records split them', async () => {
    const one = await randomChunk(100_000)
    const two = await randomChunk(3)
    const { peer } = await scripted((socket, [first, second]) => {
      const a = response(first ?? 0, one.bytes)
      const b = response(second ?? 0, two.bytes)
      // the header a byte at a time, then the payload in odd pieces, the last one with all of the next frame
      for (let i = 0; i < 9; i++) socket.write(a.subarray(i, i + 1))
      socket.write(a.subarray(9, 20_000))
      socket.write(a.subarray(20_000, 60_001))
      socket.write(Buffer.concat([a.subarray(60_001), b]))
    })
    const client = dataClient({ privateKey: (await identity()).privateKey, connectionsPerPeer: 1 })
    cleanups.push(async () => { await client.close() })

    const [gotOne, gotTwo] = await within(Promise.all([
      client.fetch(peer, { cid: one.cid, size: one.bytes.length }),
      client.fetch(peer, { cid: two.cid, size: two.bytes.length })
    ]), 10_000, 'both responses')
    expect(Buffer.compare(gotOne, one.bytes)).toBe(0)
    expect(Buffer.compare(gotTwo, two.bytes)).toBe(0)
  })
})
