/**
 * The data plane's limits against peers that misbehave on purpose: real TLS servers and clients
 * on loopback, and the misbehaving peers as real TLS clients with admitted identities that stop
 * reading, stay silent, or never finish a handshake.
 */
import net from 'node:net'
import { ConnectionFailedError, PeerBusyError, dataClient, dataServer } from '../src/index.js'
import { describe, expect, it } from 'vitest'
import { MemoryStore, admittingServer, cleanupsAfterEach, getFrame, identity, randomChunk, rawClient, within } from './helpers.js'
import type { DataServerInit } from '../src/index.js'
import type { AdmittingServer, Identity, RawClient } from './helpers.js'

const MiB = 1024 * 1024
const cleanups = cleanupsAfterEach()

interface Setup extends AdmittingServer {
  /** a chunk larger than the socket buffers between a server and a client that does not read */
  big: { cid: string, bytes: Uint8Array }
  small: { cid: string, bytes: Uint8Array }
}

async function setup (init: Partial<DataServerInit> = {}): Promise<Setup> {
  const s = await admittingServer(cleanups, init)
  const big = await randomChunk(16 * MiB)
  const small = await randomChunk(64 * 1024)
  s.store.chunks.set(big.cid, big.bytes)
  s.store.chunks.set(small.cid, small.bytes)
  return { ...s, big, small }
}

async function admittedRaw (s: Setup, me?: Identity): Promise<RawClient> {
  me ??= await identity()
  s.admitted.add(me.peerId)
  const raw = await rawClient(s.port, me.privateKey)
  cleanups.push(async () => { raw.socket.destroy() })
  return raw
}

/** Peers that each ask for `gets` large chunks and never read a byte of the answers. */
async function slowReaders (s: Setup, peers: number, gets: number): Promise<RawClient[]> {
  const readers = await Promise.all(Array.from({ length: peers }, async () => await admittedRaw(s)))
  // all connected before any asks, so that none times out before the last one holds its slots
  for (const raw of readers) {
    raw.socket.pause()
    for (let id = 0; id < gets; id++) raw.socket.write(getFrame(id, s.big.cid, s.big.bytes.length))
  }
  return readers
}

async function honestClient (s: Setup): Promise<{ fetch: () => Promise<Uint8Array> }> {
  const me = await identity()
  s.admitted.add(me.peerId)
  const client = dataClient({ privateKey: me.privateKey })
  cleanups.push(async () => { await client.close() })
  const peer = { peerId: s.id.peerId, host: '127.0.0.1', port: s.port }
  return { fetch: async () => await client.fetch(peer, { cid: s.small.cid, size: s.small.bytes.length }) }
}

