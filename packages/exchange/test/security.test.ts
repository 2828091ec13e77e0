import { generateCertificate } from '@libp2p/tls/utils'
import {
  ConnectionClosedError, ConnectionFailedError, InvalidRequestError, PROTOCOL, UnexpectedPeerError, certificateChecks, dataClient,
  dataServer, keyIdentity
} from '../src/index.js'
import { describe, expect, it } from 'vitest'
import { admittingServer, captureLogger, cleanupsAfterEach, getFrame, identity, randomChunk, rawClient, within } from './helpers.js'
import type { AdmittingServer, LogEntry, RawClient } from './helpers.js'
import type { CertificateValidity, PeerIdentity } from '../src/index.js'
import type { PrivateKey } from '@libp2p/interface'

const cleanups = cleanupsAfterEach()

interface Setup extends AdmittingServer {
  logs: LogEntry[]
  chunk: { cid: string, bytes: Uint8Array }
}

async function setup (): Promise<Setup> {
  const logger = captureLogger()
  const s = await admittingServer(cleanups, { logger })
  const chunk = await randomChunk(4096)
  s.store.chunks.set(chunk.cid, chunk.bytes)
  return { ...s, logs: logger.entries, chunk }
}

async function admittedClient (s: Setup): Promise<RawClient> {
  const me = await identity()
  s.admitted.add(me.peerId)
  const raw = await rawClient(s.port, me.privateKey)
  cleanups.push(async () => { raw.socket.destroy() })
  return raw
}

/** A real client of an admitted peer still gets served. */
async function expectStillServing (s: Setup): Promise<void> {
  const me = await identity()
  s.admitted.add(me.peerId)
  const client = dataClient({ privateKey: me.privateKey })
  cleanups.push(async () => { await client.close() })
  const got = await client.fetch({ peerId: s.id.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: s.chunk.bytes.length })
  expect(Buffer.compare(got, s.chunk.bytes)).toBe(0)
}

describe('peer authentication', () => {
  it('sends nothing to a peer that is not admitted, even for a valid request', async () => {
    const s = await setup()
    const stranger = await identity()
    const raw = await rawClient(s.port, stranger.privateKey)
    raw.socket.write(getFrame(1, s.chunk.cid, s.chunk.bytes.length))

    await within(raw.closed, 5000, 'the server closing the connection')
    expect(raw.received()).toBe(0)
    expect(s.server.stats.rejectedPeers).toBe(1)
    expect(s.server.stats.requests).toBe(0)
    expect(s.store.reads).toBe(0)
  })

  it('fails the fetches of a client that is not admitted', async () => {
    const s = await setup()
    const stranger = await identity()
    const client = dataClient({ privateKey: stranger.privateKey })
    cleanups.push(async () => { await client.close() })

    const error = await client.fetch({ peerId: s.id.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 })
      .then(() => undefined, (err: Error) => err)
    expect(error instanceof ConnectionClosedError || error instanceof ConnectionFailedError).toBe(true)
    expect(client.stats.bytesReceived).toBe(0)
    expect(s.server.stats.requests).toBe(0)
  })

  it('drops a peer whose admission is withdrawn, at its next request', async () => {
    const s = await setup()
    const raw = await admittedClient(s)
    raw.socket.write(getFrame(1, s.chunk.cid, 4096))
    await within(new Promise(resolve => { raw.socket.once('data', resolve) }), 5000, 'the first answer')
    const before = raw.received()
    expect(before).toBe(9 + 4096)

    s.admitted.clear()
    raw.socket.write(getFrame(2, s.chunk.cid, 4096))
    await within(raw.closed, 5000, 'the server closing the connection')
    expect(raw.received()).toBe(before)
  })

  it('sends nothing to a client without a certificate', async () => {
    const s = await setup()
    const raw = await rawClient(s.port)
    raw.socket.write(getFrame(1, s.chunk.cid, 4096))
    await within(raw.closed, 5000, 'the server closing the connection')
    expect(raw.received()).toBe(0)
    expect(s.server.stats.rejectedPeers).toBe(1)
  })

  it('sends nothing to a client that offers no protocol', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    const raw = await rawClient(s.port, me.privateKey, [])
    raw.socket.write(getFrame(1, s.chunk.cid, 4096))
    await within(raw.closed, 5000, 'the server closing the connection')
    expect(raw.received()).toBe(0)
    expect(s.server.stats.rejectedPeers).toBe(1)
    expect(s.store.reads).toBe(0)
  })

  it('fails the handshake of a client that offers another protocol', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    await expect(rawClient(s.port, me.privateKey, ['swarm-data/0'])).rejects.toThrow(/handshake/)
    expect(s.server.stats.requests).toBe(0)
  })

  it('refuses a server whose peer id is not the one dialled', async () => {
    const s = await setup()
    const expected = await identity()
    const me = await identity()
    s.admitted.add(me.peerId)
    const client = dataClient({ privateKey: me.privateKey })
    cleanups.push(async () => { await client.close() })

    await expect(client.fetch({ peerId: expected.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 }))
      .rejects.toBeInstanceOf(UnexpectedPeerError)
    expect(s.server.stats.requests).toBe(0)
    // again, with the server's certificate known from the first time: still not the peer dialled
    const known = certificateChecks.cached
    await expect(client.fetch({ peerId: expected.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 }))
      .rejects.toBeInstanceOf(UnexpectedPeerError)
    expect(certificateChecks.cached).toBeGreaterThan(known)
    expect(s.server.stats.requests).toBe(0)
  })

  it('checks a certificate in full once and knows it on the next connections; another certificate of the same peer is checked again', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    const certificate = await generateCertificate(me.privateKey)
    const before = { ...certificateChecks }
    const raws = []
    for (let i = 0; i < 3; i++) raws.push(await rawClient(s.port, me.privateKey, [PROTOCOL], certificate))
    cleanups.push(async () => { for (const raw of raws) raw.socket.destroy() })
    for (const [i, raw] of raws.entries()) {
      raw.socket.write(getFrame(i + 1, s.chunk.cid, 4096))
      await within(new Promise<void>(resolve => { const check = (): void => { if (raw.received() > 4096) resolve(); else setTimeout(check, 10) }; check() }), 5000, `the answer on connection ${i}`)
    }
    expect(certificateChecks.verified - before.verified).toBe(1)
    expect(certificateChecks.cached - before.cached).toBe(2)
    const other = await rawClient(s.port, me.privateKey)
    cleanups.push(async () => { other.socket.destroy() })
    other.socket.write(getFrame(9, s.chunk.cid, 4096))
    await within(new Promise<void>(resolve => { const check = (): void => { if (other.received() > 4096) resolve(); else setTimeout(check, 10) }; check() }), 5000, 'the answer on the connection with another certificate')
    expect(certificateChecks.verified - before.verified).toBe(2)
  })
})

