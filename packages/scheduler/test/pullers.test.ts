import { describe, expect, it } from 'vitest'
import { chunkScheduler, InvalidSchedulerInitError, pullerSet, rendezvousOwner, rendezvousRanking, seededRandom } from '../src/index.js'
import { chunkList, peerIds, range } from './fixtures.js'

describe('puller sets', () => {
  const chunks = chunkList(200, 21)
  const ids = peerIds(12)

  it('agrees with rendezvousOwner, however the set was built', () => {
    const atOnce = pullerSet(chunks, ids)
    const oneByOne = pullerSet(chunks)
    for (const id of [...ids].reverse()) oneByOne.add(id)
    oneByOne.add('12D3KooWextra')
    oneByOne.remove('12D3KooWextra')
    for (const i of range(200)) {
      const owner = rendezvousOwner(chunks[i]!.cid, ids)
      expect(atOnce.owner(i)).toBe(owner)
      expect(oneByOne.owner(i)).toBe(owner)
    }
    expect(ids.reduce((sum, id) => sum + atOnce.ownedBy(id), 0)).toBe(200)
  })

  it('numbers each owner\'s chunks in chunk order', () => {
    const set = pullerSet(chunks, ids)
    for (const id of ids) {
      const mine = range(200).filter(i => set.owner(i) === id)
      expect(mine.map(i => set.queuePosition(i))).toEqual(range(mine.length))
    }
  })

  it('reports which chunks changed owner, and only those', () => {
    const set = pullerSet(chunks, ids)
    const before = set.version
    const owners = range(200).map(i => set.owner(i))
    set.remove(ids[3]!)
    const changed = new Set(set.changesSince(before))
    expect(set.version).toBe(before + 1)
    for (const i of range(200)) {
      expect(changed.has(i)).toBe(owners[i] === ids[3])
      if (changed.has(i)) expect(set.owner(i)).toBe(rendezvousRanking(chunks[i]!.cid, ids)[1])
    }
    expect(set.changesSince(set.version)).toHaveLength(0)
    // a change that changes nothing bumps nothing
    set.add('12D3KooWgone')
    set.remove('12D3KooWgone')
    expect(set.version).toBe(before + 1)
  })

  it('forgets old history and says so', () => {
    const set = pullerSet(chunkList(4, 2), ['a'])
    const first = set.version
    for (let k = 0; k < 40; k++) {
      set.add(`p${k}`)
      void set.version
    }
    expect(set.changesSince(first)).toBeUndefined()
  })

  it('is empty-handed without members', () => {
    const set = pullerSet(chunks)
    expect(set.owner(0)).toBeUndefined()
    set.add('solo')
    expect(set.owner(0)).toBe('solo')
    set.remove('solo')
    expect(set.owner(0)).toBeUndefined()
  })

  it('can be shared by schedulers, who follow changes made to it', () => {
    const shared = pullerSet(chunks, ['a', 'b', 'c'])
    const options = { chunks, pullerSet: shared, maxInflightOrigin: 500, fleetInflightOrigin: 5000, maxInflightTotal: 500, originFallbackMs: 1000, now: 0 }
    const a = chunkScheduler({ selfId: 'a', random: seededRandom(1), ...options })
    const c = chunkScheduler({ selfId: 'c', random: seededRandom(2), ...options })
    const fromA = a.tick(0).start.map(r => r.chunk)
    const fromC = c.tick(0).start.map(r => r.chunk)
    expect(fromA).toEqual(range(200).filter(i => rendezvousOwner(chunks[i]!.cid, ['a', 'b', 'c']) === 'a'))
    expect(fromC).toEqual(range(200).filter(i => rendezvousOwner(chunks[i]!.cid, ['a', 'b', 'c']) === 'c'))
    shared.remove('b')
    const heirsOfA = range(200).filter(i => rendezvousRanking(chunks[i]!.cid, ['a', 'b', 'c'])[0] === 'b' && rendezvousOwner(chunks[i]!.cid, ['a', 'c']) === 'a')
    expect(a.tick(5).start.map(r => r.chunk)).toEqual(heirsOfA)
    expect(a.stats.pullers).toBe(2)
  })

  it('must be made for the same chunks and include the scheduler itself', () => {
    expect(() => chunkScheduler({ selfId: 'z', chunks, random: seededRandom(1), pullerSet: pullerSet(chunks, ['a']) })).toThrow(/selfId/)
    expect(() => chunkScheduler({ selfId: 'a', chunks, random: seededRandom(1), pullerSet: pullerSet(chunkList(200, 22), ['a']) })).toThrow(InvalidSchedulerInitError)
    expect(() => chunkScheduler({ selfId: 'a', chunks, random: seededRandom(1), pullers: [], pullerSet: pullerSet(chunks, ['a']) })).toThrow(/not both/)
  })
})
