import {
  ClientClosedError, ConnectionClosedError, ConnectionFailedError, InvalidRequestError, PeerBusyError, RemoteError,
  RequestTimeoutError, ResponseTooLargeError, SMALL_ANSWER_LENGTH, dataClient, dataServer, peerSource
} from '../src/index.js'
import { AbortError, NotFoundError } from '@swarm/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryStore, cidOf, identity, randomChunk, rogueServer, within } from './helpers.js'
import type { DataClient, DataPeer, DataServer, DataServerInit } from '../src/index.js'
import type { Identity } from './helpers.js'

const MiB = 1024 * 1024
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function startServer (overrides: Partial<DataServerInit> = {}, admitted?: Set<string>): Promise<{ server: DataServer, store: MemoryStore, id: Identity, port: number }> {
  const id = await identity()
  const store = new MemoryStore()
  const server = dataServer({
    privateKey: id.privateKey,
    store,
    isAdmitted: peerId => admitted == null || admitted.has(peerId),
    ...overrides
  })
  const { port } = await server.start()
  cleanups.push(async () => { await server.stop() })
  return { server, store, id, port }
}

async function startClient (init: Partial<Parameters<typeof dataClient>[0]> = {}): Promise<{ client: DataClient, id: Identity }> {
  const id = await identity()
  const client = dataClient({ privateKey: id.privateKey, ...init })
  cleanups.push(async () => { await client.close() })
  return { client, id }
}

/** A client's fetch of a 1000-byte chunk whose read the server has begun and holds until `gate` is released. */
async function fetchHeldInRead (): Promise<{ server: DataServer, store: MemoryStore, gate: ReturnType<MemoryStore['gate']>, client: DataClient, peer: DataPeer, chunk: Awaited<ReturnType<typeof randomChunk>>, fetching: Promise<Uint8Array>, readSignal: AbortSignal | undefined }> {
  const { server, store, id, port } = await startServer()
  const chunk = await randomChunk(1000)
  store.chunks.set(chunk.cid, chunk.bytes)
  const gate = store.gate(chunk.cid)
  const { client } = await startClient()
  const peer = { peerId: id.peerId, host: '127.0.0.1', port }
  const fetching = client.fetch(peer, { cid: chunk.cid, size: 1000 })
  const readSignal = await within(gate.started, 5000, 'the read')
  return { server, store, gate, client, peer, chunk, fetching, readSignal }
}

/** A client asking for a 10-byte chunk from a server that answers as `answer` does, and when it asked. */
async function fetchFromRogue (answer: Parameters<typeof rogueServer>[1], requestTimeoutMs: number): Promise<{ client: DataClient, fetching: Promise<Uint8Array>, started: number }> {
  const rogueId = await identity()
  const rogue = await rogueServer(rogueId.privateKey, answer)
  cleanups.push(rogue.close)
  const { client } = await startClient({ requestTimeoutMs })
  const chunk = await randomChunk(10)
  const started = performance.now()
  const fetching = client.fetch({ peerId: rogueId.peerId, host: '127.0.0.1', port: rogue.port }, { cid: chunk.cid, size: 10 })
  return { client, fetching, started }
}

