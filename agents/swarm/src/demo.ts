/**
 * The demo on the embedded default: a `file://` origin in a temporary directory, a synthetic
 * Llama-shaped model, `swarm push`, then `swarm pull` into a second node's data directory,
 * `swarm verify`, and the figures. Everything runs through the real CLI, as a user would.
 */

import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
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
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

main().catch(err => {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`)
  process.exitCode = 1
})
