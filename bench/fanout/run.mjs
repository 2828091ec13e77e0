// bench/fanout: N hosts pull one model at once over shaped links, with Swarm and without.
//
// For a model of M bytes, origin bandwidth S and per-node links of B up and down, no system
// beats T* = max(M/S, M/B, N·M/(S + N·B)); every node pulling from the origin needs
// max(M/B, N·M/S) and N × M of origin egress. This bench builds the network for real on one
// machine and measures both:
//
// - Hosts are network namespaces on a bridge (see netns.mjs), each link shaped with tbf to B
//   (origin: S) in both directions. The project's S3 server (scripts/s3-server.sh: Ceph RGW)
//   runs in the origin's namespace, bound to the origin's address.
// - Swarm: one `swarm agent` per host namespace (private swarm key, bootstrapped to the first),
//   then `swarm pull` on every host at once against its agent. Each CLI talks to a small barrier
//   in front of its agent's control socket that holds the request until every CLI has connected:
//   starting N Node.js CLIs takes seconds of CPU on a small machine, and that would otherwise
//   stagger the fleet. A node's completion time runs from that release to the `done` line its
//   agent sends.
// - Baseline: `swarm pull --no-agent` on every host at once, straight from the origin (with
//   `--concurrency` 1: with the default 16, N ≥ 8 nodes sharing a 50 Mbit/s origin keep 128+ GETs
//   open, each outlives the fetcher's 60 s per-attempt limit and the pull fails; with 2, 3 of 8
//   nodes still failed that way, as TCP flows through one token bucket get unequal shares).
// - Origin egress is read on the wire (bytes the origin's link sent, TCP/IP headers included)
//   and from the agents (`swarm_bytes_total{source="origin"}`: verified chunk bytes). Peer bytes
//   come from the agents' metrics. CPU: the whole machine's busy share from /proc/stat each second
//   (other tenants included) and the CPU time of the fleet's agents and the gateway.
// - A late joiner (one more host, started after the others finished) and churn (a quarter of
//   the agents killed mid-pull) run at FANOUT_EVENTS_N.
//
// Every namespace made here is removed at the end, also on failure, on SIGINT/SIGTERM and at the
// global time limit; processes still running inside them are ended first.
//
// Env: FANOUT_N (1,2,4,8,16), FANOUT_MODEL_MIB (128), FANOUT_LINK_MBIT (50), FANOUT_ORIGIN_MBIT (50),
// FANOUT_CHUNK_SIZE (4MiB), FANOUT_CASES (swarm,baseline,late,churn), FANOUT_EVENTS_N (8),
// FANOUT_RUN_LIMIT (8: a run stops at this many × T*, at least 60 s), FANOUT_TIMEOUT_S (1800),
// FANOUT_BASELINE_CONCURRENCY (1), FANOUT_SUBNET (10.77.0), FANOUT_NAME (fanout), FANOUT_DOCS_SVG (a path to copy
// the plot to), FANOUT_AGENT_LOGS (a directory: each agent's JSON log goes to a file there, at
// info level, with each pull's scheduler counters in its "session finished" line).
import { execFile, spawn } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { promisify } from 'node:util'
import { writeSyntheticModel } from '@swarm/agent'
import { uniqueChunks } from '@swarm/interface'
import { generateSwarmKey } from '@swarm/p2p'
import { MiB, cli, fmt, root, saveResult } from '../lib/common.mjs'
import { Fabric } from './netns.mjs'
import { lineChart } from './plot.mjs'

const exec = promisify(execFile)

// ---- settings ----

