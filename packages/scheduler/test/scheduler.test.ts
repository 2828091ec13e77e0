import { describe, expect, it } from 'vitest'
import {
  chunkScheduler,
  encodeBitfield,
  InvalidBitfieldError,
  InvalidChunkIndexError,
  InvalidFailureReasonError,
  InvalidPeerIdError,
  InvalidSchedulerInitError,
  InvalidTimeError,
  NON_FETCHER_FALLBACK_TIER,
  pullerSet,
  rendezvousOwner,
  rendezvousRanking,
  RequestMismatchError,
  seededRandom,
  TAKEOVER_WAIT_MS
} from '../src/index.js'
import type { ChunkScheduler, Request, SchedulerInit } from '../src/index.js'
import { chunkList, range } from './fixtures.js'

const SELF = 'self'

function make (init: Partial<SchedulerInit> & { chunks: SchedulerInit['chunks'] }): ChunkScheduler {
  return chunkScheduler({ selfId: SELF, random: seededRandom(1), now: 0, ...init })
}

function peerOf (request: Request): string | undefined {
  return request.source.kind === 'peer' ? request.source.peerId : undefined
}

/** Lands the oldest outstanding request every `stepMs`, `rounds` times, starting what the scheduler then allows; returns what runs after, and when. */
function landOneByOne (scheduler: ChunkScheduler, running: Request[], stepMs: number, rounds: number): { running: Request[], t: number } {
  let t = 0
  for (let round = 0; round < rounds; round++) {
    t += stepMs
    const [first, ...rest] = running
    scheduler.chunkArrived(first!.chunk, t, first!.id)
    running = [...rest, ...scheduler.tick(t).start]
  }
  return { running, t }
}

function connect (scheduler: ChunkScheduler, peer: string, chunks: number[], now = 0): void {
  scheduler.peerJoined(peer, now)
  scheduler.peerHas(peer, chunks, now)
}

describe('choosing among peers', () => {
  it('asks for the rarest chunk first', () => {
    const scheduler = make({ chunks: chunkList(4), useOrigin: false, maxInflightTotal: 1 })
    connect(scheduler, 'a', [0, 1, 2, 3])
    connect(scheduler, 'b', [0, 1, 2])
    connect(scheduler, 'c', [0, 1])
    connect(scheduler, 'd', [0])
    const order: number[] = []
    for (let t = 1; t <= 4; t++) {
      const { start } = scheduler.tick(t)
      expect(start).toHaveLength(1)
      order.push(start[0]!.chunk)
      scheduler.chunkArrived(start[0]!.chunk, t, start[0]!.id)
    }
    expect(order).toEqual([3, 2, 1, 0])
    expect(scheduler.done).toBe(true)
  })

  it('takes a newly rare chunk ahead of the others', () => {
    const scheduler = make({ chunks: chunkList(6), useOrigin: false, maxInflightTotal: 1 })
    connect(scheduler, 'a', range(6))
    connect(scheduler, 'b', range(6))
    scheduler.peerLeft('b', 0)
    connect(scheduler, 'c', [0, 1, 2, 3, 5])
    expect(scheduler.tick(1).start[0]!.chunk).toBe(4)
  })

  it('starts equally rare chunks at a random place, the same place for the same seed', () => {
    const firstChunks = new Set<number>()
    for (let seed = 1; seed <= 20; seed++) {
      const sequence = (): number[] => {
        const scheduler = chunkScheduler({ selfId: SELF, chunks: chunkList(64), random: seededRandom(seed), useOrigin: false, maxInflightTotal: 1, now: 0 })
        connect(scheduler, 'a', range(64))
        const chunks: number[] = []
        for (let t = 1; t <= 5; t++) {
          const request = scheduler.tick(t).start[0]!
          chunks.push(request.chunk)
          scheduler.chunkArrived(request.chunk, t, request.id)
        }
        return chunks
      }
      const first = sequence()
      expect(sequence()).toEqual(first)
      // from the random start it goes on in chunk order
      expect(first.slice(1)).toEqual(first.slice(0, 4).map(c => (c + 1) % 64))
      firstChunks.add(first[0]!)
    }
    expect(firstChunks.size).toBeGreaterThan(10)
  })

  it('never has more requests at a peer than the per-peer limit', () => {
    const scheduler = make({ chunks: chunkList(20), useOrigin: false, maxInflightPerPeer: 3, maxInflightTotal: 100, endgame: false })
    connect(scheduler, 'a', range(20))
    connect(scheduler, 'b', range(20))
    const perPeer = (): Record<string, number> => {
      const counts: Record<string, number> = {}
      for (const request of scheduler.inflight()) counts[peerOf(request)!] = (counts[peerOf(request)!] ?? 0) + 1
      return counts
    }
    const { start } = scheduler.tick(1)
    expect(start).toHaveLength(6)
    expect(perPeer()).toEqual({ a: 3, b: 3 })
    const fromA = start.find(r => peerOf(r) === 'a')!
    scheduler.chunkArrived(fromA.chunk, 2, fromA.id)
    const next = scheduler.tick(2).start
    expect(next.map(peerOf)).toEqual(['a'])
    expect(perPeer()).toEqual({ a: 3, b: 3 })
    expect(scheduler.tick(3).start).toEqual([])
  })

  it('keeps within the total limit', () => {
    const scheduler = make({ chunks: chunkList(30), useOrigin: false, maxInflightPerPeer: 8, maxInflightTotal: 5 })
    for (const peer of ['a', 'b', 'c']) connect(scheduler, peer, range(30))
    expect(scheduler.tick(1).start).toHaveLength(5)
    expect(scheduler.tick(2).start).toHaveLength(0)
  })

  it('with peerLandingMs, asks peers for as many chunks at once as land in that time', () => {
    const scheduler = make({ chunks: chunkList(40, 1, 4_000_000), useOrigin: false, maxInflightPerPeer: 8, maxInflightTotal: 8, peerLandingMs: 1000, endgame: false, hedgeAfterMs: Infinity })
    for (const peer of ['a', 'b', 'c']) connect(scheduler, peer, range(40))
    // at first two, so the first chunks land as soon as the link allows
    const first = scheduler.tick(0).start
    expect(first).toHaveLength(2)
    // each lands in 100 ms with the limit reached: one more at once each time, up to maxInflightTotal
    let { running, t } = landOneByOne(scheduler, first, 100, 8)
    expect(running).toHaveLength(8)
    // one took 4 s with 8 running: 2 at once would have landed in 1 s
    t += 4000
    const [slow, ...others] = running
    scheduler.chunkArrived(slow!.chunk, t, slow!.id)
    expect(scheduler.tick(t).start).toHaveLength(0)
    expect(scheduler.stats.inflight).toBe(others.length)
    for (const request of others.slice(0, 5)) scheduler.requestFailed(request.id, t, 'cancelled')
    // 2 outstanding now: still no room
    expect(scheduler.tick(t + 1).start).toHaveLength(0)
    scheduler.requestFailed(others[5]!.id, t + 1, 'cancelled')
    expect(scheduler.tick(t + 2).start).toHaveLength(1)
  })

  it('with peerLandingMs, takes no lesson from small chunks: they land in a round trip however busy the link', () => {
    // 8 large chunks, then 16 of a few KB (headers, small tensors)
    const chunks = [...chunkList(8, 3, 4_000_000), ...chunkList(16, 4, 2048)]
    const scheduler = make({ chunks, useOrigin: false, maxInflightPerPeer: 8, maxInflightTotal: 8, peerLandingMs: 1000, endgame: false, hedgeAfterMs: Infinity })
    const small = range(16).map(i => i + 8)
    connect(scheduler, 'a', small)
    // the small ones first, each landing in 10 ms: the limit stays where it started
    const { running, t } = landOneByOne(scheduler, scheduler.tick(0).start, 10, 12)
    expect(running).toHaveLength(2)
    for (const request of running) scheduler.chunkArrived(request.chunk, t + 10, request.id)
    // a large one that lands within half the target opens one more
    connect(scheduler, 'b', range(8), t + 10)
    const large = scheduler.tick(t + 20).start.filter(r => r.size === 4_000_000)
    expect(large).toHaveLength(2)
    scheduler.chunkArrived(large[0]!.chunk, t + 120, large[0]!.id)
    expect(scheduler.tick(t + 120).start.filter(r => r.size === 4_000_000)).toHaveLength(2)
    expect(scheduler.stats.inflight).toBe(3)
  })

  it('without peerLandingMs, asks for maxInflightTotal at once from the start', () => {
    const scheduler = make({ chunks: chunkList(40), useOrigin: false, maxInflightPerPeer: 8, maxInflightTotal: 8 })
    for (const peer of ['a', 'b', 'c']) connect(scheduler, peer, range(40))
    expect(scheduler.tick(0).start).toHaveLength(8)
    expect(() => make({ chunks: chunkList(4), peerLandingMs: Infinity })).toThrow(InvalidSchedulerInitError)
    expect(() => make({ chunks: chunkList(4), peerLandingMs: -1 })).toThrow(InvalidSchedulerInitError)
  })

  it('spreads requests over holders, least loaded first', () => {
    const scheduler = make({ chunks: chunkList(12), useOrigin: false, maxInflightPerPeer: 10, maxInflightTotal: 6, endgame: false })
    for (const peer of ['a', 'b', 'c']) connect(scheduler, peer, range(12))
    const peers = scheduler.tick(1).start.map(peerOf)
    expect(peers.filter(p => p === 'a')).toHaveLength(2)
    expect(peers.filter(p => p === 'b')).toHaveLength(2)
    expect(peers.filter(p => p === 'c')).toHaveLength(2)
  })

  it('accepts bitfields and ignores haves from peers that are not connected', () => {
    const scheduler = make({ chunks: chunkList(10), useOrigin: false, maxInflightTotal: 1 })
    scheduler.peerHas('stranger', [1, 2], 0)
    expect(scheduler.tick(0).start).toEqual([])
    scheduler.peerJoined('a', 0)
    scheduler.peerHas('a', encodeBitfield(range(10).map(i => i === 9)), 0)
    const { start } = scheduler.tick(1)
    expect(start.map(r => [r.chunk, peerOf(r)])).toEqual([[9, 'a']])
  })
})