/**
 * An identity that makes and checks certificates with `privateKey` as a byte worker's main thread
 * does, counting the checks it is asked for; `claims`, when given, is the peer id its checks name
 * whatever the certificate (a lying or mistaken checker).
 */
function delegatingIdentity (privateKey: PrivateKey, claims?: string): PeerIdentity & { checks: number } {
  const own = keyIdentity(privateKey)
  const delegating = {
    checks: 0,
    certificate: async () => await own.certificate(),
    async verifyCertificate (raw: Uint8Array, validity: CertificateValidity) {
      delegating.checks++
      const proved = await own.verifyCertificate(raw, validity)
      return claims ?? proved
    }
  }
  return delegating
}

describe('identities given in place of keys', () => {
  it('serve and fetch with the certificate the identity makes and the checks it answers, on both sides', async () => {
    const serverIdentity = await identity()
    const served = delegatingIdentity(serverIdentity.privateKey)
    const s = await setup()
    const server = dataServer({ identity: served, store: s.store, isAdmitted: peer => s.admitted.has(peer) })
    const { port } = await server.start()
    cleanups.push(async () => { await server.stop() })
    const me = await identity()
    s.admitted.add(me.peerId)
    const fetching = delegatingIdentity(me.privateKey)
    const client = dataClient({ identity: fetching })
    cleanups.push(async () => { await client.close() })

    const got = await client.fetch({ peerId: serverIdentity.peerId, host: '127.0.0.1', port }, { cid: s.chunk.cid, size: s.chunk.bytes.length })
    expect(Buffer.compare(got, s.chunk.bytes)).toBe(0)
    // each side checked the other's certificate through its identity: a fresh certificate each, so not known from before
    expect(served.checks).toBe(1)
    expect(fetching.checks).toBe(1)
    expect(server.stats.requests).toBe(1)
  })

  it('refuse a server whose certificate the identity finds to be another peer, and ask it nothing', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    const someoneElse = await identity()
    const client = dataClient({ identity: delegatingIdentity(me.privateKey, someoneElse.peerId) })
    cleanups.push(async () => { await client.close() })

    await expect(client.fetch({ peerId: s.id.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 }))
      .rejects.toBeInstanceOf(UnexpectedPeerError)
    expect(s.server.stats.requests).toBe(0)
  })

  it('turn away a client whose certificate the identity cannot check, serving it nothing', async () => {
    const s = await setup()
    const serverIdentity = await identity()
    const failing: PeerIdentity = {
      certificate: async () => await keyIdentity(serverIdentity.privateKey).certificate(),
      verifyCertificate: async () => { throw new Error('the main thread is gone') }
    }
    const server = dataServer({ identity: failing, store: s.store, isAdmitted: () => true })
    const { port } = await server.start()
    cleanups.push(async () => { await server.stop() })
    const me = await identity()
    const raw = await rawClient(port, me.privateKey)
    cleanups.push(async () => { raw.socket.destroy() })
    raw.socket.write(getFrame(1, s.chunk.cid, 4096))

    await within(raw.closed, 5000, 'the server closing the connection')
    expect(raw.received()).toBe(0)
    expect(server.stats.requests).toBe(0)
    expect(s.store.reads).toBe(0)
  })

  it('are required: a client or server with neither a key nor an identity is refused at once', async () => {
    const s = await setup()
    expect(() => dataClient({})).toThrow(InvalidRequestError)
    expect(() => dataServer({ store: s.store, isAdmitted: () => true })).toThrow(InvalidRequestError)
  })

  it('name peers by their string form: a malformed one is refused before any connection, a well-formed one of another peer fails the handshake', async () => {
    const s = await setup()
    const me = await identity()
    s.admitted.add(me.peerId)
    const client = dataClient({ privateKey: me.privateKey })
    cleanups.push(async () => { await client.close() })
    for (const peerId of ['', 'not-a-peer-id', `${s.id.peerId} `, s.id.peerId.replace(/.$/, '0'), 'l'.repeat(60)]) {
      await expect(client.fetch({ peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 })).rejects.toBeInstanceOf(InvalidRequestError)
    }
    expect(client.stats.connectionsOpened).toBe(0)
    const other = await identity()
    await expect(client.fetch({ peerId: other.peerId, host: '127.0.0.1', port: s.port }, { cid: s.chunk.cid, size: 4096 })).rejects.toBeInstanceOf(UnexpectedPeerError)
    expect(s.server.stats.requests).toBe(0)
  })
})

