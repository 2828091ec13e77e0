/**
 * The demo on the embedded default: a `file://` origin in a temporary directory, a synthetic
 * Llama-shaped model, `swarm push`, then `swarm pull` into a second node's data directory,
 * `swarm verify`; then several agents (separate processes on loopback, default 3) pull the
 * model at once from each other and the origin, and each says how many bytes came from where.
 * Everything runs through the real CLI, as a user would.
 */

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { demoMount } from './agent/mount.js'
import { loopbackAgentEnv } from './loopback.js'
import { formatBytes } from './progress.js'
import { writeSyntheticModel } from './synthetic.js'

const cli = fileURLToPath(new URL('./cli.js', import.meta.url))

interface Done { event: 'done', [key: string]: unknown }

async function swarm (args: string[], env: Record<string, string>): Promise<Done> {
  const child = spawn(process.execPath, [cli, ...args, '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
  const code = await new Promise<number>(resolve => child.on('close', c => { resolve(c ?? 1) }))
  const lines = out.trim().split('\n').filter(l => l.length > 0).map(l => JSON.parse(l) as Done)
  const done = lines.find(l => l.event === 'done')
  if (code !== 0 || done == null) throw new Error(`swarm ${args.join(' ')} exited with ${code}: ${out}`)
  return done
}

interface DemoAgent { child: ChildProcess, env: Record<string, string>, multiaddrs: string[] }

async function startAgent (dataDir: string, env: Record<string, string>, bootstrap?: string[]): Promise<DemoAgent> {
  const agentEnv = {
    ...env,
    ...loopbackAgentEnv(dataDir, { bootstrap }),
    SWARM_LOG_LEVEL: process.env.SWARM_DEMO_LOG_LEVEL ?? 'warn'
  }
  const child = spawn(process.execPath, [cli, 'agent', '--json'], { env: { ...process.env, ...agentEnv }, stdio: ['ignore', 'pipe', 'inherit'] })
  const ready = await new Promise<{ multiaddrs: string[] }>((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const line = out.split('\n').find(l => l.includes('"ready"'))
      if (line != null) resolve(JSON.parse(line) as { multiaddrs: string[] })
    })
    child.on('exit', code => { reject(new Error(`agent exited with ${String(code)}`)) })
  })
  return { child, env: agentEnv, multiaddrs: ready.multiaddrs }
}

async function stopAgent (agent: DemoAgent): Promise<void> {
  if (agent.child.exitCode != null) return
  const exited = new Promise(resolve => agent.child.on('exit', resolve))
  agent.child.kill('SIGTERM')
  await exited
}

async function sha256 (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function main (): Promise<void> {
  const layers = Number(process.env.SWARM_DEMO_LAYERS ?? 6)
  const root = await mkdtemp(join(tmpdir(), 'swarm-demo-'))
  const say = (line: string): void => { process.stdout.write(line + '\n') }
  try {
    // a file:// origin must exist (an unmounted share must not be mistaken for an empty one)
    await mkdir(join(root, 'origin'))
    const origin = pathToFileURL(join(root, 'origin')).href
    say(`origin: ${origin}`)
    const model = await writeSyntheticModel(join(root, 'model'), { layers, hidden: 1024, intermediate: 2816, vocab: 32000, shards: 2 })
    say(`model: ${model.files.length} files, ${formatBytes(model.totalBytes)} in ${model.dir}`)

    const push = await swarm(['push', model.dir, '--name', 'demo-llama:v1'], { SWARM_ORIGIN: origin, SWARM_DATA_DIR: join(root, 'node-a') })
    say(`push: ${String(push.uploadedChunks)} chunks uploaded, manifest ${String(push.manifestCid)} in ${(Number(push.durationMs) / 1000).toFixed(2)} s`)

    const pulled = join(root, 'pulled')
    const pull = await swarm(['pull', 'demo-llama:v1', '--to', pulled], { SWARM_ORIGIN: origin, SWARM_DATA_DIR: join(root, 'node-b') })
    const seconds = Number(pull.durationMs) / 1000
    say(`pull: ${formatBytes(Number(pull.totalBytes))} in ${seconds.toFixed(2)} s = ${formatBytes(Number(pull.totalBytes) / seconds)}/s`)

    const verify = await swarm(['verify', 'demo-llama:v1'], { SWARM_ORIGIN: origin, SWARM_DATA_DIR: join(root, 'node-b') })
    say(`verify: ${String(verify.checkedChunks)} chunks re-hashed, ${(verify.bad as unknown[]).length} bad`)

    for (const file of model.files) {
      const [a, b] = await Promise.all([sha256(join(model.dir, file)), sha256(join(pulled, file))])
      if (a !== b) throw new Error(`${file} differs after the round trip`)
    }
    say(`round trip: all ${model.files.length} files byte-identical (sha256)`)

    // the read-only FUSE view on a third, empty node: every read is lazy, straight from the origin
    const expected: Record<string, string> = {}
    for (const file of model.files) expected[file] = await sha256(join(model.dir, file))
    await demoMount({ cli, env: { SWARM_ORIGIN: origin, SWARM_DATA_DIR: join(root, 'node-c') }, name: 'demo-llama@v1', files: expected, say })

    const count = Math.max(1, Number(process.env.SWARM_DEMO_AGENTS ?? 3))
    const agents: DemoAgent[] = []
    // a swarm is closed by default: the agents share a key only they hold
    const keygen = await swarm(['keygen', join(root, 'swarm.key')], {})
    const agentEnv = { SWARM_ORIGIN: origin, SWARM_SWARM_KEY_FILE: String(keygen.file) }
    say(`swarm key: ${String(keygen.file)} (only agents given it join)`)
    try {
      agents.push(await startAgent(join(root, 'agent-0'), agentEnv))
      for (let i = 1; i < count; i++) agents.push(await startAgent(join(root, `agent-${i}`), agentEnv, agents[0]?.multiaddrs))
      say(`agents: ${count} running on 127.0.0.1, pulling demo-llama:v1 at once`)
      const started = performance.now()
      const pulls = await Promise.all(agents.map(async agent => await swarm(['pull', 'demo-llama:v1'], agent.env)))
      const wall = (performance.now() - started) / 1000
      let fromOrigin = 0
      for (const [i, result] of pulls.entries()) {
        const bySource = result.bytesBySource as { peer: number, origin: number }
        fromOrigin += bySource.origin
        say(`  agent-${i}: ${formatBytes(bySource.peer)} from peers, ${formatBytes(bySource.origin)} from the origin, in ${(Number(result.durationMs) / 1000).toFixed(2)} s`)
      }
      say(`fleet: ${count} copies in ${wall.toFixed(2)} s; the origin served ${(fromOrigin / model.totalBytes).toFixed(2)} × the model`)
    } finally {
      await Promise.all(agents.map(stopAgent))
    }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

main().catch(err => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`)
  process.exitCode = 1
})
