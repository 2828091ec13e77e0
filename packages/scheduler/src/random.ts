import { InvalidSchedulerInitError } from './errors.js'

/**
 * A small seeded PRNG (mulberry32) returning numbers in [0, 1). The same seed gives the same
 * sequence in every process, which is what a simulator replaying a run needs.
 */
export function seededRandom (seed: number): () => number {
  if (typeof seed !== 'number' || !Number.isFinite(seed)) {
    throw new InvalidSchedulerInitError(`seed ${String(seed)} is not a finite number`)
  }
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