describe('malformed frames', () => {
  const cases: Array<[string, Buffer]> = [
    ['a 4 GiB length prefix', Buffer.from([0xff, 0xff, 0xff, 0xff])],
    ['a frame over 1 KiB', Buffer.from([0, 0, 0x07, 0xd0, 1, 0, 0, 0, 1])],
    ['a frame shorter than a header', Buffer.from([0, 0, 0, 2, 1, 0])],
    ['an unknown type', Buffer.from([0, 0, 0, 5, 9, 0, 0, 0, 1])],
    ['a GET whose CID length does not match', (() => { const f = getFrame(1, 'bafkreiabc', 100); f[13] = 50; return f })()],
    ['a GET over 64 MiB', getFrame(1, 'bafkreiabc', 64 * 1024 * 1024 + 1)],
    ['a GET with a non-printable CID', getFrame(1, 'bafk\u0001reiabc', 100)],
    ['a CANCEL with trailing bytes', Buffer.from([0, 0, 0, 6, 2, 0, 0, 0, 1, 0])]
  ]

  for (const [name, frame] of cases) {
    it(`closes a connection that sends ${name}, and keeps serving others`, async () => {
      const s = await setup()
      const raw = await admittedClient(s)
      raw.socket.write(frame)

      // the connection closes at once: nothing more was sent, so it cannot be waiting for a body
      await within(raw.closed, 5000, 'the server closing the connection')
      expect(raw.received()).toBe(0)
      expect(s.server.stats.protocolErrors).toBe(1)
      expect(s.logs.some(entry => entry.level === 'error')).toBe(true)
      await expectStillServing(s)
    })
  }

  it('closes a connection that reuses the id of a request in flight', async () => {
    const s = await setup()
    const gate = s.store.gate(s.chunk.cid)
    const raw = await admittedClient(s)
    raw.socket.write(getFrame(7, s.chunk.cid, 4096))
    await within(gate.started, 5000, 'the read')
    raw.socket.write(getFrame(7, s.chunk.cid, 4096))
    await within(raw.closed, 5000, 'the server closing the connection')
    expect(s.server.stats.protocolErrors).toBe(1)
    gate.release()
    await expectStillServing(s)
  })

  it('parses requests that arrive one byte at a time, and answers out of order', async () => {
    const s = await setup()
    const other = await randomChunk(100)
    s.store.chunks.set(other.cid, other.bytes)
    const gate = s.store.gate(s.chunk.cid)
    const raw = await admittedClient(s)
    const responses: Buffer[] = []
    raw.socket.on('data', (chunk: Buffer) => { responses.push(chunk) })

    const bytes = Buffer.concat([getFrame(1, s.chunk.cid, 4096), getFrame(2, other.cid, 100)])
    for (const byte of bytes) {
      raw.socket.write(Buffer.from([byte]))
      await new Promise(resolve => setImmediate(resolve))
    }
    await within((async () => { while (raw.received() < 9 + 100) await new Promise(resolve => setTimeout(resolve, 5)) })(), 5000, 'the second answer')
    gate.release()
    await within((async () => { while (raw.received() < 18 + 4196) await new Promise(resolve => setTimeout(resolve, 5)) })(), 5000, 'the first answer')

    const all = Buffer.concat(responses)
    // request 2 was answered first: its chunk was not held up
    expect(all.readUInt32BE(0)).toBe(5 + 100)
    expect(all.readUInt32BE(4)).toBe(2)
    expect(all[8]).toBe(0)
    expect(Buffer.compare(all.subarray(9, 109), other.bytes)).toBe(0)
    expect(all.readUInt32BE(109)).toBe(5 + 4096)
    expect(all.readUInt32BE(113)).toBe(1)
    expect(Buffer.compare(all.subarray(118), s.chunk.bytes)).toBe(0)
    expect(raw.socket.alpnProtocol).toBe(PROTOCOL)
  })
})