describe('failures', () => {
  it('retries a failed request at another holder, and the failed one only later', () => {
    const scheduler = make({ chunks: chunkList(1), useOrigin: false, retryAfterMs: 50, hedgeAfterMs: Infinity, endgame: false })
    connect(scheduler, 'a', [0])
    connect(scheduler, 'b', [0])
    const first = scheduler.tick(1).start
    expect(first).toHaveLength(1)
    scheduler.requestFailed(first[0]!.id, 2, 'error')
    const second = scheduler.tick(2)
    expect(second.start).toHaveLength(1)
    expect(peerOf(second.start[0]!)).not.toBe(peerOf(first[0]!))
    scheduler.requestFailed(second.start[0]!.id, 3, 'error')
    // both have failed it: wait, then try again
    const waiting = scheduler.tick(3)
    expect(waiting.start).toEqual([])
    expect(waiting.wakeAt).toBe(53)
    expect(scheduler.tick(52).start).toEqual([])
    expect(scheduler.tick(53).start).toHaveLength(1)
    expect(scheduler.stats.failures).toBe(2)
  })

  it('never asks a peer that sent bad data again in this pull', () => {
    const scheduler = make({ chunks: chunkList(3), useOrigin: false, retryAfterMs: 0 })
    connect(scheduler, 'liar', [0, 1, 2])
    const requests = scheduler.tick(1).start
    expect(requests).toHaveLength(3)
    scheduler.requestFailed(requests[0]!.id, 2, 'bad-data')
    const after = scheduler.tick(2)
    // its other requests are cancelled, and nothing new goes to it
    expect(after.cancel.map(r => r.id).sort()).toEqual([requests[1]!.id, requests[2]!.id].sort())
    expect(after.start).toEqual([])
    scheduler.peerLeft('liar', 3)
    connect(scheduler, 'liar', [0, 1, 2], 4)
    expect(scheduler.tick(1000).start).toEqual([])
    expect(scheduler.stats.bannedPeers).toBe(1)
    connect(scheduler, 'honest', [0], 1001)
    expect(scheduler.tick(1001).start.map(peerOf)).toEqual(['honest'])
  })

  it('times requests out on tick and retries them elsewhere', () => {
    const scheduler = make({ chunks: chunkList(1), useOrigin: false, requestTimeoutMs: 100, hedgeAfterMs: Infinity, endgame: false })
    connect(scheduler, 'a', [0])
    connect(scheduler, 'b', [0])
    const first = scheduler.tick(0)
    expect(first.start).toHaveLength(1)
    expect(first.wakeAt).toBe(100)
    const before = scheduler.tick(99)
    expect(before.cancel).toEqual([])
    expect(before.start).toEqual([])
    const at = scheduler.tick(100)
    expect(at.cancel).toEqual(first.start)
    expect(at.start).toHaveLength(1)
    expect(peerOf(at.start[0]!)).not.toBe(peerOf(first.start[0]!))
    expect(scheduler.stats.timeouts).toBe(1)
    // a late report about the timed-out request changes nothing
    scheduler.requestFailed(first.start[0]!.id, 101, 'error')
    expect(scheduler.stats.failures).toBe(0)
  })

  it('cancels the requests to a peer that leaves and asks another', () => {
    const scheduler = make({ chunks: chunkList(2), useOrigin: false, maxInflightPerPeer: 2, endgame: false })
    connect(scheduler, 'a', [0, 1])
    const first = scheduler.tick(0).start
    expect(first.map(peerOf)).toEqual(['a', 'a'])
    connect(scheduler, 'b', [0, 1], 1)
    scheduler.peerLeft('a', 2)
    const after = scheduler.tick(2)
    expect(after.cancel.map(r => r.id).sort()).toEqual(first.map(r => r.id).sort())
    expect(after.start.map(peerOf)).toEqual(['b', 'b'])
  })

  it('forgets a request the caller cancelled without blaming the peer', () => {
    const scheduler = make({ chunks: chunkList(1), useOrigin: false })
    connect(scheduler, 'a', [0])
    const first = scheduler.tick(0).start[0]!
    scheduler.requestFailed(first.id, 1, 'cancelled')
    const again = scheduler.tick(1).start
    expect(again.map(peerOf)).toEqual(['a'])
    expect(scheduler.stats.failures).toBe(0)
  })
})

