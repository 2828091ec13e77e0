import { seededRandom } from '@swarm/scheduler'
import { describe, expect, it } from 'vitest'
// the simulator's own core, as bench/sim/run.mjs runs it
// @ts-expect-error an ES module of the benchmarks, without types
import { lowerBound, simulate } from '../../../bench/sim/fleet.mjs'
// @ts-expect-error an ES module of the benchmarks, without types
import { UPLOAD_SLOTS, simulateBitTorrent } from '../../../bench/sim/bittorrent.mjs'
// @ts-expect-error an ES module of the benchmarks, without types
import { EventQueue, Network, ORIGIN } from '../../../bench/sim/network.mjs'
// the engine as built, which is what the simulator imports
import { PullSession } from '@swarm/pull'

const MiB = 1024 * 1024

/** what the tests read of a BitTorrent node */
interface BtNode { holds: Uint8Array, avail: Uint16Array, inflight: Uint8Array, unchoked: Set<BtNode> }

function chunksOf (count: number, size: number): Array<{ cid: string, size: number }> {
  const random = seededRandom(7)
  return Array.from({ length: count }, () => ({ cid: 'bafkrei' + Array.from({ length: 52 }, () => 'abcdefghijklmnopqrstuvwxyz234567'[Math.floor(random() * 32)]).join(''), size }))
}

describe('the fleet simulator', () => {
  it('drives the engine\'s PullSession: a small fleet completes, every byte counted once, the origin serving about one copy', async () => {
    const chunks = chunksOf(16, 1 * MiB)
    const modelBytes = 16 * MiB
    const sessions: unknown[] = []
    const n = 12
    const result = await simulate({ chunks, settings: { neighbours: 6, stallMs: 60_000 }, n, seed: 3, limitMs: 600_000, onSession: (s: unknown) => sessions.push(s) })
    expect(sessions).toHaveLength(n)
    expect(sessions.every(s => s instanceof PullSession)).toBe(true)
    expect(result.initial).toMatchObject({ nodes: n, finished: n, failed: 0 })
    // what the sessions counted is what the network carried to completion, once per node
    expect(result.sessionBytes.origin + result.sessionBytes.peer).toBe(n * modelBytes)
    expect(result.bytesFromOrigin + result.bytesFromPeers).toBe(n * modelBytes)
    expect(result.sessionBytes.origin).toBe(result.bytesFromOrigin)
    // peers carried most of it; the network also counts what cancelled transfers moved
    expect(result.peerBytes).toBeGreaterThan(result.originBytes)
    expect(result.originBytes).toBeGreaterThanOrEqual(result.bytesFromOrigin)
    expect(result.originBytes).toBeLessThan(3 * modelBytes)
    expect(result.initial.p99Ms).toBeGreaterThanOrEqual(lowerBound(n, modelBytes, { linkMbit: 50, originMbit: 50 }))
  })

  it('agrees on a few origin fetchers through joins when every node knows only its neighbours', async () => {
    const chunks = chunksOf(16, 1 * MiB)
    const modelBytes = 16 * MiB
    const n = 160
    const run = async (schedulerInit: Record<string, unknown>): Promise<{ originBytes: number, initial: { finished: number } }> =>
      // log-normal round trips: joins arrive at odd instants, as they do between agents
      await simulate({ chunks, settings: { neighbours: 8, view: 'neighbours', stallMs: 120_000, latencyMs: 20, latencySigma: 0.5, schedulerInit }, n, seed: 11, limitMs: 1_200_000 })
    // the best-ranked few, named from node to node until all agree on them; while names spread,
    // some nodes believe for a moment that they fetch and start a request they then give up
    // (counted too). Without the names, each node would rank only the 8 it knows.
    const few = await run({})
    expect(few.initial.finished).toBe(n)
    expect(few.originBytes).toBeLessThan(2 * modelBytes)
  })

  it('keeps pulling through churn: the nodes that stay finish', async () => {
    const chunks = chunksOf(8, 1 * MiB)
    const result = await simulate({ chunks, settings: { neighbours: 6, churnShare: 0.25 }, n: 8, seed: 5, limitMs: 600_000, churnAt: 1_500 })
    expect(result.left).toBe(2)
    expect(result.initial).toMatchObject({ nodes: 6, finished: 6, failed: 0 })
  })
})

/** what the tests read of a simulated transfer */
interface SimFlow { tag: string, live: boolean, upstream?: SimFlow }

/** Runs a network's events to the end; what completed or was lost, with when. */
function drive (build: (net: any, queue: any) => void, probe?: (net: any, now: number) => void): { done: Map<string, number>, lost: Map<string, number>, net: any } {
  const queue = new EventQueue()
  const done = new Map<string, number>()
  const lost = new Map<string, number>()
  const rate = 1_000 // bytes per ms on every link
  const net = new Network({
    queue,
    linkRate: rate,
    originRate: rate,
    maxDownloads: 4,
    weight: () => 1,
    onComplete: (flow: SimFlow, now: number) => { done.set(flow.tag, now) },
    onUpstreamLost: (flow: SimFlow, now: number) => { lost.set(flow.tag, now) }
  })
  for (let i = 0; i < 3; i++) net.addNode()
  build(net, queue)
  while (queue.size > 0) {
    const now = queue.peekTime()
    const event = queue.pop()
    if (event.type === 'remove') net.remove(event.flow, now)
    else if (event.type === 'probe') probe?.(net, now)
    else net.handle(event, now)
  }
  return { done, lost, net }
}

