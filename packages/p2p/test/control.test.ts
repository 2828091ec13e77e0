import { afterEach, describe, expect, it } from 'vitest'
import {
  CONTROL_PROTOCOL,
  createBitfield,
  encodeMessage,
  generateSwarmKey,
  hasBit,
  InvalidChunkStateError,
  InvalidManifestCidError,
  InvalidPeerIdError,
  MANIFEST_ENTRY_BYTES,
  MAX_JOIN_FETCHERS,
  setBit
} from '../src/index.js'
import { addressWithPeer, capturingLogger, Fleet, manifestCid, waitFor } from './helpers.js'
import type { ControlChannel, ControlEvents, SwarmNode } from '../src/index.js'

const swarmKey = generateSwarmKey()

function bitfieldOf (chunkCount: number, indices: number[]): Uint8Array {
  const bitfield = createBitfield(chunkCount)
  indices.forEach(index => { setBit(bitfield, index) })
  return bitfield
}

function indicesOf (bitfield: Uint8Array | undefined, chunkCount: number): number[] {
  return Array.from({ length: chunkCount }, (_, i) => i).filter(i => bitfield != null && hasBit(bitfield, i))
}

type Recorded = Array<{ type: keyof ControlEvents, detail: any }>

function record (control: ControlChannel): Recorded {
  const events: Recorded = []
  for (const type of ['peer:joined', 'peer:have', 'peer:arriving', 'peer:not-arriving', 'peer:left', 'peer:disconnected', 'peer:data-address'] as const) {
    control.addEventListener(type, (event) => { events.push({ type, detail: event.detail }) })
  }
  return events
}

function viewOf (node: SwarmNode, manifest: string, peerId: string): ReturnType<ControlChannel['peersFor']>[number] | undefined {
  return node.control.peersFor(manifest).find(peer => peer.peerId === peerId)
}

async function connectedPair (fleet: Fleet, initA = {}, initB = {}): Promise<[SwarmNode, SwarmNode]> {
  const a = await fleet.add({ swarmKey, ...initA })
  const b = await fleet.add({ swarmKey, bootstrap: [addressWithPeer(a)], ...initB })
  await waitFor(() => a.isConnected(b.peerId) && b.isConnected(a.peerId), 'the pair to connect')
  return [a, b]
}

/** Three nodes, each connected to the other two. */
async function connectedTrio (fleet: Fleet): Promise<[SwarmNode, SwarmNode, SwarmNode]> {
  const [a, b] = await connectedPair(fleet)
  const c = await fleet.add({ swarmKey, bootstrap: [addressWithPeer(a), addressWithPeer(b)] })
  await waitFor(() => [a, b].every(node => c.isConnected(node.peerId) && node.isConnected(c.peerId)), 'the third node to connect to both')
  return [a, b, c]
}