describe('hedging and endgame', () => {
  it('duplicates a slow request to another holder and cancels the loser', () => {
    const scheduler = make({ chunks: chunkList(2), useOrigin: false, hedgeAfterMs: 100, requestTimeoutMs: 10_000, endgame: false, maxInflightTotal: 1 })
    connect(scheduler, 'slow', [0, 1])
    const first = scheduler.tick(0)
    expect(first.wakeAt).toBe(100)
    const original = first.start[0]!
    connect(scheduler, 'fast', [0, 1], 50)
    // the total limit is full: no hedge until a slot frees
    expect(scheduler.tick(100).start).toEqual([])
    const scheduler2 = make({ chunks: chunkList(2), useOrigin: false, hedgeAfterMs: 100, requestTimeoutMs: 10_000, endgame: false, maxInflightPerPeer: 1 })
    connect(scheduler2, 'slow', [0, 1])
    const [slowRequest] = scheduler2.tick(0).start
    connect(scheduler2, 'fast', [slowRequest!.chunk], 50)
    expect(scheduler2.tick(99).start).toEqual([])
    const hedge = scheduler2.tick(100).start
    expect(hedge).toHaveLength(1)
    expect(hedge[0]).toMatchObject({ chunk: slowRequest!.chunk, duplicate: true, source: { kind: 'peer', peerId: 'fast' } })
    scheduler2.chunkArrived(slowRequest!.chunk, 110, hedge[0]!.id)
    expect(scheduler2.tick(110).cancel).toEqual([slowRequest])
    expect(original.duplicate).toBe(false)
  })

  it('in endgame asks a second holder once a request is late, and cancels the duplicate when a copy lands', () => {
    const scheduler = make({ chunks: chunkList(3), useOrigin: false, hedgeAfterMs: Infinity, maxInflightPerPeer: 2 })
    connect(scheduler, 'a', [0, 1, 2])
    connect(scheduler, 'b', [0, 1, 2])
    const first = scheduler.tick(0).start
    expect(first).toHaveLength(3)
    expect(scheduler.stats.endgame).toBe(true)
    // one request delivered in 100 ms: requests of this size take 100 ms here
    const [landed, ...left] = first
    scheduler.chunkArrived(landed!.chunk, 100, landed!.id)
    // the others are not late yet: nothing is duplicated
    expect(scheduler.tick(140).start).toEqual([])
    // at 1.5 × 100 ms they are: each gets a copy at the holder that does not have it in flight
    const dups = scheduler.tick(150).start
    expect(dups.map(r => r.chunk).sort()).toEqual(left.map(r => r.chunk).sort())
    for (const dup of dups) {
      expect(dup.duplicate).toBe(true)
      expect(peerOf(dup)).not.toBe(peerOf(left.find(r => r.chunk === dup.chunk)!))
    }
    const won = dups[0]!
    scheduler.chunkArrived(won.chunk, 160, won.id)
    const after = scheduler.tick(160)
    expect(after.cancel).toEqual(left.filter(r => r.chunk === won.chunk))
    expect(after.start).toEqual([])
    expect(scheduler.stats.duplicateRequests).toBe(2)
  })

  it('wakes when an endgame request becomes late', () => {
    const scheduler = make({ chunks: chunkList(2), useOrigin: false, hedgeAfterMs: Infinity, maxInflightPerPeer: 1 })
    connect(scheduler, 'a', [0, 1])
    const [first] = scheduler.tick(0).start
    scheduler.chunkArrived(first!.chunk, 200, first!.id)
    const { start: [second] } = scheduler.tick(200)
    connect(scheduler, 'b', [0, 1], 210)
    const quiet = scheduler.tick(210)
    expect(quiet.start).toEqual([])
    expect(quiet.wakeAt).toBe(200 + 1.5 * 200)
    expect(scheduler.tick(500).start).toEqual([expect.objectContaining({ chunk: second!.chunk, duplicate: true, source: { kind: 'peer', peerId: 'b' } })])
  })

  it('hedges against what requests take here, not before the floor', () => {
    const scheduler = make({ chunks: chunkList(2), useOrigin: false, hedgeAfterMs: 100, requestTimeoutMs: 100_000, endgame: false, maxInflightPerPeer: 1 })
    connect(scheduler, 'a', [0, 1])
    const [first] = scheduler.tick(0).start
    // requests take 1 s here: a hedge is due only after 3 × 1 s, though the floor is 100 ms
    scheduler.chunkArrived(first!.chunk, 1000, first!.id)
    const [second] = scheduler.tick(1000).start
    connect(scheduler, 'b', [0, 1], 1000)
    const quiet = scheduler.tick(1100)
    expect(quiet.start).toEqual([])
    expect(quiet.wakeAt).toBe(4000)
    expect(scheduler.tick(3999).start).toEqual([])
    expect(scheduler.tick(4000).start).toEqual([expect.objectContaining({ chunk: second!.chunk, duplicate: true, source: { kind: 'peer', peerId: 'b' } })])
  })

  it('does not go into endgame while chunks remain to be asked for', () => {
    const scheduler = make({ chunks: chunkList(3), useOrigin: false, hedgeAfterMs: Infinity, maxInflightTotal: 2 })
    connect(scheduler, 'a', [0, 1, 2])
    connect(scheduler, 'b', [0, 1, 2])
    const { start } = scheduler.tick(1)
    expect(start.filter(r => r.duplicate)).toEqual([])
    expect(scheduler.stats.endgame).toBe(false)
  })

  it('sends no duplicates with endgame off', () => {
    const scheduler = make({ chunks: chunkList(2), useOrigin: false, hedgeAfterMs: Infinity, endgame: false })
    connect(scheduler, 'a', [0, 1])
    connect(scheduler, 'b', [0, 1])
    expect(scheduler.tick(1).start).toHaveLength(2)
  })
})