describe('data exchange', () => {
  it('moves many chunks byte-identical, many in flight, spread over the connection pool', async () => {
    const { server, store, id, port } = await startServer({ maxUploads: 16, maxUploadsPerPeer: 16 })
    const sizes = [0, 1, 1000, 16 * 1024, 16 * 1024 + 1, 100_000, MiB, 2 * MiB + 3, 64 * 1024, 300_000, 5, 3 * MiB]
    const chunks = await Promise.all(sizes.map(async size => await randomChunk(size)))
    for (const { cid, bytes } of chunks) store.chunks.set(cid, bytes)
    const { client } = await startClient({ connectionsPerPeer: 2, maxInflightPerConnection: 3 })
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }

    const results = await Promise.all(chunks.map(async ({ cid, bytes }) => await client.fetch(peer, { cid, size: bytes.length })))

    results.forEach((got, i) => { expect(Buffer.compare(got, chunks[i]!.bytes)).toBe(0) })
    expect(store.maxConcurrentReads).toBeGreaterThan(1)
    expect(client.stats.connectionsOpened).toBe(2)
    expect(server.stats.connections).toBe(2)
    expect(server.stats.requests).toBe(chunks.length)
    expect(server.stats.bytesServed).toBe(sizes.reduce((a, b) => a + b, 0))
    expect(server.stats.uploads).toBe(0)
  })

  it('serves a manifest by its CID, through a peer source', async () => {
    const { store, id, port } = await startServer()
    const manifest = new TextEncoder().encode(JSON.stringify({ version: 1, chunkSize: 4 * MiB, files: [] }))
    const cid = await cidOf(manifest)
    store.manifests.set(cid, manifest)
    const { client } = await startClient()
    const source = peerSource(client, { peerId: id.peerId, host: '127.0.0.1', port })

    expect(source.name).toBe(`peer:${id.peerId}`)
    expect(source.kind).toBe('peer')
    expect(Buffer.from(await source.fetch({ cid, size: manifest.length })).toString()).toBe(Buffer.from(manifest).toString())
  })

  it('answers NOT_FOUND for a CID it does not hold, and keeps the connection', async () => {
    const { server, store, id, port } = await startServer()
    const held = await randomChunk(1234)
    store.chunks.set(held.cid, held.bytes)
    const missing = await randomChunk(10)
    const { client } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }

    await expect(client.fetch(peer, { cid: missing.cid, size: 10 })).rejects.toBeInstanceOf(NotFoundError)
    expect(server.stats.notFound).toBe(1)
    expect(Buffer.compare(await client.fetch(peer, { cid: held.cid, size: held.bytes.length }), held.bytes)).toBe(0)
    expect(client.stats.connectionsOpened).toBe(1)
  })

  it('refuses to send a chunk larger than the size asked for', async () => {
    const { server, store, id, port } = await startServer()
    const chunk = await randomChunk(5000)
    store.chunks.set(chunk.cid, chunk.bytes)
    const { client } = await startClient()

    await expect(client.fetch({ peerId: id.peerId, host: '127.0.0.1', port }, { cid: chunk.cid, size: 4999 }))
      .rejects.toThrow(RemoteError)
    expect(server.stats.errors).toBe(1)
    expect(server.stats.bytesServed).toBe(0)
  })

  /** A server with one upload slot, taken by a fetch of a chunk of `firstSize` held at its read; a second chunk of `secondSize` is stored too. */
  async function oneSlotTaken (firstSize: number, secondSize: number): Promise<{ server: DataServer, store: MemoryStore, client: DataClient, peer: { peerId: string, host: string, port: number }, a: { cid: string, bytes: Uint8Array }, b: { cid: string, bytes: Uint8Array }, first: Promise<Uint8Array>, gate: { release: () => void } }> {
    const { server, store, id, port } = await startServer({ maxUploads: 1 })
    const a = await randomChunk(firstSize)
    const b = await randomChunk(secondSize)
    store.chunks.set(a.cid, a.bytes)
    store.chunks.set(b.cid, b.bytes)
    const gate = store.gate(a.cid)
    const { client } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }
    const first = client.fetch(peer, { cid: a.cid, size: a.bytes.length })
    await within(gate.started, 5000, 'the first read')
    return { server, store, client, peer, a, b, first, gate }
  }

  it('answers BUSY when every upload slot is taken', async () => {
    const { server, client, peer, a, b, first, gate } = await oneSlotTaken(SMALL_ANSWER_LENGTH + 1, SMALL_ANSWER_LENGTH + 1)
    await expect(client.fetch(peer, { cid: b.cid, size: b.bytes.length })).rejects.toBeInstanceOf(PeerBusyError)
    expect(server.stats.busy).toBe(1)
    gate.release()
    expect(Buffer.compare(await first, a.bytes)).toBe(0)
    // the slot is free again
    expect(Buffer.compare(await client.fetch(peer, { cid: b.cid, size: b.bytes.length }), b.bytes)).toBe(0)
  })

  it('answers a GET for a few bytes while every upload slot is taken, and refuses one that names a larger chunk before reading it', async () => {
    const { server, store, client, peer, a: big, b: small, first, gate } = await oneSlotTaken(SMALL_ANSWER_LENGTH + 1, SMALL_ANSWER_LENGTH)
    expect(server.stats.uploads).toBe(1)
    // the one slot is taken: a small chunk still goes out, beside it, and takes no slot
    expect(Buffer.compare(await client.fetch(peer, { cid: small.cid, size: small.bytes.length }), small.bytes)).toBe(0)
    expect(server.stats.busy).toBe(0)
    expect(server.stats.smallAnswers).toBe(0)
    // a GET that accepts a few bytes but names a large chunk is no way around the slots: it gets
    // ERROR once the chunk's size is known, before a byte of it is copied out
    const bigAgain = await randomChunk(SMALL_ANSWER_LENGTH * 4)
    store.chunks.set(bigAgain.cid, bigAgain.bytes)
    const copied = store.copiedBytes
    await expect(client.fetch(peer, { cid: bigAgain.cid, size: 1000 })).rejects.toThrow(/more than the 1000 asked for/)
    expect(server.stats.errors).toBe(1)
    expect(store.copiedBytes).toBe(copied)
    gate.release()
    expect(Buffer.compare(await first, big.bytes)).toBe(0)
    expect(server.stats.bytesServed).toBe(big.bytes.length + small.bytes.length)
  })

  it('bounds uploads per peer without starving other peers', async () => {
    const { store, id, port } = await startServer({ maxUploads: 4, maxUploadsPerPeer: 1 })
    const size = SMALL_ANSWER_LENGTH + 1
    const a = await randomChunk(size)
    const b = await randomChunk(size)
    store.chunks.set(a.cid, a.bytes)
    store.chunks.set(b.cid, b.bytes)
    const gate = store.gate(a.cid)
    const { client: greedy } = await startClient()
    const { client: other } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }

    const first = greedy.fetch(peer, { cid: a.cid, size })
    await within(gate.started, 5000, 'the first read')
    await expect(greedy.fetch(peer, { cid: b.cid, size })).rejects.toBeInstanceOf(PeerBusyError)
    expect(Buffer.compare(await other.fetch(peer, { cid: b.cid, size }), b.bytes)).toBe(0)
    gate.release()
    await first
  })

  it('with uploadLandingMs, takes as many uploads at once as land in that time: few on a slow uplink, more on a fast one', async () => {
    const chunks = await Promise.all(Array.from({ length: 8 }, async () => await randomChunk(MiB)))
    // an uplink of 4 MiB/s: a 1 MiB chunk takes at least 250 ms, more than the 100 ms asked for
    const slow = await startServer({ maxUploads: 8, maxUploadsPerPeer: 8, reservedUploads: 0, uploadLandingMs: 100, uploadBytesPerSecond: 4 * MiB })
    for (const chunk of chunks) slow.store.chunks.set(chunk.cid, chunk.bytes)
    const { client } = await startClient()
    const slowPeer = { peerId: slow.id.peerId, host: '127.0.0.1', port: slow.port }
    expect(slow.server.stats.uploadLimit).toBe(2)
    const results = await Promise.allSettled(chunks.slice(0, 4).map(async c => await client.fetch(slowPeer, { cid: c.cid, size: MiB })))
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(2)
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(PeerBusyError)
    expect(slow.server.stats.uploadLimit).toBe(2)

    // no rate limit: chunks land in milliseconds, and the limit opens as they do
    const fast = await startServer({ maxUploads: 8, maxUploadsPerPeer: 8, reservedUploads: 0, uploadLandingMs: 1000 })
    for (const chunk of chunks) fast.store.chunks.set(chunk.cid, chunk.bytes)
    const fastPeer = { peerId: fast.id.peerId, host: '127.0.0.1', port: fast.port }
    for (let round = 0; round < 12 && fast.server.stats.uploadLimit < 8; round++) {
      const limit = fast.server.stats.uploadLimit
      const got = await Promise.allSettled(chunks.slice(0, limit).map(async c => await client.fetch(fastPeer, { cid: c.cid, size: MiB })))
      for (const [i, r] of got.entries()) if (r.status === 'fulfilled') expect(Buffer.compare(r.value, chunks[i]!.bytes)).toBe(0)
    }
    expect(fast.server.stats.uploadLimit).toBeGreaterThan(2)
    // off by default: every slot from the start
    const plain = await startServer({ maxUploads: 8 })
    expect(plain.server.stats.uploadLimit).toBe(8)
    await expect(startServer({ uploadLandingMs: -1 })).rejects.toThrow(/uploadLandingMs/)
  })

  it('with 2 of 8 slots open, lets one peer take both: the reservation for peers holding none shrinks with the slots open', async () => {
    const chunks = await Promise.all(Array.from({ length: 3 }, async () => await randomChunk(MiB)))
    // the default reservation (2 of 8) with the limit at its floor of 2 on a slow uplink
    const { server, store, id, port } = await startServer({ maxUploads: 8, uploadLandingMs: 100, uploadBytesPerSecond: 4 * MiB })
    for (const chunk of chunks) store.chunks.set(chunk.cid, chunk.bytes)
    const { client } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }
    expect(server.stats.uploadLimit).toBe(2)
    const results = await Promise.allSettled(chunks.map(async c => await client.fetch(peer, { cid: c.cid, size: MiB })))
    // two at once for the one peer there is, the third turned away
    expect(results.filter(r => r.status === 'fulfilled')).toHaveLength(2)
    expect(results.filter(r => r.status === 'rejected' && r.reason instanceof PeerBusyError)).toHaveLength(1)
    expect(server.stats.busy).toBe(1)
  })

  // 4 MiB at 8 MiB/s less a 0.8 MiB burst is 0.4 s, whichever side holds the limit
  it.each([
    ['uploads', { uploadBytesPerSecond: 8 * MiB }, {}],
    ['downloads', {}, { downloadBytesPerSecond: 8 * MiB }]
  ])('paces %s at the configured rate', async (_side, serverInit, clientInit) => {
    const { id, store, port } = await startServer(serverInit)
    const chunk = await randomChunk(4 * MiB)
    store.chunks.set(chunk.cid, chunk.bytes)
    const { client } = await startClient(clientInit)
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }

    const started = performance.now()
    const got = await client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length })
    const seconds = (performance.now() - started) / 1000

    expect(Buffer.compare(got, chunk.bytes)).toBe(0)
    expect(seconds).toBeGreaterThanOrEqual(0.3)
  })

  it('cancels a request on abort, drops its late answer and keeps the connection', async () => {
    const { store, id, port } = await startServer()
    const slow = await randomChunk(200_000)
    const next = await randomChunk(3000)
    store.chunks.set(slow.cid, slow.bytes)
    store.chunks.set(next.cid, next.bytes)
    const gate = store.gate(slow.cid)
    const { client } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }
    const controller = new AbortController()

    const fetching = client.fetch(peer, { cid: slow.cid, size: slow.bytes.length }, { signal: controller.signal })
    const readSignal = await within(gate.started, 5000, 'the read')
    controller.abort()
    await expect(fetching).rejects.toBeInstanceOf(AbortError)
    // the server heard the CANCEL: its read was aborted
    await within(new Promise(resolve => {
      if (readSignal?.aborted === true) resolve(undefined)
      readSignal?.addEventListener('abort', resolve)
    }), 5000, 'the server-side abort')
    gate.release()

    expect(Buffer.compare(await client.fetch(peer, { cid: next.cid, size: next.bytes.length }), next.bytes)).toBe(0)
    expect(client.stats.connectionsOpened).toBe(1)
  })

  it('rejects at once when the signal is already aborted', async () => {
    const { server, id, port } = await startServer()
    const { client } = await startClient()
    const chunk = await randomChunk(10)

    await expect(client.fetch({ peerId: id.peerId, host: '127.0.0.1', port }, { cid: chunk.cid, size: 10 }, { signal: AbortSignal.abort() }))
      .rejects.toBeInstanceOf(AbortError)
    expect(server.stats.requests).toBe(0)
  })

  it('times out with a named error when the server never answers', async () => {
    const { client, fetching, started } = await fetchFromRogue(socket => { socket.resume() }, 300)
    await expect(fetching).rejects.toBeInstanceOf(RequestTimeoutError)
    expect(performance.now() - started).toBeGreaterThanOrEqual(250)
    expect(client.stats.timeouts).toBe(1)
  })

  it('refuses a response larger than asked for before reading it', async () => {
    const { fetching, started } = await fetchFromRogue(socket => {
      socket.once('data', (frame: Buffer) => {
        // answer request id (bytes 5..8 of the GET) with a 64 MiB OK, then nothing more
        const header = Buffer.alloc(9)
        header.writeUInt32BE(5 + 64 * MiB, 0)
        frame.copy(header, 4, 5, 9)
        header[8] = 0
        socket.write(header)
      })
    }, 10_000)
    await expect(fetching).rejects.toBeInstanceOf(ResponseTooLargeError)
    expect(performance.now() - started).toBeLessThan(5000)
  })

  it('closes its connections on stop, failing requests in progress', async () => {
    const { server, client, peer, chunk, fetching, readSignal } = await fetchHeldInRead()
    await within(server.stop(), 5000, 'stop')
    await expect(fetching).rejects.toBeInstanceOf(ConnectionClosedError)
    expect(readSignal?.aborted).toBe(true)
    expect(client.stats.connections).toBe(0)
    await expect(client.fetch(peer, { cid: chunk.cid, size: 1000 })).rejects.toBeInstanceOf(ConnectionFailedError)
  })

  it('disconnect fails requests in flight and later fetches dial again', async () => {
    const { store, gate, client, peer, fetching } = await fetchHeldInRead()
    client.disconnect(peer.peerId)
    await expect(fetching).rejects.toBeInstanceOf(ConnectionClosedError)
    gate.release()
    const other = await randomChunk(77)
    store.chunks.set(other.cid, other.bytes)
    expect(Buffer.compare(await client.fetch(peer, { cid: other.cid, size: 77 }), other.bytes)).toBe(0)
    expect(client.stats.connectionsOpened).toBe(2)
  })

  it('rejects requests the protocol cannot carry', async () => {
    const { id, port } = await startServer()
    const { client } = await startClient()
    const peer = { peerId: id.peerId, host: '127.0.0.1', port }
    const { cid } = await randomChunk(1)

    await expect(client.fetch(peer, { cid: 'b'.repeat(129), size: 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch(peer, { cid: '', size: 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch(peer, { cid: 'bafy ok', size: 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch(peer, { cid, size: 64 * MiB + 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch(peer, { cid, size: -1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch(peer, { cid, size: 1.5 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch({ ...peer, peerId: 'not-a-peer-id' }, { cid, size: 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    await expect(client.fetch({ ...peer, port: 70000 }, { cid, size: 1 })).rejects.toBeInstanceOf(InvalidRequestError)
    expect(() => dataClient({ privateKey: id.privateKey, connectionsPerPeer: 0 })).toThrow(InvalidRequestError)
    expect(client.stats.requests).toBe(0)
  })

  it('fails fetches after close', async () => {
    const { id, port } = await startServer()
    const { client } = await startClient()
    await client.close()
    const { cid } = await randomChunk(1)
    await expect(client.fetch({ peerId: id.peerId, host: '127.0.0.1', port }, { cid, size: 1 })).rejects.toBeInstanceOf(ClientClosedError)
  })
})
