// Shared by the benchmarks: the S3 server, running the CLI, a results file.
import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
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

let benchKeyFile
/** One swarm key for every agent a bench starts (agents refuse to run without one). */
export async function benchSwarmKey () {
  if (benchKeyFile == null) {
    const dir = await mkdtemp(join(tmpdir(), 'swarm-bench-key-'))
    benchKeyFile = join(dir, 'swarm.key')
    await swarm(['keygen', benchKeyFile])
  }
  return benchKeyFile
}

/** Starts `swarm agent --json` and resolves when it is ready. */
export async function startAgent ({ dataDir, env = {}, bootstrap, nodeOptions }) {
  const keyFile = env.SWARM_SWARM_KEY_FILE ?? await benchSwarmKey()
  const child = spawn(process.execPath, [...(nodeOptions ?? []), cli, 'agent', '--json'], {
    env: {
      ...process.env,
      SWARM_LOG_LEVEL: 'warn',
      ...env,
      SWARM_DATA_DIR: dataDir,
      SWARM_SOCKET: join(dataDir, 'agent.sock'),
      SWARM_LISTEN: '/ip4/127.0.0.1/tcp/0',
      SWARM_DATA_HOST: '127.0.0.1',
      SWARM_DATA_PORT: '0',
      SWARM_METRICS_PORT: '0',
      SWARM_SWARM_KEY_FILE: keyFile,
      ...(bootstrap ? { SWARM_BOOTSTRAP: bootstrap.join(',') } : {})
    },
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const ready = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.setEncoding('utf8').on('data', d => {
      out += d
      const line = out.split('\n').find(l => l.includes('"ready"'))
      if (line) resolve(JSON.parse(line))
    })
    child.on('exit', code => reject(new Error(`agent exited with ${code}`)))
  })
  const exited = new Promise(resolve => child.on('exit', resolve))
  return {
    ...ready,
    pid: child.pid,
    dataDir,
    env: { ...env, SWARM_DATA_DIR: dataDir, SWARM_SOCKET: join(dataDir, 'agent.sock') },
    async stop () { child.kill('SIGTERM'); await exited }
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export async function cpuSeconds (pid) {
  const { readFile } = await import('node:fs/promises')
  const stat = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ')
  const ticks = Number(stat[11]) + Number(stat[12]) // utime, stime (fields 14, 15)
  return ticks / 100
}
