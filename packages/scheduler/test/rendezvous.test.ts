import { describe, expect, it } from 'vitest'
import { NoCandidatesError, rendezvousOwner, rendezvousRanking, rendezvousScore, seededRandom, InvalidSchedulerInitError } from '../src/index.js'
import { fakeCids, peerIds } from './fixtures.js'

describe('rendezvous hashing', () => {
  it('spreads 1,000 chunks evenly over 16 peers', () => {
    const peers = peerIds(16)
    const owned = new Map<string, number>(peers.map(p => [p, 0]))
    for (const cid of fakeCids(1000, 7)) {
      const owner = rendezvousOwner(cid, peers)
      owned.set(owner, owned.get(owner)! + 1)
    }
    // 1000/16 = 62.5 each, binomial standard deviation ≈ 7.7: allow four of them either way
    for (const [, count] of owned) {
      expect(count).toBeGreaterThan(62.5 - 31)
      expect(count).toBeLessThan(62.5 + 31)
    }
    // and the spread is not suspiciously tight either (a broken hash can be perfectly round-robin)
    const counts = [...owned.values()]
    expect(Math.max(...counts) - Math.min(...counts)).toBeGreaterThan(2)
  })

  it('does not depend on the order candidates are listed in', () => {
    const peers = peerIds(12)
    const reversed = [...peers].reverse()
    for (const cid of fakeCids(200, 3)) {
      expect(rendezvousOwner(cid, reversed)).toBe(rendezvousOwner(cid, peers))
    }
  })

  it('moves only the chunks of a peer that leaves, each to its runner-up', () => {
    const peers = peerIds(10)
    const without = peers.filter(p => p !== peers[4])
    let moved = 0
    for (const cid of fakeCids(500, 11)) {
      const before = rendezvousRanking(cid, peers)
      const after = rendezvousOwner(cid, without)
      if (before[0] === peers[4]) {
        moved++
        expect(after).toBe(before[1])
      } else {
        expect(after).toBe(before[0])
      }
    }
    expect(moved).toBeGreaterThan(20)
  })

  it('ranks by score, best first', () => {
    const peers = peerIds(8)
    const ranking = rendezvousRanking('bafkreiexample', [...peers, peers[0]!])
    expect(ranking).toHaveLength(8)
    const scores = ranking.map(p => rendezvousScore('bafkreiexample', p))
    expect([...scores].sort((a, b) => b - a)).toEqual(scores)
    expect(Number.isSafeInteger(scores[0])).toBe(true)
    expect(ranking[0]).toBe(rendezvousOwner('bafkreiexample', peers))
  })

  it('refuses to choose among nobody', () => {
    expect(() => rendezvousOwner('bafkreiexample', [])).toThrow(NoCandidatesError)
  })
})

describe('seededRandom', () => {
  it('repeats for a seed, differs between seeds, stays in [0, 1)', () => {
    const a = seededRandom(42)
    const b = seededRandom(42)
    const c = seededRandom(43)
    const seqA = Array.from({ length: 1000 }, () => a())
    const seqB = Array.from({ length: 1000 }, () => b())
    const seqC = Array.from({ length: 1000 }, () => c())
    expect(seqA).toEqual(seqB)
    expect(seqA).not.toEqual(seqC)
    for (const x of seqA) {
      expect(x).toBeGreaterThanOrEqual(0)
      expect(x).toBeLessThan(1)
    }
    const mean = seqA.reduce((s, x) => s + x, 0) / seqA.length
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.05)
  })

  it('rejects a seed that is not a number', () => {
    expect(() => seededRandom(Number.NaN)).toThrow(InvalidSchedulerInitError)
  })
})