async function until (condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

/** Reads one response frame (id, status, payload) from what a raw client received. */
function responses (bytes: Buffer): Array<{ id: number, status: number, payload: Buffer }> {
  const out = []
  let offset = 0
  while (offset + 4 <= bytes.length) {
    const length = bytes.readUInt32BE(offset)
    if (offset + 4 + length > bytes.length) break
    out.push({ id: bytes.readUInt32BE(offset + 4), status: bytes[offset + 8] as number, payload: bytes.subarray(offset + 9, offset + 4 + length) })
    offset += 4 + length
  }
  return out
}

async function expectServed (s: Setup, raw: RawClient, id: number): Promise<void> {
  raw.socket.write(getFrame(id, s.small.cid, s.small.bytes.length))
  await until(() => responses(raw.bytes()).some(r => r.id === id), 5000, `the answer to request ${id}`)
  const answer = responses(raw.bytes()).find(r => r.id === id)
  expect(answer?.status).toBe(0)
  expect(Buffer.compare(answer?.payload ?? Buffer.alloc(0), s.small.bytes)).toBe(0)
}

describe('peers that do not read', () => {
  it('cannot take the slots another peer needs: two peers at their share leave slots for a third', async () => {
    // the finding: two identities with 4 GETs each took all 8 slots of a default server
    const s = await setup()
    const slow = await slowReaders(s, 2, 4)
    // the first takes its share of 4, the second 2: the last 2 free slots are kept for peers holding none
    await until(() => s.server.stats.uploads === 6 && s.server.stats.busy === 2, 5000, 'the slow readers taking their slots')
    const honest = await honestClient(s)
    for (let i = 0; i < 3; i++) {
      expect(Buffer.compare(await within(honest.fetch(), 5000, 'an honest fetch'), s.small.bytes)).toBe(0)
    }
    // served while the slow readers still hold theirs: fairness, not a timeout, let it through
    expect(s.server.stats.uploads).toBe(6)
    expect(s.server.stats.timeouts.write).toBe(0)
    for (const raw of slow) expect(raw.socket.destroyed).toBe(false)
  })

  it('lose their connections and slots after the write timeout, so an honest peer gets its chunks within it', async () => {
    const writeTimeoutMs = 4000
    const s = await setup({ writeTimeoutMs })
    // connected before the attack, so that only the slots stand between it and its chunks
    const honest = await honestClient(s)
    expect(Buffer.compare(await honest.fetch(), s.small.bytes)).toBe(0)
    // eight identities with one slot each fill every slot, reserved ones included
    const slow = await slowReaders(s, 8, 1)
    await until(() => s.server.stats.uploads === 8, 10_000, 'the slow readers taking every slot')
    const started = performance.now()
    await expect(honest.fetch()).rejects.toBeInstanceOf(PeerBusyError)
    let bytes: Uint8Array | undefined
    while (bytes === undefined) {
      bytes = await honest.fetch().catch(err => {
        if (!(err instanceof PeerBusyError)) throw err
        return undefined
      })
      if (bytes === undefined) await new Promise(resolve => setTimeout(resolve, 50))
    }
    const waited = performance.now() - started
    expect(Buffer.compare(bytes, s.small.bytes)).toBe(0)
    expect(waited).toBeLessThan(writeTimeoutMs + 4000)
    await until(() => s.server.stats.uploads === 0 && s.server.stats.connections === 1, 10_000, 'every slow reader\'s connection closed')
    expect(s.server.stats.timeouts.write).toBe(8)
    // a paused socket sees the close only once it reads again
    for (const raw of slow) raw.socket.resume()
    await within(Promise.all(slow.map(async raw => { await raw.closed })), 5000, 'the slow readers seeing the close')
  })

  it('keeps a connection whose peer reads slowly but takes each response within the timeout', async () => {
    const s = await setup({ writeTimeoutMs: 5000 })
    const raw = await admittedRaw(s)
    raw.socket.pause()
    // 2 MiB every 200 ms, about 10 MiB/s: each 16 MiB response drains within the timeout, but not at once
    let allowed = 0
    raw.socket.on('data', () => { if (raw.received() >= allowed) raw.socket.pause() })
    const reader = setInterval(() => {
      allowed = raw.received() + 2 * MiB
      raw.socket.resume()
    }, 200)
    cleanups.push(async () => { clearInterval(reader) })
    for (let id = 0; id < 2; id++) raw.socket.write(getFrame(id, s.big.cid, s.big.bytes.length))
    await until(() => raw.received() >= 2 * (9 + s.big.bytes.length), 30_000, 'both answers')
    expect(responses(raw.bytes()).length).toBe(2)
    for (const answer of responses(raw.bytes())) expect(Buffer.compare(answer.payload, s.big.bytes)).toBe(0)
    expect(raw.socket.destroyed).toBe(false)
    expect(s.server.stats.timeouts.write).toBe(0)
  })
})

describe('idle connections', () => {
  it('are closed by the server after the idle timeout, but not while a request is in flight', async () => {
    const s = await setup({ idleTimeoutMs: 300 })
    const silent = await admittedRaw(s)
    // half a request holds nothing in flight: as idle as silence
    const partial = await admittedRaw(s)
    partial.socket.write(getFrame(1, s.small.cid, s.small.bytes.length).subarray(0, 7))
    const busy = await admittedRaw(s)
    const gate = s.store.gate(s.small.cid)
    busy.socket.write(getFrame(1, s.small.cid, s.small.bytes.length))
    await within(gate.started, 5000, 'the read')
    await within(silent.closed, 3000, 'the silent connection closing')
    await within(partial.closed, 3000, 'the connection with half a request closing')
    expect(s.server.stats.timeouts.idle).toBe(2)
    // the read outlasts the idle timeout; its connection stays and gets the answer
    await new Promise(resolve => setTimeout(resolve, 600))
    expect(busy.socket.destroyed).toBe(false)
    gate.release()
    await until(() => responses(busy.bytes()).length === 1, 5000, 'the answer')
    expect(Buffer.compare(responses(busy.bytes())[0]?.payload ?? Buffer.alloc(0), s.small.bytes)).toBe(0)
    // and once the answer is out it idles too
    await within(busy.closed, 3000, 'the served connection closing once idle')
    expect(s.server.stats.timeouts.idle).toBe(3)
  })

  it('are closed by the client after its idle timeout', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    const client = dataClient({ privateKey: me.privateKey, idleTimeoutMs: 300 })
    cleanups.push(async () => { await client.close() })
    const got = await client.fetch({ peerId: s.id.peerId, host: '127.0.0.1', port: s.port }, { cid: s.small.cid, size: s.small.bytes.length })
    expect(Buffer.compare(got, s.small.bytes)).toBe(0)
    expect(client.stats.connections).toBe(1)
    await until(() => client.stats.connections === 0 && s.server.stats.connections === 0, 3000, 'the idle connection closing')
    expect(client.stats.idleTimeouts).toBe(1)
    expect(s.server.stats.timeouts.idle).toBe(0)
  })
})