describe('taking chunks from the origin', () => {
  const pullers = ['alpha', 'bravo', 'charlie']
  const chunks = chunkList(30, 4)

  function puller (selfId: string, init: Partial<SchedulerInit> = {}): ChunkScheduler {
    return chunkScheduler({
      selfId,
      chunks,
      random: seededRandom(selfId.length),
      pullers: pullers.filter(p => p !== selfId),
      maxInflightOrigin: 64,
      // the origin's share per node, and its window, are not what these tests are about
      fleetInflightOrigin: 1000,
      originWindow: Infinity,
      maxInflightTotal: 64,
      originFallbackMs: 1000,
      now: 0,
      ...init
    })
  }

  it('gives each chunk exactly one owner, who alone takes it from the origin', () => {
    const schedulers = pullers.map(id => puller(id))
    const fetched = new Map<number, string>()
    for (const scheduler of schedulers) {
      const { start } = scheduler.tick(0)
      for (const request of start) {
        expect(request.source).toEqual({ kind: 'origin' })
        expect(fetched.has(request.chunk)).toBe(false)
        fetched.set(request.chunk, scheduler.selfId)
      }
    }
    expect([...fetched.keys()].sort((a, b) => a - b)).toEqual(range(30))
    for (const [chunk, who] of fetched) {
      expect(who).toBe(pullerSet(chunks, pullers).owner(chunk))
      for (const scheduler of schedulers) expect(scheduler.owner(chunk)).toBe(who)
    }
    // every puller owns some
    expect(new Set(fetched.values()).size).toBe(3)
    expect(schedulers.reduce((sum, s) => sum + s.stats.ownedChunks, 0)).toBe(30)
  })

  it('takes a chunk from a peer rather than the origin, even one it owns', () => {
    const scheduler = puller('alpha', { maxInflightPerPeer: 64 })
    const owned = range(30).filter(i => scheduler.owner(i) === 'alpha')
    connect(scheduler, 'bravo', owned)
    const { start } = scheduler.tick(0)
    expect(start.filter(r => r.source.kind === 'origin')).toEqual([])
    expect(start.map(r => r.chunk).sort((a, b) => a - b)).toEqual(owned)
  })

  it('waits for a holder that turned its chunk away as busy, and asks it again at its retry time, where one that failed it sends the owner to the origin', () => {
    const scheduler = puller('alpha', { maxInflightPerPeer: 64, retryAfterMs: 200 })
    const owned = range(30).filter(i => scheduler.owner(i) === 'alpha')
    const [busyChunk, failedChunk] = owned
    connect(scheduler, 'bravo', [busyChunk!, failedChunk!])
    const first = scheduler.tick(0).start
    const byChunk = new Map(first.map(r => [r.chunk, r]))
    expect(peerOf(byChunk.get(busyChunk!)!)).toBe('bravo')
    expect(peerOf(byChunk.get(failedChunk!)!)).toBe('bravo')
    scheduler.requestFailed(byChunk.get(busyChunk!)!.id, 10, 'busy')
    scheduler.requestFailed(byChunk.get(failedChunk!)!.id, 10, 'error')
    const next = scheduler.tick(10)
    // the failed one: no other holder, so its owner takes it from the origin; the busy one waits for bravo
    expect(next.start.map(r => [r.chunk, r.source.kind])).toEqual([[failedChunk, 'origin']])
    expect(next.wakeAt).toBeLessThanOrEqual(210)
    expect(scheduler.tick(209).start).toEqual([])
    expect(scheduler.tick(210).start.map(r => [r.chunk, peerOf(r)])).toEqual([[busyChunk, 'bravo']])
    expect(scheduler.stats.failures).toBe(2)
  })

  it('falls back to the origin for chunks no peer produced within originFallbackMs, runner-up first', () => {
    const scheduler = puller('alpha')
    const owned = range(30).filter(i => scheduler.owner(i) === 'alpha')
    const first = scheduler.tick(0)
    expect(first.start.map(r => r.chunk)).toEqual(owned)
    expect(first.wakeAt).toBe(1000)
    // its own origin requests take 100 ms: well under originFallbackMs, which then rules
    for (const request of first.start) scheduler.chunkArrived(request.chunk, 100, request.id)
    // bravo delivers one of its chunks in time
    const bravos = range(30).filter(i => scheduler.owner(i) === 'bravo')
    connect(scheduler, 'bravo', [bravos[0]!], 500)
    const fromPeer = scheduler.tick(500).start
    expect(fromPeer.map(r => [r.chunk, peerOf(r)])).toEqual([[bravos[0], 'bravo']])
    expect(scheduler.tick(999).start).toEqual([])
    const waiting = range(30).filter(i => !owned.includes(i) && i !== bravos[0])
    const second = waiting.filter(i => rendezvousRanking(chunks[i]!.cid, pullers)[1] === 'alpha')
    const third = waiting.filter(i => !second.includes(i))
    expect(second.length).toBeGreaterThan(0)
    expect(third.length).toBeGreaterThan(0)
    // where alpha is runner-up it goes after originFallbackMs ...
    const atOnce = scheduler.tick(1000)
    expect(atOnce.start.every(r => r.source.kind === 'origin')).toBe(true)
    expect(atOnce.start.map(r => r.chunk)).toEqual(second)
    expect(atOnce.wakeAt).toBe(2000)
    for (const request of atOnce.start) scheduler.chunkArrived(request.chunk, 1100, request.id)
    // ... and for the rest it leaves the runner-up time to fetch them first
    expect(scheduler.tick(1999).start).toEqual([])
    expect(scheduler.tick(2000).start.map(r => r.chunk)).toEqual(third)
  })

  it('fetches its own chunks from the origin only a window ahead of the chunks seen anywhere', () => {
    const scheduler = puller('alpha', { originWindow: 6 })
    const owned = range(30).filter(i => scheduler.owner(i) === 'alpha')
    const first = scheduler.tick(0).start
    expect(first.map(r => r.chunk)).toEqual(owned.filter(i => i < 6))
    expect(first.every(r => r.source.kind === 'origin')).toBe(true)
    // bravo shows the first six chunks (some of them alpha's, still in flight): the window moves on by six
    connect(scheduler, 'bravo', range(6).filter(i => !owned.includes(i)), 100)
    for (const request of first) scheduler.chunkArrived(request.chunk, 100, request.id)
    const next = scheduler.tick(100).start.filter(r => r.source.kind === 'origin').map(r => r.chunk)
    expect(next).toEqual(owned.filter(i => i >= 6 && i < 12))
    // and no fallback for what lies past half the window, however long it waits
    const later = scheduler.tick(60_000).start.filter(r => r.source.kind === 'origin').map(r => r.chunk)
    expect(later.every(i => i < 6 + 3 || owned.includes(i))).toBe(true)
  })

  it('has no window once it knows more pullers than there are chunks', () => {
    const few = chunkList(4, 9)
    const many = Array.from({ length: 6 }, (_, i) => `p${i}`)
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks: few, random: seededRandom(2), pullers: many, originWindow: 1, fleetInflightOrigin: 1000, maxInflightOrigin: 64, maxInflightTotal: 64, now: 0 })
    const owned = range(4).filter(i => scheduler.owner(i) === 'alpha')
    expect(owned.length).toBeGreaterThan(0)
    // with a window of one, only chunk 0 could go before anything is seen; with 7 pullers for 4 chunks the window is off
    expect(scheduler.tick(0).start.map(r => r.chunk)).toEqual(owned)
    const fewer = chunkScheduler({ selfId: 'alpha', chunks: few, random: seededRandom(2), pullers: many.slice(0, 2), originWindow: 1, fleetInflightOrigin: 1000, maxInflightOrigin: 64, maxInflightTotal: 64, now: 0 })
    // it owns chunks past the window, and holds them back
    expect(range(4).some(i => i >= 1 && fewer.owner(i) === 'alpha')).toBe(true)
    expect(fewer.tick(0).start.map(r => r.chunk).every(i => i < 1)).toBe(true)
  })

  it('waits longer for chunks deep in their owner\'s origin queue', () => {
    // two pullers, two origin slots each: the owner fetches its list two at a time
    const scheduler = chunkScheduler({
      selfId: 'alpha',
      chunks,
      random: seededRandom(3),
      pullers: ['bravo'],
      maxInflightOrigin: 2,
      originWindow: Infinity,
      maxInflightTotal: 64,
      originFallbackMs: 1000,
      now: 0
    })
    const bravos = range(30).filter(i => scheduler.owner(i) === 'bravo')
    const alphas = range(30).filter(i => scheduler.owner(i) === 'alpha')
    expect(bravos.length).toBeGreaterThan(4)
    const taken: number[] = []
    const drain = (t: number): number[] => {
      const started = scheduler.tick(t).start
      for (const r of started) scheduler.chunkArrived(r.chunk, t, r.id)
      return started.map(r => r.chunk)
    }
    // alpha's own chunks go first, two at a time as they land
    for (let k = 0; k < alphas.length; k += 2) taken.push(...drain(k))
    expect(taken).toEqual(alphas)
    // bravo's first two chunks may fall back after 1000 ms, the next two after 2000, ...
    expect(drain(999)).toEqual([])
    expect(drain(1000)).toEqual(bravos.slice(0, 2))
    expect(drain(1999)).toEqual([])
    expect(drain(2000)).toEqual(bravos.slice(2, 4))
  })

  it('hands a leaving owner\'s chunks to the next-ranked puller with room, who takes them once views have had time to settle', () => {
    const schedulers = new Map(pullers.map(id => [id, puller(id)]))
    for (const scheduler of schedulers.values()) scheduler.tick(0)
    const before = pullerSet(chunks, pullers)
    const after = pullerSet(chunks, ['alpha', 'charlie'])
    const orphans = range(30).filter(i => before.owner(i) === 'bravo')
    expect(orphans.length).toBeGreaterThan(0)
    for (const id of ['alpha', 'charlie']) {
      const scheduler = schedulers.get(id)!
      scheduler.pullerLeft('bravo', 10)
      expect(scheduler.tick(10).start).toEqual([])
      expect(scheduler.tick(9 + TAKEOVER_WAIT_MS).start).toEqual([])
      const { start } = scheduler.tick(10 + TAKEOVER_WAIT_MS)
      const heirs = range(30).filter(i => after.owner(i) === id && before.owner(i) !== id)
      expect(heirs.length).toBeGreaterThan(0)
      expect(start.map(r => r.chunk).sort((a, b) => a - b)).toEqual(heirs)
      expect(start.every(r => r.source.kind === 'origin')).toBe(true)
      for (const i of range(30)) expect(scheduler.owner(i)).toBe(after.owner(i))
    }
  })

  it('waits longer for a chunk taken from an owner still pulling, which may have it well under way', () => {
    // two origin fetchers among the pullers: a joiner that outranks the second pushes it out of
    // the fetchers while it keeps pulling, and some of its chunks move to the first
    const fallbackMs = 8_000
    const before = pullerSet(chunks, pullers, { fetchers: 2 })
    const [self, pushedOut] = before.fetchers()
    const joiner = range(400).map(k => `joiner-${k}`).find(id => {
      const after = pullerSet(chunks, [...pullers, id], { fetchers: 2 })
      return !after.fetchers().includes(pushedOut!) && range(30).some(i => after.owner(i) === self && before.owner(i) === pushedOut)
    })
    expect(joiner).toBeDefined()
    const after = pullerSet(chunks, [...pullers, joiner!], { fetchers: 2 })
    const fromStaying = range(30).filter(i => after.owner(i) === self && before.owner(i) !== self)
    for (const i of fromStaying) expect(before.owner(i)).toBe(pushedOut)
    const scheduler = puller(self!, { originFallbackMs: fallbackMs, originFetchers: 2 })
    scheduler.tick(0)
    scheduler.pullerJoined(joiner!, 10)
    const soon = [...scheduler.tick(10).start, ...scheduler.tick(10 + TAKEOVER_WAIT_MS).start].map(r => r.chunk)
    for (const i of fromStaying) expect(soon).not.toContain(i)
    const later = scheduler.tick(10 + fallbackMs).start.map(r => r.chunk)
    expect(later.filter(i => fromStaying.includes(i)).sort((a, b) => a - b)).toEqual(fromStaying)
  })

  it('does not take a chunk from the origin that it owned only while views disagreed', () => {
    const alpha = puller('alpha')
    alpha.tick(0)
    const before = pullerSet(chunks, pullers)
    const heirs = range(30).filter(i => before.owner(i) === 'bravo' && pullerSet(chunks, ['alpha', 'charlie']).owner(i) === 'alpha')
    expect(heirs.length).toBeGreaterThan(0)
    alpha.pullerLeft('bravo', 10)
    expect(alpha.tick(10).start).toEqual([])
    // bravo is named again before the wait ends (it had not left; a neighbour lost sight of it)
    alpha.pullerJoined('bravo', 500)
    const later = alpha.tick(10 + TAKEOVER_WAIT_MS).start.map(r => r.chunk)
    for (const i of heirs) expect(later).not.toContain(i)
  })

  it('gives up origin requests for chunks a joiner now owns, and keeps the rest', () => {
    const scheduler = puller('alpha')
    const first = scheduler.tick(0).start
    expect(first.every(r => r.source.kind === 'origin')).toBe(true)
    const after = pullerSet(chunks, [...pullers, 'delta'])
    const lost = first.filter(r => after.owner(r.chunk) !== 'alpha')
    const kept = first.filter(r => after.owner(r.chunk) === 'alpha')
    expect(lost.length).toBeGreaterThan(0)
    expect(kept.length).toBeGreaterThan(0)
    scheduler.pullerJoined('delta', 50)
    const { cancel, start } = scheduler.tick(50)
    expect(cancel.map(r => r.id).sort((a, b) => a - b)).toEqual(lost.map(r => r.id).sort((a, b) => a - b))
    // none of what it gave up is asked for again: delta owns those now
    for (const r of lost) expect(start.map(s => s.chunk)).not.toContain(r.chunk)
    expect(scheduler.stats.inflightOrigin).toBe(kept.length + start.filter(r => r.source.kind === 'origin').length)
  })

  it('keeps an origin request it has had under way for the takeover wait when a joiner takes its chunk, as long as it is still a fetcher', () => {
    const scheduler = puller('alpha')
    const first = scheduler.tick(0).start
    const after = pullerSet(chunks, [...pullers, 'delta'])
    expect(after.fetchers()).toContain('alpha')
    const lost = first.filter(r => after.owner(r.chunk) !== 'alpha')
    expect(lost.length).toBeGreaterThan(0)
    // the heir would wait at least as long again before asking, and start from nothing
    scheduler.pullerJoined('delta', TAKEOVER_WAIT_MS)
    const { cancel, start } = scheduler.tick(TAKEOVER_WAIT_MS)
    expect(cancel).toEqual([])
    for (const r of lost) expect(start.map(s => s.chunk)).not.toContain(r.chunk)
    expect(scheduler.stats.inflightOrigin).toBe(first.length + start.filter(r => r.source.kind === 'origin').length)
  })

  it('gives up every origin request it made as an owner once it is no longer a fetcher, however long under way', () => {
    const before = pullerSet(chunks, pullers, { fetchers: 2 })
    const pushedOut = before.fetchers()[1]!
    const joiner = range(400).map(k => `joiner-${k}`).find(id => !pullerSet(chunks, [...pullers, id], { fetchers: 2 }).fetchers().includes(pushedOut))
    expect(joiner).toBeDefined()
    const scheduler = puller(pushedOut, { originFetchers: 2 })
    const first = scheduler.tick(0).start
    expect(first.length).toBeGreaterThan(0)
    expect(first.every(r => r.source.kind === 'origin')).toBe(true)
    scheduler.pullerJoined(joiner!, 2 * TAKEOVER_WAIT_MS)
    const { cancel } = scheduler.tick(2 * TAKEOVER_WAIT_MS)
    expect(cancel.map(r => r.id).sort((a, b) => a - b)).toEqual(first.map(r => r.id).sort((a, b) => a - b))
  })

  it('as a puller that is not an origin fetcher, falls back only after NON_FETCHER_FALLBACK_TIER waits, behind the fetchers', () => {
    const set = pullerSet(chunks, pullers, { fetchers: 2 })
    const outsider = pullers.find(p => !set.fetchers().includes(p))!
    const scheduler = puller(outsider, { originFetchers: 2 })
    // it owns nothing
    expect(scheduler.tick(0).start).toEqual([])
    // a fetcher delivers one of its chunks at once: owners are quick, the fallback wait (1 s) rules
    const fetcher = set.fetchers()[0]!
    const delivered = range(30).find(i => set.owner(i) === fetcher)!
    connect(scheduler, fetcher, [delivered], 100)
    for (const request of scheduler.tick(100).start) scheduler.chunkArrived(request.chunk, 150, request.id)
    // a fetcher that is not the runner-up would go after 2 waits; this node waits its tier's
    const waitMs = 1_000
    expect(scheduler.tick(2 * waitMs).start).toEqual([])
    expect(scheduler.tick(NON_FETCHER_FALLBACK_TIER * waitMs - 1).start).toEqual([])
    const late = scheduler.tick(NON_FETCHER_FALLBACK_TIER * waitMs).start
    expect(late.length).toBeGreaterThan(0)
    expect(late.every(r => r.source.kind === 'origin' && r.chunk !== delivered)).toBe(true)
  })

  it('keeps a fallback request when ownership moves', () => {
    const scheduler = puller('alpha', { originFallbackMs: 100 })
    for (const request of scheduler.tick(0).start) scheduler.chunkArrived(request.chunk, 10, request.id)
    const fallbacks = scheduler.tick(1000).start.filter(r => r.source.kind === 'origin' && scheduler.owner(r.chunk) !== 'alpha')
    expect(fallbacks.length).toBeGreaterThan(0)
    scheduler.pullerJoined('delta', 1010)
    const { cancel } = scheduler.tick(1010)
    for (const r of fallbacks) expect(cancel).not.toContainEqual(r)
    expect(scheduler.stats.inflightOrigin).toBeGreaterThanOrEqual(fallbacks.length)
  })

  it('restarts the wait for chunks whose owner changed to someone else', () => {
    const scheduler = puller('alpha')
    for (const request of scheduler.tick(0).start) scheduler.chunkArrived(request.chunk, 100, request.id)
    const before = pullerSet(chunks, pullers)
    const after = pullerSet(chunks, ['alpha', 'charlie'])
    const movedToCharlie = range(30).filter(i => before.owner(i) === 'bravo' && after.owner(i) === 'charlie')
    expect(movedToCharlie.length).toBeGreaterThan(0)
    scheduler.pullerLeft('bravo', 600)
    // what alpha now owns it takes at once, and gets quickly
    for (const request of scheduler.tick(600).start) scheduler.chunkArrived(request.chunk, 700, request.id)
    const atFallback = scheduler.tick(1000).start
    for (const i of movedToCharlie) expect(atFallback.map(r => r.chunk)).not.toContain(i)
    for (const request of atFallback) scheduler.chunkArrived(request.chunk, 1100, request.id)
    const later = scheduler.tick(1600).start.map(r => r.chunk)
    expect(later.sort((a, b) => a - b)).toEqual(movedToCharlie)
  })

  it('waits for owners as long as its own origin requests take, when that is longer than originFallbackMs', () => {
    const scheduler = puller('alpha')
    const first = scheduler.tick(0).start
    // the origin is slow for everyone: alpha's own requests take 3 s, so owners' take as long
    const others = range(30).filter(i => scheduler.owner(i) !== 'alpha')
    expect(scheduler.tick(1000).start).toEqual([])
    expect(scheduler.tick(2500).start).toEqual([])
    for (const request of first) scheduler.chunkArrived(request.chunk, 3000, request.id)
    // runner-up chunks after 2 × 3 s from the start of the wait, the rest after twice that
    expect(scheduler.tick(5999).start).toEqual([])
    const runnerUp = scheduler.tick(6000).start.map(r => r.chunk)
    expect(runnerUp.length).toBeGreaterThan(0)
    expect(runnerUp.every(i => others.includes(i) && rendezvousRanking(chunks[i]!.cid, pullers)[1] === 'alpha')).toBe(true)
    // and a slow origin request is not cancelled at requestTimeoutMs (30 s) but at 3 × 3 s only if longer
    const slow = scheduler.tick(12_000)
    expect(slow.cancel).toEqual([])
  })

  it('while nothing has arrived from anywhere, waits for owners as long as the pull has run, up to a limit', () => {
    // the pullers never become known, so alpha owns nothing, and nothing arrives from anyone
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks, random: seededRandom(1), originFallbackMs: 1000, maxInflightOrigin: 64, fleetInflightOrigin: 1000, originWindow: Infinity, maxInflightTotal: 64, now: 0 })
    expect(scheduler.tick(0).start).toEqual([])
    expect(scheduler.tick(1000).start).toEqual([])
    expect(scheduler.tick(30_000).start).toEqual([])
    // after twice 30 s of silence it gives up on the owners
    expect(scheduler.tick(59_999).start).toEqual([])
    expect(scheduler.tick(60_000).start).toHaveLength(30)
  })

  it('keeps only its share of the fleet\'s origin requests outstanding', () => {
    const many = Array.from({ length: 8 }, (_, i) => `node-${i}`)
    const scheduler = chunkScheduler({ selfId: 'node-0', chunks: chunkList(64, 4), random: seededRandom(2), pullers: many.slice(1), fleetInflightOrigin: 16, now: 0 })
    // 16 across 8 pullers: two each, however many it owns
    const owned = range(64).filter(i => scheduler.owner(i) === 'node-0')
    expect(owned.length).toBeGreaterThan(2)
    const { start } = scheduler.tick(0)
    expect(start.map(r => r.chunk)).toEqual(owned.slice(0, 2))
    scheduler.chunkArrived(owned[0]!, 500, start[0]!.id)
    expect(scheduler.tick(500).start.map(r => r.chunk)).toEqual([owned[2]])
    expect(scheduler.stats.inflightOrigin).toBe(2)
  })

  it('with originLandingMs and others pulling, keeps only as many origin requests as land in that time', () => {
    const pulling = ['node-0', 'node-1']
    const scheduler = chunkScheduler({ selfId: 'node-0', chunks: chunkList(64, 2, 4_000_000), random: seededRandom(2), pullers: pulling.slice(1), fleetInflightOrigin: 16, maxInflightOrigin: 8, maxInflightTotal: 12, originLandingMs: 2000, originWindow: Infinity, endgame: false, now: 0 })
    const owned = range(64).filter(i => scheduler.owner(i) === 'node-0')
    expect(owned.length).toBeGreaterThan(10)
    // at first one, so its first chunk lands as soon as the origin allows
    const first = scheduler.tick(0).start
    expect(first.map(r => r.chunk)).toEqual(owned.slice(0, 1))
    // each lands within half the target: one more at once each time, up to its share (8)
    let { running, t } = landOneByOne(scheduler, first, 100, 8)
    expect(running).toHaveLength(8)
    expect(scheduler.stats.inflightOrigin).toBe(8)
    // one took 6 s with 8 running: 2 at once would have landed in 1.5 s, so 2 it is
    t += 6000
    const [slow, ...others] = running
    scheduler.chunkArrived(slow!.chunk, t, slow!.id)
    expect(scheduler.tick(t).start).toEqual([])
    for (const request of others.slice(0, 5)) scheduler.requestFailed(request.id, t + 1, 'cancelled')
    // 2 outstanding now: still no room
    expect(scheduler.tick(t + 1).start).toEqual([])
    expect(scheduler.stats.inflightOrigin).toBe(2)
    scheduler.requestFailed(others[5]!.id, t + 2, 'cancelled')
    expect(scheduler.tick(t + 2).start).toHaveLength(1)
    expect(scheduler.stats.inflightOrigin).toBe(2)
  })

  describe('an owner with nothing of its own left', () => {
    const two = (init: Partial<SchedulerInit> = {}): ChunkScheduler => chunkScheduler({
      selfId: 'node-0', chunks: chunkList(32, 5, 4_000_000), random: seededRandom(2), pullers: ['node-1'],
      // one origin request each, no fallback by time: what it takes beyond its own is taken as runner-up of an idle owner
      fleetInflightOrigin: 2, originWindow: Infinity, originFallbackMs: 600_000, endgame: false, now: 0, ...init
    })
    /** Lands its own origin chunks one by one, 100 ms apart; returns the time after. */
    const landOwn = (scheduler: ChunkScheduler, own: number[]): number => {
      let t = 0
      let running = scheduler.tick(t).start
      for (const chunk of own) {
        expect(running.map(r => r.chunk)).toEqual([chunk])
        t += 100
        scheduler.chunkArrived(chunk, t, running[0]!.id)
        running = chunk === own.at(-1) ? [] : scheduler.tick(t).start
      }
      return t
    }

    it('takes the chunk deepest in a busier owner\'s queue, and stops where that owner is about to fetch', () => {
      const scheduler = two()
      const own = range(32).filter(i => scheduler.owner(i) === 'node-0')
      const theirs = range(32).filter(i => scheduler.owner(i) === 'node-1')
      expect(own.length).toBeGreaterThan(8)
      expect(theirs.length).toBeGreaterThan(8)
      connect(scheduler, 'node-1', [])
      let t = landOwn(scheduler, own)
      // the owner has shown none of its chunks: the last in its queue, from the origin
      const first = scheduler.tick(t).start
      expect(first.map(r => [r.chunk, r.source.kind])).toEqual([[theirs.at(-1), 'origin']])
      expect(scheduler.stats.originSteals).toBe(1)
      expect(scheduler.stats.originFallbacks).toBe(1)
      // one at a time: its origin share is one
      expect(scheduler.tick(t + 300).start).toEqual([])
      t += 500
      scheduler.chunkArrived(first[0]!.chunk, t, first[0]!.id)
      // the owner has shown all but its last five, the last of which is ours now: it reaches the
      // second from last after three more of its own (one at once, and the margin of two), the
      // ones before sooner
      scheduler.peerHas('node-1', theirs.slice(0, -5), t)
      const next = scheduler.tick(t + 250).start.filter(r => r.source.kind === 'origin')
      expect(next.map(r => r.chunk)).toEqual([theirs.at(-2)])
      scheduler.chunkArrived(next[0]!.chunk, t + 400, next[0]!.id)
      expect(scheduler.tick(t + 650).start.filter(r => r.source.kind === 'origin')).toEqual([])
      expect(scheduler.stats.originSteals).toBe(2)
    })

    it('takes nothing while one of its own waits to be retried, nor from an owner it is not connected to', () => {
      const scheduler = two()
      const own = range(32).filter(i => scheduler.owner(i) === 'node-0')
      // the owner pulls but is no peer of ours: it would never see our copy, and would fetch it too
      let t = landOwn(scheduler, own.slice(0, -1))
      const last = scheduler.tick(t).start
      expect(last.map(r => r.chunk)).toEqual([own.at(-1)])
      t += 100
      scheduler.requestFailed(last[0]!.id, t, 'error')
      // its own last chunk waits for its retry: nothing else is taken meanwhile
      connect(scheduler, 'node-1', [], t)
      expect(scheduler.tick(t + 300).start).toEqual([])
      const retried = scheduler.tick(t + 1000).start
      expect(retried.map(r => r.chunk)).toEqual([own.at(-1)])
      scheduler.chunkArrived(own.at(-1)!, t + 1100, retried[0]!.id)
      expect(scheduler.tick(t + 1400).start.map(r => r.source.kind)).toEqual(['origin'])
      // a fresh one whose busier owner is not connected takes nothing beyond its own
      const apart = two()
      const t2 = landOwn(apart, range(32).filter(i => apart.owner(i) === 'node-0'))
      expect(apart.tick(t2 + 300).start).toEqual([])
      expect(apart.stats.originSteals).toBe(0)
    })
  })

  it('pulling alone, takes its full origin share whatever originLandingMs says', () => {
    const scheduler = chunkScheduler({ selfId: 'node-0', chunks: chunkList(64, 2, 4_000_000), random: seededRandom(2), pullers: [], maxInflightOrigin: 8, maxInflightTotal: 8, originLandingMs: 2000, now: 0 })
    const first = scheduler.tick(0).start
    expect(first).toHaveLength(8)
    // a slow origin does not hold a lone puller back: nobody waits for its chunks, only its rate counts
    scheduler.chunkArrived(first[0]!.chunk, 20_000, first[0]!.id)
    expect(scheduler.tick(20_000).start).toHaveLength(1)
    expect(scheduler.stats.inflightOrigin).toBe(8)
    expect(() => chunkScheduler({ selfId: 'node-0', chunks: chunkList(4), random: seededRandom(2), originLandingMs: Infinity })).toThrow(InvalidSchedulerInitError)
    expect(() => chunkScheduler({ selfId: 'node-0', chunks: chunkList(4), random: seededRandom(2), originLandingMs: -5 })).toThrow(InvalidSchedulerInitError)
  })

  it('takes the share of the pullers it expects until they show up or the expectation lapses', () => {
    // it has just started and sees only itself, but was told 16 nodes pull: one request, not eight
    const scheduler = chunkScheduler({ selfId: 'node-0', chunks: chunkList(64, 4), random: seededRandom(2), pullers: [], expectedPullers: 16, fleetInflightOrigin: 16, maxInflightOrigin: 8, now: 0 })
    const first = scheduler.tick(0)
    expect(first.start).toHaveLength(1)
    // it wakes by the time the expectation lapses, and takes nothing more before then
    let wakeAt = first.wakeAt
    expect(wakeAt).toBeLessThanOrEqual(10_000)
    while (wakeAt !== undefined && wakeAt < 10_000) {
      const actions = scheduler.tick(wakeAt)
      expect(actions.start).toEqual([])
      wakeAt = actions.wakeAt
    }
    expect(wakeAt).toBe(10_000)
    expect(scheduler.tick(9_999).start).toEqual([])
    // nobody else came: it owns everything and takes its full origin limit
    expect(scheduler.tick(10_000).start).toHaveLength(7)
    expect(scheduler.stats.inflightOrigin).toBe(8)
    expect(scheduler.stats.originFallbacks).toBe(0)
  })

  it('stops expecting once the expected pullers are known', () => {
    const many = Array.from({ length: 4 }, (_, i) => `node-${i}`)
    const chunks64 = chunkList(64, 4)
    const scheduler = chunkScheduler({ selfId: 'node-0', chunks: chunks64, random: seededRandom(2), pullers: [], expectedPullers: 4, fleetInflightOrigin: 16, maxInflightOrigin: 8, now: 0 })
    expect(scheduler.tick(0).start).toHaveLength(4)
    scheduler.setPullers(many, 100)
    // 16 across the 4 it expected, now known: still four, and no deadline for the expectation;
    // what it asked for as the owner of everything and no longer owns goes back to its owners
    const { start, cancel, wakeAt } = scheduler.tick(100)
    const owners = pullerSet(chunks64, many)
    for (const r of cancel) expect(owners.owner(r.chunk)).not.toBe('node-0')
    for (const r of start) expect(owners.owner(r.chunk)).toBe('node-0')
    expect(cancel.length).toBeGreaterThan(0)
    expect(start).toHaveLength(cancel.length)
    expect(wakeAt === undefined || wakeAt !== 10_000).toBe(true)
    expect(scheduler.stats.inflightOrigin).toBe(4)
  })

  it('takes nothing from the origin as owner until it knows who else pulls', () => {
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks, random: seededRandom(1), originFallbackMs: 1000, maxInflightOrigin: 64, fleetInflightOrigin: 1000, originWindow: Infinity, maxInflightTotal: 64, now: 0 })
    expect(scheduler.tick(0).start).toEqual([])
    scheduler.setPullers(['bravo', 'charlie', 'alpha'], 5)
    const { start } = scheduler.tick(5)
    expect(start.map(r => r.chunk)).toEqual(range(30).filter(i => rendezvousOwner(chunks[i]!.cid, pullers) === 'alpha'))
    expect(scheduler.stats.pullers).toBe(3)
  })

  it('falls back for everything when the pullers never become known', () => {
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks, random: seededRandom(1), originFallbackMs: 1000, maxInflightOrigin: 64, fleetInflightOrigin: 1000, originWindow: Infinity, maxInflightTotal: 64, now: 0 })
    // a peer already holds chunk 0: chunks do arrive, so a missing one is not a slow origin's fault
    connect(scheduler, 'bravo', [0], 0)
    expect(scheduler.tick(0)).toMatchObject({ start: [{ chunk: 0, source: { kind: 'peer', peerId: 'bravo' } }], wakeAt: 1000 })
    expect(scheduler.tick(1000).start).toHaveLength(29)
    // none of them its own: every one counts as a fallback
    expect(scheduler.stats.originFallbacks).toBe(29)
  })

  it('never uses the origin in peer-only mode', () => {
    const scheduler = puller('alpha', { useOrigin: false })
    expect(scheduler.tick(0)).toEqual({ start: [], cancel: [], wakeAt: undefined })
    expect(scheduler.tick(1e9).start).toEqual([])
    scheduler.setPullers([], 1e9)
    expect(scheduler.tick(1e9 + 1).start).toEqual([])
    connect(scheduler, 'bravo', [3, 4], 1e9 + 2)
    const { start } = scheduler.tick(1e9 + 2)
    expect(start.map(r => [r.chunk, peerOf(r)]).sort()).toEqual([[3, 'bravo'], [4, 'bravo']])
    expect(scheduler.stats.originRequests).toBe(0)
  })

  it('retries the origin after a failure, not at once', () => {
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks: chunkList(1), random: seededRandom(1), pullers: [], retryAfterMs: 20, now: 0 })
    const [request] = scheduler.tick(0).start
    expect(request!.source.kind).toBe('origin')
    scheduler.requestFailed(request!.id, 5, 'error')
    expect(scheduler.tick(5)).toMatchObject({ start: [], wakeAt: 25 })
    expect(scheduler.tick(25).start.map(r => r.source.kind)).toEqual(['origin'])
  })
})