describe('the simulator\'s relays (cut-through, modelled)', () => {
  it('a relay sends what has landed upstream at its own share, then follows the upstream, never ahead of it', () => {
    let relay: SimFlow | undefined
    let upstream: SimFlow | undefined
    const { done } = drive((net, queue) => {
      // the origin sends node 0 a chunk while node 0 also takes another: each gets half the origin's link
      upstream = net.start(ORIGIN, 0, 100_000, 'upstream', 0)
      net.start(ORIGIN, 0, 100_000, 'other', 0)
      // node 1 relays the first from node 0 as it arrives, starting 10 ms later, 5 kB behind
      relay = net.start(0, 1, 100_000, 'relay', 10, upstream)
      // behind: the 5 kB that landed go at the relay's own share, the link's 1,000 B/ms
      expect(net.rateOf(relay)).toBe(1_000)
      queue.push(30, { type: 'probe' })
    }, (net, now) => {
      // caught up at 20 ms (5 kB at 1,000 - 500 B/ms): from then on held to the upstream's 500 B/ms
      expect(now).toBe(30)
      expect(net.rateOf(relay)).toBe(500)
      expect(net.movedAt(relay, now)).toBeCloseTo(net.movedAt(upstream, now), 6)
    })
    // the origin's two transfers share its link: 200 ms for 100 kB at half of 1,000 B/ms
    expect(done.get('upstream')).toBeCloseTo(200, 6)
    // the relay keeps up from 20 ms on and lands with its upstream
    expect(done.get('relay')).toBeCloseTo(200, 3)
    expect(relay?.upstream).toBeUndefined()
  })

  it('a relay that starts level with its upstream never runs ahead of it, and goes on at its own share once that lands', () => {
    let relay: SimFlow | undefined
    const { done } = drive(net => {
      const upstream = net.start(ORIGIN, 0, 100_000, 'upstream', 0)
      net.start(ORIGIN, 0, 100_000, 'other', 0)
      relay = net.start(0, 1, 200_000, 'relay', 0, upstream)
      expect(net.rateOf(relay)).toBe(500)
    })
    expect(done.get('upstream')).toBeCloseTo(200, 6)
    // 100 kB by 200 ms held to the upstream, then the rest at the link's 1,000 B/ms
    expect(done.get('relay')).toBeCloseTo(300, 3)
    expect(relay?.upstream).toBeUndefined()
  })

  it('a relay whose catch-up moves later keeps one event queued, and catches up when the rates say', () => {
    let relay: SimFlow | undefined
    let upstream: SimFlow | undefined
    const catchUps = (queue: any): number => queue.items.filter((e: { type: string, flow?: SimFlow }) => e.type === 'catch-up' && e.flow === relay).length
    const { done } = drive((net, queue) => {
      // four transfers share the origin's link: the upstream into node 0 gets 250 B/ms
      upstream = net.start(ORIGIN, 0, 100_000, 'upstream', 0)
      for (const tag of ['a', 'b', 'c']) net.start(ORIGIN, 2, 100_000, tag, 0)
      // node 1 relays it from 10 ms, 2.5 kB behind, at 1,000 B/ms: level at 10 + 2,500 / 750 ms
      relay = net.start(0, 1, 100_000, 'relay', 10, upstream)
      expect(net.rateOf(relay)).toBe(1_000)
      expect(catchUps(queue)).toBe(1)
      queue.push(12, { type: 'probe' })
      queue.push(14, { type: 'probe' })
      queue.push(15.9, { type: 'probe' })
      queue.push(16.1, { type: 'probe' })
    }, (net, now) => {
      if (now === 12) {
        // another download into node 1 halves the relay's share: 1 kB behind at 500 - 250 B/ms, level at 16 ms, later than first due
        net.start(2, 1, 100_000, 'x', now)
        expect(net.rateOf(relay)).toBe(500)
        expect(catchUps(net.queue)).toBe(1)
      } else if (now === 14) {
        // the event first due has moved on to the new time: still one
        expect(catchUps(net.queue)).toBe(1)
        expect(net.rateOf(relay)).toBe(500)
      } else if (now === 15.9) {
        expect(net.rateOf(relay)).toBe(500)
        expect(net.movedAt(upstream, now) - net.movedAt(relay, now)).toBeGreaterThan(0)
      } else {
        // level at 16 ms: from then on held to the upstream's rate
        expect(net.rateOf(relay)).toBe(250)
        expect(net.movedAt(relay, now)).toBeCloseTo(net.movedAt(upstream, now), 6)
        expect(catchUps(net.queue)).toBe(0)
      }
    })
    expect(done.get('relay')).toBeGreaterThanOrEqual(done.get('upstream')!)
  })

  it('a relay whose upstream ends early is removed and told, having moved only part of the bytes', () => {
    const { done, lost, net } = drive((net, queue) => {
      const upstream = net.start(ORIGIN, 0, 100_000, 'upstream', 0)
      net.start(0, 1, 100_000, 'relay', 0, upstream)
      queue.push(50, { type: 'remove', flow: upstream })
    })
    expect(lost.get('relay')).toBe(50)
    expect(done.has('relay')).toBe(false)
    expect(done.has('upstream')).toBe(false)
    // 50 ms at 1,000 B/ms each: what both moved before the upstream ended
    expect(net.bytes.origin).toBeCloseTo(50_000, 3)
    expect(net.bytes.peer).toBeCloseTo(50_000, 3)
  })

  it('a fleet relaying chunks while they arrive completes, every byte counted once, the origin serving about one copy', async () => {
    const chunks = chunksOf(16, 1 * MiB)
    const modelBytes = 16 * MiB
    const n = 8
    const result = await simulate({ chunks, settings: { neighbours: 6, stallMs: 60_000, cutThrough: true }, n, seed: 3, limitMs: 600_000 })
    expect(result.initial).toMatchObject({ nodes: n, finished: n, failed: 0 })
    expect(result.relays).toBeGreaterThan(0)
    expect(result.sessionBytes.origin + result.sessionBytes.peer).toBe(n * modelBytes)
    expect(result.bytesFromOrigin + result.bytesFromPeers).toBe(n * modelBytes)
    expect(result.originBytes).toBeLessThan(1.5 * modelBytes)
    expect(result.initial.p99Ms).toBeGreaterThanOrEqual(lowerBound(n, modelBytes, { linkMbit: 50, originMbit: 50 }))
    // without cut-through (a version 1 or 2 manifest) nothing is relayed
    const plain = await simulate({ chunks, settings: { neighbours: 6, stallMs: 60_000, cutThrough: false }, n, seed: 3, limitMs: 600_000 })
    expect(plain.relays).toBe(0)
  })

  it('keeps pulling through churn while relaying: the nodes that stay finish, and relays whose source vanished are asked again elsewhere', async () => {
    const chunks = chunksOf(16, 1 * MiB)
    const result = await simulate({ chunks, settings: { neighbours: 6, churnShare: 0.25, cutThrough: true }, n: 8, seed: 5, limitMs: 600_000, churnAt: 1_500 })
    expect(result.left).toBe(2)
    expect(result.relays).toBeGreaterThan(0)
    expect(result.initial).toMatchObject({ nodes: 6, finished: 6, failed: 0 })
  })
})

