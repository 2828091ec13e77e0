// Shared by the benchmarks: the S3 server, running the CLI, a results file.
import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { loopbackAgentEnv } from '../../agents/swarm/dist/loopback.js'

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
/** The CLI the benches run: this checkout's build, or another build's `cli.js` named by SWARM_BENCH_CLI. */
export const cli = process.env.SWARM_BENCH_CLI ?? join(root, 'agents', 'swarm', 'dist', 'cli.js')

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
export async function startAgent ({ dataDir, env = {}, bootstrap, nodeOptions, args = [] }) {
  const keyFile = env.SWARM_SWARM_KEY_FILE ?? await benchSwarmKey()
  const child = spawn(process.execPath, [...(nodeOptions ?? []), cli, 'agent', ...args, '--json'], {
    env: {
      ...process.env,
      SWARM_LOG_LEVEL: 'warn',
      ...env,
      ...loopbackAgentEnv(dataDir, { bootstrap }),
      SWARM_SWARM_KEY_FILE: keyFile
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

/** `swarm pull TARGET` into an empty store that is removed after; the bytes it fetched from the origin and how long it took. */
export async function pullOnce (target, dataDir, env, inflight, extra = []) {
  const done = await swarm(['pull', target, ...extra, '--data-dir', dataDir, '--concurrency', String(inflight)], env)
  await rm(dataDir, { recursive: true, force: true })
  return { seconds: done.durationMs / 1000, bytes: done.bytesBySource.origin, peakRssBytes: done.peakRssBytes, manifestCid: done.manifestCid }
}

/**
 * Has the pages a run is about to fill in the page cache start out as every run's do: writes
 * `bytes` into a scratch file and deletes it. On the VMs these benches run on, the host backs guest
 * memory only when the guest first touches it and takes freed memory back within seconds (free page
 * reporting), and that touch costs the writer about 2 CPU-s per GB: `dd` of 2 GiB into a new file
 * took 4.35 s of system time, 0.5 s when repeated at once over the pages just freed. So a run that
 * followed one whose output had just been deleted wrote into warm pages, and one that followed a
 * run that wrote nothing (the plain client) into cold ones: in one `bench/origin-pull --origin
 * http` run the necessary-work client, second in line, spent 2.53 CPU-s/GB in its libuv pool and
 * runtime threads and Swarm, after it, 0.40. Before each measured run the same amount is written
 * and freed, so each starts on pages just freed.
 */
export async function warmPageCache (bytes) {
  if (!(bytes > 0)) return
  const { open, unlink } = await import('node:fs/promises')
  const path = join(tmpdir(), `swarm-bench-warm-${process.pid}`)
  const piece = Buffer.alloc(16 * MiB, 1)
  const handle = await open(path, 'w')
  try {
    for (let written = 0; written < bytes; written += piece.length) await handle.write(piece, 0, piece.length, written)
  } finally {
    await handle.close()
    await unlink(path)
  }
}

/** The baseline and Swarm, alternating for `rounds` rounds so that a noisy neighbour hurts both alike; each on warmed pages (`warmPageCache`) when `warmBytes` is given. */
export async function alternate (rounds, baseline, run, { warmBytes = 0 } = {}) {
  const plain = []
  const pulls = []
  for (let round = 0; round < rounds; round++) {
    await warmPageCache(warmBytes)
    plain.push(await baseline())
    await warmPageCache(warmBytes)
    pulls.push(await run(round))
  }
  return { plain, pulls }
}

// ---- measuring a child process, per thread where the process says or /proc shows ----

/** A figure, or "n/a" where the measurement does not exist (yet) on this build. */
export const fmtOr = (n, digits = 1, none = 'n/a') => (n == null || !Number.isFinite(n) ? none : n.toFixed(digits))

export const median = values => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Each runner once per round, in the same order every round, so a noisy neighbour hurts all alike; each on warmed pages (`warmPageCache`) when `warmBytes` is given. */
export async function alternateAll (rounds, runners, { warmBytes = 0 } = {}) {
  const out = Object.fromEntries(Object.keys(runners).map(name => [name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const [name, run] of Object.entries(runners)) {
      await warmPageCache(warmBytes)
      out[name].push(await run(round))
    }
  }
  return out
}

/**
 * The threads of a live process from /proc: name (what the thread set as its name: Node's main
 * thread is `MainThread`, a worker thread its `name` option cut to 15 bytes, libuv's pool
 * `libuv-worker`), user and system CPU seconds. Null once the process is gone.
 */
export async function procThreads (pid) {
  const { readFile, readdir } = await import('node:fs/promises')
  const tick = 100 // USER_HZ on Linux
  let tids
  try { tids = await readdir(`/proc/${pid}/task`) } catch { return null }
  const threads = []
  for (const tid of tids) {
    try {
      const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      threads.push({ tid: Number(tid), name, userSeconds: Number(fields[11]) / tick, systemSeconds: Number(fields[12]) / tick })
    } catch {} // a thread that ended between readdir and read
  }
  return threads
}

const RUNTIME_THREADS = /^(V8Worker|V8 DefaultWorke|DelayedTaskSche|SignalInspector|node|inspector|perf|FSEventsRe)/

/**
 * Per-thread CPU in the agent's own terms (`main`, `worker-<i>`): from what the process reports
 * (`threads` in `swarm status --json` or a pull's `done` event) when it does, else from /proc,
 * where Node's main thread is `MainThread`, libuv's pool (fs calls and DNS of the main thread and
 * of workers alike) `libuv-worker`, and any other named thread counts as a worker.
 */
export function threadBreakdown (threads, { reported = false } = {}) {
  if (threads == null) return null
  const sum = list => list.reduce((s, t) => s + t.userSeconds + t.systemSeconds, 0)
  if (reported) {
    const workers = threads.filter(t => t.name !== 'main')
    return { source: 'reported', main: sum(threads.filter(t => t.name === 'main')), workers: workers.length > 0 ? sum(workers) : null, workerCount: workers.length, libuv: null, runtime: null }
  }
  const main = threads.filter(t => t.name === 'MainThread')
  const libuv = threads.filter(t => t.name.startsWith('libuv-worker'))
  const runtime = threads.filter(t => RUNTIME_THREADS.test(t.name))
  const workers = threads.filter(t => !main.includes(t) && !libuv.includes(t) && !runtime.includes(t))
  return { source: 'proc', main: sum(main), workers: workers.length > 0 ? sum(workers) : null, workerCount: workers.length, libuv: sum(libuv), runtime: sum(runtime) }
}

/** b − a, field by field, for two breakdowns of the same process (null stays null). */
export function breakdownDelta (a, b) {
  if (a == null || b == null) return null
  const d = key => (a[key] == null || b[key] == null ? b[key] ?? null : b[key] - a[key])
  return { source: b.source, main: d('main'), workers: d('workers'), workerCount: b.workerCount, libuv: d('libuv'), runtime: d('runtime') }
}

/** "main 1.20, workers 3.40 (reported)" in CPU-s per GB. */
export function fmtBreakdown (breakdown, gb) {
  if (breakdown == null) return 'per thread n/a'
  const per = v => fmtOr(v == null ? null : v / gb, 2)
  const parts = [`main ${per(breakdown.main)}`, `workers ${per(breakdown.workers)}${breakdown.workerCount > 0 ? ` (${breakdown.workerCount})` : ''}`]
  if (breakdown.source === 'proc') parts.push(`libuv pool ${per(breakdown.libuv)}`, `V8/runtime ${per(breakdown.runtime)}`)
  return `${parts.join(', ')} ${breakdown.source === 'reported' ? '(reported by swarm)' : '(from /proc)'}`
}

/**
 * Runs a command under GNU time: its wall seconds, user and system CPU seconds (children
 * included) and peak RSS, whatever the command. With `sampleThreads`, the command's threads are
 * read from /proc every 200 ms and at once when it prints a `"event":"done"` line (a Swarm CLI
 * prints that just before it exits), so the last sample misses almost nothing; a thread that
 * ends earlier misses up to 200 ms. `onStdout` sees
 * everything printed so far, each time more arrives.
 */
export async function measured (command, args, { env = {}, cwd, sampleThreads = false, stdin = 'ignore', onStdout } = {}) {
  const { access, readFile } = await import('node:fs/promises')
  await access('/usr/bin/time').catch(() => { throw new Error('the benches measure children with GNU time: install /usr/bin/time (Debian package time; scripts/setup.sh test does)') })
  const dir = await mkdtemp(join(tmpdir(), 'swarm-bench-time-'))
  const timeFile = join(dir, 'time')
  // a key set to undefined in `env` is removed from the child's environment
  const childEnv = Object.fromEntries(Object.entries({ ...process.env, ...env }).filter(([, v]) => v !== undefined))
  const child = spawn('/usr/bin/time', ['-f', '%e %U %S %M', '-o', timeFile, command, ...args], { env: childEnv, cwd, stdio: [stdin, 'pipe', 'inherit'] })
  let stdout = ''
  let threads = null
  let innerPid = null
  const sample = async () => {
    innerPid ??= Number((await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').catch(() => '')).trim().split(' ')[0]) || null
    if (innerPid == null) return
    // by thread id, so a thread that ends before the process (a pool closed before the last
    // line) keeps its last sampled figures
    for (const t of await procThreads(innerPid) ?? []) (threads ??= new Map()).set(t.tid, t)
  }
  const timer = sampleThreads ? setInterval(() => { sample().catch(() => {}) }, 200) : null
  let sampling = Promise.resolve()
  child.stdout.setEncoding('utf8').on('data', d => {
    stdout += d
    onStdout?.(stdout)
    if (sampleThreads && d.includes('"event":"done"')) sampling = sample().catch(() => {})
  })
  const code = await new Promise(resolve => child.on('close', c => resolve(c ?? 1)))
  clearInterval(timer)
  await sampling
  const line = (await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').pop() ?? ''
  await rm(dir, { recursive: true, force: true })
  const [wall, user, system, maxRssKiB] = line.split(' ').map(Number)
  if (!Number.isFinite(maxRssKiB)) throw new Error(`${command} ${args.join(' ')}: no figures from /usr/bin/time (exit ${code}): ${line}`)
  if (code === 127) throw new Error(`${command}: not found or not runnable (${line})`)
  return { code, stdout, wallSeconds: wall, userSeconds: user, systemSeconds: system, cpuSeconds: user + system, maxRssBytes: maxRssKiB * 1024, threads: threads == null ? null : [...threads.values()] }
}

/** Whether this build's `swarm <command>` takes `flag` (e.g. `--workers`), from its help and the global options'. */
export async function swarmTakes (command, flag) {
  const pattern = new RegExp(`(^|\\s)${flag}[\\s,=<]`, 'm')
  for (const args of [[command, '--help'], ['--help']]) {
    const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args])
    if (pattern.test(stdout)) return true
  }
  return false
}

/**
 * `swarm pull --no-agent TARGET` into an empty store (removed after), under GNU time. `workers`
 * is passed as `--workers` only when this build takes it (`takesWorkers`).
 */
export async function pullMeasured (target, dataDir, env, { inflight = 16, workers, takesWorkers = false, extra = [] } = {}) {
  const args = [cli, 'pull', target, '--no-agent', ...extra, '--data-dir', dataDir, '--concurrency', String(inflight), ...(takesWorkers && workers != null ? ['--workers', String(workers)] : []), '--json']
  const run = await measured(process.execPath, args, { env, sampleThreads: true })
  const done = run.stdout.trim().split('\n').filter(Boolean).map(l => JSON.parse(l)).find(l => l.event === 'done')
  if (run.code !== 0 || done == null) throw new Error(`swarm pull ${target} exited with ${run.code}: ${run.stdout.slice(-2000)}`)
  await rm(dataDir, { recursive: true, force: true })
  const perThread = Array.isArray(done.threads) ? threadBreakdown(done.threads, { reported: true }) : threadBreakdown(run.threads)
  return {
    seconds: done.durationMs / 1000,
    bytes: done.bytesBySource.origin,
    cpuSeconds: run.cpuSeconds,
    peakRssBytes: Math.max(run.maxRssBytes, done.peakRssBytes ?? 0),
    perThread,
    manifestCid: done.manifestCid
  }
}

/** Per-thread CPU the agent reports: `threads` in `swarm status --json`, else its /metrics; null when neither has it. */
export async function agentReportedThreads (agent) {
  const { stdout } = await promisify(execFile)(process.execPath, [cli, 'status', '--json'], { env: { ...process.env, ...agent.env } })
  const status = JSON.parse(stdout.trim().split('\n').pop())
  if (Array.isArray(status.threads)) return status.threads
  if (status.metricsPort == null) return null
  const text = await (await fetch(`http://127.0.0.1:${status.metricsPort}/metrics`)).text()
  const byThread = new Map()
  for (const m of text.matchAll(/^swarm_thread_cpu_seconds_total\{([^}]*)\}\s+([0-9.eE+-]+)/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map(l => [l[1], l[2]]))
    const t = byThread.get(labels.thread) ?? { name: labels.thread, userSeconds: 0, systemSeconds: 0 }
    t[labels.mode === 'system' ? 'systemSeconds' : 'userSeconds'] += Number(m[2])
    byThread.set(labels.thread, t)
  }
  return byThread.size > 0 ? [...byThread.values()] : null
}

/** The agent's per-thread breakdown now: reported when it reports one, else from /proc. */
export async function agentThreadBreakdown (agent) {
  const reported = await agentReportedThreads(agent)
  return reported != null ? threadBreakdown(reported, { reported: true }) : threadBreakdown(await procThreads(agent.pid))
}

/** A field of /proc/<pid>/status given in kB (VmRSS, VmHWM), in bytes; null where it is not there. */
async function procStatusBytes (pid, field) {
  const { readFile } = await import('node:fs/promises')
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return m == null ? null : Number(m[1]) * 1024
}

/** A process's resident set now, in bytes. */
export async function rssOf (pid) {
  return await procStatusBytes(pid, 'VmRSS')
}

/** A process's largest resident set over its life so far, in bytes. */
export async function peakRssOf (pid) {
  return await procStatusBytes(pid, 'VmHWM')
}

// ---- shared by the necessary-work baselines ----

/** This thread's own CPU (process.threadCpuUsage), named for the figures. */
export function cpuOfThisThread (name) {
  const u = process.threadCpuUsage()
  return { name, userSeconds: u.user / 1e6, systemSeconds: u.system / 1e6 }
}

/**
 * fdatasync of every descriptor written since the last sync; writes during a sync go into the
 * next. One sync at a time: fs calls share libuv's pool (4 threads per process, for every worker
 * thread), and syncs that take all of it leave the writes queued behind them.
 */
export function groupCommit () {
  let dirty = new Set()
  let running = null
  let failed = null
  const commit = async () => {
    try {
      while (dirty.size > 0) {
        const handles = dirty
        dirty = new Set()
        for (const handle of handles) await handle.datasync()
      }
    } catch (err) {
      failed ??= err
    } finally {
      running = null
    }
  }
  return {
    written (handle) {
      dirty.add(handle)
      running ??= commit()
    },
    async drain () {
      while (running != null) await running
      if (failed != null) throw failed
    }
  }
}
