/**
 * Rarest first, found without looking at every candidate: the pick equals the plain minimum of
 * (holders, tie-break) over every candidate, for any chunk count, tie-break start, holder counts
 * and candidate set.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { rarest } from '../src/peers.js'

/** the definition: the candidate with the smallest holders × n + tie-break, or -1 */
function plainMinimum (n: number, holders: Uint32Array, tiebreak: Uint32Array, candidates: Uint32Array): number {
  let best = -1
  let bestKey = Infinity
  for (let i = 0; i < n; i++) {
    if ((candidates[i >>> 5]! & (1 << (i & 31))) === 0) continue
    const key = holders[i]! * n + tiebreak[i]!
    if (key < bestKey) {
      bestKey = key
      best = i
    }
  }
  return best
}

const state = fc.integer({ min: 1, max: 300 }).chain(n => fc.record({
  n: fc.constant(n),
  start: fc.integer({ min: 0, max: n - 1 }),
  // a candidate has at least one holder (an available peer holds it)
  holders: fc.array(fc.integer({ min: 1, max: 4 }), { minLength: n, maxLength: n }),
  picked: fc.array(fc.boolean(), { minLength: n, maxLength: n })
}))

describe('rarest', () => {
  it('picks what the plain minimum over every candidate picks', () => {
    fc.assert(fc.property(state, ({ n, start, holders, picked }) => {
      const words = Math.ceil(n / 32)
      const tiebreak = Uint32Array.from({ length: n }, (_, i) => (i - start + n) % n)
      const candidates = new Uint32Array(words)
      picked.forEach((on, i) => { if (on) candidates[i >>> 5] = candidates[i >>> 5]! | (1 << (i & 31)) })
      const s = { chunkCount: n, words, tiebreakStart: start, holders: Uint32Array.from(holders), tiebreak }
      expect(rarest(s, candidates)).toBe(plainMinimum(n, s.holders, tiebreak, candidates))
    }), { numRuns: 2000 })
  })
})
