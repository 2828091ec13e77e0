/**
 * Fleet gossip between real libp2p nodes over TCP on loopback: states spread and expire, the
 * swarm key keeps outsiders blind, and flooding peers cannot grow the table past its budget.
 */

import { afterEach, describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { DEFAULT_FLEET_LIMITS, encodeFleetState, fleetFastMessageId, fleetPublishSpacing, FLEET_MAX_HEARTBEAT_MS, FLEET_MAX_MESSAGE_BYTES, FLEET_TOPIC, generateSwarmKey, matchesSelector, parseLabels, parseSelector } from '../src/index.js'
import { addressWithPeer, Fleet, waitFor } from './helpers.js'
import type { FleetLocalState, PreheatRequest, SwarmNode } from '../src/index.js'

const swarmKey = generateSwarmKey()
const fast = { heartbeatMs: 300, minPublishIntervalMs: 100 }

async function cid (name: string): Promise<string> {
  return CID.createV1(0x0129, await sha256.digest(new TextEncoder().encode(name))).toString()
}

function stateOf (labels: string, models: FleetLocalState['models'] = []): () => FleetLocalState {
  return () => ({ labels: parseLabels(labels), models })
}

/** A state near the largest message, different at every call (so no two messages are duplicates). */
async function bigState (tag: string): Promise<FleetLocalState> {
  const manifestCid = await cid(tag)
  const models = Array.from({ length: 64 }, (_, i) => ({ manifestCid, ref: `m${i}:${tag}`, state: 'failed' as const, doneBytes: i, totalBytes: 1e9, bytesFromPeers: 0, bytesFromOrigin: 0, reason: 'x'.repeat(200) }))
  return { labels: { pool: 'flood' }, models }
}

describe('fleet gossip', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('every node learns the others\' labels and models within seconds, and forgets a node that leaves', async () => {
    const fast = { heartbeatMs: 300, minPublishIntervalMs: 100, nodeTtlMs: 3_000 }
    const model = await cid('model-a')
    const a = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=a,zone=z1', [{ manifestCid: model, ref: 'llama:v1', state: 'held', doneBytes: 10, totalBytes: 10, bytesFromPeers: 4, bytesFromOrigin: 6 }]) })
    const b = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=a,zone=z2', [{ manifestCid: model, state: 'pulling', doneBytes: 3, totalBytes: 10, bytesFromPeers: 3, bytesFromOrigin: 0 }]), bootstrap: [addressWithPeer(a)] })
    const c = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=b'), bootstrap: [addressWithPeer(a)] })
    await waitFor(() => [a, b, c].every(n => n.fleet.nodes().length === 2), 'every node to see the two others')
    const seenByC = Object.fromEntries(c.fleet.nodes().map(n => [n.peerId, n]))
    expect(seenByC[a.peerId]?.labels).toEqual({ pool: 'a', zone: 'z1' })
    expect(seenByC[a.peerId]?.models).toEqual([{ manifestCid: model, ref: 'llama:v1', state: 'held', doneBytes: 10, totalBytes: 10, bytesFromPeers: 4, bytesFromOrigin: 6 }])
    expect(seenByC[b.peerId]?.models[0]?.state).toBe('pulling')

    // a, connected to c, forgets it when the connection closes; b may have heard of c only through a, and forgets it by its TTL
    const stopped = Date.now()
    await c.stop()
    await waitFor(() => !a.fleet.nodes().some(n => n.peerId === c.peerId), 'the stopped node to be forgotten by its neighbour', 5_000)
    await waitFor(() => !b.fleet.nodes().some(n => n.peerId === c.peerId), 'the stopped node to be forgotten by all', 6_000)
    expect(Date.now() - stopped).toBeLessThan(3_000 + 6_000)
  }, 30_000)

  it('an entry not refreshed expires after its TTL even while the node stays connected', async () => {
    const a = await fleet.add({ swarmKey, fleetLimits: { ...fast, nodeTtlMs: 1_500 } })
    const b = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=a'), bootstrap: [addressWithPeer(a)] })
    await waitFor(() => a.fleet.nodes().some(n => n.peerId === b.peerId), 'a to see b')
    b.fleet.stop() // b stays connected but publishes nothing more
    await waitFor(() => !a.fleet.nodes().some(n => n.peerId === b.peerId), 'b to expire', 5_000)
    expect(a.isConnected(b.peerId)).toBe(true)
  }, 20_000)

  it('opens a gossip stream again when it closes while the connection stays up', async () => {
    let zone = 'z1'
    const limits = { ...fast, nodeTtlMs: 2_000 }
    const a = await fleet.add({ swarmKey, fleetLimits: limits })
    const b = await fleet.add({ swarmKey, fleetLimits: limits, fleetState: () => ({ labels: { zone }, models: [] }), bootstrap: [addressWithPeer(a)] })
    const zoneAtA = (): string | undefined => a.fleet.nodes().find(n => n.peerId === b.peerId)?.labels.zone
    await waitFor(() => zoneAtA() === 'z1', 'a to see b')
    const connection = a.libp2p.getConnections().find(c => c.remotePeer.toString() === b.peerId)
    // b's stream to a is reset; gossipsub itself would open it again only on a new connection
    const streams = (b.libp2p.services.pubsub as unknown as { streamsOutbound: Map<string, { rawStream: { abort: (err: Error) => void } }> }).streamsOutbound
    streams.get(a.peerId)!.rawStream.abort(new Error('reset by the test'))
    await waitFor(() => !streams.has(a.peerId), 'b\'s stream to a to be gone')
    zone = 'z2'
    b.fleet.changed()
    await waitFor(() => zoneAtA() === 'z2', 'a to hear b\'s new state', 10_000)
    expect(b.fleet.stats().streamsReopened).toBeGreaterThanOrEqual(1)
    // over the same connection: nobody hung up
    expect(a.libp2p.getConnections().find(c => c.remotePeer.toString() === b.peerId)).toBe(connection)
  }, 30_000)

  it('preheat requests reach every node once, with the requester named', async () => {
    const a = await fleet.add({ swarmKey, fleetLimits: fast })
    const b = await fleet.add({ swarmKey, fleetLimits: fast, bootstrap: [addressWithPeer(a)] })
    const c = await fleet.add({ swarmKey, fleetLimits: fast, bootstrap: [addressWithPeer(a)] })
    await waitFor(() => [a, b, c].every(n => n.fleet.nodes().length === 2), 'the mesh to form')
    const got = new Map<string, PreheatRequest[]>()
    for (const node of [a, b, c]) {
      got.set(node.peerId, [])
      node.fleet.addEventListener('preheat', ({ detail }) => { got.get(node.peerId)?.push(detail) })
    }
    const sent = b.fleet.preheat({ target: 'llama:v3', selector: 'pool=a,zone!=z9' })
    await waitFor(() => [...got.values()].every(list => list.length >= 1), 'every node to get the request')
    await new Promise(resolve => setTimeout(resolve, 500))
    for (const list of got.values()) expect(list).toEqual([sent])
    expect(sent.from).toBe(b.peerId)
    expect(matchesSelector(parseSelector(sent.selector), { pool: 'a', zone: 'z1' })).toBe(true)
  }, 20_000)

  it('a node without the swarm key sees nothing, and nobody sees it', async () => {
    const a = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=a') })
    const b = await fleet.add({ swarmKey, fleetLimits: fast, fleetState: stateOf('pool=b'), bootstrap: [addressWithPeer(a)] })
    const outsiders = [
      await fleet.add({ fleetLimits: fast, fleetState: stateOf('pool=x'), bootstrap: [addressWithPeer(a)] }),
      await fleet.add({ swarmKey: generateSwarmKey(), fleetLimits: fast, fleetState: stateOf('pool=y'), bootstrap: [addressWithPeer(a)] })
    ]
    const heard: PreheatRequest[] = []
    for (const outsider of outsiders) outsider.fleet.addEventListener('preheat', ({ detail }) => { heard.push(detail) })
    await waitFor(() => a.fleet.nodes().length === 1 && b.fleet.nodes().length === 1, 'the keyed nodes to see each other')
    a.fleet.preheat({ target: 'llama:v3', selector: '' })
    await Promise.all(outsiders.map(async o => { await o.bootstrap().catch(() => {}) }))
    await new Promise(resolve => setTimeout(resolve, 2_000))
    for (const outsider of outsiders) {
      expect(outsider.fleet.nodes()).toEqual([])
      expect(outsider.connectedPeers()).toEqual([])
    }
    expect(heard).toEqual([])
    expect(a.fleet.nodes().map(n => n.peerId)).toEqual([b.peerId])
  }, 20_000)

  it('many flooding identities cannot grow the table past its budget', async () => {
    const budget = 64 * 1024
    const victim = await fleet.add({ swarmKey, fleetLimits: { ...fast, maxTableBytes: budget }, peerScore: { banMs: 0 } })
    // a relay between the victim and the flooders: their entries reach the victim only through it
    const relay = await fleet.add({ swarmKey, fleetLimits: fast, peerScore: { banMs: 0 }, bootstrap: [addressWithPeer(victim)] })
    const flooders: SwarmNode[] = []
    for (let i = 0; i < 6; i++) {
      const state = await bigState(`f${i}`)
      flooders.push(await fleet.add({ swarmKey, fleetLimits: fast, peerScore: { banMs: 0 }, fleetState: () => state, bootstrap: [addressWithPeer(relay)] }))
    }
    expect(encodeFleetState(await bigState('x'), Date.now()).length).toBeLessThanOrEqual(FLEET_MAX_MESSAGE_BYTES)
    let maxSeen = 0
    const sample = setInterval(() => { maxSeen = Math.max(maxSeen, victim.fleet.stats().tableBytes) }, 20)
    try {
      await waitFor(() => victim.fleet.stats().rejected['over-budget'] > 0, 'the budget to refuse entries', 20_000)
      await new Promise(resolve => setTimeout(resolve, 2_000))
    } finally {
      clearInterval(sample)
    }
    const stats = victim.fleet.stats()
    expect(maxSeen).toBeLessThanOrEqual(budget)
    expect(stats.tableBytes).toBeLessThanOrEqual(budget)
    expect(stats.nodes).toBeLessThan(flooders.length + 1)
    expect(stats.nodes).toBeGreaterThanOrEqual(3)
  }, 60_000)

  it('a peer flooding the topic is rate-limited and banned; malformed messages are rejected and scored', async () => {
    const victim = await fleet.add({ swarmKey, fleetLimits: fast })
    const flooder = await fleet.add({ swarmKey, fleetLimits: fast, bootstrap: [addressWithPeer(victim)] })
    await waitFor(() => victim.fleet.nodes().length === 1, 'the flooder to be seen')
    const pubsub = flooder.libp2p.services.pubsub
    const garbage = new TextEncoder().encode('{"t":"state","seq":1,"labels":{"bad key!":"x"},"models":[]}')
    await pubsub.publish(FLEET_TOPIC, garbage)
    await waitFor(() => victim.fleet.stats().rejected.malformed >= 1, 'the malformed message to be rejected')
    const before = victim.fleet.stats().tableBytes
    for (let i = 0; i < 400 && victim.isConnected(flooder.peerId); i++) {
      await pubsub.publish(FLEET_TOPIC, encodeFleetState(await bigState(`flood-${i}`), Date.now() * 1000 + i)).catch(() => {})
    }
    await waitFor(() => victim.peerScores.isBanned(flooder.peerId), 'the flooder to be banned')
    await waitFor(() => !victim.isConnected(flooder.peerId), 'the flooder to be hung up')
    const stats = victim.fleet.stats()
    expect(stats.rejected['rate-limited']).toBeGreaterThan(0)
    // one identity holds one entry, however much it sends
    expect(stats.tableBytes).toBeLessThanOrEqual(Math.max(before, FLEET_MAX_MESSAGE_BYTES + 1024))
  }, 60_000)

  it('a large fleet spaces its messages to the fleet\'s budget, and receivers keep an entry for the heartbeat its sender announces', async () => {
    // a budget of one message a second for the fleet: with three nodes, each publishes a change at most every 3 s and a heartbeat every 15 s
    const budget = { heartbeatMs: 300, minPublishIntervalMs: 100, fleetMessagesPerSecond: 1 }
    const a = await fleet.add({ swarmKey, fleetLimits: { ...fast, nodeTtlMs: 1_000 } })
    const c = await fleet.add({ swarmKey, fleetLimits: fast, bootstrap: [addressWithPeer(a)] })
    const b = await fleet.add({ swarmKey, fleetLimits: budget, fleetState: stateOf('pool=b'), bootstrap: [addressWithPeer(a)] })
    await waitFor(() => b.fleet.nodes().length === 2, 'b to see the fleet')
    b.fleet.changed()
    // b's first messages went out while it knew fewer nodes, with shorter spacing
    await waitFor(() => a.fleet.nodes().find(n => n.peerId === b.peerId)?.heartbeatMs === 15_000, 'a to hear b announce a 15 s heartbeat', 8_000)
    let heard = 0
    a.fleet.addEventListener('change', ({ detail }) => { if (detail.peerId === b.peerId) heard++ })
    const changes = setInterval(() => { b.fleet.changed() }, 50)
    try {
      await new Promise(resolve => setTimeout(resolve, 4_000))
    } finally {
      clearInterval(changes)
    }
    // 80 changes in 4 s: at most one message per 3 s goes out (with the configured 100 ms, about 40 would)
    expect(heard).toBeGreaterThanOrEqual(1)
    expect(heard).toBeLessThanOrEqual(2)
    // b's last message is seconds old, past a's own 1 s TTL, and still kept: b said it may be silent for 15 s
    b.fleet.stop()
    await new Promise(resolve => setTimeout(resolve, 2_500))
    expect(a.fleet.nodes().some(n => n.peerId === b.peerId)).toBe(true)
    expect(a.isConnected(b.peerId)).toBe(true)
  }, 30_000)
  it('progress alone goes out at most once per progress interval; a change of state goes out at once and carries the progress put off', async () => {
    const limits = { heartbeatMs: 20_000, minPublishIntervalMs: 100, progressIntervalMs: 4_000 }
    let zone = 'z1'
    const a = await fleet.add({ swarmKey, fleetLimits: fast })
    const b = await fleet.add({ swarmKey, fleetLimits: limits, fleetState: () => ({ labels: { zone }, models: [] }), bootstrap: [addressWithPeer(a)] })
    await waitFor(() => a.fleet.nodes().some(n => n.peerId === b.peerId), 'a to see b')
    const heardAt: number[] = []
    a.fleet.addEventListener('change', ({ detail }) => { if (detail.peerId === b.peerId) heardAt.push(performance.now()) })
    const progress = setInterval(() => { b.fleet.changed('progress') }, 50)
    try {
      await new Promise(resolve => setTimeout(resolve, 5_000))
    } finally {
      clearInterval(progress)
    }
    // 100 progress calls in 5 s: at most one message per 4 s (with the 100 ms interval of changes, about 50)
    expect(heardAt.length).toBeGreaterThanOrEqual(1)
    expect(heardAt.length).toBeLessThanOrEqual(2)

    // right after a message, progress is put off by the whole interval...
    const before = heardAt.length
    b.fleet.changed('progress')
    await waitFor(() => heardAt.length > before, 'the progress to go out', 6_000)
    b.fleet.changed('progress')
    await new Promise(resolve => setTimeout(resolve, 300))
    // ...and a change of state does not wait for it
    zone = 'z2'
    const changedAt = performance.now()
    b.fleet.changed('state')
    await waitFor(() => a.fleet.nodes().find(n => n.peerId === b.peerId)?.labels.zone === 'z2', 'a to hear the change of state', 3_000)
    expect(performance.now() - changedAt).toBeLessThan(2_000)
    // the pending progress went with it: nothing more until the next heartbeat
    const after = heardAt.length
    await new Promise(resolve => setTimeout(resolve, 4_500))
    expect(heardAt.length).toBe(after)
  }, 30_000)
})

