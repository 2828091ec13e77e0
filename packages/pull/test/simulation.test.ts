import { seededRandom } from '@swarm/scheduler'
import { describe, expect, it } from 'vitest'
// the simulator's own core, as bench/sim/run.mjs runs it
// @ts-expect-error an ES module of the benchmarks, without types
import { lowerBound, simulate } from '../../../bench/sim/fleet.mjs'
// the engine as built, which is what the simulator imports
import { PullSession } from '@swarm/pull'

const MiB = 1024 * 1024

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

  it('keeps pulling through churn: the nodes that stay finish', async () => {
    const chunks = chunksOf(8, 1 * MiB)
    const result = await simulate({ chunks, settings: { neighbours: 6, churnShare: 0.25 }, n: 8, seed: 5, limitMs: 600_000, churnAt: 1_500 })
    expect(result.left).toBe(2)
    expect(result.initial).toMatchObject({ nodes: 6, finished: 6, failed: 0 })
  })
})