describe('the BitTorrent policy beside it', () => {
  it('completes a small fleet on the same network, from one seeder at the origin\'s link', () => {
    const modelBytes = 16 * MiB
    const n = 12
    const result = simulateBitTorrent({ modelBytes, pieceBytes: 256 * 1024, settings: { neighbours: 6 }, n, seed: 3, limitMs: 600_000 })
    expect(result.initial).toMatchObject({ nodes: n, finished: n })
    expect(result.initial.p99Ms).toBeGreaterThanOrEqual(lowerBound(n, modelBytes, { linkMbit: 50, originMbit: 50 }))
    // the seeder sent at least one copy, and peers carried most of the rest
    expect(result.originBytes).toBeGreaterThanOrEqual(modelBytes)
    expect(result.peerBytes).toBeGreaterThan(result.originBytes)
    expect(result.originBusyShare).toBeGreaterThan(0)
    expect(result.originBusyShare).toBeLessThanOrEqual(1)
  })

  it('asks for the rarest piece among the peer\'s, and never uploads to more than 4 at once', () => {
    let picks = 0
    let endgamePicks = 0
    const result = simulateBitTorrent({
      modelBytes: 8 * MiB,
      pieceBytes: 256 * 1024,
      settings: { neighbours: 8 },
      n: 30,
      seed: 9,
      limitMs: 600_000,
      onPick: ({ node, peer, piece, endgame }: { node: BtNode, peer: BtNode, piece: number, endgame: boolean }) => {
        expect(peer.unchoked.size).toBeLessThanOrEqual(UPLOAD_SLOTS)
        expect(peer.unchoked.has(node)).toBe(true)
        expect(peer.holds[piece]).toBe(1)
        expect(node.holds[piece]).toBe(0)
        if (endgame) {
          endgamePicks++
          return
        }
        picks++
        expect(node.inflight[piece]).toBe(0)
        for (let q = 0; q < node.holds.length; q++) {
          if (node.holds[q] === 1 || peer.holds[q] === 0 || node.inflight[q] > 0) continue
          expect(node.avail[piece]).toBeLessThanOrEqual(node.avail[q])
        }
      }
    })
    expect(result.initial).toMatchObject({ nodes: 30, finished: 30 })
    expect(picks).toBeGreaterThan(30 * 32 / 2)
    expect(endgamePicks).toBeLessThan(picks)
    expect(UPLOAD_SLOTS).toBe(4)
    expect(result.maxUploads).toBe(4)
  })
})
