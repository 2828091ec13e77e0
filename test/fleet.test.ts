/**
 * Fleet operations end to end: five real `swarm agent` processes on loopback with labels, the
 * real S3 server behind a proxy that slows chunk reads so pulls can be watched, and the real CLI:
 * `swarm preheat` makes exactly the selected nodes pull, `swarm wait` returns when the required
 * node completes and not before, times out naming a node that was killed, and `swarm fleet`
 * shows nodes × models.
 */

import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { metric } from './helpers/agents.js'
import { collect, spawnSwarm, swarm } from './helpers/cli.js'
import { SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { openWorld } from './helpers/world.js'
import type { FleetView } from '../agents/swarm/src/agent/fleet.js'
import type { RunningAgent } from './helpers/agents.js'
import type { ProxiedWorld } from './helpers/world.js'

async function fleetOf (agent: RunningAgent): Promise<FleetView> {
  const res = await fetch(`http://127.0.0.1:${agent.metricsPort}/api/fleet`)
  expect(res.status).toBe(200)
  return await res.json() as FleetView
}

async function until (condition: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(200)
  }
}

function stateOn (view: FleetView, peerId: string, manifestCid: string): string | undefined {
  return view.nodes.find(n => n.peerId === peerId)?.models.find(m => m.manifestCid === manifestCid)?.state
}

