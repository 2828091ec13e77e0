/**
 * Peers still receiving a chunk (cut-through, see "Peers still receiving a chunk" in
 * `src/peers.ts`): asked only where no connected peer holds the chunk, as relays outside the
 * landing-time limit, and never counted as holders.
 */

import { describe, expect, it } from 'vitest'
import { chunkScheduler, InvalidBitfieldError, InvalidChunkIndexError, seededRandom } from '../src/index.js'
import type { ChunkScheduler, Request, SchedulerInit } from '../src/index.js'
import { chunkList, range } from './fixtures.js'

function make (init: Partial<SchedulerInit> & { chunks: SchedulerInit['chunks'] }): ChunkScheduler {
  return chunkScheduler({ selfId: 'self', random: seededRandom(1), now: 0, useOrigin: false, ...init })
}

const peerOf = (request: Request): string | undefined => request.source.kind === 'peer' ? request.source.peerId : undefined

describe('peers still receiving a chunk', () => {
  it('are asked only for chunks no connected peer holds, as relays', () => {
    const scheduler = make({ chunks: chunkList(3) })
    scheduler.peerJoined('a', 0)
    scheduler.peerHas('a', [0], 0)
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', [0, 1], 0)
    const { start } = scheduler.tick(1)
    const byChunk = new Map(start.map(r => [r.chunk, r]))
    expect(byChunk.size).toBe(2)
    // chunk 0 goes to its holder, not to the peer still receiving it
    expect(peerOf(byChunk.get(0)!)).toBe('a')
    expect(byChunk.get(0)!.relay).toBeUndefined()
    expect(peerOf(byChunk.get(1)!)).toBe('b')
    expect(byChunk.get(1)!.relay).toBe(true)
    // nobody has or receives chunk 2
    expect(byChunk.has(2)).toBe(false)
    expect(scheduler.stats.relayRequests).toBe(1)
    expect(scheduler.stats.peerRequests).toBe(2)
  })

  it('are not holders: nothing is held by peers until a have says so', () => {
    const scheduler = make({ chunks: chunkList(2) })
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', [0, 1], 0)
    expect(scheduler.peersHoldAllMissing()).toBe(false)
    scheduler.peerHas('b', [0, 1], 0)
    expect(scheduler.peersHoldAllMissing()).toBe(true)
  })

  it('take relays outside the landing-time limit, within the limit in all', () => {
    // peer requests at once start at 2 while landing times are unknown; 6 in all
    const scheduler = make({ chunks: chunkList(12), maxInflightTotal: 6, maxInflightPerPeer: 6, peerLandingMs: 1_000 })
    scheduler.peerJoined('a', 0)
    scheduler.peerHas('a', range(6), 0)
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', range(12).slice(6), 0)
    const { start } = scheduler.tick(1)
    expect(start.filter(r => r.relay !== true)).toHaveLength(2)
    expect(start.filter(r => r.relay === true)).toHaveLength(4)
    expect(start.filter(r => r.relay === true).every(r => peerOf(r) === 'b' && r.chunk >= 6)).toBe(true)
    // a relay that lands does not move the landing-time limit: still 2 requests to holders
    const relay = start.find(r => r.relay === true)!
    const holderRequest = start.find(r => r.relay !== true)!
    scheduler.chunkArrived(relay.chunk, 2, relay.id)
    const next = scheduler.tick(2).start
    expect(next.filter(r => r.relay !== true)).toHaveLength(0)
    expect(next.filter(r => r.relay === true)).toHaveLength(1)
    scheduler.chunkArrived(holderRequest.chunk, 3, holderRequest.id)
    expect(scheduler.tick(3).start.filter(r => r.relay !== true)).toHaveLength(1)
  })

  it('are not asked again after a relay failed, until they say they receive the chunk anew; withdrawn chunks are not asked', () => {
    const scheduler = make({ chunks: chunkList(2) })
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', [0, 1], 0)
    scheduler.peerNotArriving('b', [1], 0)
    const first = scheduler.tick(1).start
    expect(first.map(r => r.chunk)).toEqual([0])
    scheduler.requestFailed(first[0]!.id, 2, 'error')
    expect(scheduler.tick(3).start).toEqual([])
    expect(scheduler.tick(60_000).start).toEqual([])
    scheduler.peerArriving('b', [0], 60_001)
    const again = scheduler.tick(60_001).start
    expect(again.map(r => [r.chunk, r.relay])).toEqual([[0, true]])
  })

  it('are forgotten with the peer, and when it gets the chunk it is a holder like any', () => {
    const scheduler = make({ chunks: chunkList(2) })
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', [0], 0)
    scheduler.peerLeft('b', 0)
    scheduler.peerJoined('b', 0)
    expect(scheduler.tick(1).start).toEqual([])
    scheduler.peerArriving('b', [1], 1)
    scheduler.peerHas('b', [1], 1)
    const { start } = scheduler.tick(2)
    expect(start.map(r => [r.chunk, r.relay])).toEqual([[1, undefined]])
  })

  it('are not kept for peers not connected, nor asked for chunks this node has; bad input is refused', () => {
    const scheduler = make({ chunks: chunkList(3), have: [true, false, false] })
    // a notice from a peer before it connects is not remembered for when it does
    scheduler.peerArriving('early', [1], 0)
    scheduler.peerJoined('early', 0)
    expect(scheduler.tick(1).start).toEqual([])
    scheduler.peerJoined('b', 0)
    scheduler.peerArriving('b', [0, 2], 0)
    expect(scheduler.tick(2).start.map(r => [peerOf(r), r.chunk, r.relay])).toEqual([['b', 2, true]])
    expect(() => { scheduler.peerArriving('b', [3], 0) }).toThrow(InvalidChunkIndexError)
    expect(() => { scheduler.peerNotArriving('b', [-1], 0) }).toThrow(InvalidChunkIndexError)
    expect(() => { scheduler.peerArriving('b', 'x' as unknown as number[], 0) }).toThrow(InvalidBitfieldError)
  })
})