describe('fleet publish spacing', () => {
  it('keeps the configured intervals in a small fleet and stretches them with the fleet\'s size past the budget', () => {
    expect(fleetPublishSpacing(1)).toEqual({ changeMs: 1_000, heartbeatMs: 5_000 })
    expect(fleetPublishSpacing(100)).toEqual({ changeMs: 1_000, heartbeatMs: 5_000 })
    expect(fleetPublishSpacing(1_000)).toEqual({ changeMs: 10_000, heartbeatMs: 50_000 })
    expect(fleetPublishSpacing(10_000)).toEqual({ changeMs: 100_000, heartbeatMs: 500_000 })
    expect(fleetPublishSpacing(100_000)).toEqual({ changeMs: FLEET_MAX_HEARTBEAT_MS, heartbeatMs: FLEET_MAX_HEARTBEAT_MS })
    // the fleet's rate: every node pulling, and every node idle
    for (const n of [200, 1_000, 5_000]) {
      const { changeMs, heartbeatMs } = fleetPublishSpacing(n)
      expect(n / (changeMs / 1000)).toBeLessThanOrEqual(DEFAULT_FLEET_LIMITS.fleetMessagesPerSecond)
      expect(n / (heartbeatMs / 1000)).toBeLessThanOrEqual(DEFAULT_FLEET_LIMITS.fleetMessagesPerSecond / 5)
    }
  })

  it('refuses a fleet size or budget that means nothing', () => {
    expect(() => fleetPublishSpacing(0)).toThrow(RangeError)
    expect(() => fleetPublishSpacing(Number.NaN)).toThrow(/fleet size/)
    expect(() => fleetPublishSpacing(10, { ...DEFAULT_FLEET_LIMITS, fleetMessagesPerSecond: 0 })).toThrow(/fleetMessagesPerSecond/)
  })

  it('announces the heartbeat on the wire, bounded, and only when given', () => {
    const decode = (bytes: Uint8Array): Record<string, unknown> => JSON.parse(new TextDecoder().decode(bytes))
    expect(decode(encodeFleetState({ labels: {}, models: [] }, 1, 50_000)).h).toBe(50_000)
    expect(decode(encodeFleetState({ labels: {}, models: [] }, 1, 10 * FLEET_MAX_HEARTBEAT_MS)).h).toBe(FLEET_MAX_HEARTBEAT_MS)
    expect(decode(encodeFleetState({ labels: {}, models: [] }, 1)).h).toBeUndefined()
  })
})

