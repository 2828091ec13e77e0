/**
 * Chaos on shaped hosts: eight agents, each in a network namespace of its own behind a shaped
 * link (the namespaces, bridge and shaping of `bench/fanout`, made and removed here), pull one
 * model while agents are SIGKILLed and restarted at random every few seconds for a minute.
 *
 * Two seeds hold the model from a `file://` origin before the chaos starts and are never
 * killed; the six others have no origin at all, so every byte they get comes from peers, and
 * any of them may be killed mid-pull, mid-serve or mid-write. What must hold: no agent ever
 * exits unless it was killed (none crashes), a restarted agent picks its pull up again, and at
 * the end every agent finishes and returns the model byte for byte.
 */

import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error: plain JavaScript shared with the benchmark
import { Fabric } from '../bench/fanout/netns.mjs'
import { CLI, swarm } from './helpers/cli.js'
import type { ChildProcess } from 'node:child_process'

const HOSTS = 8
const SEEDS = 2
const LINK_MBIT = 80
const CHAOS_MS = 60_000
const KILL_EVERY_MS = [1_500, 4_000]
const SUBNET = '10.78.0'

interface Node {
  index: number
  host: string
  dataDir: string
  socket: string
  env: Record<string, string>
  child?: ChildProcess
  /** set before we kill it, so its exit is not taken for a crash */
  killing: boolean
  crashes: string[]
  kills: number
  multiaddrs: string[]
}

