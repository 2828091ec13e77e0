/**
 * Each kind of control message that does not fit the receiving node's own state, sent by a real
 * libp2p peer over TCP on a raw control stream: dropped, counted by reason, scored, and never
 * seen by a listener. Then the ban that repeat offences earn, at libp2p's connection gating.
 */

import { multiaddr } from '@multiformats/multiaddr'
import { afterEach, describe, expect, it } from 'vitest'
import {
  CONTROL_PROTOCOL,
  createBitfield,
  encodeMessage,
  generateSwarmKey,
  MANIFEST_ENTRY_BYTES,
  PEER_OFFENCE_WEIGHTS,
  setBit
} from '../src/index.js'
import { addressWithPeer, Fleet, manifestCid, waitFor } from './helpers.js'
import type { ControlEvents, ControlMessage, ControlRejection, SwarmNode, SwarmNodeInit } from '../src/index.js'

const swarmKey = generateSwarmKey()

interface Raw {
  send(...messages: ControlMessage[]): void
  close(): Promise<void>
}

/** A control stream from `from` to `to` that the test writes by hand, starting with hello. */
async function rawStream (from: SwarmNode, to: SwarmNode): Promise<Raw> {
  const stream = await from.libp2p.dialProtocol(to.libp2p.peerId, CONTROL_PROTOCOL)
  stream.send(encodeMessage({ type: 'hello', version: 1 }))
  return {
    send: (...messages) => { messages.forEach(message => stream.send(encodeMessage(message))) },
    close: async () => { await stream.close() }
  }
}

function seen (node: SwarmNode): Array<{ type: keyof ControlEvents, detail: any }> {
  const events: Array<{ type: keyof ControlEvents, detail: any }> = []
  for (const type of ['peer:joined', 'peer:have', 'peer:left'] as const) {
    node.control.addEventListener(type, event => { events.push({ type, detail: event.detail }) })
  }
  return events
}