function envNumber (name, fallback, min) {
  const raw = process.env[name]
  if (raw == null || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number ≥ ${min}, got "${raw}"`)
  return value
}

const settings = {
  sizes: (process.env.FANOUT_N ?? '1,2,4,8,16').split(',').map(s => {
    const n = Number(s.trim())
    if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`FANOUT_N: "${s}" is not an integer in 1..200`)
    return n
  }),
  modelMiB: envNumber('FANOUT_MODEL_MIB', 128, 1),
  linkMbit: envNumber('FANOUT_LINK_MBIT', 50, 1),
  originMbit: envNumber('FANOUT_ORIGIN_MBIT', 50, 1),
  chunkSize: process.env.FANOUT_CHUNK_SIZE ?? '4MiB',
  cases: (process.env.FANOUT_CASES ?? 'swarm,baseline,late,churn').split(',').map(s => s.trim()),
  eventsN: envNumber('FANOUT_EVENTS_N', 8, 1),
  runLimit: envNumber('FANOUT_RUN_LIMIT', 8, 1),
  timeoutS: envNumber('FANOUT_TIMEOUT_S', 1800, 60),
  baselineConcurrency: envNumber('FANOUT_BASELINE_CONCURRENCY', 1, 1),
  subnet: process.env.FANOUT_SUBNET ?? '10.77.0',
  name: process.env.FANOUT_NAME ?? 'fanout',
  agentLogs: process.env.FANOUT_AGENT_LOGS
}
for (const c of settings.cases) if (!['swarm', 'baseline', 'late', 'churn'].includes(c)) throw new Error(`FANOUT_CASES: unknown case "${c}"`)
const maxHosts = Math.max(...settings.sizes, settings.cases.some(c => c === 'late' || c === 'churn') ? settings.eventsN + 1 : 0)
if (maxHosts > 250) throw new Error('at most 250 hosts fit the /24')
const ORIGIN_OCTET = 254
const originAddress = `${settings.subnet}.${ORIGIN_OCTET}`
const S3_PORT = 7480
const Mbyte = mbit => mbit * 1e6 / 8
const WIRE_PAYLOAD = 1448 / 1514

if (process.getuid?.() !== 0) throw new Error('bench/fanout needs root (network namespaces and tc)')

// ---- bookkeeping for a clean exit ----

const started = performance.now()
const elapsedS = () => (performance.now() - started) / 1000
const log = line => { process.stderr.write(`[${fmt(elapsedS(), 0).padStart(4)} s] ${line}\n`) }
const fabric = new Fabric({ prefix: 'swfo', subnet: settings.subnet })
const children = new Set()
let work
let cleaned = false

function killChildren () {
  for (const child of children) {
    if (child.exitCode == null && child.signalCode == null) {
      try { child.kill('SIGKILL') } catch {}
    }
  }
}

async function cleanup () {
  if (cleaned) return
  cleaned = true
  killChildren()
  const left = fabric.destroy()
  if (left.length > 0) log(`could not remove namespaces ${left.join(', ')}: remove them with "ip netns del"`)
  // retried: a process still exiting may write into it while it is removed (ENOTEMPTY)
  if (work != null) await rm(work, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 }).catch(err => { log(`could not remove ${work}: ${err.message}`) })
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    log(`${signal}: cleaning up`)
    cleanup().finally(() => process.exit(130))
  })
}
process.on('exit', () => { if (!cleaned) { killChildren(); fabric.destroy() } })
const globalTimer = setTimeout(() => {
  log(`global time limit of ${settings.timeoutS} s reached: cleaning up`)
  cleanup().finally(() => process.exit(124))
}, settings.timeoutS * 1000)
globalTimer.unref()
const timeLeftS = () => settings.timeoutS - elapsedS()

// ---- processes in namespaces ----

/** Runs argv in a host's namespace; collects stdout lines as JSON where they parse. */
function spawnIn (host, argv, env, { onLine } = {}) {
  const [command, args] = fabric.exec(host, argv)
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.add(child)
  child.lines = []
  child.stderrTail = ''
  let buffer = ''
  child.stdout.setEncoding('utf8').on('data', d => {
    buffer += d
    let nl
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl)
      buffer = buffer.slice(nl + 1)
      if (!line.startsWith('{')) continue
      try {
        const parsed = JSON.parse(line)
        child.lines.push(parsed)
        onLine?.(parsed)
      } catch {}
    }
  })
  child.stderr.setEncoding('utf8').on('data', d => { child.stderrTail = (child.stderrTail + d).slice(-4000) })
  child.exited = new Promise(resolve => child.on('close', (code, signal) => {
    children.delete(child)
    resolve(code ?? (signal != null ? 128 : 1))
  }))
  return child
}

async function runIn (host, argv, env = {}) {
  const child = spawnIn(host, argv, env)
  const code = await child.exited
  if (code !== 0) throw new Error(`${argv.join(' ')} in ${host} exited with ${code}: ${child.stderrTail}`)
  return child
}

// ---- measurements ----

function cpuTimes () {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const v = line.trim().split(/\s+/).slice(1).map(Number)
  const idle = v[3] + (v[4] ?? 0)
  return { idle, total: v.reduce((a, b) => a + b, 0) }
}

/** CPU seconds a process has used (user + system). */
function processCpu (pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

/** Samples the machine's busy share each second until stopped. */
function cpuSampler () {
  const samples = []
  let last = cpuTimes()
  const timer = setInterval(() => {
    const now = cpuTimes()
    const total = now.total - last.total
    if (total > 0) samples.push(1 - (now.idle - last.idle) / total)
    last = now
  }, 1000)
  return {
    stop () {
      clearInterval(timer)
      const mean = samples.length > 0 ? samples.reduce((a, b) => a + b, 0) / samples.length : NaN
      return { machineBusyMean: mean, machineBusyMax: samples.length > 0 ? Math.max(...samples) : NaN, seconds: samples.length }
    }
  }
}

/** The CPU time of the gateway and the monitor and storage daemons, from the origin's namespace. */
async function originCpu () {
  const { stdout } = await exec('ip', ['netns', 'pids', `swfo-o`])
  return stdout.split('\n').filter(Boolean).reduce((sum, pid) => sum + (processCpu(Number(pid)) ?? 0), 0)
}

async function agentMetrics (agent) {
  const { stdout } = await exec('ip', ['netns', 'exec', fabric.hosts.get(agent.host).ns, 'curl', '-sf', '--max-time', '10', `http://127.0.0.1:${agent.metricsPort}/metrics`])
  const value = (name, labels = '') => {
    const line = stdout.split('\n').find(l => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
    return line == null ? 0 : Number(line.split(' ').at(-1))
  }
  return {
    originBytes: value('swarm_bytes_total', '{source="origin"}'),
    peerBytes: value('swarm_bytes_total', '{source="peer"}'),
    servedBytes: value('swarm_bytes_served'),
    peers: value('swarm_peers')
  }
}

// ---- the pieces ----

function modelShape (targetBytes) {
  // Llama-shaped, BF16: embeddings and head of vocab × hidden, layers of 4h² + 3h·i
  const hidden = 1024
  const intermediate = 2816
  for (const vocab of [8192, 4096, 2048, 1024]) {
    const fixed = 2 * (2 * vocab * hidden + hidden)
    const perLayer = 2 * (2 * hidden + 4 * hidden * hidden + 3 * hidden * intermediate)
    const layers = Math.round((targetBytes - fixed) / perLayer)
    if (layers >= 1) return { layers, hidden, intermediate, vocab, shards: 2 }
  }
  return { layers: 1, hidden: 256, intermediate: 704, vocab: 1024, shards: 1 }
}

function s3Env (prefix) {
  return {
    SWARM_ORIGIN: `s3://swarm-test/${prefix}`,
    SWARM_S3_ENDPOINT: `http://${originAddress}:${S3_PORT}`,
    SWARM_S3_ACCESS_KEY_ID: 'test',
    SWARM_S3_SECRET_ACCESS_KEY: 'testsecret',
    SWARM_S3_REGION: 'us-east-1',
    SWARM_S3_FORCE_PATH_STYLE: 'true',
    SWARM_LOG_LEVEL: 'warn'
  }
}

async function startAgent (index, { bootstrap, env, keyFile, dir }) {
  const host = `h${index}`
  const address = `${settings.subnet}.${index}`
  const dataDir = join(dir, host)
  await mkdir(dataDir, { recursive: true })
  const agentEnv = {
    ...env,
    SWARM_DATA_DIR: dataDir,
    SWARM_SOCKET: join(dataDir, 'agent.sock'),
    SWARM_LISTEN: `/ip4/${address}/tcp/4001`,
    SWARM_DATA_HOST: address,
    SWARM_DATA_PORT: '4002',
    SWARM_METRICS_HOST: '127.0.0.1',
    SWARM_METRICS_PORT: '9464',
    SWARM_SWARM_KEY_FILE: keyFile,
    ...(bootstrap != null ? { SWARM_BOOTSTRAP: bootstrap.join(',') } : {})
  }
  let onReady
  const ready = new Promise((resolve, reject) => {
    onReady = resolve
    setTimeout(() => reject(new Error(`agent ${host} not ready in 90 s`)), 90_000).unref()
  })
  if (settings.agentLogs != null) agentEnv.SWARM_LOG_LEVEL = 'info'
  const child = spawnIn(host, ['node', cli, 'agent', '--json'], agentEnv, { onLine: line => { if (line.event === 'ready') onReady(line) } })
  if (settings.agentLogs != null) {
    await mkdir(settings.agentLogs, { recursive: true })
    const file = createWriteStream(join(settings.agentLogs, `${basename(dir)}-${host}.jsonl`))
    child.stdout.pipe(file, { end: false })
    child.stderr.pipe(file, { end: false })
    child.on('close', () => file.end())
  }
  const line = await Promise.race([ready, child.exited.then(code => { throw new Error(`agent ${host} exited with ${code}: ${child.stderrTail}`) })])
  return { index, host, address, child, dataDir, socket: agentEnv.SWARM_SOCKET, env: agentEnv, peerId: line.peerId, multiaddrs: line.multiaddrs, metricsPort: line.metricsPort, cpuAtStart: undefined }
}

async function startFleet (indices, ctx) {
  const first = await startAgent(indices[0], ctx)
  const rest = []
  // a few at a time: each start costs a second or two of CPU
  for (let k = 1; k < indices.length; k += 4) {
    rest.push(...await Promise.all(indices.slice(k, k + 4).map(async i => await startAgent(i, { ...ctx, bootstrap: first.multiaddrs }))))
  }
  const fleet = [first, ...rest]
  // let the DHT and the control connections settle: every agent connected to the others, or 20 s
  const until = performance.now() + 20_000
  for (;;) {
    const peers = await Promise.all(fleet.map(async a => (await agentMetrics(a)).peers))
    if (peers.every(p => p >= fleet.length - 1) || performance.now() > until) {
      log(`  ${fleet.length} agents up; peers each: ${peers.join(' ')}`)
      break
    }
    await new Promise(resolve => setTimeout(resolve, 1000))
  }
  return fleet
}

async function stopAgents (agents) {
  await Promise.all(agents.map(async agent => {
    if (agent.child.exitCode != null || agent.child.signalCode != null) return
    agent.child.kill('SIGTERM')
    const timer = setTimeout(() => { agent.child.kill('SIGKILL') }, 10_000)
    await agent.child.exited
    clearTimeout(timer)
  }))
}

/**
 * Holds each `swarm pull` at a socket in front of its agent's until all have connected, then
 * lets them through at once. Watches the agents' answers for the `done` line (or an error).
 */
async function pullBarrier (agents) {
  const held = []
  const outcome = new Map()
  let release
  const allHere = new Promise(resolve => { release = resolve })
  let t0
  const servers = await Promise.all(agents.map(async agent => {
    const path = join(agent.dataDir, 'pull.sock')
    const server = createServer({ pauseOnConnect: true }, client => {
      held.push({ agent, client })
      if (held.length === agents.length) release()
    })
    await new Promise((resolve, reject) => { server.once('error', reject); server.listen(path, resolve) })
    return { server, path, agent }
  }))
  return {
    paths: new Map(servers.map(s => [s.agent.index, s.path])),
    outcome,
    get t0 () { return t0 },
    async go (timeoutMs) {
      await Promise.race([allHere, new Promise((resolve, reject) => setTimeout(() => reject(new Error(`only ${held.length} of ${agents.length} pulls reached the barrier in ${timeoutMs / 1000} s`)), timeoutMs).unref())])
      t0 = performance.now()
      for (const { agent, client } of held) {
        const upstream = connect(agent.socket)
        let tail = ''
        upstream.on('data', d => {
          if (outcome.has(agent.index)) return
          // the end of the previous piece too, in case a marker is split between two
          const text = tail + d.toString('utf8')
          tail = text.slice(-32)
          if (text.includes('"event":"done"')) outcome.set(agent.index, { ok: true, ms: performance.now() - t0 })
          else if (text.includes('"event":"error"')) outcome.set(agent.index, { ok: false, ms: performance.now() - t0 })
        })
        upstream.on('error', () => { client.destroy() })
        client.on('error', () => { upstream.destroy() })
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      }
      for (const { server } of servers) server.close()
      return t0
    }
  }
}

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

function timesSummary (times, count, limitMs) {
  const sorted = times.slice().sort((a, b) => a - b)
  // a node that did not finish counts as the limit: a lower bound on its time
  const padded = sorted.concat(new Array(Math.max(0, count - sorted.length)).fill(limitMs))
  return {
    finished: sorted.length,
    nodes: count,
    p50Ms: percentile(padded, 50),
    p99Ms: percentile(padded, 99),
    maxMs: padded.at(-1) ?? NaN,
    capped: sorted.length < count,
    timesMs: sorted
  }
}

function lowerBoundMs (n, modelBytes) {
  const B = Mbyte(settings.linkMbit)
  const S = Mbyte(settings.originMbit)
  return 1000 * Math.max(modelBytes / S, modelBytes / B, n * modelBytes / (S + n * B))
}

// ---- runs ----

/** N agents pull at once. `kill`: { count, atMs } agents SIGKILLed mid-pull. `late`: one more host after. */
async function swarmRun (n, ctx, { kill, late } = {}) {
  const limitMs = Math.max(settings.runLimit * lowerBoundMs(n, ctx.modelBytes), 60_000)
  const dir = await mkdtemp(join(work, `swarm-${n}-`))
  const agents = await startFleet(Array.from({ length: n }, (_, i) => i + 1), { env: ctx.env, keyFile: ctx.keyFile, dir })
  try {
    const barrier = await pullBarrier(agents)
    const pulls = agents.map(agent => spawnIn(agent.host, ['node', cli, 'pull', ctx.ref, '--json'], { ...ctx.env, SWARM_SOCKET: barrier.paths.get(agent.index) }))
    const before = await fabric.counters('o')
    const originCpuBefore = await originCpu()
    for (const agent of agents) agent.cpuAtStart = processCpu(agent.child.pid)
    const sampler = cpuSampler()
    await barrier.go(120_000)
    log(`  N=${n}: ${n} pulls released${kill != null ? `; killing ${kill.count} agents at ${fmt(kill.atMs / 1000)} s` : ''}`)
    const killed = new Set()
    let killTimer
    if (kill != null) {
      killTimer = setTimeout(() => {
        for (const agent of agents.slice(-kill.count)) {
          killed.add(agent.index)
          agent.child.kill('SIGKILL')
        }
      }, kill.atMs)
    }
    const survivors = () => agents.filter(a => !killed.has(a.index))
    const deadline = performance.now() + limitMs
    while (performance.now() < deadline) {
      if (survivors().every(a => barrier.outcome.has(a.index)) && (kill == null || killed.size > 0)) break
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    clearTimeout(killTimer)
    const cpu = sampler.stop()
    const wallMs = performance.now() - barrier.t0
    const after = await fabric.counters('o')
    const metrics = await Promise.all(survivors().map(async a => await agentMetrics(a).catch(() => ({ originBytes: 0, peerBytes: 0 }))))
    const fleetCpu = survivors().reduce((sum, a) => sum + ((processCpu(a.child.pid) ?? a.cpuAtStart) - a.cpuAtStart), 0) + (await originCpu() - originCpuBefore)
    for (const pull of pulls) if (pull.exitCode == null) pull.kill('SIGKILL')
    await Promise.all(pulls.map(async p => await p.exited))
    const errors = survivors().filter(a => barrier.outcome.get(a.index)?.ok === false).map(a => `${a.host}: ${pulls[a.index - 1].lines.find(l => l.event === 'error')?.message ?? pulls[a.index - 1].stderrTail.slice(-300)}`)
    const times = survivors().map(a => barrier.outcome.get(a.index)).filter(o => o?.ok === true).map(o => o.ms)
    const result = {
      ...timesSummary(times, survivors().length, limitMs),
      limitMs,
      killed: killed.size,
      killAtMs: kill?.atMs,
      errors,
      originWireBytes: after.txBytes - before.txBytes,
      originBytes: metrics.reduce((sum, m) => sum + m.originBytes, 0),
      peerBytes: metrics.reduce((sum, m) => sum + m.peerBytes, 0),
      perNode: survivors().map((a, k) => ({ host: a.host, ms: barrier.outcome.get(a.index)?.ms, originBytes: metrics[k].originBytes, peerBytes: metrics[k].peerBytes })),
      cpu: { ...cpu, fleetCpuSeconds: fleetCpu, fleetCores: fleetCpu / (wallMs / 1000) }
    }
    if (errors.length > 0) log(`  errors: ${errors.slice(0, 3).join(' | ')}`)
    for (const a of survivors().filter(a => !barrier.outcome.has(a.index)).slice(0, 2)) {
      const pull = pulls[a.index - 1]
      log(`  ${a.host} unfinished: last event ${JSON.stringify(pull.lines.at(-1) ?? null).slice(0, 300)}; pull stderr ${pull.stderrTail.slice(-300)}; agent stderr ${a.child.stderrTail.slice(-600)}`)
    }
    if (late) {
      if (result.finished < result.nodes) log(`  late joiner: ${result.nodes - result.finished} nodes had not finished; it starts anyway`)
      result.late = await lateJoiner(n + 1, agents[0], ctx, dir)
    }
    return result
  } finally {
    await stopAgents(agents)
    await rm(dir, { recursive: true, force: true })
  }
}

async function lateJoiner (index, bootstrapAgent, ctx, dir) {
  const agent = await startAgent(index, { env: ctx.env, keyFile: ctx.keyFile, dir, bootstrap: bootstrapAgent.multiaddrs })
  try {
    const until = performance.now() + 20_000
    while ((await agentMetrics(agent)).peers < 1 && performance.now() < until) await new Promise(resolve => setTimeout(resolve, 500))
    const limitMs = Math.max(settings.runLimit * ctx.modelBytes / Mbyte(settings.linkMbit) * 1000, 60_000)
    const barrier = await pullBarrier([agent])
    const pull = spawnIn(agent.host, ['node', cli, 'pull', ctx.ref, '--json'], { ...ctx.env, SWARM_SOCKET: barrier.paths.get(index) })
    const before = await fabric.counters('o')
    await barrier.go(60_000)
    const deadline = performance.now() + limitMs
    while (!barrier.outcome.has(index) && performance.now() < deadline) await new Promise(resolve => setTimeout(resolve, 200))
    const after = await fabric.counters('o')
    await Promise.race([pull.exited, new Promise(resolve => setTimeout(resolve, 5000))])
    if (pull.exitCode == null) pull.kill('SIGKILL')
    const m = await agentMetrics(agent)
    const outcome = barrier.outcome.get(index)
    return { ok: outcome?.ok === true, ms: outcome?.ms, limitMs, originWireBytes: after.txBytes - before.txBytes, originBytes: m.originBytes, peerBytes: m.peerBytes }
  } finally {
    await stopAgents([agent])
  }
}

async function baselineRun (n, ctx) {
  const limitMs = Math.max(1.5 * n * ctx.modelBytes / Mbyte(settings.originMbit) * 1000, 60_000)
  const dir = await mkdtemp(join(work, `baseline-${n}-`))
  try {
    const before = await fabric.counters('o')
    const originCpuBefore = await originCpu()
    const sampler = cpuSampler()
    const t0 = performance.now()
    const doneAt = new Map()
    const pulls = Array.from({ length: n }, (_, i) => spawnIn(`h${i + 1}`, ['node', cli, 'pull', ctx.ref, '--no-agent', '--concurrency', String(settings.baselineConcurrency), '--json'], {
      ...ctx.env,
      SWARM_DATA_DIR: join(dir, `h${i + 1}`)
    }, { onLine: line => { if (line.event === 'done') doneAt.set(i, performance.now() - t0) } }))
    const all = Promise.all(pulls.map(async p => await p.exited))
    await Promise.race([all, new Promise(resolve => setTimeout(resolve, limitMs).unref())])
    const cpu = sampler.stop()
    const wallMs = performance.now() - t0
    const after = await fabric.counters('o')
    const fleetCpu = await originCpu() - originCpuBefore
    for (const pull of pulls) if (pull.exitCode == null) pull.kill('SIGKILL')
    await all
    const dones = pulls.map(p => p.lines.find(l => l.event === 'done')).filter(Boolean)
    const errors = pulls.filter(p => p.lines.every(l => l.event !== 'done')).map(p => p.lines.find(l => l.event === 'error')?.message ?? p.stderrTail.slice(-300))
    if (errors.length > 0) log(`  baseline errors: ${errors.slice(0, 3).join(' | ')}`)
    return {
      ...timesSummary([...doneAt.values()], n, limitMs),
      limitMs,
      errors,
      originWireBytes: after.txBytes - before.txBytes,
      originBytes: dones.reduce((sum, d) => sum + (d.bytesBySource?.origin ?? 0), 0),
      peerBytes: 0,
      cpu: { ...cpu, gatewayCpuSeconds: fleetCpu, gatewayCores: fleetCpu / (wallMs / 1000) }
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

// ---- main ----

const results = []
let model
let exitCode = 0
try {
  work = await mkdtemp(join(tmpdir(), 'swarm-fanout-'))
  log(`network: ${maxHosts} hosts at ${settings.linkMbit} Mbit/s, origin at ${settings.originMbit} Mbit/s (namespaces swfo-*, ${settings.subnet}.0/24)`)
  await fabric.start()
  await fabric.addHost('o', ORIGIN_OCTET, { upMbit: settings.originMbit, downMbit: settings.originMbit })
  for (let i = 1; i <= maxHosts; i++) await fabric.addHost(`h${i}`, i, { upMbit: settings.linkMbit, downMbit: settings.linkMbit })

  log('starting the S3 server in the origin namespace')
  await runIn('o', [join(root, 'scripts', 's3-server.sh'), 'up'], { SWARM_S3_HOST: originAddress, SWARM_S3_PORT: String(S3_PORT), SWARM_S3_DIR: join(work, 's3') })

  const prefix = `fanout-${Date.now()}`
  const env = s3Env(prefix)
  const keyFile = join(work, 'swarm.key')
  await writeFile(keyFile, generateSwarmKey(), { mode: 0o600 })
  const shape = modelShape(settings.modelMiB * MiB)
  const written = await writeSyntheticModel(join(work, 'model'), shape)
  // pushed from inside the origin's namespace: its own address is local there, so this is not shaped
  const push = await runIn('o', ['node', cli, 'push', written.dir, '--name', 'fanout:v1', '--chunk-size', settings.chunkSize, '--json'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })
  const pushed = push.lines.find(l => l.event === 'done')
  const { stdout: manifestText } = await exec('ip', ['netns', 'exec', 'swfo-o', 'curl', '-sf', '--max-time', '10', '--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', 'test:testsecret',
    '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', `http://${originAddress}:${S3_PORT}/swarm-test/${prefix}/manifests/${pushed.manifestCid}`], { maxBuffer: 64 * MiB })
  const manifest = JSON.parse(manifestText)
  const chunks = uniqueChunks(manifest)
  const modelBytes = chunks.reduce((sum, c) => sum + c.size, 0)
  model = { bytes: modelBytes, files: written.files.length, chunks, manifestCid: pushed.manifestCid, shape }
  log(`model: ${fmt(modelBytes / MiB)} MiB in ${chunks.length} unique chunks; T* = ${fmt(lowerBoundMs(1, modelBytes) / 1000)} s`)
  const ctx = { env, keyFile, ref: 'fanout:v1', modelBytes }

  for (const n of settings.sizes) {
    const entry = { n, tStarMs: lowerBoundMs(n, modelBytes), baselineIdealMs: 1000 * Math.max(modelBytes / Mbyte(settings.linkMbit), n * modelBytes / Mbyte(settings.originMbit)) }
    results.push(entry)
    if (settings.cases.includes('swarm')) {
      if (timeLeftS() < 120) { log(`N=${n}: skipped swarm, ${fmt(timeLeftS(), 0)} s left`); continue }
      log(`N=${n}: swarm`)
      entry.swarm = await swarmRun(n, ctx, { late: settings.cases.includes('late') && n === settings.eventsN })
      log(`  N=${n} swarm: p50 ${fmt(entry.swarm.p50Ms / 1000)} s, p99 ${fmt(entry.swarm.p99Ms / 1000)} s, ${entry.swarm.finished}/${entry.swarm.nodes} finished, origin ${fmt(entry.swarm.originWireBytes / modelBytes, 2)} × M on the wire`)
      if (entry.swarm.late != null) log(`  late joiner: ${fmt((entry.swarm.late.ms ?? NaN) / 1000)} s, origin ${fmt(entry.swarm.late.originBytes / MiB)} MiB`)
    }
    if (settings.cases.includes('churn') && n === settings.eventsN) {
      if (timeLeftS() < 120) { log(`N=${n}: skipped churn, ${fmt(timeLeftS(), 0)} s left`) } else {
        const count = Math.max(1, Math.round(n / 4))
        const reference = Number.isFinite(entry.swarm?.p50Ms) ? entry.swarm.p50Ms : entry.tStarMs
        log(`N=${n}: churn`)
        entry.churn = await swarmRun(n, ctx, { kill: { count, atMs: reference / 2 } })
        log(`  N=${n} churn: p50 ${fmt(entry.churn.p50Ms / 1000)} s, p99 ${fmt(entry.churn.p99Ms / 1000)} s, ${entry.churn.finished}/${entry.churn.nodes} survivors finished`)
      }
    }
    if (settings.cases.includes('baseline')) {
      const need = 1.15 * n * modelBytes / Mbyte(settings.originMbit) + 30
      if (timeLeftS() < need) { log(`N=${n}: skipped baseline, needs ~${fmt(need, 0)} s, ${fmt(timeLeftS(), 0)} s left`); continue }
      log(`N=${n}: baseline`)
      entry.baseline = await baselineRun(n, ctx)
      log(`  N=${n} baseline: p50 ${fmt(entry.baseline.p50Ms / 1000)} s, p99 ${fmt(entry.baseline.p99Ms / 1000)} s, ${entry.baseline.finished}/${n} finished, origin ${fmt(entry.baseline.originWireBytes / modelBytes, 2)} × M on the wire`)
    }
  }
  await runIn('o', [join(root, 'scripts', 's3-server.sh'), 'down'], { SWARM_S3_HOST: originAddress, SWARM_S3_PORT: String(S3_PORT), SWARM_S3_DIR: join(work, 's3') }).catch(err => log(`s3 down: ${err.message}`))
} catch (err) {
  exitCode = 1
  log(`failed: ${err.stack ?? err}`)
} finally {
  await cleanup()
  clearTimeout(globalTimer)
}

// ---- report ----

if (model != null && results.length > 0) {
  const M = model.bytes
  const s = ms => Number.isFinite(ms) ? fmt(ms / 1000) : '–'
  const row = cells => '| ' + cells.join(' | ') + ' |'
  const lines = []
  lines.push(`Fan-out over shaped links: ${fmt(M / MiB, 1)} MiB model (${model.chunks.length} chunks of ≤ ${settings.chunkSize}), per-node links ${settings.linkMbit} Mbit/s up and down, origin ${settings.originMbit} Mbit/s; ` +
    `a run stops at ${settings.runLimit} × T* (≥ 60 s), and a node still pulling then counts as that long ("≥").`)
  lines.push('')
  lines.push(row(['N', 'run', 'p50 s', 'p99 s', 'max s', 'T* s', 'p99 / T*', 'origin egress / M (wire)', 'origin / M (chunks)', 'peer share', 'finished', 'CPU: machine busy mean / max, fleet cores']))
  lines.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']))
  const ge = r => r.capped ? '≥ ' : ''
  for (const e of results) {
    const add = (label, r) => {
      if (r == null) return
      const peerShare = r.peerBytes / Math.max(1, r.peerBytes + r.originBytes)
      const cores = r.cpu.fleetCores ?? r.cpu.gatewayCores
      lines.push(row([e.n, label, ge(r) + s(r.p50Ms), ge(r) + s(r.p99Ms), ge(r) + s(r.maxMs), s(e.tStarMs), ge(r) + fmt(r.p99Ms / e.tStarMs, 2), fmt(r.originWireBytes / M, 2), fmt(r.originBytes / M, 2), fmt(peerShare, 2), `${r.finished}/${r.nodes}`,
        `${fmt(100 * r.cpu.machineBusyMean, 0)}% / ${fmt(100 * r.cpu.machineBusyMax, 0)}%, ${fmt(cores, 2)}`]))
    }
    add('swarm', e.swarm)
    add(`swarm, ${e.churn?.killed} of ${e.n} killed at ${s(e.churn?.killAtMs)} s`, e.churn)
    add('baseline: all from origin', e.baseline)
    const late = e.swarm?.late
    if (late != null) {
      const single = 1000 * M / Mbyte(settings.linkMbit)
      lines.push(row([e.n + 1, 'late joiner (after the others)', s(late.ms), s(late.ms), s(late.ms), s(single), fmt(late.ms / single, 2), fmt(late.originWireBytes / M, 2), fmt(late.originBytes / M, 2), fmt(late.peerBytes / Math.max(1, late.peerBytes + late.originBytes), 2), late.ok ? '1/1' : '0/1', '']))
    }
  }
  lines.push('')
  lines.push('Goals: p99 ≤ 1.25 × T* and origin egress ≤ 1.1 × M (payload the origin sent: wire bytes × 1448/1514, so cancelled and repeated transfers count; verified chunk bytes alone would hide them).')
  for (const e of results) {
    if (e.swarm == null) continue
    const p99 = e.swarm.p99Ms / e.tStarMs
    const origin = e.swarm.originWireBytes * WIRE_PAYLOAD / M
    lines.push(`- N=${e.n}: p99 ${ge(e.swarm)}${fmt(p99, 2)} × T* ${p99 <= 1.25 && !e.swarm.capped ? 'met' : 'missed'}; origin ${fmt(origin, 2)} × M ${origin <= 1.1 ? 'met' : 'missed'}` +
      `; machine CPU ${e.swarm.cpu.machineBusyMean < 0.9 ? 'below' : 'at'} saturation (mean ${fmt(100 * e.swarm.cpu.machineBusyMean, 0)}%), the fleet itself used ${fmt(e.swarm.cpu.fleetCores, 2)} cores`)
  }
  console.log(lines.join('\n'))

  const series = [
    { label: 'T* (lower bound)', color: '#2a9d8f', dashed: true, points: results.map(e => ({ n: e.n, seconds: e.tStarMs / 1000 })) },
    { label: 'baseline p99', color: '#e76f51', points: results.filter(e => e.baseline != null).map(e => ({ n: e.n, seconds: e.baseline.p99Ms / 1000, capped: e.baseline.capped })) },
    { label: 'Swarm p99', color: '#264653', points: results.filter(e => e.swarm != null).map(e => ({ n: e.n, seconds: e.swarm.p99Ms / 1000, capped: e.swarm.capped })) },
    { label: 'Swarm p50', color: '#8ab17d', dashed: true, points: results.filter(e => e.swarm != null).map(e => ({ n: e.n, seconds: e.swarm.p50Ms / 1000, capped: e.swarm.capped })) }
  ]
  const svg = lineChart({
    title: `Fan-out of a ${fmt(M / MiB, 0)} MiB model: completion time vs N`,
    subtitle: `links ${settings.linkMbit} Mbit/s up/down per node, origin ${settings.originMbit} Mbit/s; network namespaces + tbf`,
    series
  })
  const file = await saveResult(settings.name, { settings, model: { ...model }, chunks: model.chunks, results })
  const svgFile = file.replace(/\.json$/, '.svg')
  await writeFile(svgFile, svg)
  // FANOUT_DOCS_SVG: also copy the plot there (the README's docs/fanout.svg)
  if (process.env.FANOUT_DOCS_SVG) await copyFile(svgFile, process.env.FANOUT_DOCS_SVG)
  console.log(`\nresults: ${file}\nplot: ${svgFile}`)
}
process.exit(exitCode)
