/**
 * Rendezvous (highest-random-weight) hashing: every candidate gets a pseudo-random score for a
 * key, and the highest score wins. Everyone who knows the same candidates picks the same winner
 * without talking, and when a candidate leaves only the keys it won move (each to its runner-up).
 *
 * Scores come from a small non-cryptographic hash (FNV-1a over UTF-16 code units, finished with
 * murmur3's avalanche), so they are identical in every process and cheap enough for a simulator
 * scoring thousands of candidates per chunk. Nobody gains anything by choosing a peer id that
 * wins many chunks (owning chunks only means fetching them from the origin first), so a
 * cryptographic hash would buy nothing here.
 */

import { NoCandidatesError } from './errors.js'

/** A string's two 32-bit hashes. */
export interface KeyHash {
  readonly a: number
  readonly b: number
}

const SEED_A = 0x811c9dc5
const SEED_B = 0x2f6b1a3d
const FNV_PRIME = 0x01000193
/** 2^21: `hi * 2^21 + lo / 2^11` packs 53 bits into a double exactly. */
const HIGH_SCALE = 2097152

// murmur3's finaliser; returns an int32 (callers take `>>> 0` once at the end)
function fmix32 (h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h
}

function hash32 (text: string, seed: number): number {
  let h = seed
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), FNV_PRIME)
  return fmix32(h ^ text.length) >>> 0
}

// Schedulers in one process (a simulator runs thousands) hash the same peer ids and CIDs over
// and over; memoising a pure function changes no result.
const cache = new Map<string, KeyHash>()
const CACHE_LIMIT = 262_144

/** The two 32-bit hashes of a key or peer id. */
export function keyHash (text: string): KeyHash {
  let hash = cache.get(text)
  if (hash === undefined) {
    if (cache.size >= CACHE_LIMIT) cache.clear()
    hash = { a: hash32(text, SEED_A), b: hash32(text, SEED_B) }
    cache.set(text, hash)
  }
  return hash
}

/** The high 32 bits of a score: all that is needed unless two candidates tie on it. */
export function scoreHigh (ka: number, kb: number, pa: number): number {
  return fmix32(ka ^ fmix32(pa ^ kb ^ 0x9e3779b9)) >>> 0
}

/** The low 21 bits of a score, given its high bits. */
export function scoreLow (kb: number, pb: number, high: number): number {
  return fmix32(((kb ^ pb) + high) | 0) >>> 11
}

/**
 * The score of candidate `(pa, pb)` for key `(ka, kb)` (both from {@link keyHash}): a 53-bit
 * integer, so comparing two scores is one comparison of doubles.
 */
export function pairScore (ka: number, kb: number, pa: number, pb: number): number {
  const high = scoreHigh(ka, kb, pa)
  return high * HIGH_SCALE + scoreLow(kb, pb, high)
}

/** The rendezvous score of `candidate` for `key`; higher wins. */
export function rendezvousScore (key: string, candidate: string): number {
  const k = keyHash(key)
  const p = keyHash(candidate)
  return pairScore(k.a, k.b, p.a, p.b)
}

/**
 * Whether `a` (with score `scoreA`) outranks `b`. Equal scores (about one pair in 2^53) fall
 * back to comparing ids, so the order is total and the same everywhere.
 */
export function outranks (scoreA: number, a: string, scoreB: number, b: string): boolean {
  return scoreA > scoreB || (scoreA === scoreB && a > b)
}

/** The candidate that owns `key`: the one with the highest score. Duplicates are harmless. */
export function rendezvousOwner (key: string, candidates: Iterable<string>): string {
  const k = keyHash(key)
  let best: string | undefined
  let bestScore = -1
  for (const candidate of candidates) {
    const p = keyHash(candidate)
    const score = pairScore(k.a, k.b, p.a, p.b)
    if (best === undefined || outranks(score, candidate, bestScore, best)) {
      best = candidate
      bestScore = score
    }
  }
  if (best === undefined) throw new NoCandidatesError()
  return best
}

/** All distinct candidates for `key`, best first: the owner, then who takes over if it leaves, and so on. */
export function rendezvousRanking (key: string, candidates: Iterable<string>): string[] {
  const scored = [...new Set(candidates)].map(candidate => ({ candidate, score: rendezvousScore(key, candidate) }))
  scored.sort((x, y) => outranks(x.score, x.candidate, y.score, y.candidate) ? -1 : 1)
  return scored.map(s => s.candidate)
}