describe('control messages that do not fit this node\'s state', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  /** `a` holds manifest m of 12 chunks; `b` is the peer that misbehaves, scored but never banned here. */
  async function setup (initA: SwarmNodeInit = {}): Promise<{ a: SwarmNode, b: SwarmNode, m: string, raw: Raw, events: ReturnType<typeof seen> }> {
    const a = await fleet.add({ swarmKey, peerScore: { banThreshold: 1e9 }, ...initA })
    const b = await fleet.add({ swarmKey, bootstrap: [addressWithPeer(a)] })
    await waitFor(() => a.isConnected(b.peerId), 'b to connect')
    // b's own control stream (its hello resets what b announced) opens before the raw one
    await waitFor(() => b.libp2p.getConnections(a.libp2p.peerId).flatMap(c => c.streams).some(s => s.protocol === CONTROL_PROTOCOL && s.direction === 'outbound'), 'b\'s control stream')
    const m = await manifestCid(`state ${Math.random()}`)
    a.control.join(m, { bitfield: createBitfield(12), chunkCount: 12, pulling: true })
    const events = seen(a)
    return { a, b, m, raw: await rawStream(b, a), events }
  }

  /** Sends `bad`, then a valid have on the same stream; once it arrives, `bad` has been handled. */
  async function dropped (ctx: Awaited<ReturnType<typeof setup>>, reason: ControlRejection, ...bad: ControlMessage[]): Promise<void> {
    const { a, b, m, raw, events } = ctx
    const before = a.control.stats().rejected[reason]
    const scoreBefore = a.peerScores.score(b.peerId)
    const marker = 11 - events.filter(e => e.type === 'peer:have').length
    raw.send(...bad, { type: 'join', manifest: m, chunkCount: 12, pulling: true, bitfield: createBitfield(12) }, { type: 'have', manifest: m, indices: [marker] })
    await waitFor(() => events.some(e => e.type === 'peer:have' && e.detail.indices[0] === marker), `the have after ${reason}`)
    expect(a.control.stats().rejected[reason]).toBe(before + bad.length)
    expect(a.peerScores.score(b.peerId)).toBeCloseTo(scoreBefore + bad.length * PEER_OFFENCE_WEIGHTS[reason], 0)
    // the only have any listener saw is the marker
    expect(events.filter(e => e.type === 'peer:have').every(e => e.detail.indices.length === 1 && e.detail.indices[0] >= marker)).toBe(true)
  }

  it('a join for a manifest not held: set aside, counted, not scored; used once the node joins it, if it fits', async () => {
    const ctx = await setup()
    const [other, third] = [await manifestCid('not held here'), await manifestCid('not held either')]
    const bitfield = createBitfield(3)
    setBit(bitfield, 1)
    await dropped(ctx, 'not-joined',
      { type: 'join', manifest: other, chunkCount: 3, pulling: false, bitfield },
      { type: 'join', manifest: third, chunkCount: 5, pulling: false, bitfield: createBitfield(5) })
    expect(ctx.a.control.peersFor(other)).toEqual([])
    expect(ctx.events.filter(e => e.type === 'peer:joined').map(e => e.detail.manifestCid)).toEqual([ctx.m])
    // a have for a manifest set aside is checked against it too
    await dropped(ctx, 'index-out-of-range', { type: 'have', manifest: other, indices: [3] })
    ctx.raw.send({ type: 'have', manifest: other, indices: [2] })
    await dropped(ctx, 'index-out-of-range', { type: 'have', manifest: other, indices: [7] })

    // joining the manifest uses what was set aside at once, with the haves since
    ctx.a.control.join(other, { bitfield: createBitfield(3), chunkCount: 3, pulling: true })
    expect(ctx.a.control.peersFor(other).map(p => [p.peerId, p.bitfield[0]])).toEqual([[ctx.b.peerId, 0b0110_0000]])
    // one whose chunk count is not the manifest's is dropped and scored then
    const before = ctx.a.control.stats().rejected['chunk-count']
    ctx.a.control.join(third, { bitfield: createBitfield(4), chunkCount: 4, pulling: true })
    expect(ctx.a.control.peersFor(third)).toEqual([])
    expect(ctx.a.control.stats().rejected['chunk-count']).toBe(before + 1)
  })

  it('sets aside only a few joins per peer, the newest, within their byte budget', async () => {
    const ctx = await setup({ controlLimits: { maxPeerAsideManifests: 4, maxPeerAsideBytes: 4 * (MANIFEST_ENTRY_BYTES + 1) } })
    const others = await Promise.all(Array.from({ length: 10 }, async (_, i) => await manifestCid(`aside ${i}`)))
    const held = ctx.a.control.stats().stateBytes
    await dropped(ctx, 'not-joined', ...others.map(cid => ({ type: 'join' as const, manifest: cid, chunkCount: 8, pulling: false, bitfield: createBitfield(8) })))
    // m's entry (12 chunks) and the last four of the ten (8 chunks each)
    expect(ctx.a.control.stats().stateBytes - held).toBe(2 + MANIFEST_ENTRY_BYTES + 4 * (1 + MANIFEST_ENTRY_BYTES))
    for (const [i, cid] of others.entries()) {
      ctx.a.control.join(cid, { bitfield: createBitfield(8), chunkCount: 8, pulling: false })
      expect(ctx.a.control.peersFor(cid).length, `manifest ${i}`).toBe(i >= 6 ? 1 : 0)
    }
    // one bigger than the whole allowance is not kept at all
    const big = await manifestCid('aside big')
    await dropped(ctx, 'not-joined', { type: 'join', manifest: big, chunkCount: 80_000, pulling: false, bitfield: createBitfield(80_000) })
    ctx.a.control.join(big, { bitfield: createBitfield(80_000), chunkCount: 80_000, pulling: false })
    expect(ctx.a.control.peersFor(big)).toEqual([])
  })

  it('a join whose chunk count is not the manifest\'s, either way', async () => {
    const ctx = await setup()
    const bitfield = createBitfield(13)
    setBit(bitfield, 12)
    await dropped(ctx, 'chunk-count',
      { type: 'join', manifest: ctx.m, chunkCount: 13, pulling: false, bitfield },
      { type: 'join', manifest: ctx.m, chunkCount: 4, pulling: false, bitfield: createBitfield(4) },
      { type: 'join', manifest: ctx.m, chunkCount: 10_000_000, pulling: false, bitfield: new Uint8Array(1_250_000) })
    expect(ctx.events.filter(e => e.type === 'peer:joined').every(e => e.detail.chunkCount === 12)).toBe(true)
    expect(ctx.a.control.peersFor(ctx.m)[0]?.bitfield.length).toBe(2)
  })

  it('a have before the peer joined, and a have past the last chunk', async () => {
    const ctx = await setup()
    await dropped(ctx, 'peer-not-joined', { type: 'have', manifest: ctx.m, indices: [0] })
    await dropped(ctx, 'index-out-of-range', { type: 'have', manifest: ctx.m, indices: [3, 12] }, { type: 'have', manifest: ctx.m, indices: [9_999_999] })
    // a have of which one index is out of range changes nothing, in range or not
    expect(ctx.a.control.peersFor(ctx.m)[0]?.bitfield[0]).toBe(0)
  })

  it('more manifests than a peer may join, and more state than a peer or all peers may hold', async () => {
    const manifests = await Promise.all([1, 2, 3].map(async i => await manifestCid(`many ${i}`)))
    const joinOf = (cid: string): ControlMessage => ({ type: 'join', manifest: cid, chunkCount: 8, pulling: false, bitfield: createBitfield(8) })
    {
      const ctx = await setup({ controlLimits: { maxPeerManifests: 2 } })
      for (const cid of manifests) ctx.a.control.join(cid, { bitfield: createBitfield(8), chunkCount: 8, pulling: false })
      ctx.raw.send({ type: 'join', manifest: ctx.m, chunkCount: 12, pulling: true, bitfield: createBitfield(12) }, joinOf(manifests[0]!))
      await dropped(ctx, 'too-many-manifests', joinOf(manifests[1]!), joinOf(manifests[2]!))
      expect(ctx.a.control.peersFor(manifests[2]!)).toEqual([])
    }
    // one entry costs its bitfield plus 256 bytes: a budget of 600 holds two
    for (const [limit, reason] of [['maxPeerStateBytes', 'peer-over-budget'], ['maxTotalStateBytes', 'over-budget']] as const) {
      const ctx = await setup({ controlLimits: { [limit]: 600 } })
      for (const cid of manifests) ctx.a.control.join(cid, { bitfield: createBitfield(8), chunkCount: 8, pulling: false })
      ctx.raw.send({ type: 'join', manifest: ctx.m, chunkCount: 12, pulling: true, bitfield: createBitfield(12) }, joinOf(manifests[0]!))
      await dropped(ctx, reason, joinOf(manifests[1]!), joinOf(manifests[2]!))
      expect(ctx.a.control.stats().stateBytes).toBe(2 + 1 + 2 * 256)
      expect(ctx.a.control.stats().maxPeerStateBytes).toBeLessThanOrEqual(600)
    }
  })

  it('messages past the peer\'s rate: dropped before they are parsed', async () => {
    const ctx = await setup({ controlLimits: { messageBurst: 20, messagesPerSecond: 0.001 } })
    const { a, b, m, raw, events } = ctx
    raw.send({ type: 'join', manifest: m, chunkCount: 12, pulling: true, bitfield: createBitfield(12) })
    await waitFor(() => events.some(e => e.type === 'peer:joined'), 'the join')
    for (let i = 0; i < 40; i++) raw.send({ type: 'have', manifest: m, indices: [i % 12] })
    const haves = (): number => events.filter(e => e.type === 'peer:have').length
    await waitFor(() => haves() + a.control.stats().rejected['rate-limited'] === 40, 'every have to be handled')
    // two hellos and the join took three of the 20 tokens
    expect(haves()).toBeLessThanOrEqual(17)
    expect(a.control.stats().rejected['rate-limited']).toBeGreaterThanOrEqual(23)
    expect(a.peerScores.score(b.peerId)).toBeCloseTo(a.control.stats().rejected['rate-limited'] * PEER_OFFENCE_WEIGHTS['rate-limited'], 0)
    // a byte budget counts too: one message bigger than the burst is dropped unread
    const bytes = await setup({ controlLimits: { byteBurst: 1_000, bytesPerSecond: 1 } })
    bytes.raw.send({ type: 'have', manifest: bytes.m, indices: Array.from({ length: 600 }, (_, i) => i % 12) })
    await waitFor(() => bytes.a.control.stats().rejected['rate-limited'] === 1, 'the large message to be dropped')
    expect(bytes.a.control.stats().rejected['peer-not-joined']).toBe(0)
  })
})

