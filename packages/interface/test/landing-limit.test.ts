import { describe, expect, it } from 'vitest'
import { LandingLimit } from '../src/index.js'

type Landing = [durationMs: number, running: number, limitAfter: number]

/** Lands each transfer in turn and checks the limit after each one. */
function expectLimitsAfter (limit: LandingLimit, landings: Landing[]): void {
  for (const [durationMs, running, limitAfter] of landings) {
    limit.landed(durationMs, running)
    expect(limit.limit, `after landing in ${durationMs} ms with ${running} running`).toBe(limitAfter)
  }
}

describe('LandingLimit', () => {
  it('starts at min and opens by one for each transfer that lands within half the target, up to max', () => {
    const limit = new LandingLimit({ min: 2, max: 4, targetMs: 1000 })
    expect(limit.limit).toBe(2)
    expectLimitsAfter(limit, [[100, 2, 3], [500, 3, 4], [100, 4, 4]])
  })

  it('opens for a quick transfer even with fewer running than it allows, and holds for one between half the target and the target', () => {
    const limit = new LandingLimit({ min: 2, max: 8, targetMs: 1000 })
    expectLimitsAfter(limit, [[10, 1, 3], [800, 3, 3]])
  })

  it('closes to what would have landed in time at the same rate, never below min', () => {
    const limit = new LandingLimit({ min: 1, max: 8, targetMs: 1000 })
    for (let i = 0; i < 7; i++) limit.landed(10, limit.limit)
    expect(limit.limit).toBe(8)
    expectLimitsAfter(limit, [
      // 8 at once took 2 s each: 4 at once would have landed in 1 s
      [2000, 8, 4],
      // far too slow even alone: the floor
      [60_000, 4, 1],
      // a late answer alone does not raise it
      [1500, 1, 1]
    ])
  })

  it('holds at max with a target of 0, and ignores durations that are not numbers', () => {
    const off = new LandingLimit({ min: 1, max: 8, targetMs: 0 })
    expect(off.limit).toBe(8)
    expectLimitsAfter(off, [[60_000, 8, 8]])
    const on = new LandingLimit({ min: 2, max: 8, targetMs: 1000 })
    on.landed(Number.NaN, 2)
    on.landed(-5, 2)
    expect(on.limit).toBe(2)
  })

  it('refuses bounds and targets that mean nothing, with a clear error', () => {
    expect(() => new LandingLimit({ min: 0, max: 4, targetMs: 1000 })).toThrow(/min must be a whole number/)
    expect(() => new LandingLimit({ min: 2.5, max: 4, targetMs: 1000 })).toThrow(/min must be a whole number/)
    expect(() => new LandingLimit({ min: 4, max: 2, targetMs: 1000 })).toThrow(/max must be .* at least min/)
    expect(() => new LandingLimit({ min: 1, max: 2, targetMs: -1 })).toThrow(/targetMs must be 0/)
    expect(() => new LandingLimit({ min: 1, max: 2, targetMs: Infinity })).toThrow(/targetMs must be 0/)
  })
})