describe('fast message ids', () => {
  const message = {
    topic: FLEET_TOPIC,
    from: Uint8Array.of(1, 2, 3),
    seqno: Uint8Array.of(4, 5),
    data: new TextEncoder().encode('{"state":1}'),
    signature: Uint8Array.of(9, 9, 9),
    key: undefined
  }

  it('copies of one message share an id; a change in any field, signature included, gives another', () => {
    expect(fleetFastMessageId({ ...message, data: Uint8Array.from(message.data) })).toBe(fleetFastMessageId(message))
    const ids = new Set([
      fleetFastMessageId(message),
      fleetFastMessageId({ ...message, topic: FLEET_TOPIC + 'x' }),
      fleetFastMessageId({ ...message, from: Uint8Array.of(1, 2, 4) }),
      fleetFastMessageId({ ...message, seqno: Uint8Array.of(4, 6) }),
      fleetFastMessageId({ ...message, data: new TextEncoder().encode('{"state":2}') }),
      fleetFastMessageId({ ...message, signature: Uint8Array.of(9, 9, 8) }),
      fleetFastMessageId({ ...message, key: Uint8Array.of(7) }),
      fleetFastMessageId({ ...message, signature: undefined })
    ])
    expect(ids.size).toBe(8)
  })

  it('bytes moved across a field boundary give another id', () => {
    const shifted = { ...message, from: Uint8Array.of(1, 2), seqno: Uint8Array.of(3, 4, 5) }
    expect(fleetFastMessageId(shifted)).not.toBe(fleetFastMessageId(message))
    expect(fleetFastMessageId({ ...message, signature: new Uint8Array(0) })).not.toBe(fleetFastMessageId({ ...message, signature: undefined }))
  })
})

describe('labels and selectors', () => {
  it('parse Kubernetes-style equality selectors and refuse anything else with a clear error', () => {
    const labels = parseLabels(['pool=a', 'zone=z1,example.com/gpu=h100'])
    expect(labels).toEqual({ pool: 'a', zone: 'z1', 'example.com/gpu': 'h100' })
    expect(matchesSelector(parseSelector('pool=a,zone!=z2'), labels)).toBe(true)
    expect(matchesSelector(parseSelector('pool==a,zone!=z1'), labels)).toBe(false)
    expect(matchesSelector(parseSelector('rack!=r1'), labels)).toBe(true)
    expect(matchesSelector(parseSelector(''), labels)).toBe(true)
    expect(matchesSelector(parseSelector('pool=b'), labels)).toBe(false)
    expect(() => parseSelector('pool in (a,b)')).toThrow(/not a selector requirement/)
    expect(() => parseSelector('-bad=a')).toThrow(/not a label key/)
    expect(() => parseLabels('pool')).toThrow(/expected key=value/)
    expect(() => parseLabels('pool=a b')).toThrow(/not a label value/)
    expect(() => parseLabels(`k=${'v'.repeat(64)}`)).toThrow(/not a label value/)
  })
})
