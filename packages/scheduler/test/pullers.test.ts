import { describe, expect, it } from 'vitest'
import { chunkScheduler, InvalidSchedulerInitError, pullerSet, rendezvousOwner, rendezvousRanking, seededRandom } from '../src/index.js'
import { chunkList, peerIds, range } from './fixtures.js'

describe('puller sets', () => {
  const chunks = chunkList(200, 21)
  const ids = peerIds(12)

  it('is the same however the set was built, and plain rendezvous where no one is full', () => {
    const atOnce = pullerSet(chunks, ids)
    const oneByOne = pullerSet(chunks)
    for (const id of [...ids].reverse()) oneByOne.add(id)
    oneByOne.add('12D3KooWextra')
    oneByOne.remove('12D3KooWextra')
    let firstChoice = 0
    for (const i of range(200)) {
      expect(oneByOne.owner(i)).toBe(atOnce.owner(i))
      if (atOnce.owner(i) === rendezvousOwner(chunks[i]!.cid, ids)) firstChoice++
    }
    // the slack lets most chunks go to their first-ranked puller
    expect(firstChoice).toBeGreaterThan(150)
    expect(ids.reduce((sum, id) => sum + atOnce.ownedBy(id), 0)).toBe(200)
    // with many more pullers than chunks nobody is full, and ownership is plain rendezvous
    const many = peerIds(500, 'many')
    const wide = pullerSet(chunkList(20, 5), many)
    for (const i of range(20)) {
      const owner = rendezvousOwner(chunkList(20, 5)[i]!.cid, many)
      if (wide.ownedBy(owner) === 1) expect(wide.owner(i)).toBe(owner)
    }
  })

  it('balances owners by bytes when chunk sizes are skewed', () => {
    // tensor-aligned cutting: large chunks, then a tail of small ones
    const skewed = chunkList(120, 31).map((chunk, i) => ({ cid: chunk.cid, size: i < 40 ? 4 * 1048576 : 64 * 1024 + 997 * i }))
    const total = skewed.reduce((sum, c) => sum + c.size, 0)
    for (const n of [2, 3, 5, 8, 16]) {
      const members = peerIds(n, `b${n}`)
      const set = pullerSet(skewed, members)
      const bytes = new Map(members.map(id => [id, 0]))
      for (const i of range(120)) bytes.set(set.owner(i)!, bytes.get(set.owner(i)!)! + skewed[i]!.size)
      const share = total / n
      for (const owned of bytes.values()) {
        // at most the slack over an even share, plus one chunk where whole chunks cannot fit it
        expect(owned).toBeLessThanOrEqual(1.1 * share + 4 * 1048576)
        expect(owned).toBeGreaterThan(0.75 * share)
      }
      // plain rendezvous, for contrast, counts chunks, not bytes: its heaviest owner is further off
      const plain = new Map(members.map(id => [id, 0]))
      for (const i of range(120)) {
        const owner = rendezvousOwner(skewed[i]!.cid, members)
        plain.set(owner, plain.get(owner)! + skewed[i]!.size)
      }
      expect(Math.max(...bytes.values())).toBeLessThanOrEqual(Math.max(...plain.values()))
    }
  })

  it('moves little beyond a joining or leaving puller\'s own share', () => {
    const sized = chunkList(256, 41)
    for (const n of [4, 10, 40, 400]) {
      const members = peerIds(n, `s${n}`)
      const set = pullerSet(sized, members)
      const before = range(256).map(i => set.owner(i))
      // a puller leaves: its chunks move, and few others
      const leaver = before[0]!
      set.remove(leaver)
      const afterLeave = range(256).map(i => set.owner(i))
      const own = before.filter(o => o === leaver).length
      const others = range(256).filter(i => before[i] !== leaver && afterLeave[i] !== before[i]).length
      expect(afterLeave.every(o => o !== leaver)).toBe(true)
      expect(others).toBeLessThanOrEqual(Math.max(2, own))
      // it comes back: what moves is about its share again
      set.add(leaver)
      const back = range(256).map(i => set.owner(i))
      const moved = range(256).filter(i => back[i] !== afterLeave[i]).length
      expect(moved).toBeLessThanOrEqual(Math.max(4, 2 * own + 2))
      // a puller that owns nothing comes and goes: nothing moves at all (once nobody is full by share)
      if (n >= 256) {
        const idle = 'idle-' + String(n)
        set.add(idle)
        const withIdle = range(256).map(i => set.owner(i))
        if (withIdle.every(o => o !== idle)) {
          expect(withIdle).toEqual(back)
          set.remove(idle)
          expect(range(256).map(i => set.owner(i))).toEqual(back)
        }
      }
    }
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
      // the owner of chunk 0 leaves each time: every step changes some owner
      set.add(`p${k}`)
      set.remove(set.owner(0)!)
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
    const options = { chunks, pullerSet: shared, maxInflightOrigin: 500, fleetInflightOrigin: 5000, originWindow: Infinity, maxInflightTotal: 500, originFallbackMs: 1000, now: 0 }
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
