/**
 * The rules `swarm wait` and `swarm preheat` judge the fleet by, on fleet views built by hand:
 * what counts as done, when a goal is met or can no longer be, and how a node that left is named.
 */

import { parseSelector } from '@swarm/p2p'
import { describe, expect, it } from 'vitest'
import { assess, missingText, parseDuration } from '../src/commands/fleet-watch.js'
import type { FleetModel, FleetNode, FleetView } from '../src/agent/fleet.js'
import type { Seen } from '../src/commands/fleet-watch.js'

const CID = 'bagaaieraucefebyyrj4gw2zba6c7q62cmdhjrnttsb2dtnzvuyhbck5ee4fa'

function model (state: FleetModel['state'], done = 10, extra: Partial<FleetModel> = {}): FleetModel {
  return { manifestCid: CID, ref: 'llama:v3', state, doneBytes: done, totalBytes: 10, bytesFromPeers: 6, bytesFromOrigin: done - 6, ...extra }
}

function node (peerId: string, labels: Record<string, string>, models: FleetModel[], self = false): FleetNode {
  return { peerId, labels, lastSeen: 1_000, self, models }
}

function view (...nodes: FleetNode[]): FleetView {
  return { self: nodes.find(n => n.self)?.peerId ?? 'p0', updatedAt: 1_000, nodes }
}

describe('judging the fleet', () => {
  const goal = { manifestCid: CID, ref: 'llama:v3', selector: parseSelector('pool=a') }

  it('counts only matching nodes that hold the model, and meets --min when enough do', () => {
    const fleet = view(
      node('p0', { pool: 'a' }, [model('held')], true),
      node('p1', { pool: 'a' }, [model('pulling', 4)]),
      node('p2', { pool: 'b' }, [model('held')]),
      node('p3', { pool: 'a' }, [model('held', 10, { manifestCid: 'bafkother', ref: 'llama:v2' })])
    )
    const a = assess(fleet, { ...goal, min: 2 }, new Map())
    expect(a.matching).toBe(3)
    expect(a.held.map(h => h.peerId)).toEqual(['p0'])
    expect(a.met).toBe(false)
    expect(a.settled).toBe(false)
    expect(a.counts).toMatchObject({ held: 1, pulling: 1, 'not-started': 1 })
    expect(missingText(a)).toBe('p1 (pool=a): pulling, 40% (4 B of 10 B); p3 (pool=a): has not started it (no report of this model)')
    expect(assess(fleet, { ...goal, min: 1 }, new Map()).met).toBe(true)
  })

  it('--all needs every matching node, and at least one; --local only this node', () => {
    expect(assess(view(node('p0', { pool: 'b' }, [])), { ...goal, all: true }, new Map()).met).toBe(false)
    const fleet = view(node('p0', { pool: 'a' }, [model('held')], true), node('p1', { pool: 'a' }, [model('pulling', 9)]))
    expect(assess(fleet, { ...goal, all: true }, new Map()).met).toBe(false)
    expect(assess(fleet, { ...goal, local: true }, new Map()).met).toBe(true)
    expect(assess(fleet, { ...goal, selector: parseSelector('pool=b'), local: true }, new Map()).met).toBe(true)
  })

  it('a decline or failure matched by name before the node resolved it counts against the goal and settles it', () => {
    const fleet = view(
      node('p0', { pool: 'a' }, [model('held')]),
      node('p1', { pool: 'a' }, [model('declined', 0, { manifestCid: '', reason: 'cache budget: too small' })]),
      node('p2', { pool: 'a' }, [model('failed', 3, { reason: 'origin unavailable' })])
    )
    const a = assess(fleet, { ...goal, all: true }, new Map())
    expect(a.settled).toBe(true)
    expect(a.met).toBe(false)
    expect(missingText(a)).toContain('p1 (pool=a): declined: cache budget: too small')
    expect(missingText(a)).toContain('p2 (pool=a): failed: origin unavailable')
  })

  it('a matching node seen earlier and gone since is named as having left, with what it last said', () => {
    const seen: Seen = new Map()
    assess(view(node('p0', { pool: 'a' }, [model('held')]), node('p9', { pool: 'a' }, [model('pulling', 5)])), { ...goal, min: 2 }, seen, 1_000)
    const a = assess(view(node('p0', { pool: 'a' }, [model('held')])), { ...goal, min: 2 }, seen, 31_000)
    expect(a.met).toBe(false)
    expect(a.counts.left).toBe(1)
    expect(missingText(a)).toBe('p9 (pool=a): left the fleet: not heard from for 30s (it last reported: pulling, 50% (5 B of 10 B))')
  })

  it('reads durations as people write them and refuses anything else', () => {
    expect(parseDuration('10m')).toBe(600_000)
    expect(parseDuration('1h30m')).toBe(5_400_000)
    expect(parseDuration('90')).toBe(90_000)
    expect(parseDuration('500ms')).toBe(500)
    for (const bad of ['soon', '10 minutes', '-5s', '5x', '']) expect(() => parseDuration(bad)).toThrow(/is not a duration/)
  })
})
