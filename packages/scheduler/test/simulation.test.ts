import { describe, expect, it } from 'vitest'
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
