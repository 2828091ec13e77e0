import { randomBytes } from 'node:crypto'
import { ArrivingChunks } from '@swarm/fetcher'
import { NotFoundError } from '@swarm/interface'
import { blockDigests } from '@swarm/manifest'
import { SharedArrivalWriter, openSharedArrival, sharedArrivalReadable } from '@swarm/workers'
import { afterEach, describe, expect, it } from 'vitest'
import { ConnectionClosedError, RequestTimeoutError, dataClient, dataServer } from '../src/index.js'
import { MemoryStore, cidOf, identity, randomChunk } from './helpers.js'
import type { DataClient, DataPeer, DataServer, DataServerInit } from '../src/index.js'
import type { BlockDigests } from '@swarm/interface'

const BLOCK = 256 * 1024
const SIZE = 3 * 1024 * 1024 + 5
const cleanups: Array<() => Promise<void>> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

function digestsOf (bytes: Uint8Array): BlockDigests {
  return { blockSize: BLOCK, digests: Buffer.from(blockDigests(bytes, BLOCK), 'base64') }
}

async function setUp (limits: Partial<DataServerInit> = {}): Promise<{ server: DataServer, store: MemoryStore, arrivals: ArrivingChunks, client: DataClient, peer: DataPeer }> {
  const serverId = await identity()
  const store = new MemoryStore()
  const arrivals = new ArrivingChunks()
  const server = dataServer({ privateKey: serverId.privateKey, store, arrivals, isAdmitted: () => true, ...limits })
  const { port } = await server.start()
  cleanups.push(async () => { await server.stop() })
  const client = dataClient({ privateKey: (await identity()).privateKey })
  cleanups.push(async () => { await client.close() })
  return { server, store, arrivals, client, peer: { peerId: serverId.peerId, host: '127.0.0.1', port } }
}

/** A fetch that takes the chunk while it arrives, and how many of its bytes the client holds so far. */
function relayedFetch (client: DataClient, peer: DataPeer, cid: string): { fetching: Promise<Uint8Array>, received: () => number } {
  let received = 0
  const fetching = client.fetch(peer, { cid, size: SIZE }, { relay: true, onData: (_b, filled) => { received = filled } })
  return { fetching, received: () => received }
}

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
}

