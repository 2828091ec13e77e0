/**
 * Data servers that share one port and one gate, as the byte workers of a node do: real TLS
 * servers on loopback with SO_REUSEPORT, each asking one `UploadGate` through a gate whose
 * answers come a turn of the event loop later (as they do across threads), and serving from
 * `content` rather than a store.
 */
import { describe, expect, it } from 'vitest'
import { PeerBusyError, PeerNotAdmittedError, UploadGate, dataClient, dataServer } from '../src/index.js'
import { MemoryStore, cleanupsAfterEach, getFrame, identity, randomChunk, rawClient, within } from './helpers.js'
import type { DataServer, DataServerInit, PeerVerdict, ServeGate, SlotVerdict } from '../src/index.js'
import type { Identity } from './helpers.js'

const cleanups = cleanupsAfterEach()

/** `gate` as a worker's server sees the main thread's: every answer a turn later, and what it takes counted for `holder` */
function across (gate: UploadGate, holder: number): ServeGate {
  const later = async <T>(answer: () => T): Promise<T> => await new Promise(resolve => setImmediate(() => { resolve(answer()) }))
  return {
    connectionOpened: async () => await later(() => gate.connectionOpened(holder)),
    connectionClosed: () => { gate.connectionClosed(holder) },
    peerConnected: async (peer): Promise<PeerVerdict> => await later(() => gate.peerConnected(peer, holder)),
    peerDisconnected: peer => { gate.peerDisconnected(peer, holder) },
    begin: async (peer, small): Promise<SlotVerdict> => await later(() => gate.begin(peer, small, { holder })),
    end: (peer, small, landedAfterMs) => { gate.end(peer, small, landedAfterMs, { holder }) }
  }
}

interface Node {
  id: Identity
  store: MemoryStore
  admitted: Set<string>
  gate: UploadGate
  servers: DataServer[]
  port: number
}

/** Two servers of one node on one port, one gate between them. */
async function node (limits: Partial<DataServerInit> = {}): Promise<Node> {
  const id = await identity()
  const store = new MemoryStore()
  const admitted = new Set<string>()
  const gate = new UploadGate({ isAdmitted: peer => admitted.has(peer), ...limits })
  const content = {
    read: async (cid: string, peer: string, options: Parameters<MemoryStore['readChunk']>[1]) => {
      if (!admitted.has(peer)) throw new PeerNotAdmittedError(peer)
      return store.hasChunk(cid) ? await store.readChunk(cid, options) : store.getManifestBytes(cid)
    }
  }
  const first = dataServer({ privateKey: id.privateKey, content, gate: across(gate, 0), reusePort: true })
  const { port } = await first.start()
  const second = dataServer({ privateKey: id.privateKey, content, gate: across(gate, 1), reusePort: true, port })
  await second.start()
  cleanups.push(async () => { await first.stop(); await second.stop() })
  return { id, store, admitted, gate, servers: [first, second], port }
}

async function admittedClient (n: Node, connectionsPerPeer = 8): Promise<{ me: Identity, client: ReturnType<typeof dataClient> }> {
  const me = await identity()
  n.admitted.add(me.peerId)
  const client = dataClient({ privateKey: me.privateKey, connectionsPerPeer })
  cleanups.push(async () => { await client.close() })
  return { me, client }
}