describe('control channel', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('propagates joins, haves and bitfields with data addresses', async () => {
    let portOfA = 7001
    const [a, b] = await connectedPair(fleet, { dataAddress: () => ({ port: portOfA }) }, { dataAddress: () => ({ host: '10.9.8.7', port: 7002 }) })
    const eventsOfB = record(b.control)
    const m = await manifestCid('control')

    // a join reaches every connected peer at once; one that has not joined the manifest sets it aside
    a.control.join(m, { bitfield: bitfieldOf(10, [0, 2]), chunkCount: 10, pulling: false })
    expect(a.control.joined()).toEqual([m])
    await waitFor(() => b.control.stats().rejected['not-joined'] === 1, 'b to set aside a join for a manifest it does not hold')
    expect(viewOf(b, m, a.peerId)).toBeUndefined()
    expect(eventsOfB.filter(event => event.type === 'peer:joined')).toEqual([])
    expect(b.control.stats().stateBytes).toBe(2 + MANIFEST_ENTRY_BYTES)
    expect(b.peerScores.score(a.peerId)).toBe(0)

    // b has not joined: a's haves are not sent to it ...
    a.control.have(m, [5])
    await new Promise(resolve => setTimeout(resolve, 200))
    // ... once b joins, it has a's state at once, from what it set aside ...
    b.control.join(m, { bitfield: createBitfield(10), chunkCount: 10, pulling: true })
    expect(viewOf(b, m, a.peerId)).toMatchObject({ pulling: false, chunkCount: 10, dataAddress: { host: '127.0.0.1', port: 7001 } })
    expect(indicesOf(viewOf(b, m, a.peerId)?.bitfield, 10)).toEqual([0, 2])
    // ... and a sends its current state again, with the chunk b missed
    await waitFor(() => viewOf(a, m, b.peerId) != null, 'a to learn that b pulls the manifest')
    expect(viewOf(a, m, b.peerId)).toMatchObject({ pulling: true, dataAddress: { host: '10.9.8.7', port: 7002 } })
    await waitFor(() => indicesOf(viewOf(b, m, a.peerId)?.bitfield, 10).includes(5), 'b to get the chunk it missed')
    expect(indicesOf(viewOf(b, m, a.peerId)?.bitfield, 10)).toEqual([0, 2, 5])
    expect(eventsOfB).toContainEqual({ type: 'peer:data-address', detail: { peerId: a.peerId, host: '127.0.0.1', port: 7001 } })
    expect(eventsOfB.find(event => event.type === 'peer:joined')?.detail).toMatchObject({ peerId: a.peerId, manifestCid: m, chunkCount: 10, pulling: false })
    expect(b.control.stats().stateBytes).toBeGreaterThan(0)

    // haves in quick succession are coalesced into one message
    const before = eventsOfB.length
    a.control.have(m, [6, 7])
    a.control.have(m, [7, 8])
    a.control.have(m, [0])
    await waitFor(() => indicesOf(viewOf(b, m, a.peerId)?.bitfield, 10).includes(8), 'b to see the new chunks')
    expect(indicesOf(viewOf(b, m, a.peerId)?.bitfield, 10)).toEqual([0, 2, 5, 6, 7, 8])
    expect(eventsOfB.slice(before)).toEqual([{ type: 'peer:have', detail: { peerId: a.peerId, manifestCid: m, indices: [6, 7, 8] } }])

    // the data server moved
    portOfA = 7003
    a.control.announceDataAddress()
    await waitFor(() => b.control.dataAddressOf(a.peerId)?.port === 7003, 'b to see the new data port')
    expect(b.control.dataAddressOf(a.peerId)).toEqual({ host: '127.0.0.1', port: 7003 })

    // a node connecting later, to a only, then to b as a lookup would have it dial
    const c = await fleet.add({ swarmKey, bootstrap: [addressWithPeer(a)] })
    c.control.join(m, { bitfield: createBitfield(10), chunkCount: 10, pulling: false })
    await waitFor(() => viewOf(c, m, a.peerId) != null, 'c to get a\'s state on connecting')
    expect(indicesOf(viewOf(c, m, a.peerId)?.bitfield, 10)).toEqual([0, 2, 5, 6, 7, 8])
    expect(viewOf(c, m, b.peerId)).toBeUndefined()
    await c.control.dial({ peerId: b.peerId, multiaddrs: b.multiaddrs() })
    await waitFor(() => viewOf(c, m, b.peerId)?.pulling === true, 'c to get b\'s state after dialling it')
    expect(c.control.peersFor(m).map(peer => peer.peerId).sort()).toEqual([a.peerId, b.peerId].sort())

    // leaving
    a.control.leave(m)
    await waitFor(() => viewOf(b, m, a.peerId) == null && viewOf(c, m, a.peerId) == null, 'a\'s leave to reach its peers')
    expect(eventsOfB).toContainEqual({ type: 'peer:left', detail: { peerId: a.peerId, manifestCid: m } })
    expect(a.control.joined()).toEqual([])
    // a forgot what its peers hold of a manifest it left
    expect(a.control.peersFor(m)).toEqual([])
    expect(a.control.stats().stateBytes).toBe(0)
    // haves for a manifest no longer joined go nowhere
    a.control.have(m, [9])

    // disconnecting drops everything the peer announced
    const eventsOfA = record(a.control)
    await b.stop()
    await waitFor(() => eventsOfA.some(event => event.type === 'peer:disconnected' && event.detail.peerId === b.peerId), 'a to see b go')
    expect(viewOf(a, m, b.peerId)).toBeUndefined()
    expect(a.control.dataAddressOf(b.peerId)).toBeUndefined()
  })

  it('closes a stream that sends bad messages and keeps working', async () => {
    const entries: Array<{ obj: Record<string, unknown>, msg?: string, level: string }> = []
    // scored, but not banned here: bans have tests of their own
    const [a, b] = await connectedPair(fleet, { logger: capturingLogger(entries), peerScore: { banThreshold: 1e9 } })
    const m = await manifestCid('bad messages')
    const text = (value: string): Uint8Array => {
      const body = new TextEncoder().encode(value)
      const frame = new Uint8Array(4 + body.length)
      new DataView(frame.buffer).setUint32(0, body.length)
      frame.set(body, 4)
      return frame
    }
    const oversized = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x7b])
    const hello = encodeMessage({ type: 'hello', version: 1 })
    const other = await manifestCid('raw stream')
    const join = encodeMessage({ type: 'join', manifest: other, chunkCount: 4, pulling: true, bitfield: createBitfield(4) })
    const badSequences: Array<[string, Uint8Array[]]> = [
      ['not JSON', [text('{"type": "hello",')]],
      ['an oversized length prefix', [oversized]],
      ['no hello first', [join]],
      ['a bitfield that does not fit its chunk count', [hello, text(`{"type":"join","manifest":"${other}","chunkCount":4,"pulling":true,"bitfield":"AAA="}`)]]
    ]
    for (const [name, frames] of badSequences) {
      const stream = await b.libp2p.dialProtocol(a.libp2p.peerId, CONTROL_PROTOCOL)
      frames.forEach(frame => stream.send(frame))
      await waitFor(() => stream.status !== 'open', `a to close the stream that sent ${name}`, 5_000)
      expect(stream.status).toBe('reset')
    }
    const warnings = entries.filter(entry => entry.msg === 'closing control stream after a bad message')
    expect(warnings.map(entry => entry.level)).toEqual(['warn', 'warn', 'warn', 'warn'])
    expect(warnings.every(entry => entry.obj.peer === b.peerId)).toBe(true)
    expect(a.control.stats().rejected).toMatchObject({ malformed: 2, 'too-large': 1, bitfield: 1 })
    expect(a.peerScores.score(b.peerId)).toBeGreaterThan(100)

    // the node, the connection and b's own control stream all still work
    expect(a.isConnected(b.peerId)).toBe(true)
    a.control.join(m, { bitfield: createBitfield(4), chunkCount: 4, pulling: true })
    b.control.join(m, { bitfield: bitfieldOf(4, [1]), chunkCount: 4, pulling: false })
    await waitFor(() => viewOf(a, m, b.peerId) != null, 'a to hear b\'s join')
    expect(indicesOf(viewOf(a, m, b.peerId)?.bitfield, 4)).toEqual([1])
  })

  it('replaces a lost stream with one that carries the whole state', async () => {
    const [a, b] = await connectedPair(fleet)
    const m = await manifestCid('reopen')
    a.control.join(m, { bitfield: bitfieldOf(8, [1]), chunkCount: 8, pulling: true })
    b.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    await waitFor(() => viewOf(b, m, a.peerId) != null && viewOf(a, m, b.peerId) != null, 'both to join')

    const writerOfA = () => a.libp2p.getConnections(b.libp2p.peerId)
      .flatMap(connection => connection.streams)
      .find(stream => stream.protocol === CONTROL_PROTOCOL && stream.direction === 'outbound' && stream.status === 'open')
    const lost = writerOfA()
    expect(lost).toBeDefined()
    lost?.abort(new Error('simulated loss'))
    // chunks that land while no stream is open are not lost: the next stream starts with them
    a.control.have(m, [2])
    a.control.have(m, [3])
    await waitFor(() => indicesOf(viewOf(b, m, a.peerId)?.bitfield, 8).includes(3), 'b to see chunks sent after the loss')
    expect(indicesOf(viewOf(b, m, a.peerId)?.bitfield, 8)).toEqual([1, 2, 3])
    expect(writerOfA()).not.toBe(lost)
  })

  it('tells peers still pulling which chunks are arriving and which stopped, as events, not as holdings', async () => {
    const [seeder, puller, other] = await connectedTrio(fleet)
    const eventsOfSeeder = record(seeder.control)
    const eventsOfOther = record(other.control)
    const m = await manifestCid('arrivals')
    seeder.control.join(m, { bitfield: bitfieldOf(8, [0, 1, 2, 3, 4, 5, 6, 7]), chunkCount: 8, pulling: false })
    puller.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    other.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    await waitFor(() => viewOf(puller, m, other.peerId) != null && viewOf(puller, m, seeder.peerId) != null && viewOf(other, m, puller.peerId) != null, 'all three to join')

    puller.control.arriving(m, [3, 5], true)
    await waitFor(() => eventsOfOther.some(event => event.type === 'peer:arriving'), 'the other puller to hear of the arrivals')
    puller.control.arriving(m, [5], false)
    await waitFor(() => eventsOfOther.some(event => event.type === 'peer:not-arriving'), 'the other puller to hear one stopped')
    expect(eventsOfOther.filter(event => event.type === 'peer:arriving' || event.type === 'peer:not-arriving')).toEqual([
      { type: 'peer:arriving', detail: { peerId: puller.peerId, manifestCid: m, indices: [3, 5] } },
      { type: 'peer:not-arriving', detail: { peerId: puller.peerId, manifestCid: m, indices: [5] } }
    ])
    // an arriving chunk is no holding
    expect(indicesOf(viewOf(other, m, puller.peerId)?.bitfield, 8)).toEqual([])
    // a seeder asks nobody for anything: it hears of no arrivals
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(eventsOfSeeder.filter(event => event.type === 'peer:arriving' || event.type === 'peer:not-arriving')).toEqual([])
    expect(() => { puller.control.arriving(m, [8], true) }).toThrow(/outside manifest/)
  })

  it('sends no haves to a peer that holds every chunk, and its whole state once it lacks some again', async () => {
    const [seeder, puller, other] = await connectedTrio(fleet)
    const eventsOfSeeder = record(seeder.control)
    const m = await manifestCid('seeder-haves')
    seeder.control.join(m, { bitfield: bitfieldOf(8, [0, 1, 2, 3, 4, 5, 6, 7]), chunkCount: 8, pulling: false })
    puller.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    other.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    await waitFor(() => viewOf(puller, m, seeder.peerId) != null && viewOf(puller, m, other.peerId) != null && viewOf(seeder, m, puller.peerId) != null, 'all three to join')

    puller.control.have(m, [0, 1])
    // the flush that reached the peer still pulling would have reached the seeder too
    await waitFor(() => indicesOf(viewOf(other, m, puller.peerId)?.bitfield, 8).length === 2, 'the other puller to get the haves')
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(eventsOfSeeder.filter(event => event.type === 'peer:have')).toEqual([])
    expect(indicesOf(viewOf(seeder, m, puller.peerId)?.bitfield, 8)).toEqual([])

    // the seeder lost a chunk (evicted) and pulls again: it learns what the haves it was spared said
    seeder.control.join(m, { bitfield: bitfieldOf(8, [0, 1, 2, 3, 4, 6, 7]), chunkCount: 8, pulling: true })
    await waitFor(() => indicesOf(viewOf(seeder, m, puller.peerId)?.bitfield, 8).length === 2, 'the seeder to get the puller\'s whole state')
    expect(indicesOf(viewOf(seeder, m, puller.peerId)?.bitfield, 8)).toEqual([0, 1])
    // and, lacking a chunk, it gets haves again
    puller.control.have(m, [5])
    await waitFor(() => eventsOfSeeder.some(event => event.type === 'peer:have' && event.detail.indices.includes(5)), 'the seeder to get a have again')
  })

  it('names in haves and arrivals only the chunks each peer lacks, and sends a peer that lost one its whole state', async () => {
    const [announcer, holder, empty] = await connectedTrio(fleet)
    const eventsOfHolder = record(holder.control)
    const eventsOfEmpty = record(empty.control)
    const m = await manifestCid('lacking')
    announcer.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    holder.control.join(m, { bitfield: bitfieldOf(8, [0, 1]), chunkCount: 8, pulling: true })
    empty.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    await waitFor(() => viewOf(announcer, m, holder.peerId) != null && viewOf(announcer, m, empty.peerId) != null && viewOf(holder, m, announcer.peerId) != null && viewOf(empty, m, announcer.peerId) != null, 'all three to join')

    announcer.control.have(m, [0, 1, 2])
    announcer.control.arriving(m, [1, 3], true)
    await waitFor(() => eventsOfEmpty.some(event => event.type === 'peer:have') && eventsOfEmpty.some(event => event.type === 'peer:arriving'), 'the empty node to hear of both')
    await waitFor(() => eventsOfHolder.some(event => event.type === 'peer:have') && eventsOfHolder.some(event => event.type === 'peer:arriving'), 'the holder to hear of both')
    // (arrivals go out at once, haves after a short coalescing delay: compared by kind)
    const fromAnnouncer = (events: Recorded, type: keyof ControlEvents): number[][] => events.filter(event => event.type === type && event.detail.peerId === announcer.peerId).map(event => event.detail.indices)
    expect(fromAnnouncer(eventsOfEmpty, 'peer:have')).toEqual([[0, 1, 2]])
    expect(fromAnnouncer(eventsOfEmpty, 'peer:arriving')).toEqual([[1, 3]])
    // the holder had chunks 0 and 1: it hears only of 2 landing and 3 arriving
    expect(fromAnnouncer(eventsOfHolder, 'peer:have')).toEqual([[2]])
    expect(fromAnnouncer(eventsOfHolder, 'peer:arriving')).toEqual([[3]])
    expect(indicesOf(viewOf(holder, m, announcer.peerId)?.bitfield, 8)).toEqual([2])

    // an arrival that names only chunks the peer holds sends it nothing
    announcer.control.arriving(m, [0], false)
    await waitFor(() => eventsOfEmpty.some(event => event.type === 'peer:not-arriving'), 'the empty node to hear the arrival stopped')
    await new Promise(resolve => setTimeout(resolve, 200))
    expect(eventsOfHolder.filter(event => event.type === 'peer:not-arriving')).toEqual([])
    // what the announcer counts as sent: a have and an arrival to each, the stop to the empty node only
    expect(announcer.control.stats().sent).toMatchObject({ have: 2, arriving: 2, 'not-arriving': 1 })

    // the holder lost chunk 1 (evicted) and joins again: it learns what the haves it was spared said
    holder.control.join(m, { bitfield: bitfieldOf(8, [0]), chunkCount: 8, pulling: true })
    await waitFor(() => indicesOf(viewOf(holder, m, announcer.peerId)?.bitfield, 8).length === 3, 'the holder to get the announcer\'s whole state')
    expect(indicesOf(viewOf(holder, m, announcer.peerId)?.bitfield, 8)).toEqual([0, 1, 2])
  })

  it('passes on the origin fetchers a join names, and counts them against the budgets', async () => {
    const [a, b] = await connectedPair(fleet)
    const eventsOfB = record(b.control)
    const m = await manifestCid('fetchers')
    b.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    a.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    await waitFor(() => viewOf(b, m, a.peerId) != null, 'b to learn that a pulls')
    expect(viewOf(b, m, a.peerId)?.fetchers).toEqual([])
    const plain = b.control.stats().stateBytes

    // a names who fetches from the origin, itself among them: b has the list, in order
    const named = [{ peerId: b.peerId, hops: 1 }, { peerId: a.peerId, hops: 0 }]
    a.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true, fetchers: named })
    await waitFor(() => viewOf(b, m, a.peerId)?.fetchers.length === 2, 'b to get a\'s fetchers')
    expect(viewOf(b, m, a.peerId)?.fetchers).toEqual(named)
    expect(eventsOfB.filter(event => event.type === 'peer:joined').at(-1)?.detail).toMatchObject({ peerId: a.peerId, fetchers: named })
    expect(b.control.stats().stateBytes).toBeGreaterThan(plain + a.peerId.length + b.peerId.length)

    // a names none again: the list and what it cost are gone
    a.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: false, fetchers: [] })
    await waitFor(() => viewOf(b, m, a.peerId)?.pulling === false, 'b to get a\'s new state')
    expect(viewOf(b, m, a.peerId)?.fetchers).toEqual([])
    expect(b.control.stats().stateBytes).toBe(plain)
  })

  it('rejects bad local input with clear errors', async () => {
    const node = await fleet.add({ swarmKey })
    const m = await manifestCid('local input')
    expect(() => { node.control.join('not a cid', { bitfield: createBitfield(8), chunkCount: 8, pulling: true }) }).toThrow(InvalidManifestCidError)
    expect(() => { node.control.join(m, { bitfield: createBitfield(8), chunkCount: 9, pulling: true }) }).toThrow(InvalidChunkStateError)
    expect(() => { node.control.join(m, { bitfield: createBitfield(8), chunkCount: -1, pulling: true }) }).toThrow(InvalidChunkStateError)
    expect(() => { node.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true, fetchers: [{ peerId: 'nope', hops: 1 }] }) }).toThrow(/fetcher "nope" is not a peer id/)
    expect(() => { node.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true, fetchers: [{ peerId: node.peerId, hops: -1 }] }) }).toThrow(/-1 hops away/)
    const tooMany = Array.from({ length: MAX_JOIN_FETCHERS + 1 }, () => ({ peerId: node.peerId, hops: 0 }))
    expect(() => { node.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true, fetchers: tooMany }) }).toThrow(/at most 64 travel with a join/)
    node.control.join(m, { bitfield: createBitfield(8), chunkCount: 8, pulling: true })
    expect(() => { node.control.have(m, [8]) }).toThrow(InvalidChunkStateError)
    expect(() => { node.control.have(m, [1.5]) }).toThrow(InvalidChunkStateError)
    await expect(node.control.dial({ peerId: 'nope', multiaddrs: [] })).rejects.toBeInstanceOf(InvalidPeerIdError)
    expect(node.control.peersFor('not a cid')).toEqual([])
  })

  it('does not announce a data address peers would reject', async () => {
    const entries: Array<{ obj: Record<string, unknown>, msg?: string, level: string }> = []
    const [a, b] = await connectedPair(fleet, { dataAddress: () => ({ host: 'not a host', port: 7001 }), logger: capturingLogger(entries) })
    const m = await manifestCid('invalid address')
    b.control.join(m, { bitfield: createBitfield(3), chunkCount: 3, pulling: true })
    a.control.join(m, { bitfield: createBitfield(3), chunkCount: 3, pulling: false })
    // the stream survives: the join arrives, without an address
    await waitFor(() => viewOf(b, m, a.peerId) != null, 'b to hear a\'s join')
    expect(b.control.dataAddressOf(a.peerId)).toBeUndefined()
    expect(entries.filter(entry => entry.msg === 'not announcing an invalid data address').map(entry => entry.level)).toEqual(['error'])
  })
})
