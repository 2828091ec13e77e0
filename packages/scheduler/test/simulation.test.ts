import { describe, expect, it } from 'vitest'
import { pullerSet } from '../src/index.js'
import { range, runSwarm } from './fixtures.js'

describe('a small swarm', () => {
  it('takes each chunk from the origin exactly once and everyone finishes', () => {
    const chunks = 40
    const result = runSwarm({
      nodes: 10,
      chunks,
      seed: 5,
      originLatency: 10,
      peerLatency: 2,
      init: { originFallbackMs: 1e9, requestTimeoutMs: 1e9, hedgeAfterMs: Infinity }
    })
    expect(result.originFetches).toEqual(new Array(chunks).fill(1))
    const originRequests = result.schedulers.reduce((sum, s) => sum + s.stats.originRequests, 0)
    expect(originRequests).toBe(chunks)
    for (const scheduler of result.schedulers) expect(scheduler.done).toBe(true)
    // each node fetched from the origin exactly the chunks it owns
    for (const scheduler of result.schedulers) {
      expect(scheduler.stats.bytesFromOrigin).toBe(scheduler.stats.ownedChunks * 1000)
    }
    // owning a tenth of the chunks each, the fleet is done in a few origin rounds, not 40
    expect(Math.max(...result.finishedAt)).toBeLessThan(10 * 6)
  })

  it('behaves the same with one puller set shared by every scheduler', () => {
    const options = { nodes: 10, chunks: 40, seed: 5, init: { originFallbackMs: 1e9, requestTimeoutMs: 1e9, hedgeAfterMs: Infinity } }
    const own = runSwarm(options)
    const shared = runSwarm({ ...options, sharedPullers: true })
    expect(shared.originFetches).toEqual(new Array(40).fill(1))
    expect(shared.finishedAt).toEqual(own.finishedAt)
    expect(shared.schedulers.map(s => s.stats)).toEqual(own.schedulers.map(s => s.stats))
  })

  it('keeps the origin near one copy when nodes see only some of the others', () => {
    const chunks = 64
    const nodes = 60
    const result = runSwarm({
      nodes,
      chunks,
      seed: 9,
      // a ring with chords: eight neighbours each
      neighbours: (i, n) => [1, 2, 7, 19].flatMap(d => [(i + d) % n, (i - d + n) % n]),
      init: { originFallbackMs: 1e9, requestTimeoutMs: 1e9, hedgeAfterMs: Infinity, maxInflightOrigin: 4 }
    })
    expect(result.originFetches.reduce((a, b) => a + b, 0)).toBe(chunks)
    expect(result.finishedAt.every(t => Number.isFinite(t))).toBe(true)
    // no node was served by the origin for anything it does not own
    expect(range(nodes).every(i => result.schedulers[i]!.stats.originRequests === result.schedulers[i]!.stats.ownedChunks)).toBe(true)
  })

  it('with a narrow origin window, still takes each chunk from the origin once and finishes', () => {
    const chunks = 48
    const result = runSwarm({
      nodes: 12,
      chunks,
      seed: 6,
      neighbours: (i, n) => [1, 2, 5].flatMap(d => [(i + d) % n, (i - d + n) % n]),
      init: { originWindow: 3, hedgeAfterMs: Infinity }
    })
    expect(result.finishedAt.every(t => Number.isFinite(t))).toBe(true)
    expect(result.originFetches).toEqual(new Array(chunks).fill(1))
  })

  it('routes around an owner that stalls without leaving: its runner-up alone takes its chunks', () => {
    const chunks = 48
    const result = runSwarm({
      nodes: 12,
      chunks,
      seed: 4,
      // node 0 fetches nothing and serves nothing, but stays in everyone's puller set
      stalled: [0],
      // each node keeps its full eight origin requests: the wait per round is the point here
      init: { originFallbackMs: 100, requestTimeoutMs: 1e9, hedgeAfterMs: Infinity, fleetInflightOrigin: 96 }
    })
    const ids = result.schedulers.map(s => s.selfId)
    const set = pullerSet(result.cids.map(cid => ({ cid, size: 1000 })), ids)
    const stalledOwns = range(chunks).filter(i => set.owner(i) === ids[0])
    expect(stalledOwns.length).toBeGreaterThan(0)
    expect(result.schedulers.slice(1).every(s => s.done)).toBe(true)
    expect(result.originFetches).toEqual(new Array(chunks).fill(1))
    for (const chunk of stalledOwns) {
      expect(result.originBy[chunk]).toBe(set.backup(chunk))
    }
    // the others waited for the runner-up instead of going to the origin themselves
    expect(Math.max(...result.finishedAt.slice(1))).toBeLessThan(200)
  })

  it('finishes with peers only when every chunk starts at some node', () => {
    const chunks = 24
    const result = runSwarm({
      nodes: 8,
      chunks,
      seed: 2,
      have: node => range(chunks).filter(chunk => chunk % 8 === node),
      init: { useOrigin: false, hedgeAfterMs: Infinity }
    })
    expect(result.originFetches.every(n => n === 0)).toBe(true)
    expect(result.schedulers.every(s => s.done && s.stats.originRequests === 0)).toBe(true)
    expect(result.schedulers.every(s => s.stats.bytesFromPeers === 21 * 1000)).toBe(true)
  })

  it('gets nowhere with peers only when nobody holds anything', () => {
    const result = runSwarm({ nodes: 4, chunks: 8, seed: 3, init: { useOrigin: false } })
    expect(result.originFetches.every(n => n === 0)).toBe(true)
    expect(result.schedulers.every(s => s.stats.chunksDone === 0 && s.stats.inflight === 0)).toBe(true)
  })
})