/** A node holding one chunk of `size` bytes, and a raw connection to it from an admitted peer. */
async function holdingOne (size: number): Promise<{ n: Node, chunk: { cid: string, bytes: Uint8Array }, raw: Awaited<ReturnType<typeof rawClient>> }> {
  const n = await node()
  const chunk = await randomChunk(size)
  n.store.chunks.set(chunk.cid, chunk.bytes)
  const me = await identity()
  n.admitted.add(me.peerId)
  const raw = await rawClient(n.port, me.privateKey)
  cleanups.push(async () => { raw.socket.destroy() })
  return { n, chunk, raw }
}

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 5000
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within 5 s`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

describe('data servers sharing a port and a gate', () => {
  it('both take connections on the one port and serve every chunk from content', async () => {
    const n = await node()
    const chunks = await Promise.all(Array.from({ length: 24 }, async () => await randomChunk(64 * 1024)))
    for (const c of chunks) n.store.chunks.set(c.cid, c.bytes)
    const peer = { peerId: n.id.peerId, host: '127.0.0.1', port: n.port }
    // connections from several clients: the kernel spreads them over both listeners
    for (let i = 0; i < 6; i++) {
      const { client } = await admittedClient(n, 4)
      // four at a time: a peer's share of the slots
      for (let k = 0; k < chunks.length; k += 4) {
        const batch = chunks.slice(k, k + 4)
        const got = await Promise.all(batch.map(async c => await client.fetch(peer, { cid: c.cid, size: c.bytes.length })))
        for (const [j, bytes] of got.entries()) expect(Buffer.compare(Buffer.from(bytes), Buffer.from(batch[j]!.bytes))).toBe(0)
      }
    }
    const served = n.servers.map(s => s.stats.requests)
    expect(served[0]! + served[1]!).toBe(6 * 24)
    expect(served[0]).toBeGreaterThan(0)
    expect(served[1]).toBeGreaterThan(0)
  })

  it('hold the node\'s upload slots between them: a GET beyond them is BUSY whichever server takes it', async () => {
    const n = await node({ maxUploads: 2, maxUploadsPerPeer: 4, reservedUploads: 0 })
    const held = await Promise.all([randomChunk(64 * 1024), randomChunk(64 * 1024), randomChunk(64 * 1024)])
    for (const c of held) n.store.chunks.set(c.cid, c.bytes)
    const gates = held.slice(0, 2).map(c => n.store.gate(c.cid))
    const { client } = await admittedClient(n)
    const peer = { peerId: n.id.peerId, host: '127.0.0.1', port: n.port }
    const first = held.slice(0, 2).map(async c => await client.fetch(peer, { cid: c.cid, size: c.bytes.length }))
    await Promise.all(gates.map(async g => await g.started))
    expect(n.gate.counts.uploads).toBe(2)
    for (let i = 0; i < 6; i++) await expect(client.fetch(peer, { cid: held[2]!.cid, size: held[2]!.bytes.length })).rejects.toBeInstanceOf(PeerBusyError)
    for (const g of gates) g.release()
    await Promise.all(first)
    await until(() => n.gate.counts.uploads === 0, 'the slots coming back')
    expect(await client.fetch(peer, { cid: held[2]!.cid, size: held[2]!.bytes.length })).toHaveLength(64 * 1024)
    expect(n.servers[0]!.stats.busy + n.servers[1]!.stats.busy).toBe(6)
  })

  it('cap connections for the node, not for each server', async () => {
    const n = await node({ maxConnections: 3 })
    const me = await identity()
    n.admitted.add(me.peerId)
    const open = []
    for (let i = 0; i < 3; i++) open.push(await rawClient(n.port, me.privateKey))
    cleanups.push(async () => { for (const raw of open) raw.socket.destroy() })
    await expect(rawClient(n.port, me.privateKey)).rejects.toThrow(/closed before the handshake/)
    expect(n.servers[0]!.stats.refusedConnections.total + n.servers[1]!.stats.refusedConnections.total).toBe(1)
    expect(n.gate.counts.connections).toBe(3)
    open[0]!.socket.destroy()
    await until(() => n.gate.counts.connections === 2, 'the gate seeing the close')
    open[0] = await rawClient(n.port, me.privateKey)
    expect(n.gate.counts.connections).toBe(3)
  })

  it('close the connection of a peer the node stops admitting, at its next GET', async () => {
    const { n, chunk, raw } = await holdingOne(1024)
    raw.socket.write(getFrame(1, chunk.cid, 1024))
    await until(() => raw.received() > 1024, 'the first answer')
    n.admitted.clear()
    raw.socket.write(getFrame(2, chunk.cid, 1024))
    await within(raw.closed, 3000, 'the connection closing')
    expect(n.servers[0]!.stats.rejectedPeers + n.servers[1]!.stats.rejectedPeers).toBe(1)
    await until(() => n.gate.counts.peerConnections === 0 && n.gate.counts.smallAnswers === 0, 'the gate letting go of the peer')
  })

  it('give back what a server that went away held', async () => {
    const n = await node({ maxUploads: 2, maxUploadsPerPeer: 4, reservedUploads: 0, maxConnections: 4 })
    const chunk = await randomChunk(64 * 1024)
    n.store.chunks.set(chunk.cid, chunk.bytes)
    const gate = n.store.gate(chunk.cid)
    const { client } = await admittedClient(n, 2)
    const peer = { peerId: n.id.peerId, host: '127.0.0.1', port: n.port }
    const pending = client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length }).catch((err: Error) => err)
    await gate.started
    expect(n.gate.counts.uploads).toBe(1)
    expect(n.gate.counts.connections).toBeGreaterThan(0)
    // what a worker's death looks like from the main thread: every holder's share given back at once
    n.gate.release(0)
    n.gate.release(1)
    expect(n.gate.counts).toMatchObject({ connections: 0, peerConnections: 0, uploads: 0, smallAnswers: 0 })
    // the servers' own later releases of what was given back change nothing
    gate.release()
    await pending
    await client.close()
    await new Promise(resolve => setTimeout(resolve, 100))
    expect(n.gate.counts).toMatchObject({ connections: 0, peerConnections: 0, uploads: 0, smallAnswers: 0 })
  })

  it('give back the relays of a server that went away, so their slots open again', () => {
    const gate = new UploadGate({ isAdmitted: () => true, maxUploads: 2, maxRelays: 1 })
    expect(gate.begin('a', false, { holder: 0, relay: true })).toBe('ok')
    expect(gate.begin('b', false, { holder: 1, relay: true })).toBe('busy')
    // the upload slots are apart: both are free
    expect(gate.begin('b', false, { holder: 1 })).toBe('ok')
    gate.release(0)
    expect(gate.counts).toMatchObject({ uploads: 1, relays: 0 })
    expect(gate.begin('b', false, { holder: 1, relay: true })).toBe('ok')
    // the server that went away ending its relay later changes nothing
    gate.end('a', false, undefined, { holder: 0, relay: true })
    expect(gate.counts).toMatchObject({ uploads: 2, relays: 1 })
  })

  it('lets one server stop listening while the other takes every new connection and its own go on', async () => {
    const { n, chunk, raw: before } = await holdingOne(4096)
    await until(() => n.gate.counts.peerConnections === 1, 'the connection authenticating')
    const holder = n.servers.findIndex(s => s.stats.connections === 1)
    await n.servers[holder]!.stopListening()
    const requests = n.servers[1 - holder]!.stats.requests
    const { client } = await admittedClient(n, 4)
    const peer = { peerId: n.id.peerId, host: '127.0.0.1', port: n.port }
    for (let i = 0; i < 8; i++) await client.fetch(peer, { cid: chunk.cid, size: chunk.bytes.length })
    expect(n.servers[1 - holder]!.stats.requests - requests).toBe(8)
    before.socket.write(getFrame(7, chunk.cid, 4096))
    await until(() => before.received() > 4096, 'the answer on the connection made before')
    expect(n.servers[holder]!.stats.requests).toBe(1)
  })
})
