/**
 * The store under a real agent process: a pull in flight is leased, so another pull's gc cannot
 * evict it; and on a small file system (a tmpfs this test mounts with `size=`) a model that
 * cannot fit is refused with figures, a pull that fills the disk ends with the disk-full error
 * and exit code while the agent keeps running, and once space is freed the same pull fetches only
 * what was not recorded. The origin is the real S3 server behind a proxy that counts chunk GETs
 * and can hold them, so the test decides when a pull may go on.
 */

import { execFileSync } from 'node:child_process'
import { mkdir, rm, rmdir, statfs, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { decodeManifest } from '@swarm/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { swarm } from './helpers/cli.js'
import { hashes, SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { s3Client } from './helpers/s3.js'
import { openWorld } from './helpers/world.js'
import type { RunningAgent } from './helpers/agents.js'
import type { SyntheticModel } from './helpers/model.js'
import type { ProxiedWorld } from './helpers/world.js'

const MiB = 1024 * 1024

interface Gate { promise: Promise<void>, open(): void }

function gate (): Gate {
  let open!: () => void
  const promise = new Promise<void>(resolve => { open = resolve })
  return { promise, open }
}

async function status (agent: RunningAgent): Promise<Record<string, any>> {
  const result = await swarm(['status', '--json'], agent.env)
  expect(result.code, result.stderr).toBe(0)
  return result.done as Record<string, any>
}

async function waitFor (what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

describe('the store under a running agent', () => {
  let world: ProxiedWorld

  beforeAll(async () => {
    world = await openWorld('store-agent', { proxy: true })
  })

  afterAll(async () => {
    await world?.close()
  }, 120_000)

  it('a pull in flight is leased: the gc after another pull skips it, and it completes byte-identical', async () => {
    const a = await writeSyntheticModel(join(world.work, 'lease-a'), { ...SMALL_SHAPE, seed: 'lease-a' })
    const b = await writeSyntheticModel(join(world.work, 'lease-b'), { layers: 1, hidden: 256, intermediate: 512, vocab: 1024, seed: 'lease-b' })
    const aCid = await world.push(a.dir, 'lease-a:v1')
    const bCid = await world.push(b.dir, 'lease-b:v1')
    const client = s3Client(world.s3)
    const bManifest = decodeManifest(await (await client.send(new GetObjectCommand({ Bucket: world.s3.bucket, Key: `${world.prefix}/manifests/${bCid}` }))).Body!.transformToByteArray(), { expectedCid: bCid })
    client.destroy()
    const bChunks = new Set(bManifest.files.flatMap(f => f.chunks.map(c => c.cid)))

    // a budget far below either model: without a lease, B's gc would evict A mid-pull
    // each agent of this file is a swarm of its own: what it stores, it fetched from the origin
    const agent = await world.startAgent('agent-lease', { env: { ...world.env, SWARM_CACHE_SIZE: '1MiB' }, swarmKeyFile: undefined })
    const held = gate()
    let passed = 0
    world.proxy.holdChunkGet = cid => bChunks.has(cid) || passed++ < 2 ? undefined : held.promise
    try {
      const pullA = swarm(['pull', 'lease-a:v1', '--to', join(world.work, 'out-a'), '--json'], agent.env)
      await waitFor('A to store its first chunks', async () => {
        const transfer = (await status(agent)).transfers.find((t: { manifestCid: string }) => t.manifestCid === aCid)
        return transfer != null && transfer.progress.doneChunks >= 2
      })
      const pullB = await swarm(['pull', 'lease-b:v1', '--json'], agent.env)
      expect(pullB.code, pullB.stderr + agent.stderr()).toBe(0)

      const during = await status(agent)
      expect(during.leases).toContainEqual({ manifestCid: aCid, holders: ['pull:lease-a:v1'] })
      expect(during.lastGc.skipped).toContainEqual({ manifestCid: aCid, refs: ['lease-a:v1'], reason: 'leased', holders: ['pull:lease-a:v1'] })
      expect(during.lastGc.presentBytes).toBeGreaterThan(during.lastGc.budgetBytes)
      expect(during.models.map((m: { manifestCid: string }) => m.manifestCid)).toContain(aCid)

      held.open()
      const doneA = await pullA
      expect(doneA.code, doneA.stderr + agent.stderr()).toBe(0)
      expect(await hashes(join(world.work, 'out-a'), a.files)).toEqual(await hashes(a.dir, a.files))

      // A's own gc ran while A was still leased: B, done and unleased, is what went
      const after = await status(agent)
      expect(after.lastGc.evicted.map((e: { manifestCid: string }) => e.manifestCid)).toEqual([bCid])
      expect(after.lastGc.skipped).toContainEqual({ manifestCid: aCid, refs: ['lease-a:v1'], reason: 'leased', holders: ['pull:lease-a:v1'] })
      expect(after.models.map((m: { manifestCid: string }) => m.manifestCid)).toEqual([aCid])
      expect(after.leases).toEqual([])
    } finally {
      held.open()
      world.proxy.holdChunkGet = undefined
    }
  }, 180_000)

  it('swarm gc --json reports what it evicted and what it kept and why', async () => {
    const tiny = await writeSyntheticModel(join(world.work, 'gc-tiny'), { layers: 1, hidden: 256, intermediate: 512, vocab: 1024, seed: 'gc-tiny' })
    const cid = await world.push(tiny.dir, 'gc-tiny:v1')
    const local = { ...world.env, SWARM_DATA_DIR: join(world.work, 'gc-cli') }
    const pull = await swarm(['pull', 'gc-tiny:v1', '--no-agent', '--pin', '--json'], local)
    expect(pull.code, pull.stderr).toBe(0)

    const kept = await swarm(['gc', '--cache-size', '0', '--json'], local)
    expect(kept.code, kept.stderr).toBe(0)
    expect(kept.done).toMatchObject({ command: 'gc', evicted: [], skipped: [{ manifestCid: cid, refs: ['gc-tiny:v1'], reason: 'pinned' }], budgetBytes: 0 })
    const human = await swarm(['gc', '--cache-size', '0'], local)
    expect(human.stdout).toContain(`kept gc-tiny:v1 (${cid}): pinned`)

    expect((await swarm(['pin', 'gc-tiny:v1', '--off'], local)).code).toBe(0)
    const evicted = await swarm(['gc', '--cache-size', '0', '--json'], local)
    expect(evicted.done).toMatchObject({ evicted: [{ manifestCid: cid, refs: ['gc-tiny:v1'], reason: 'budget', freedBytes: tiny.totalBytes }], skipped: [], presentBytes: 0 })
  }, 120_000)

  describe('on a small file system', () => {
    let mountpoint: string
    let model: SyntheticModel
    let big: SyntheticModel

    beforeAll(async () => {
      model = await writeSyntheticModel(join(world.work, 'fits'), { ...SMALL_SHAPE, seed: 'disk-fits' })
      big = await writeSyntheticModel(join(world.work, 'big'), { ...SMALL_SHAPE, layers: 8, seed: 'disk-big' })
      await world.push(model.dir, 'disk:fits')
      await world.push(big.dir, 'disk:big')
      mountpoint = join(world.work, 'small-fs')
      await mkdir(mountpoint)
      // room for the model and the default margin (4 MiB on a volume this small), not for the big one
      const size = Math.ceil(model.totalBytes / MiB) + 10
      expect(big.totalBytes).toBeGreaterThan(size * MiB)
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}m`, 'tmpfs', mountpoint])
    })

    afterAll(async () => {
      await Promise.allSettled(world.agents.map(async a => await a.kill()))
      execFileSync('umount', [mountpoint])
      await rmdir(mountpoint)
    })

    it('refuses what cannot fit, ends a pull that fills the disk with its own error and exit code, keeps running, and resumes without fetching again what it stored', async () => {
      const dataDir = join(mountpoint, 'data')
      const agent = await world.startAgent('disk', { dataDir, swarmKeyFile: undefined })

      const refused = await swarm(['pull', 'disk:big', '--json'], agent.env)
      expect(refused.code, refused.stderr).toBe(6)
      expect(refused.error?.code).toBe('ERR_DISK_FULL')
      expect(String(refused.error?.message)).toMatch(new RegExp(`needs [\\d.]+ MiB \\(\\d+ bytes\\) more plus a margin of 4\\.0 MiB .* data dir ${dataDir} has [\\d.]+ MiB \\(\\d+ bytes\\) free`))
      expect((await status(agent)).models).toEqual([])

      // let three chunks through, fill the disk, then let the rest come
      const held = gate()
      let passed = 0
      world.proxy.holdChunkGet = () => passed++ < 3 ? undefined : held.promise
      const filler = join(mountpoint, 'filler')
      let pull: Awaited<ReturnType<typeof swarm>>
      try {
        const pulling = swarm(['pull', 'disk:fits', '--json'], agent.env)
        await waitFor('three chunks stored', async () => {
          const transfer = (await status(agent)).transfers[0]
          return transfer != null && transfer.progress.doneChunks >= 3
        })
        const fs = await statfs(mountpoint)
        await writeFile(filler, new Uint8Array(fs.bavail * fs.bsize - 256 * 1024))
        held.open()
        pull = await pulling
      } finally {
        held.open()
        world.proxy.holdChunkGet = undefined
      }
      expect(pull.code, pull.stderr + agent.stderr()).toBe(6)
      expect(pull.error?.code).toBe('ERR_DISK_FULL')
      expect(String(pull.error?.message)).toContain(`data dir ${dataDir}`)
      expect(agent.child.exitCode).toBeNull()

      // writes that were under way when the pull ended settle, then what is recorded stays recorded
      await new Promise(resolve => setTimeout(resolve, 1000))
      const [held1] = (await status(agent)).models as Array<{ presentBytes: number, totalBytes: number }>
      const recorded = held1!.presentBytes
      expect(recorded).toBeGreaterThan(0)
      expect(recorded).toBeLessThan(held1!.totalBytes)

      await rm(filler)
      world.proxy.reset()
      const again = await swarm(['pull', 'disk:fits', '--to', join(world.work, 'out-fits'), '--json'], agent.env)
      expect(again.code, again.stderr + agent.stderr()).toBe(0)
      const bySource = again.done?.bytesBySource as { origin: number, peer: number, local: number }
      expect(bySource.origin).toBe(Number(again.done?.totalBytes) - recorded)
      expect(world.proxy.getBytes.chunks).toBe(Number(again.done?.totalBytes) - recorded)
      expect(await hashes(join(world.work, 'out-fits'), model.files)).toEqual(await hashes(model.dir, model.files))
      await agent.stop()

      // without an agent, the same refusal and exit code
      const alone = await swarm(['pull', 'disk:big', '--no-agent', '--json'], { ...world.env, SWARM_DATA_DIR: dataDir })
      expect(alone.code, alone.stderr).toBe(6)
      expect(alone.error?.code).toBe('ERR_DISK_FULL')
      expect(String(alone.error?.message)).toContain(`data dir ${dataDir}`)
    }, 180_000)
  })
})
