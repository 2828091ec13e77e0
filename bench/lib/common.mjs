// Shared by the benchmarks: the S3 server, running the CLI, a results file.
import { execFile, spawn } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const cli = join(root, 'agents', 'swarm', 'dist', 'cli.js')

/** Starts the project's S3 server unless SWARM_TEST_S3_ENDPOINT points at one; returns its settings. */
export async function s3Server () {
  if (process.env.SWARM_TEST_S3_ENDPOINT == null) {
    const script = join(root, 'scripts', 's3-server.sh')
    await promisify(execFile)(script, ['up'], { stdio: 'inherit' })
    const { stdout } = await promisify(execFile)(script, ['env'])
    for (const line of stdout.split('\n')) {
      const m = /^export (\w+)=(.*)$/.exec(line.trim())
      if (m) process.env[m[1]] = m[2].replace(/^['"]|['"]$/g, '')
    }
  }
  return {
    endpoint: process.env.SWARM_TEST_S3_ENDPOINT,
    accessKeyId: process.env.SWARM_TEST_S3_ACCESS_KEY_ID ?? 'test',
    secretAccessKey: process.env.SWARM_TEST_S3_SECRET_ACCESS_KEY ?? 'testsecret',
    region: process.env.SWARM_TEST_S3_REGION ?? 'us-east-1',
    bucket: process.env.SWARM_TEST_S3_BUCKET ?? 'swarm-test'
  }
}

export function s3Env (s3) {
  return {
    SWARM_S3_ENDPOINT: s3.endpoint,
    SWARM_S3_ACCESS_KEY_ID: s3.accessKeyId,
    SWARM_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    SWARM_S3_REGION: s3.region,
    SWARM_S3_FORCE_PATH_STYLE: 'true'
  }
}

/** Runs `swarm … --json` and returns its final `done` object (throws on failure). */
export async function swarm (args, env = {}) {
  const child = spawn(process.execPath, [cli, ...args, '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', d => { out += d })
  const code = await new Promise(resolve => child.on('close', c => resolve(c ?? 1)))
  const done = out.trim().split('\n').filter(Boolean).map(l => JSON.parse(l)).find(l => l.event === 'done')
  if (code !== 0 || done == null) throw new Error(`swarm ${args.join(' ')} exited with ${code}: ${out.slice(-2000)}`)
  return done
}

export async function saveResult (name, result) {
  const file = join(root, 'bench', 'results', `${name}.json`)
  await mkdir(dirname(file), { recursive: true })
  await writeFile(file, JSON.stringify({ at: new Date().toISOString(), ...result }, null, 2) + '\n')
  return file
}

export const MB = 1e6
export const MiB = 1024 * 1024
export const fmt = (n, digits = 1) => n.toFixed(digits)