describe('an origin that keeps failing', () => {
  it('while paused, waits for a peer that turned a chunk away instead of asking the origin, and still asks it for chunks no peer holds', () => {
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks: chunkList(3), random: seededRandom(1), pullers: [], retryAfterMs: 20, now: 0 })
    connect(scheduler, 'bravo', [0, 1])
    expect(scheduler.peersHoldAllMissing()).toBe(false)
    const first = scheduler.tick(0).start
    expect(first.map(r => `${r.chunk}:${r.source.kind}`).sort()).toEqual(['0:peer', '1:peer', '2:origin'])
    // the origin fails chunk 2; bravo turns chunk 0 away (busy)
    scheduler.requestFailed(first.find(r => r.chunk === 2)!.id, 1, 'error')
    scheduler.requestFailed(first.find(r => r.chunk === 0)!.id, 1, 'error')
    // not paused: a chunk its only holder turned away goes to the origin
    expect(scheduler.tick(1).start.map(r => `${r.chunk}:${r.source.kind}`)).toEqual(['0:origin'])

    const paused = chunkScheduler({ selfId: 'alpha', chunks: chunkList(3), random: seededRandom(1), pullers: [], retryAfterMs: 20, now: 0 })
    connect(paused, 'bravo', [0, 1])
    const asked = paused.tick(0).start
    paused.pauseOrigin(1_000, 1)
    paused.requestFailed(asked.find(r => r.chunk === 2)!.id, 1, 'error')
    paused.requestFailed(asked.find(r => r.chunk === 0)!.id, 1, 'error')
    expect(paused.tick(1).start).toEqual([])
    // chunk 0 goes back to bravo at its retry time; chunk 2, which no peer holds, to the origin at its own
    expect(paused.tick(21).start.map(r => `${r.chunk}:${r.source.kind}`).sort()).toEqual(['0:peer', '2:origin'])
    connect(paused, 'charlie', [2], 21)
    expect(paused.peersHoldAllMissing()).toBe(true)
  })

  it('asks the origin during a pause for a chunk whose holders left, and for any chunk once the pause is over', () => {
    const scheduler = chunkScheduler({ selfId: 'alpha', chunks: chunkList(2), random: seededRandom(1), pullers: [], retryAfterMs: 20, maxInflightPerPeer: 1, now: 0 })
    connect(scheduler, 'bravo', [0])
    connect(scheduler, 'charlie', [1])
    const asked = scheduler.tick(0).start
    expect(asked.map(r => `${r.chunk}:${r.source.kind}`).sort()).toEqual(['0:peer', '1:peer'])
    scheduler.pauseOrigin(500, 0)
    for (const request of asked) scheduler.requestFailed(request.id, 1, 'error')
    scheduler.peerLeft('bravo', 2)
    // chunk 0 has no holder left: the origin, pause or not; chunk 1 goes back to charlie
    expect(scheduler.tick(21).start.map(r => `${r.chunk}:${r.source.kind}`).sort()).toEqual(['0:origin', '1:peer'])
    const retried = scheduler.inflight().find(r => r.chunk === 1)!
    scheduler.requestFailed(retried.id, 22, 'error')
    // charlie turned it away again: inside the pause it waits for charlie; after it, the origin may have it
    expect(scheduler.tick(42).start.map(r => `${r.chunk}:${r.source.kind}`)).toEqual(['1:peer'])
    scheduler.requestFailed(scheduler.inflight().find(r => r.chunk === 1)!.id, 43, 'error')
    expect(scheduler.tick(500).start.map(r => `${r.chunk}:${r.source.kind}`)).toEqual(['1:origin'])
    expect(() => { scheduler.pauseOrigin(Number.NaN, 501) }).toThrow(InvalidTimeError)
  })
})