async function sha256 (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

describe('chaos: agents killed and restarted at random while eight pull', () => {
  let work: string
  let fabric: InstanceType<typeof Fabric>
  const nodes: Node[] = []
  let manifestCid: string
  const source: Record<string, string> = {}

  function start (node: Node, bootstrap?: string[]): Promise<void> {
    const [command, args] = fabric.exec(node.host, [process.execPath, CLI, 'agent', '--json']) as [string, string[]]
    const env = { ...process.env, ...node.env, SWARM_LOG_LEVEL: 'warn', ...(bootstrap != null ? { SWARM_BOOTSTRAP: bootstrap.join(',') } : {}) }
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    node.child = child
    node.killing = false
    let stderr = ''
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-4000) })
    return new Promise((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => { reject(new Error(`${node.host} not ready in 60 s: ${stderr}`)) }, 60_000)
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        out += d
        const line = out.split('\n').find(l => l.includes('"ready"'))
        if (line != null && node.multiaddrs.length === 0) node.multiaddrs = (JSON.parse(line) as { multiaddrs: string[] }).multiaddrs
        if (line != null) { clearTimeout(timer); resolve() }
      })
      child.on('exit', (code, signal) => {
        clearTimeout(timer)
        if (!node.killing) {
          node.crashes.push(`${node.host} exited by itself (code ${String(code)}, signal ${String(signal)}): ${stderr}`)
          reject(new Error(node.crashes.at(-1)))
        }
      })
    })
  }

  async function kill (node: Node): Promise<void> {
    const child = node.child
    if (child == null || child.exitCode != null || child.signalCode != null) return
    node.killing = true
    node.kills++
    const exited = new Promise(resolve => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
  }

  /** `swarm pull --cid` through the node's agent; resolves with the exit code (a killed agent ends it early). */
  async function pull (node: Node, extra: string[] = []): Promise<{ code: number, stderr: string, done?: Record<string, unknown> }> {
    return await swarm(['pull', '--cid', manifestCid, '--json', ...extra], { SWARM_SOCKET: node.socket, SWARM_DATA_DIR: node.dataDir })
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'swarm-chaos-'))
    fabric = new Fabric({ prefix: 'swch', subnet: SUBNET, latencyMs: 50 })
    // a run killed earlier may have left its namespaces behind
    fabric.destroy()
    await fabric.start()

    const modelDir = join(work, 'model')
    await mkdir(join(modelDir, 'shards'), { recursive: true })
    for (let i = 0; i < 4; i++) await writeFile(join(modelDir, 'shards', `part-${i}.bin`), randomBytes(6 * 1024 * 1024 + i * 4099))
    await writeFile(join(modelDir, 'config.json'), '{"model":"chaos"}')
    for (const name of ['config.json', ...[0, 1, 2, 3].map(i => `shards/part-${i}.bin`)]) source[name] = await sha256(join(modelDir, name))
    const originDir = join(work, 'origin')
    await mkdir(originDir)
    const origin = pathToFileURL(originDir).href
    const pushed = await swarm(['push', modelDir, '--name', 'chaos:v1', '--chunk-size', '1MiB', '--json', '--data-dir', join(work, 'pusher')], { SWARM_ORIGIN: origin })
    expect(pushed.code, pushed.stderr).toBe(0)
    manifestCid = String(pushed.done?.manifestCid)

    const keyFile = join(work, 'swarm.key')
    expect((await swarm(['keygen', keyFile], {})).code).toBe(0)
    for (let i = 1; i <= HOSTS; i++) {
      const host = await fabric.addHost(`h${i}`, i, { upMbit: LINK_MBIT, downMbit: LINK_MBIT }) as { name: string, address: string }
      const dataDir = join(work, host.name)
      await mkdir(dataDir)
      nodes.push({
        index: i,
        host: host.name,
        dataDir,
        socket: join(dataDir, 'agent.sock'),
        env: {
          SWARM_DATA_DIR: dataDir,
          SWARM_SOCKET: join(dataDir, 'agent.sock'),
          SWARM_LISTEN: `/ip4/${host.address}/tcp/4001`,
          SWARM_DATA_HOST: host.address,
          SWARM_DATA_PORT: '4002',
          SWARM_METRICS_PORT: '0',
          SWARM_SWARM_KEY_FILE: keyFile,
          // only the seeds may use the origin: the others depend on peers for every byte
          ...(i <= SEEDS ? { SWARM_ORIGIN: origin } : {})
        },
        killing: false,
        crashes: [],
        kills: 0,
        multiaddrs: []
      })
    }
  }, 120_000)

  afterAll(async () => {
    await Promise.all(nodes.map(async node => { await kill(node) }))
    fabric?.destroy()
    await rm(work, { recursive: true, force: true })
  })

  it('no agent crashes, and every one finishes with the model byte for byte', async () => {
    const seeds = nodes.slice(0, SEEDS)
    const pullers = nodes.slice(SEEDS)
    await start(seeds[0]!)
    const bootstrap = seeds[0]!.multiaddrs
    await Promise.all(seeds.slice(1).map(async node => { await start(node, bootstrap) }))
    for (const seed of seeds) expect((await pull(seed)).code).toBe(0)
    for (let k = 0; k < pullers.length; k += 3) await Promise.all(pullers.slice(k, k + 3).map(async node => { await start(node, bootstrap) }))

    // every puller pulls again whenever its pull ends early (its agent was killed under it)
    const chaosEnds = performance.now() + CHAOS_MS
    let restarts = 0
    const finished = new Set<Node>()
    // a finished node that is killed afterwards has the model on disk; the last check below
    // pulls on every node again anyway
    const pulling = pullers.map(async node => {
      while (performance.now() < chaosEnds + 60_000 && !finished.has(node)) {
        const result = await pull(node)
        if (result.code === 0) { finished.add(node); return }
        await new Promise(resolve => setTimeout(resolve, 500))
      }
    })
    // kills do not wait for the restart: several agents may be down at once
    const down = new Set<Node>()
    const restarting: Array<Promise<void>> = []
    while (performance.now() < chaosEnds) {
      const [lo, hi] = KILL_EVERY_MS
      await new Promise(resolve => setTimeout(resolve, lo! + Math.random() * (hi! - lo!)))
      const up = pullers.filter(node => !down.has(node))
      const victim = up[Math.floor(Math.random() * up.length)]
      if (victim == null) continue
      down.add(victim)
      await kill(victim)
      restarting.push((async () => {
        await new Promise(resolve => setTimeout(resolve, 300 + Math.random() * 1500))
        await start(victim, bootstrap)
        restarts++
        down.delete(victim)
      })())
    }
    await Promise.all(restarting)
    // after the chaos: whatever a pull loop gave up on, pull once more now that nothing is killed
    await Promise.all(pulling)
    for (const node of pullers) {
      if (finished.has(node)) continue
      const result = await pull(node)
      expect(result.code, `${node.host}: ${result.stderr}`).toBe(0)
    }

    const kills = nodes.reduce((sum, node) => sum + node.kills, 0)
    process.stderr.write(`chaos: ${kills} kills and ${restarts} restarts in ${CHAOS_MS / 1000} s across ${pullers.length} pullers\n`)
    expect(kills).toBeGreaterThanOrEqual(8)
    expect(restarts).toBe(kills)
    for (const node of nodes) expect(node.crashes).toEqual([])
    for (const node of nodes) {
      const to = join(work, `out-${node.host}`)
      const placed = await pull(node, ['--to', to])
      expect(placed.code, `${node.host}: ${placed.stderr}`).toBe(0)
      for (const [name, hash] of Object.entries(source)) expect(await sha256(join(to, name)), `${node.host} ${name}`).toBe(hash)
      expect(node.child?.exitCode).toBeNull()
    }
  }, 300_000)
})