describe('bans', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('a peer that keeps sending bad messages is hung up on and refused both ways until its ban ends', async () => {
    const a = await fleet.add({ swarmKey, peerScore: { banMs: 3_000 } })
    const b = await fleet.add({ swarmKey, bootstrap: [addressWithPeer(a)], bootstrapInterval: 60_000 })
    await waitFor(() => a.isConnected(b.peerId) && b.isConnected(a.peerId), 'the pair to connect')
    const m = await manifestCid('ban')
    a.control.join(m, { bitfield: createBitfield(4), chunkCount: 4, pulling: false })
    const raw = await rawStream(b, a)
    // 25 each: four joins with the wrong chunk count make 100, less what decays between them
    for (let i = 0; i < 5; i++) raw.send({ type: 'join', manifest: m, chunkCount: 5, pulling: false, bitfield: createBitfield(5) })
    await waitFor(() => a.peerScores.isBanned(b.peerId), 'a to ban b')
    await waitFor(() => !a.isConnected(b.peerId) && !b.isConnected(a.peerId), 'a to hang up on b')
    expect(a.control.peersFor(m)).toEqual([])

    // neither side can connect while the ban lasts
    // (b may see its side of the handshake finish before a closes it)
    const attempt = await b.libp2p.dial(multiaddr(addressWithPeer(a)), { signal: AbortSignal.timeout(2_000) }).catch(() => undefined)
    await waitFor(() => attempt == null || attempt.status !== 'open', 'a to refuse b\'s connection')
    await expect(a.libp2p.dial(multiaddr(addressWithPeer(b)), { signal: AbortSignal.timeout(2_000) })).rejects.toThrow(/gater/)
    expect(a.isConnected(b.peerId)).toBe(false)
    expect(b.isConnected(a.peerId)).toBe(false)

    // after it, b is welcome again and its honest state arrives
    await waitFor(() => !a.peerScores.isBanned(b.peerId), 'the ban to end', 10_000)
    await b.libp2p.dial(multiaddr(addressWithPeer(a)), { signal: AbortSignal.timeout(5_000) })
    b.control.join(m, { bitfield: createBitfield(4), chunkCount: 4, pulling: true })
    await waitFor(() => a.control.peersFor(m).some(p => p.peerId === b.peerId), 'a to hear b\'s join after the ban')
    expect(a.peerScores.stats().bans).toBe(1)
  })
})