describe('state and bad input', () => {
  it('is done at once when everything is local', () => {
    const scheduler = make({ chunks: chunkList(9), have: encodeBitfield(new Array(9).fill(true)), pullers: [] })
    expect(scheduler.done).toBe(true)
    expect(scheduler.tick(0)).toEqual({ start: [], cancel: [], wakeAt: undefined })
    expect(scheduler.bitfield()).toEqual(encodeBitfield(new Array(9).fill(true)))
  })

  it('asks only for what is missing', () => {
    const have = range(8).map(i => i % 2 === 0)
    const scheduler = make({ chunks: chunkList(8), have, pullers: [] })
    expect(scheduler.tick(0).start.map(r => r.chunk)).toEqual([1, 3, 5, 7])
    expect(scheduler.stats).toMatchObject({ chunksDone: 4, bytesDone: 4000, bytes: 8000 })
  })

  it('tells whether a connected peer lacks a chunk', () => {
    const scheduler = make({ chunks: chunkList(4), pullers: [] })
    // nobody connected: nobody lacks anything
    expect(range(4).map(i => scheduler.peerLacks(i))).toEqual([false, false, false, false])
    connect(scheduler, 'seeder', [0, 1, 2, 3])
    expect(range(4).map(i => scheduler.peerLacks(i))).toEqual([false, false, false, false])
    // a peer whose holdings are not known yet lacks everything
    scheduler.peerJoined('newcomer', 0)
    expect(range(4).map(i => scheduler.peerLacks(i))).toEqual([true, true, true, true])
    scheduler.peerHas('newcomer', [1, 3], 0)
    expect(range(4).map(i => scheduler.peerLacks(i))).toEqual([true, false, true, false])
    scheduler.peerLeft('newcomer', 0)
    expect(scheduler.peerLacks(0)).toBe(false)
    expect(() => scheduler.peerLacks(4)).toThrow(InvalidChunkIndexError)
  })

  it('counts bytes by where they came from and cancels everything for a chunk that arrives by other means', () => {
    const scheduler = make({ chunks: chunkList(2), pullers: [], hedgeAfterMs: Infinity })
    const requests = scheduler.tick(0).start
    expect(requests.map(r => r.source.kind)).toEqual(['origin', 'origin'])
    scheduler.chunkArrived(requests[0]!.chunk, 1, requests[0]!.id)
    scheduler.chunkArrived(requests[1]!.chunk, 1)
    expect(scheduler.tick(1).cancel).toEqual([requests[1]])
    expect(scheduler.stats).toMatchObject({ bytesFromOrigin: 1000, bytesOther: 1000, bytesFromPeers: 0, chunksDone: 2 })
    expect(scheduler.done).toBe(true)
  })

  it('rejects bad input with clear errors', () => {
    const chunks = chunkList(10)
    expect(() => make({ chunks: [...chunks, chunks[0]!] })).toThrow(InvalidSchedulerInitError)
    expect(() => make({ chunks, maxInflightPerPeer: 0 })).toThrow(/maxInflightPerPeer/)
    expect(() => make({ chunks, originFallbackMs: -1 })).toThrow(InvalidSchedulerInitError)
    expect(() => make({ chunks, have: new Uint8Array(1) })).toThrow(InvalidBitfieldError)
    expect(() => make({ chunks, have: [true] })).toThrow(InvalidSchedulerInitError)
    expect(() => make({ chunks, selfId: '' })).toThrow(InvalidSchedulerInitError)
    expect(() => make({ chunks: [{ cid: 'x', size: -1 }] })).toThrow(/size/)
    expect(() => chunkScheduler({ selfId: SELF, chunks, random: () => 1 })).toThrow(/random/)

    const scheduler = make({ chunks, pullers: [] })
    expect(() => scheduler.chunkArrived(10, 0)).toThrow(InvalidChunkIndexError)
    expect(() => scheduler.owner(-1)).toThrow(InvalidChunkIndexError)
    scheduler.peerJoined('a', 0)
    expect(() => scheduler.peerHas('a', new Uint8Array(1), 0)).toThrow(InvalidBitfieldError)
    expect(() => scheduler.peerHas('a', [3, 11], 0)).toThrow(InvalidChunkIndexError)
    expect(() => scheduler.peerJoined('', 0)).toThrow(InvalidPeerIdError)
    expect(() => scheduler.tick(Number.NaN)).toThrow(InvalidTimeError)
    const [request] = scheduler.tick(0).start
    expect(() => scheduler.chunkArrived((request!.chunk + 1) % 10, 1, request!.id)).toThrow(RequestMismatchError)
    expect(() => scheduler.requestFailed(request!.id, 1, 'nope' as never)).toThrow(InvalidFailureReasonError)
  })

  it('never lets time run backwards', () => {
    const scheduler = make({ chunks: chunkList(1), useOrigin: false, requestTimeoutMs: 100, hedgeAfterMs: Infinity })
    connect(scheduler, 'a', [0])
    const [request] = scheduler.tick(50).start
    // an event stamped earlier than one already seen counts as happening now
    expect(scheduler.tick(10).cancel).toEqual([])
    expect(scheduler.tick(150).cancel).toEqual([request])
  })
})
