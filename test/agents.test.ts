/**
 * Peers first, end to end: real `swarm agent` processes on 127.0.0.1 with real libp2p over TCP,
 * the TLS data plane, and the real S3 server behind a counting proxy, so origin egress is
 * measured where it happens.
 */

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateSwarmKey } from '@swarm/p2p'
import { metric } from './helpers/agents.js'
import { swarm } from './helpers/cli.js'
import { hashes, writeSyntheticModel } from './helpers/model.js'
import { openWorld } from './helpers/world.js'
import type { RunningAgent } from './helpers/agents.js'
import type { SyntheticModel } from './helpers/model.js'
import type { ProxiedWorld } from './helpers/world.js'

describe('agents pull from each other first', () => {
  let world: ProxiedWorld
  /** the five agents that pull together */
  let agents: RunningAgent[]
  let model: SyntheticModel
  let manifestCid: string

  beforeAll(async () => {
    world = await openWorld('agents', { proxy: true })
    model = await writeSyntheticModel(join(world.work, 'model'), { layers: 6, hidden: 512, intermediate: 1536, vocab: 8192, shards: 2 })
    manifestCid = await world.push(model.dir, 'fleet:v1')
    agents = await world.startFleet('agent', 5)
  })

  afterAll(async () => {
    await world?.close()
  }, 180_000)

  it('five agents pulling at once: byte-identical copies, origin egress near one copy, most bytes from peers', async () => {
    world.proxy.reset()
    const pulls = await Promise.all(agents.map(async (agent, i) =>
      await swarm(['pull', 'fleet:v1', '--to', join(world.work, `out-${i}`), '--json'], agent.env)))
    for (const [i, pull] of pulls.entries()) {
      expect(pull.code, `${pull.stderr}\n${agents[i]!.stderr()}`).toBe(0)
      expect(pull.done?.via).toBe('agent')
    }
    const expected = await hashes(model.dir, model.files)
    for (let i = 0; i < agents.length; i++) expect(await hashes(join(world.work, `out-${i}`), model.files)).toEqual(expected)

    const originBytes = world.proxy.getBytes.chunks ?? 0
    const ratio = originBytes / model.totalBytes
    process.stderr.write(`5 agents: origin egress ${(ratio).toFixed(3)} × model size\n`)
    expect(ratio).toBeLessThanOrEqual(1.5)

    let peerBytes = 0
    let originMetric = 0
    for (const agent of agents) {
      peerBytes += await metric(agent, 'swarm_bytes_total', { source: 'peer' })
      originMetric += await metric(agent, 'swarm_bytes_total', { source: 'origin' })
    }
    expect(originMetric).toBeLessThanOrEqual(originBytes)
    expect(peerBytes).toBeGreaterThan(originMetric)
    expect(peerBytes + originMetric).toBeGreaterThanOrEqual(5 * model.totalBytes * 0.95)

    const status = await swarm(['status', '--json'], agents[0]!.env)
    expect(status.code, status.stderr).toBe(0)
    expect((status.done?.peers as string[]).length).toBeGreaterThanOrEqual(1)
    expect((status.done?.models as Array<{ manifestCid: string }>)[0]?.manifestCid).toBe(manifestCid)

    // every upload left from the byte workers' data servers (two per agent here): the main
    // thread's stopped taking connections once they listened, and served nothing
    let servedInAll = 0
    for (const agent of agents) {
      const { done, code, stderr } = await swarm(['status', '--json'], agent.env)
      expect(code, stderr).toBe(0)
      const served = done?.served as { bytesServed: number, bytesByThread: Record<string, number> }
      expect(Object.keys(served.bytesByThread).sort()).toEqual(['main', 'worker-0', 'worker-1'])
      expect(served.bytesByThread.main).toBe(0)
      expect(served.bytesByThread['worker-0']! + served.bytesByThread['worker-1']!).toBe(served.bytesServed)
      servedInAll += served.bytesServed
    }
    expect(servedInAll).toBeGreaterThanOrEqual(peerBytes)
  }, 180_000)

  it('a sixth agent that starts after the others finished takes nothing from the origin', async () => {
    const late = await world.startAgent('agent-late', { bootstrap: agents[0]!.multiaddrs })
    // a late agent that has joined the fleet: on a loaded machine its first dial can take longer
    // than a pull's settle time, and a node with no peer has nobody to ask but the origin
    const until = Date.now() + 30_000
    while (await metric(late, 'swarm_peers') < 1 && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 200))
    expect(await metric(late, 'swarm_peers')).toBeGreaterThanOrEqual(1)
    world.proxy.reset()
    const pull = await swarm(['pull', 'fleet:v1', '--to', join(world.work, 'out-late'), '--json'], late.env)
    expect(pull.code, pull.stderr + late.stderr()).toBe(0)
    expect(world.proxy.gets.chunks ?? 0).toBe(0)
    expect((pull.done?.bytesBySource as { peer: number }).peer).toBeGreaterThan(0)
    expect(await hashes(join(world.work, 'out-late'), model.files)).toEqual(await hashes(model.dir, model.files))
  }, 180_000)

  it('with the origin down and one seeder that turns most requests away as busy, a node still pulls everything from it', async () => {
    // a swarm of two: the seeder is the only peer, and it serves one request at a time
    const pairKey = join(world.work, 'pair.key')
    await writeFile(pairKey, generateSwarmKey(), { mode: 0o600 })
    const seeder = await world.startAgent('agent-busy-seeder', { env: { ...world.env, SWARM_UPLOAD_SLOTS: '1' }, swarmKeyFile: pairKey })
    const warm = await swarm(['pull', '--cid', manifestCid, '--json'], seeder.env)
    expect(warm.code, warm.stderr + seeder.stderr()).toBe(0)
    await world.proxy.stop()
    try {
      const puller = await world.startAgent('agent-busy-puller', { swarmKeyFile: pairKey, bootstrap: seeder.multiaddrs })
      const pull = await swarm(['pull', '--cid', manifestCid, '--to', join(world.work, 'out-busy'), '--json'], puller.env)
      expect(pull.code, pull.stderr + puller.stderr()).toBe(0)
      expect((pull.done?.bytesBySource as { origin: number, peer: number })).toMatchObject({ origin: 0, peer: model.totalBytes })
      expect(await hashes(join(world.work, 'out-busy'), model.files)).toEqual(await hashes(model.dir, model.files))
      // it was turned away, and the origin failed in between: the pull went on from the seeder
      expect(await metric(seeder, 'swarm_data_busy_total')).toBeGreaterThan(0)
    } finally {
      await world.proxy.restart()
    }
  }, 180_000)

  it('with the origin down, a node pulls by manifest CID entirely from peers', async () => {
    await world.proxy.stop()
    try {
      const orphan = await world.startAgent('agent-orphan', { bootstrap: agents[1]!.multiaddrs })
      const pull = await swarm(['pull', '--cid', manifestCid, '--to', join(world.work, 'out-orphan'), '--json'], orphan.env)
      expect(pull.code, pull.stderr + orphan.stderr()).toBe(0)
      expect((pull.done?.bytesBySource as { origin: number }).origin).toBe(0)
      expect(await hashes(join(world.work, 'out-orphan'), model.files)).toEqual(await hashes(model.dir, model.files))
      // a name still needs the origin: peers never name models
      const byName = await swarm(['pull', 'fleet:v1', '--json'], orphan.env)
      expect(byName.code).toBe(5)
    } finally {
      await world.proxy.restart()
    }
  }, 180_000)
})