describe('handshakes', () => {
  async function tcp (port: number): Promise<{ socket: net.Socket, closed: Promise<void> }> {
    const socket = net.connect(port, '127.0.0.1')
    socket.on('error', () => {})
    cleanups.push(async () => { socket.destroy() })
    const closed = new Promise<void>(resolve => socket.once('close', () => { resolve() }))
    await new Promise<void>(resolve => socket.once('connect', () => { resolve() }))
    return { socket, closed }
  }

  it('drops a connection that never starts the handshake', async () => {
    const s = await setup({ handshakeTimeoutMs: 400 })
    const started = performance.now()
    const { closed } = await tcp(s.port)
    await within(closed, 3000, 'the silent connection closing')
    expect(performance.now() - started).toBeGreaterThanOrEqual(350)
    expect(s.server.stats.timeouts.handshake).toBe(1)
    await expectStillServing(s)
  })

  it('drops a peer that trickles its handshake, however often it sends a byte', async () => {
    const s = await setup({ handshakeTimeoutMs: 500 })
    const { socket, closed } = await tcp(s.port)
    // a TLS handshake record announcing 512 bytes, then one byte every 50 ms: never idle, never done
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]))
    const trickle = setInterval(() => { if (!socket.destroyed) socket.write(Buffer.from([0x01])) }, 50)
    cleanups.push(async () => { clearInterval(trickle) })
    const started = performance.now()
    await within(closed, 3000, 'the trickling connection closing')
    expect(performance.now() - started).toBeLessThan(2000)
    expect(s.server.stats.timeouts.handshake).toBe(1)
    await expectStillServing(s)
  })

  it('fails a client\'s dial to a server that never finishes the handshake, and counts it', async () => {
    const silent = net.createServer(socket => { socket.on('error', () => {}) })
    const accepted = new Set<net.Socket>()
    silent.on('connection', socket => { accepted.add(socket) })
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => {
      for (const socket of accepted) socket.destroy()
      await new Promise<void>(resolve => silent.close(() => { resolve() }))
    })
    const { port } = silent.address() as net.AddressInfo
    const me = await identity()
    const them = await identity()
    const client = dataClient({ privateKey: me.privateKey, handshakeTimeoutMs: 300 })
    cleanups.push(async () => { await client.close() })
    const started = performance.now()
    await expect(client.fetch({ peerId: them.peerId, host: '127.0.0.1', port }, { cid: 'bafkqaaa', size: 1 })).rejects.toBeInstanceOf(ConnectionFailedError)
    expect(performance.now() - started).toBeLessThan(3000)
    expect(client.stats.handshakeTimeouts).toBe(1)
    expect(client.stats.connections).toBe(0)
  })

  it('keeps authenticated connections past the handshake deadline', async () => {
    const s = await setup({ handshakeTimeoutMs: 300 })
    const raw = await admittedRaw(s)
    await new Promise(resolve => setTimeout(resolve, 700))
    expect(raw.socket.destroyed).toBe(false)
    await expectServed(s, raw, 7)
    expect(s.server.stats.timeouts.handshake).toBe(0)
  })

  async function expectStillServing (s: Setup): Promise<void> {
    const honest = await honestClient(s)
    expect(Buffer.compare(await honest.fetch(), s.small.bytes)).toBe(0)
  }
})

describe('connection caps', () => {
  it('refuse a peer\'s connections beyond its cap before reading them, and serve the rest', async () => {
    const s = await setup({ maxConnectionsPerPeer: 2 })
    const me = await identity()
    const first = await admittedRaw(s, me)
    const second = await admittedRaw(s, me)
    const third = await admittedRaw(s, me)
    third.socket.write(getFrame(1, s.small.cid, s.small.bytes.length))
    await within(third.closed, 3000, 'the connection beyond the cap closing')
    expect(third.received()).toBe(0)
    expect(s.server.stats.refusedConnections.perPeer).toBe(1)
    expect(s.server.stats.requests).toBe(0)
    await expectServed(s, first, 1)
    await expectServed(s, second, 1)
    // another peer is not counted against this one
    await expectServed(s, await admittedRaw(s), 1)
    // a connection closed makes room again
    first.socket.destroy()
    await until(() => s.server.stats.connections === 2, 3000, 'the server seeing the close')
    await expectServed(s, await admittedRaw(s, me), 2)
  })

  it('refuse connections beyond the total at accept, before TLS, and serve the rest', async () => {
    const s = await setup({ maxConnections: 3 })
    const open = [await admittedRaw(s), await admittedRaw(s), await admittedRaw(s)]
    await expect(admittedRaw(s)).rejects.toThrow(/closed before the handshake/)
    expect(s.server.stats.refusedConnections.total).toBe(1)
    for (const [i, raw] of open.entries()) await expectServed(s, raw, i)
    open[0]?.socket.destroy()
    await until(() => s.server.stats.connections === 2, 3000, 'the server seeing the close')
    await expectServed(s, await admittedRaw(s), 9)
  })
})

describe('server options', () => {
  it('refuses limits that are not positive integers', async () => {
    const id = await identity()
    const store = new MemoryStore()
    for (const bad of [{ writeTimeoutMs: 0 }, { idleTimeoutMs: -1 }, { handshakeTimeoutMs: 1.5 }, { maxConnections: 0 }, { maxConnectionsPerPeer: Number.NaN }, { reservedUploads: -1 }]) {
      expect(() => dataServer({ privateKey: id.privateKey, store, isAdmitted: () => true, ...bad })).toThrow(/must be a positive integer/)
    }
  })
})
