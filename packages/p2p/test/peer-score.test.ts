import { describe, expect, it } from 'vitest'
import { PEER_BAN_MS, PEER_BAN_THRESHOLD, peerScores } from '../src/index.js'
import type { PeerBannedEvent } from '../src/index.js'

function clock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000_000
  return { now: () => t, advance: ms => { t += ms } }
}

describe('peer scores', () => {
  it('bans a peer whose offences reach the threshold, and the ban expires', () => {
    const time = clock()
    const scores = peerScores({ banMs: 60_000, now: time.now })
    const bans: PeerBannedEvent[] = []
    scores.addEventListener('peer:banned', event => { bans.push(event.detail) })

    // 25 each: the fourth crosses 100
    for (let i = 0; i < 3; i++) expect(scores.penalize('p', 'malformed')).toBe(false)
    expect(scores.isBanned('p')).toBe(false)
    expect(scores.score('p')).toBe(75)
    expect(scores.penalize('p', 'malformed')).toBe(true)
    expect(scores.isBanned('p')).toBe(true)
    expect(bans).toEqual([{ peerId: 'p', offence: 'malformed', until: time.now() + 60_000, bans: 1 }])
    expect(scores.banned()).toEqual([{ peerId: 'p', until: time.now() + 60_000 }])
    expect(scores.stats()).toMatchObject({ bans: 1, banned: 1 })
    expect(scores.stats().offences.malformed).toBe(4)

    // offences while banned change nothing
    expect(scores.penalize('p', 'bad-data')).toBe(false)
    expect(bans).toHaveLength(1)

    time.advance(59_999)
    expect(scores.isBanned('p')).toBe(true)
    time.advance(1)
    expect(scores.isBanned('p')).toBe(false)
    expect(scores.banned()).toEqual([])
    expect(scores.score('p')).toBe(0)
    // other peers were never affected
    expect(scores.isBanned('q')).toBe(false)
  })

  it('bans repeat offenders for longer each time, up to a limit', () => {
    const time = clock()
    const scores = peerScores({ banMs: 1_000, now: time.now })
    const lengths: number[] = []
    for (let round = 0; round < 7; round++) {
      // one bad chunk is enough
      expect(scores.penalize('liar', 'bad-data')).toBe(true)
      const until = scores.banned().find(b => b.peerId === 'liar')?.until ?? 0
      lengths.push(until - time.now())
      time.advance(until - time.now())
      expect(scores.isBanned('liar')).toBe(false)
    }
    expect(lengths).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000])
  })

  it('lets scores decay, so rare offences never add up to a ban', () => {
    const time = clock()
    const scores = peerScores({ now: time.now, halfLifeMs: 60_000 })
    scores.penalize('p', 'malformed')
    time.advance(60_000)
    expect(scores.score('p')).toBeCloseTo(12.5)
    // a have crossing a dropped join, every few seconds for an hour: never banned
    for (let i = 0; i < 1_200; i++) {
      scores.penalize('p', 'peer-not-joined')
      time.advance(3_000)
    }
    expect(scores.isBanned('p')).toBe(false)
    // the steady state of 2 every 3 s with a 60 s half-life is about 59
    expect(scores.score('p')).toBeLessThan(PEER_BAN_THRESHOLD * 0.6)
  })

  it('does not score what is not the peer\'s doing', () => {
    const scores = peerScores({ now: clock().now })
    for (let i = 0; i < 1_000; i++) {
      scores.penalize('p', 'not-joined')
      scores.penalize('p', 'over-budget')
    }
    expect(scores.score('p')).toBe(0)
    expect(scores.isBanned('p')).toBe(false)
    expect(scores.stats().offences).toMatchObject({ 'not-joined': 1_000, 'over-budget': 1_000 })
  })

  it('holds bans whatever pulls come and go, until unbanned; banMs 0 never bans', () => {
    const scores = peerScores()
    scores.penalize('p', 'bad-data')
    // the record belongs to the node, not to a pull: any later reader sees the ban
    expect(scores.isBanned('p')).toBe(true)
    expect((scores.banned()[0]?.until ?? 0) - Date.now()).toBeGreaterThan(PEER_BAN_MS - 5_000)
    scores.unban('p')
    expect(scores.isBanned('p')).toBe(false)
    expect(scores.score('p')).toBe(0)

    const lenient = peerScores({ banMs: 0 })
    for (let i = 0; i < 100; i++) lenient.penalize('p', 'bad-data')
    expect(lenient.isBanned('p')).toBe(false)
    expect(lenient.score('p')).toBeGreaterThan(1_000)
  })

  it('remembers a bounded number of peers, forgetting quiet unbanned ones first', () => {
    const scores = peerScores({ maxPeers: 3, now: clock().now })
    scores.penalize('banned', 'too-large')
    scores.penalize('banned', 'too-large')
    expect(scores.isBanned('banned')).toBe(true)
    for (const peer of ['a', 'b', 'c', 'd']) scores.penalize(peer, 'malformed')
    expect(scores.isBanned('banned')).toBe(true)
    expect(scores.score('a')).toBe(0)
    expect(scores.score('b')).toBe(0)
    expect(scores.score('c')).toBe(25)
    expect(scores.score('d')).toBe(25)
  })

  it('rejects settings that make no sense', () => {
    expect(() => peerScores({ banMs: -1 })).toThrow(RangeError)
    expect(() => peerScores({ banThreshold: 0 })).toThrow(RangeError)
    expect(() => peerScores({ halfLifeMs: 0 })).toThrow(RangeError)
  })
})