describe('relays: a chunk passed on while it arrives', () => {
  it('sends checked blocks while the rest of the chunk has not arrived, and the whole chunk once it has', async () => {
    const { server, arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    if (arrival === undefined) throw new Error('not registered')
    const buffer = new Uint8Array(SIZE)
    buffer.set(bytes.subarray(0, 5 * BLOCK + 100))
    arrival.land(buffer, 5 * BLOCK + 100)

    const { fetching, received } = relayedFetch(client, peer, cid)
    // the five checked blocks reach the client before the chunk is whole here
    await until(() => received() >= 5 * BLOCK, 'the checked blocks')
    expect(received()).toBe(5 * BLOCK)
    buffer.set(bytes.subarray(5 * BLOCK), 5 * BLOCK)
    arrival.land(buffer, SIZE)
    let freed = false
    arrival.end({ bytes: buffer, free: () => { freed = true } })
    const got = await fetching
    expect(Buffer.compare(got, bytes)).toBe(0)
    expect(server.stats.relays).toBe(1)
    expect(server.stats.bytesServed).toBe(SIZE)
    await until(() => freed, 'the arriving buffer to go back')
    // a relay's time is its source's: it is not counted as a landing, and its slot is free again
    expect(server.stats.uploads).toBe(0)
  })

  it('closes the connection when a block fails its digest, having sent only the checked ones', async () => {
    const { server, arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    const lying = Buffer.from(bytes)
    lying[3 * BLOCK + 1] = (lying[3 * BLOCK + 1] as number) ^ 0x40
    arrival?.land(lying, 2 * BLOCK)
    const { fetching, received } = relayedFetch(client, peer, cid)
    await until(() => received() >= 2 * BLOCK, 'the checked blocks')
    arrival?.land(lying, SIZE)
    await expect(fetching).rejects.toThrow(ConnectionClosedError)
    // block 2 was good, but once block 3 failed the source is a liar: nothing more went out
    expect(received()).toBe(2 * BLOCK)
    await until(() => server.stats.relaysCut === 1, 'the relay to be cut')
  })

  it('ends the answer when the chunk stops arriving, and the next GET gets the chunk the store then holds', async () => {
    const { server, store, arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    arrival?.land(Buffer.from(bytes), BLOCK)
    const fetching = client.fetch(peer, { cid, size: SIZE }, { relay: true })
    await until(() => server.stats.relays === 1, 'the relay to begin')
    arrival?.end({ reason: 'its source failed' })
    await expect(fetching).rejects.toThrow(ConnectionClosedError)
    store.chunks.set(cid, bytes)
    const again = await client.fetch(peer, { cid, size: SIZE }, { relay: true })
    expect(Buffer.compare(again, bytes)).toBe(0)
  })

  it('answers NOT_FOUND for an arriving chunk to a GET without the relay flag', async () => {
    const { arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    arrivals.begin(cid, SIZE, digestsOf(bytes))?.land(Buffer.from(bytes), SIZE)
    await expect(client.fetch(peer, { cid, size: SIZE })).rejects.toThrow(NotFoundError)
  })

  it('puts a relay on a connection of its own: other requests to the peer are answered while it waits', async () => {
    const { store, arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    const buffer = Buffer.from(bytes)
    arrival?.land(buffer, BLOCK)
    const relayed = client.fetch(peer, { cid, size: SIZE }, { relay: true })
    // within the peer's share of upload slots, one of which the relay holds
    const stored = await Promise.all(Array.from({ length: 3 }, async () => await randomChunk(100_000)))
    for (const chunk of stored) store.chunks.set(chunk.cid, chunk.bytes)
    const answers = await Promise.all(stored.map(async chunk => await client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length })))
    answers.forEach((got, i) => { expect(Buffer.compare(got, stored[i]!.bytes)).toBe(0) })
    arrival?.land(buffer, SIZE)
    arrival?.end({ bytes: buffer, free: () => {} })
    expect(Buffer.compare(await relayed, bytes)).toBe(0)
  })

  it('counts relays on slots of their own, beside the upload slots its landing times open', async () => {
    // 2 upload slots, which landing times never close below 2; relays, paced by their sources, have 2 of their own
    const { server, store, arrivals, client, peer } = await setUp({ maxUploads: 2, maxRelays: 2, maxUploadsPerPeer: 4, reservedUploads: 0, uploadLandingMs: 1_000 })
    const arriving = await Promise.all([1, 2, 3].map(async () => {
      const bytes = randomBytes(SIZE)
      const cid = await cidOf(bytes)
      const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
      const buffer = Buffer.from(bytes)
      arrival?.land(buffer, BLOCK)
      return { cid, bytes, buffer, arrival }
    }))
    const relayed = arriving.slice(0, 2).map(async ({ cid }) => await client.fetch(peer, { cid, size: SIZE }, { relay: true }))
    await until(() => server.stats.uploads === 2, 'two relays to hold slots')
    const stored = await Promise.all([1, 2, 3].map(async () => await randomChunk(100_000)))
    for (const chunk of stored) store.chunks.set(chunk.cid, chunk.bytes)
    const answers = await Promise.all(stored.slice(0, 2).map(async chunk => await client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length })))
    answers.forEach((got, i) => { expect(Buffer.compare(got, stored[i]!.bytes)).toBe(0) })
    expect(server.stats.busy).toBe(0)
    // with 2 relays and 2 uploads under way, each kind is full: a third relay is BUSY, and so is a third upload
    const held = stored.slice(0, 2).map(chunk => store.gate(chunk.cid))
    const uploads = stored.slice(0, 2).map(async chunk => await client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length }))
    await Promise.all(held.map(async gate => await gate.started))
    const third = arriving[2] as typeof arriving[number]
    // from another client: this one's connections are all taken
    const other = dataClient({ privateKey: (await identity()).privateKey })
    cleanups.push(async () => { await other.close() })
    await expect(other.fetch(peer, { cid: third.cid, size: SIZE }, { relay: true })).rejects.toThrow(/busy/)
    const thirdUpload = stored[2]!
    await expect(other.fetch(peer, { cid: thirdUpload.cid, size: thirdUpload.bytes.length })).rejects.toThrow(/busy/)
    expect(server.stats.busy).toBe(2)
    for (const gate of held) gate.release()
    await Promise.all(uploads)
    for (const { arrival, buffer } of arriving) {
      arrival?.land(buffer, SIZE)
      arrival?.end({ bytes: buffer, free: () => {} })
    }
    for (const [i, relay] of relayed.entries()) expect(Buffer.compare(await relay, arriving[i]!.bytes)).toBe(0)
    // the slots are given back: the upload turned away gets its chunk now
    expect(Buffer.compare(await other.fetch(peer, { cid: thirdUpload.cid, size: thirdUpload.bytes.length }), thirdUpload.bytes)).toBe(0)
  })

  it('keeps a relay alive past the request timeout while its bytes come, and times it out once they stop', async () => {
    const { arrivals, peer } = await setUp()
    const client = dataClient({ privateKey: (await identity()).privateKey, requestTimeoutMs: 1_500 })
    cleanups.push(async () => { await client.close() })
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const arrival = arrivals.begin(cid, SIZE, digestsOf(bytes))
    const buffer = Buffer.from(bytes)
    arrival?.land(buffer, BLOCK)
    const started = performance.now()
    const relayed = client.fetch(peer, { cid, size: SIZE }, { relay: true })
    // a block every 400 ms: the whole chunk takes about 4.8 s, over three times the timeout
    for (let filled = 2 * BLOCK; filled < SIZE; filled += BLOCK) {
      await new Promise(resolve => setTimeout(resolve, 400))
      arrival?.land(buffer, filled)
    }
    arrival?.land(buffer, SIZE)
    arrival?.end({ bytes: buffer, free: () => {} })
    expect(Buffer.compare(await relayed, bytes)).toBe(0)
    expect(performance.now() - started).toBeGreaterThan(3_000)

    const stalled = randomBytes(SIZE)
    const stalledCid = await cidOf(stalled)
    arrivals.begin(stalledCid, SIZE, digestsOf(stalled))?.land(Buffer.from(stalled), BLOCK)
    await expect(client.fetch(peer, { cid: stalledCid, size: SIZE }, { relay: true })).rejects.toThrow(RequestTimeoutError)
  }, 20_000)

  it('closes a relay the client gives up, which frees the server\'s slot', async () => {
    const { server, arrivals, client, peer } = await setUp()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    arrivals.begin(cid, SIZE, digestsOf(bytes))?.land(Buffer.from(bytes), BLOCK)
    const controller = new AbortController()
    const fetching = client.fetch(peer, { cid, size: SIZE }, { relay: true, signal: controller.signal })
    await until(() => server.stats.uploads === 1, 'the relay to hold a slot')
    controller.abort()
    await expect(fetching).rejects.toThrow()
    await until(() => server.stats.uploads === 0 && server.stats.connections === 0, 'the slot and the connection to go')
  })

  it('relays from memory another thread shares, where the registry answers asynchronously and the server serves content it does not hold (a byte worker\'s)', async () => {
    const serverId = await identity()
    const bytes = randomBytes(SIZE)
    const cid = await cidOf(bytes)
    const memory = Buffer.from(new SharedArrayBuffer(SIZE))
    const writer = SharedArrivalWriter.begin(cid, SIZE, digestsOf(bytes), memory)
    if (writer === undefined) throw new Error('not shared')
    let asked = 0
    const arrivals = {
      arriving: async (c: string) => {
        asked++
        await new Promise(resolve => setTimeout(resolve, 5))
        return c === cid && sharedArrivalReadable(writer.shared)
      },
      open: (c: string) => c === cid ? openSharedArrival(writer.shared) : undefined
    }
    const server = dataServer({ privateKey: serverId.privateKey, content: { read: async () => undefined }, arrivals, isAdmitted: () => true })
    const { port } = await server.start()
    cleanups.push(async () => { await server.stop() })
    const client = dataClient({ privateKey: (await identity()).privateKey })
    cleanups.push(async () => { await client.close() })
    const peer = { peerId: serverId.peerId, host: '127.0.0.1', port }
    memory.set(bytes.subarray(0, 2 * BLOCK))
    writer.land(memory, 2 * BLOCK)
    const { fetching, received } = relayedFetch(client, peer, cid)
    await until(() => received() >= 2 * BLOCK, 'the checked blocks')
    expect(received()).toBe(2 * BLOCK)
    memory.set(bytes.subarray(2 * BLOCK), 2 * BLOCK)
    writer.land(memory, SIZE)
    writer.whole()
    expect(Buffer.compare(await fetching, bytes)).toBe(0)
    expect(asked).toBe(1)
    expect(server.stats.relays).toBe(1)
    // the reader closed once sent: the writer may take its memory back
    await writer.close()
    // without the relay flag, nothing is asked and nothing is found
    await expect(client.fetch(peer, { cid, size: SIZE })).rejects.toThrow(NotFoundError)
    expect(asked).toBe(1)
  })
})