describe('fleet operations', () => {
  let world: ProxiedWorld
  const cids: Record<string, string> = {}
  /** the five labelled agents, in the order of their set-ups */
  let agents: RunningAgent[]

  beforeAll(async () => {
    world = await openWorld('fleet', { proxy: true })
    for (const tag of ['v1', 'v2']) {
      const model = await writeSyntheticModel(join(world.work, `model-${tag}`), { ...SMALL_SHAPE, seed: tag })
      cids[tag] = await world.push(model.dir, `fleet:${tag}`)
    }
    // labels by flag, by env, and a comma list in one flag; a3's cache budget cannot hold a model
    const setups: Array<{ args?: string[], env?: Record<string, string> }> = [
      { args: ['--label', 'pool=a', '--label', 'zone=z1'] },
      { env: { SWARM_LABELS: 'pool=a,zone=z2' } },
      { args: ['--label', 'pool=a,zone=z1'] },
      { args: ['--label', 'pool=a', '--label', 'zone=small'], env: { SWARM_CACHE_SIZE: '1MiB' } },
      { args: ['--label', 'pool=b', '--label', 'zone=z1'] }
    ]
    for (const [i, setup] of setups.entries()) {
      await world.startAgent(`agent-${i}`, { env: { ...world.env, ...setup.env }, args: setup.args, ...(i > 0 ? { bootstrap: world.agents[0]!.multiaddrs } : {}) })
    }
    agents = world.agents
    let known: number[] = []
    const allKnown = async (): Promise<boolean> => {
      known = (await Promise.all(agents.map(fleetOf))).map(view => view.nodes.length)
      return known.every(count => count === 5)
    }
    // on a timeout, how many nodes each agent knew tells a lost bootstrap from lost gossip
    await until(allKnown, 'every agent to know all five', 60_000).catch(err => { throw new Error(`${(err as Error).message}; the agents knew ${known.join(', ')} nodes`) })
  }, 180_000)

  afterAll(async () => {
    if (world === undefined) return
    world.proxy.holdChunkGet = undefined
    await world.close()
  }, 120_000)

  it('swarm preheat on one node makes exactly the selected nodes pull, shows them progressing, and reports a decline with its reason', async () => {
    const [a0, a1, a2, a3, a4] = agents as [RunningAgent, RunningAgent, RunningAgent, RunningAgent, RunningAgent]
    // every chunk read from the origin takes a second: pulls last long enough to be seen pulling
    world.proxy.holdChunkGet = async () => { await sleep(1_000) }
    try {
      const preheat = await swarm(['preheat', 'fleet:v1', '--nodes', 'pool=a', '--min', '3', '--timeout', '2m', '--json'], a4.env)
      expect(preheat.code, preheat.stderr).toBe(0)
      const requested = preheat.events.find(e => e.event === 'requested')
      expect(requested?.manifestCid).toBe(cids.v1)
      const progress = preheat.events.filter(e => e.event === 'progress')
      expect(progress.some(e => (e.nodes as Record<string, number>).pulling > 0 && Number(e.doneBytes) < Number(e.totalBytes))).toBe(true)
      expect(typeof progress[0]?.status).toBe('string')
      expect(new Set(preheat.done?.held as string[])).toEqual(new Set([a0.peerId, a1.peerId, a2.peerId]))
    } finally {
      world.proxy.holdChunkGet = undefined
    }
    // the node outside the selector pulled nothing; the one whose budget cannot hold it declined and said why
    await until(async () => stateOn(await fleetOf(a4), a3.peerId, cids.v1!) === 'declined', 'a3 to report its decline', 10_000)
    const view = await fleetOf(a4)
    const declined = view.nodes.find(n => n.peerId === a3.peerId)?.models.find(m => m.manifestCid === cids.v1)
    expect(declined?.reason).toMatch(/cache budget: the model needs \d+ bytes and the cache budget is 1048576/)
    expect(view.nodes.find(n => n.peerId === a4.peerId)?.models).toEqual([])
    expect(view.nodes.find(n => n.self)?.peerId).toBe(a4.peerId)
    for (const a of [a0, a1, a2]) expect(stateOn(view, a.peerId, cids.v1!)).toBe('held')
    const held = view.nodes.find(n => n.peerId === a0.peerId)?.models[0]
    expect(held).toMatchObject({ ref: 'fleet:v1', state: 'held' })
    expect(held!.doneBytes).toBe(held!.totalBytes)
    for (const agent of [a4, a3]) {
      const status = await swarm(['status', '--json'], agent.env)
      expect(status.code, status.stderr).toBe(0)
      expect((status.done?.models as Array<{ presentBytes: number }>).filter(m => m.presentBytes > 0)).toEqual([])
    }
    // the same view as Prometheus series, on the node that asked
    expect(await metric(a4, 'swarm_fleet_nodes')).toBe(5)
    expect(await metric(a4, 'swarm_fleet_model_nodes', { model: 'fleet:v1', state: 'held' })).toBe(3)
    expect(await metric(a4, 'swarm_fleet_model_nodes', { model: 'fleet:v1', state: 'declined' })).toBe(1)
  }, 180_000)

  it('swarm wait --min 3 returns when the third node completes, and not before', async () => {
    const [a0, a1, a2, , a4] = agents as [RunningAgent, RunningAgent, RunningAgent, RunningAgent, RunningAgent]
    const waiter = spawnSwarm(['wait', 'fleet:v2', '--min', '3', '--nodes', 'pool=a', '--timeout', '2m', '--json'], a4.env)
    const result = collect(waiter)
    for (const a of [a0, a1]) {
      const pull = await swarm(['pull', 'fleet:v2', '--json'], a.env)
      expect(pull.code, pull.stderr).toBe(0)
    }
    await until(async () => { const v = await fleetOf(a4); return [a0, a1].every(a => stateOn(v, a.peerId, cids.v2!) === 'held') }, 'the waiter\'s agent to see two nodes done')
    // two done and the gossip settled: the gate stays closed
    await sleep(3_000)
    expect(waiter.exitCode).toBeNull()
    const third = await swarm(['pull', 'fleet:v2', '--json'], a2.env)
    expect(third.code, third.stderr).toBe(0)
    const thirdDone = Date.now()
    const waited = await result
    expect(waited.code, waited.stderr).toBe(0)
    expect(Date.now() - thirdDone).toBeLessThan(15_000)
    expect(new Set(waited.done?.held as string[])).toEqual(new Set([a0.peerId, a1.peerId, a2.peerId]))
    expect(waited.done?.manifestCid).toBe(cids.v2)
  }, 180_000)

  it('swarm fleet --json shows every node, its labels and its models\' states; the table shows them too', async () => {
    const [a0, a1, , a3, a4] = agents as [RunningAgent, RunningAgent, RunningAgent, RunningAgent, RunningAgent]
    await until(async () => stateOn(await fleetOf(a1), a3.peerId, cids.v1!) === 'declined', 'a1 to see the decline', 10_000)
    const fleet = await swarm(['fleet', '--json'], a1.env)
    expect(fleet.code, fleet.stderr).toBe(0)
    const view = fleet.done as unknown as FleetView
    expect(view.self).toBe(a1.peerId)
    expect(new Set(view.nodes.map(n => n.peerId))).toEqual(new Set(agents.map(a => a.peerId)))
    expect(view.nodes.find(n => n.peerId === a1.peerId)?.labels).toEqual({ pool: 'a', zone: 'z2' })
    expect(view.nodes.find(n => n.peerId === a4.peerId)?.labels).toEqual({ pool: 'b', zone: 'z1' })
    expect(stateOn(view, a0.peerId, cids.v1!)).toBe('held')
    expect(stateOn(view, a0.peerId, cids.v2!)).toBe('held')
    expect(stateOn(view, a3.peerId, cids.v1!)).toBe('declined')
    for (const node of view.nodes) expect(node.lastSeen).toBeGreaterThan(Date.now() - 60_000)

    const table = await swarm(['fleet'], a1.env)
    expect(table.code, table.stderr).toBe(0)
    expect(table.stdout).toMatch(/^5 nodes \(\* this one\), 2 models/)
    expect(table.stdout).toContain(`* ${a1.peerId}`)
    expect(table.stdout).toMatch(/fleet:v1\s+fleet:v2|fleet:v2\s+fleet:v1/)
    expect(table.stdout).toMatch(new RegExp(`${a3.peerId}\\s+pool=a,zone=small\\s+.*declined`))
    expect(table.stdout).toMatch(/fleet:v1: declined: cache budget/)
  }, 60_000)

  it('swarm wait --local gates on this node alone; bad selectors, goals and durations are usage errors', async () => {
    const [a0, , , a3] = agents as [RunningAgent, RunningAgent, RunningAgent, RunningAgent, RunningAgent]
    const here = await swarm(['wait', 'fleet:v1', '--local', '--timeout', '10s', '--json'], a0.env)
    expect(here.code, here.stderr).toBe(0)
    expect(here.done?.held).toEqual([a0.peerId])
    const declined = await swarm(['wait', 'fleet:v1', '--local', '--timeout', '2s'], a3.env)
    expect(declined.code).toBe(7)
    expect(declined.stderr).toContain(`${a3.peerId} (pool=a,zone=small): declined: cache budget`)

    for (const [args, message] of [
      [['--nodes', 'pool in (a)', '--min', '1'], /not a selector requirement/],
      [[], /say how many nodes: --min N, --all, or --local/],
      [['--min', '0'], /--min must be a whole number of nodes/],
      [['--all', '--timeout', 'forever'], /"forever" is not a duration/]
    ] as const) {
      const bad = await swarm(['wait', 'fleet:v1', ...args], a0.env)
      expect(bad.code, bad.stderr).toBe(2)
      expect(bad.stderr).toMatch(message)
    }
  }, 60_000)

  it('swarm wait times out naming a node that was killed, and why each missing node is missing', async () => {
    const [a0, , , a3, a4] = agents as [RunningAgent, RunningAgent, RunningAgent, RunningAgent, RunningAgent]
    // four nodes match (a3 is left out by zone); a4 does not hold fleet:v1, and is then killed
    expect((await fleetOf(a0)).nodes.map(n => n.peerId)).toContain(a4.peerId)
    const started = Date.now()
    const child = spawnSwarm(['wait', 'fleet:v1', '--min', '4', '--nodes', 'zone!=small', '--timeout', '12s', '--json'], a0.env)
    // killed once the waiter has seen it (a node gone before the wait began is simply not in the fleet)
    const seen = new Promise<void>(resolve => {
      let out = ''
      child.stdout?.on('data', (d: Buffer | string) => {
        out += d.toString()
        if (out.split('\n').some(l => l.includes('"progress"') && l.includes('"matching":4'))) resolve()
      })
    })
    const waiting = collect(child)
    await seen
    await a4.kill()
    const waited = await waiting
    expect(waited.code, waited.stderr).toBe(7)
    expect(Date.now() - started).toBeGreaterThanOrEqual(12_000)
    expect(waited.error?.code).toBe('ERR_FLEET_WAIT_TIMEOUT')
    const message = String(waited.error?.message)
    expect(message).toMatch(/^timed out after 12s: 3 of 4 required nodes matching zone!=small hold fleet:v1/)
    expect(message).toContain(`${a4.peerId} (pool=b,zone=z1): left the fleet: not heard from for`)
    expect(message).toContain('it last reported: has not started it')
    expect(message).not.toContain(a3.peerId)
    expect(waited.stderr).toContain(a4.peerId)
  }, 60_000)
})
