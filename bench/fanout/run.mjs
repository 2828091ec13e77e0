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
// - BitTorrent, what a user would compare Swarm with: one aria2c per host (the leechers), one
//   aria2c seeder in the origin's namespace (so on the origin's link, shaped as the S3 server's),
//   a tracker (npm bittorrent-tracker, tracker.mjs) there too, and torrents of the same model
//   files made here (torrent.mjs), once with 256 KiB pieces and once with Swarm's chunk size. The
//   leechers start together; a node's time runs from then to aria2's download-complete hook.
//   aria2c is set as a new user would set it (aria2Options): the tracker only, seed until the
//   bench ends it, no preallocation, no re-check. aria2 has no upload-slot setting (its choker
//   decides) and reports no per-source byte counts, so its peer share is read on the wire.
// - Origin egress is read on the wire (bytes the origin's link sent, TCP/IP headers included)
//   and from the agents (`swarm_bytes_total{source="origin"}`: verified chunk bytes). Peer bytes
//   come from the agents' metrics. The origin link's busy share: its wire counter sampled every
//   100 ms, each interval busy in proportion to what it sent over what the link's rate allows,
//   from the release until the last node finished; each node's link receiving the same way, from
//   the release to its own finish (per second too, to see where a tail comes from). CPU: the whole machine's busy share from
//   /proc/stat each second (other tenants included) and the CPU time of the fleet: Swarm's agents
//   and the S3 server's namespace (aria2c's fleet: every aria2c, the seeder included), also per GB
//   delivered; for Swarm also split into agents, gateway and the `swarm pull` CLIs (start-up
//   included, reported apart), and the agents' CPU per thread (main, libuv pool, V8 helpers).
//   FANOUT_CPU_PROF=<dir> has each agent write a V8 CPU profile there, and the pull's window
//   beside it, for profile.mjs to break down by component and function.
// - A late joiner (one more host, started after the others finished) and churn (a quarter of
//   the agents killed mid-pull) run at FANOUT_EVENTS_N.
//
// Every namespace made here is removed at the end, also on failure, on SIGINT/SIGTERM and at the
// global time limit; processes still running inside them are ended first.
//
// Env: FANOUT_N (1,2,4,8,16), FANOUT_MODEL_MIB (128), FANOUT_LINK_MBIT (50), FANOUT_ORIGIN_MBIT (50),
// FANOUT_CHUNK_SIZE (4MiB), FANOUT_BLOCK_SIZE (256KiB; 0: no block digests, so no cut-through),
// FANOUT_WORKERS (the agents' byte workers, SWARM_WORKERS; unset: their default, none below 4 cores), FANOUT_CASES (swarm,bittorrent,baseline,late,churn), FANOUT_EVENTS_N (8),
// FANOUT_BT_PIECES (256KiB,<chunk size>: a BitTorrent run per piece size), FANOUT_BT_ANNOUNCE_S
// (5: the tracker's announce interval), FANOUT_WARMUP_MIB (0: off; else every agent first pulls a
// model of this size, its own bytes, and the figures are of its second pull: an agent that has
// been running, as a DaemonSet's are, rather than one started for the run), FANOUT_CPU_PROF (a directory for the agents' CPU profiles),
// FANOUT_RUN_LIMIT (8: a run stops at this many × T*, at least 60 s), FANOUT_TIMEOUT_S (1800),
// FANOUT_BASELINE_CONCURRENCY (1), FANOUT_SUBNET (10.77.0), FANOUT_NAME (fanout), FANOUT_DOCS_SVG (a path to copy
// the plot to), FANOUT_AGENT_LOGS (a directory: each agent's JSON log goes to a file there, at
// info level or FANOUT_AGENT_LOG_LEVEL, with each pull's scheduler counters in its "session finished" line).
import { execFile, spawn } from 'node:child_process'
import { createWriteStream, existsSync, readFileSync, readdirSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { availableParallelism, tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { promisify } from 'node:util'
import { writeSyntheticModel } from '@swarm/agent'
import { uniqueChunks } from '@swarm/interface'
import { generateSwarmKey } from '@swarm/p2p'
import { MiB, cli, fmt, root, saveResult } from '../lib/common.mjs'
import { Fabric } from './netns.mjs'
import { makeTorrent } from './torrent.mjs'
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
  // the manifest's block digests: 0 pushes a version 1 manifest, whose chunks pass on only once whole
  blockSize: process.env.FANOUT_BLOCK_SIZE ?? '256KiB',
  // the agents' byte workers; unset: the agents' own default
  workers: process.env.FANOUT_WORKERS,
  cases: (process.env.FANOUT_CASES ?? 'swarm,bittorrent,baseline,late,churn').split(',').map(s => s.trim()),
  eventsN: envNumber('FANOUT_EVENTS_N', 8, 1),
  runLimit: envNumber('FANOUT_RUN_LIMIT', 8, 1),
  timeoutS: envNumber('FANOUT_TIMEOUT_S', 1800, 60),
  baselineConcurrency: envNumber('FANOUT_BASELINE_CONCURRENCY', 1, 1),
  subnet: process.env.FANOUT_SUBNET ?? '10.77.0',
  name: process.env.FANOUT_NAME ?? 'fanout',
  agentLogs: process.env.FANOUT_AGENT_LOGS,
  cpuProf: process.env.FANOUT_CPU_PROF,
  btPieces: undefined,
  btAnnounceS: envNumber('FANOUT_BT_ANNOUNCE_S', 5, 1),
  warmupMiB: envNumber('FANOUT_WARMUP_MIB', 0, 0)
}
for (const c of settings.cases) if (!['swarm', 'bittorrent', 'baseline', 'late', 'churn'].includes(c)) throw new Error(`FANOUT_CASES: unknown case "${c}"`)

/** "4MiB", "256KiB", "1048576": bytes. */
function parseSize (name, text) {
  const m = /^\s*(\d+)\s*(KiB|MiB|k|m|)\s*$/i.exec(text)
  if (m == null) throw new Error(`${name}: "${text}" is not a size such as 256KiB or 4MiB`)
  const unit = m[2].toLowerCase()
  return Number(m[1]) * (unit.startsWith('k') ? 1024 : unit.startsWith('m') ? MiB : 1)
}
settings.btPieces = [...new Set((process.env.FANOUT_BT_PIECES ?? `256KiB,${settings.chunkSize}`).split(',').map(s => parseSize('FANOUT_BT_PIECES', s)))]
for (const size of settings.btPieces) if (size < 16 * 1024 || (size & (size - 1)) !== 0) throw new Error(`FANOUT_BT_PIECES: ${size} is not a power of two ≥ 16 KiB`)
const maxHosts = Math.max(...settings.sizes, settings.cases.some(c => c === 'late' || c === 'churn') ? settings.eventsN + 1 : 0)
if (maxHosts > 250) throw new Error('at most 250 hosts fit the /24')
const ORIGIN_OCTET = 254
const originAddress = `${settings.subnet}.${ORIGIN_OCTET}`
const S3_PORT = 7480
const TRACKER_PORT = 6969
const BT_PORT = 6881
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
function processCpu (pid, { systemOnly = false } = {}) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return ((systemOnly ? 0 : Number(fields[11])) + Number(fields[12])) / 100
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

/** CPU seconds per thread name (Node's main thread is "node", its thread pool "libuv-worker", V8's helpers "V8 …"). */
function threadCpu (pid) {
  const byName = {}
  let tids = []
  try { tids = readdirSync(`/proc/${pid}/task`) } catch { return byName }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      byName[name] = (byName[name] ?? 0) + (Number(fields[11]) + Number(fields[12])) / 100
    } catch {}
  }
  return byName
}

/**
 * Samples every link's counters (at the bridge's ports, see netns.mjs) every 100 ms, so a run can
 * say how much of its time the origin's link was busy sending and each node's link busy receiving:
 * with the origin as fast as a node, an idle second on either is a second added to the finish.
 */
function linkSampler (hosts) {
  const samples = []
  const sample = () => {
    const bytes = fabric.linkBytes()
    const origin = bytes.get('o')
    if (origin != null) samples.push({ at: performance.now(), origin: origin.sentBytes, hosts: hosts.map(h => bytes.get(h)?.receivedBytes ?? 0), hostsSent: hosts.map(h => bytes.get(h)?.sentBytes ?? 0) })
  }
  sample()
  const timer = setInterval(sample, 100)
  // the share of an interval a link spent busy: what it carried over what its rate allows, capped
  // at 1 (tbf shapes on the same bytes the counter counts, Ethernet headers included)
  const originRate = Mbyte(settings.originMbit) / 1000
  const hostRate = Mbyte(settings.linkMbit) / 1000
  const busy = (read, rate) => (a, b) => Math.min(1, (read(b) - read(a)) / (rate * (b.at - a.at)))
  const originBusy = busy(s => s.origin, originRate)
  const hostBusy = k => busy(s => s.hosts[k], hostRate)
  const hostSending = k => busy(s => s.hostsSent[k], hostRate)
  /** The share of [fromMs, toMs] a link spent busy. */
  const share = (busyShare, fromMs, toMs) => {
    let busyMs = 0
    for (let k = 1; k < samples.length; k++) {
      const a = samples[k - 1]
      const b = samples[k]
      const lo = Math.max(a.at, fromMs)
      const hi = Math.min(b.at, toMs)
      if (hi <= lo || b.at <= a.at) continue
      busyMs += busyShare(a, b) * (hi - lo)
    }
    return toMs > fromMs ? busyMs / (toMs - fromMs) : NaN
  }
  /** A link's busy share in each whole second of [fromMs, toMs]. */
  const timeline = (busyShare, fromMs, toMs) => {
    const seconds = Math.ceil((toMs - fromMs) / 1000)
    const out = new Array(Math.max(0, seconds)).fill(0)
    for (let k = 1; k < samples.length; k++) {
      const a = samples[k - 1]
      const b = samples[k]
      if (b.at <= a.at) continue
      const value = busyShare(a, b)
      for (let second = Math.max(0, Math.floor((a.at - fromMs) / 1000)); second < seconds; second++) {
        const lo = Math.max(a.at, fromMs + second * 1000)
        const hi = Math.min(b.at, toMs, fromMs + (second + 1) * 1000)
        if (lo >= b.at) break
        if (hi > lo) out[second] += value * (hi - lo) / 1000
      }
    }
    return out.map(v => Math.round(v * 100) / 100)
  }
  /** Each node's link receiving, from fromMs to its own finish (doneMs[k], ms after fromMs; missing: toMs). */
  const hostsBusy = (fromMs, toMs, doneMs) => hosts.map((_, k) => share(hostBusy(k), fromMs, doneMs[k] != null ? fromMs + doneMs[k] : toMs))
  /** The nodes' links, receiving, in each whole second: the mean over the nodes not yet finished then. */
  const hostsTimeline = (fromMs, toMs, doneMs) => {
    const perHost = hosts.map((_, k) => timeline(hostBusy(k), fromMs, toMs))
    return perHost[0]?.map((_, second) => {
      const pulling = perHost.filter((_, k) => doneMs[k] == null || doneMs[k] > second * 1000)
      return pulling.length === 0 ? 0 : Math.round(100 * pulling.reduce((sum, row) => sum + row[second], 0) / pulling.length) / 100
    }) ?? []
  }
  return {
    stop () {
      clearInterval(timer)
      sample()
    },
    /**
     * What a run reports of its links from fromMs (performance.now()) for runMs, each node's
     * finish doneMs[k] ms after fromMs (missing: not finished).
     */
    figures (fromMs, runMs, doneMs) {
      const toMs = fromMs + runMs
      return {
        originLinkBusy: share(originBusy, fromMs, toMs),
        // busy share of each second from the release to the last node's finish, to see where it idled
        originLinkTimeline: timeline(originBusy, fromMs, toMs),
        // each node's link receiving, from the release to its finish; the mean of those still
        // pulling, per second; and each node's link per second, both ways
        nodeLinksBusy: hostsBusy(fromMs, toMs, doneMs),
        nodeLinksTimeline: hostsTimeline(fromMs, toMs, doneMs),
        nodeLinkTimelines: hosts.map((host, k) => ({ host, receiving: timeline(hostBusy(k), fromMs, toMs), sending: timeline(hostSending(k), fromMs, toMs) }))
      }
    }
  }
}

/**
 * Bytes sent on each TCP connection of a host now (ss's tcp_info), keyed by its ends. Summed over
 * every host, each byte counts once (at its sender). A connection that closed between two reads
 * is missing from the later one, so short-lived connections are undercounted.
 */
async function tcpSent (host) {
  const { stdout } = await exec('ip', ['netns', 'exec', fabric.hosts.get(host).ns, 'ss', '-tinH', 'state', 'established'], { maxBuffer: 16 * MiB })
  const sent = new Map()
  let ends
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue
    if (!/^\s/.test(line)) {
      const cols = line.trim().split(/\s+/)
      ends = { local: cols.at(-2), peer: cols.at(-1) }
      continue
    }
    const m = /bytes_sent:(\d+)/.exec(line)
    const r = /bytes_retrans:(\d+)/.exec(line)
    const got = /bytes_received:(\d+)/.exec(line)
    if (ends != null) sent.set(`${ends.local}>${ends.peer}`, { ...ends, bytes: m != null ? Number(m[1]) : 0, retrans: r != null ? Number(r[1]) : 0, received: got != null ? Number(got[1]) : 0 })
    ends = undefined
  }
  return sent
}

/** What the hosts sent between two tcpSent reads, by the port that names the protocol; retransmissions included, and also apart; and what they received. */
function tcpSentByPort (before, after, ports) {
  const out = Object.fromEntries([...Object.keys(ports), 'other'].flatMap(k => [[k, 0], [`${k}Retransmitted`, 0], [`${k}Received`, 0]]))
  after.forEach((conns, h) => {
    for (const [key, c] of conns) {
      const delta = c.bytes - (before.get(h)?.get(key)?.bytes ?? 0)
      const retrans = c.retrans - (before.get(h)?.get(key)?.retrans ?? 0)
      const localPort = Number(c.local.split(':').at(-1))
      const peerPort = Number(c.peer.split(':').at(-1))
      const name = Object.keys(ports).find(k => ports[k] === localPort || ports[k] === peerPort) ?? 'other'
      out[name] += delta
      out[`${name}Retransmitted`] += retrans
      out[`${name}Received`] += c.received - (before.get(h)?.get(key)?.received ?? 0)
    }
  })
  return out
}

/** The machine's CPU samples, and the fleet's CPU seconds over the run and per GB delivered, alike for every system. */
function fleetCpuFigures (machine, fleetCpu, wallMs, deliveredBytes) {
  return { ...machine, fleetCpuSeconds: fleetCpu, fleetCores: fleetCpu / (wallMs / 1000), cpuSecondsPerGB: fleetCpu / (deliveredBytes / 1e9) }
}

/** the control message types bench runs report (see `swarm_peer_messages_sent_total`) */
const CONTROL_TYPES = ['join', 'have', 'arriving', 'not-arriving']

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
    relays: value('swarm_data_relays_total', '{outcome="started"}'),
    relaysCut: value('swarm_data_relays_total', '{outcome="cut"}'),
    peers: value('swarm_peers'),
    // control messages the agent wrote to its peers, by type
    controlSent: Object.fromEntries(CONTROL_TYPES.map(type => [type, value('swarm_peer_messages_sent_total', `{type="${type}"}`)]))
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
    ...(settings.workers != null ? { SWARM_WORKERS: settings.workers } : {}),
    ...(bootstrap != null ? { SWARM_BOOTSTRAP: bootstrap.join(',') } : {})
  }
  let onReady
  const ready = new Promise((resolve, reject) => {
    onReady = resolve
    setTimeout(() => reject(new Error(`agent ${host} not ready in 180 s`)), 180_000).unref()
  })
  if (settings.agentLogs != null) agentEnv.SWARM_LOG_LEVEL = process.env.FANOUT_AGENT_LOG_LEVEL ?? 'info'
  // written when the agent exits on SIGTERM; profile.mjs cuts it to the pull's window
  if (settings.cpuProf != null) agentEnv.NODE_OPTIONS = [process.env.NODE_OPTIONS, '--cpu-prof', `--cpu-prof-dir=${settings.cpuProf}`, `--cpu-prof-name=${basename(dir)}-${host}.cpuprofile`].filter(Boolean).join(' ')
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
  // let the DHT and the control connections settle: every agent connected to the others, or 60 s
  // (on a loaded machine 8 agents took over 20 s to meet, and a pull released before then starts
  // with a partial view of the fleet)
  const until = performance.now() + 60_000
  for (;;) {
    // an agent too busy to answer within curl's 10 s (a loaded machine) counts as not settled yet
    const peers = await Promise.all(fleet.map(async a => await agentMetrics(a).then(m => m.peers, () => 0)))
    if (peers.every(p => p >= fleet.length - 1) || performance.now() > until) {
      log(`  ${fleet.length} agents up; peers each: ${peers.join(' ')}`)
      for (const a of fleet) a.idleFrom = { at: performance.now(), cpu: processCpu(a.child.pid), threads: threadCpu(a.child.pid) }
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
    async whenAllHere (timeoutMs) {
      await Promise.race([allHere, new Promise((resolve, reject) => setTimeout(() => reject(new Error(`only ${held.length} of ${agents.length} pulls reached the barrier in ${timeoutMs / 1000} s`)), timeoutMs).unref())])
    },
    async go (timeoutMs) {
      await this.whenAllHere(timeoutMs)
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

/** Every agent pulls the warm-up model at once (not measured); the idle figures count from its end. */
async function warmUp (agents, ctx) {
  const started = performance.now()
  const pulls = agents.map(agent => spawnIn(agent.host, ['node', cli, 'pull', ctx.warmupRef, '--json'], { ...ctx.env, SWARM_SOCKET: agent.socket }))
  const codes = await Promise.all(pulls.map(async p => await p.exited))
  if (codes.some(code => code !== 0)) throw new Error(`a warm-up pull failed: ${pulls.find(p => p.exitCode !== 0)?.stderrTail}`)
  log(`  warm-up pull on ${agents.length} agents took ${fmt((performance.now() - started) / 1000)} s`)
  for (const a of agents) {
    a.metricsBase = await agentMetrics(a)
    a.idleFrom = { at: performance.now(), cpu: processCpu(a.child.pid), threads: threadCpu(a.child.pid) }
  }
}

/** N agents pull at once. `kill`: { count, atMs } agents SIGKILLed mid-pull. `late`: one more host after. */
async function swarmRun (n, ctx, { kill, late } = {}) {
  const limitMs = Math.max(settings.runLimit * lowerBoundMs(n, ctx.modelBytes), 60_000)
  const dir = await mkdtemp(join(work, `swarm-${n}-`))
  const agents = await startFleet(Array.from({ length: n }, (_, i) => i + 1), { env: ctx.env, keyFile: ctx.keyFile, dir })
  try {
    if (ctx.warmupRef != null) await warmUp(agents, ctx)
    const barrier = await pullBarrier(agents)
    const pulls = agents.map(agent => spawnIn(agent.host, ['node', cli, 'pull', ctx.ref, '--json'], { ...ctx.env, SWARM_SOCKET: barrier.paths.get(agent.index) }))
    const before = await fabric.counters('o')
    const link = linkSampler(agents.map(a => a.host))
    // CPU is counted from the release: before it the agents only wait while the CLIs start
    // (on a loaded machine, for over a minute at N = 8)
    await barrier.whenAllHere(120_000)
    // the agents are idle from the fleet's settling until the release (the CLIs talk to the barrier meanwhile):
    // what an idle fleet costs (timers, pings, gossip heartbeats, DHT upkeep)
    const idleS = (performance.now() - agents[0].idleFrom.at) / 1000
    const idleCpu = agents.reduce((sum, a) => sum + (processCpu(a.child.pid) ?? a.idleFrom.cpu) - a.idleFrom.cpu, 0)
    const tcpBefore = new Map(await Promise.all(agents.map(async a => [a.host, await tcpSent(a.host)])))
    const originCpuBefore = await originCpu()
    for (const agent of agents) {
      agent.cpuAtStart = processCpu(agent.child.pid)
      agent.systemCpuAtStart = processCpu(agent.child.pid, { systemOnly: true })
      agent.threadsAtStart = threadCpu(agent.child.pid)
    }
    const sampler = cpuSampler()
    await barrier.go(120_000)
    const t0Ns = process.hrtime.bigint()
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
    // the CLIs' CPU, read while they run (their /proc entries go when they exit)
    const cliCpu = new Map()
    const readCli = () => { pulls.forEach((p, k) => { const v = processCpu(p.pid); if (v != null) cliCpu.set(k, v) }) }
    while (performance.now() < deadline) {
      readCli()
      if (survivors().every(a => barrier.outcome.has(a.index)) && (kill == null || killed.size > 0)) break
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    readCli()
    clearTimeout(killTimer)
    const cpu = sampler.stop()
    const tEndNs = process.hrtime.bigint()
    const wallMs = performance.now() - barrier.t0
    const after = await fabric.counters('o')
    // counters since the agent started, less what a warm-up pull moved
    const metrics = await Promise.all(survivors().map(async a => {
      const m = await agentMetrics(a).catch(() => ({ originBytes: 0, peerBytes: 0, servedBytes: 0 }))
      const base = a.metricsBase ?? { originBytes: 0, peerBytes: 0, servedBytes: 0 }
      const controlSent = Object.fromEntries(CONTROL_TYPES.map(type => [type, (m.controlSent?.[type] ?? 0) - (base.controlSent?.[type] ?? 0)]))
      return { ...m, originBytes: m.originBytes - base.originBytes, peerBytes: m.peerBytes - base.peerBytes, servedBytes: (m.servedBytes ?? 0) - (base.servedBytes ?? 0), relays: (m.relays ?? 0) - (base.relays ?? 0), relaysCut: (m.relaysCut ?? 0) - (base.relaysCut ?? 0), controlSent }
    }))
    const tcpAfter = new Map(await Promise.all(survivors().map(async a => [a.host, await tcpSent(a.host).catch(() => new Map())])))
    const agentsCpu = survivors().reduce((sum, a) => sum + ((processCpu(a.child.pid) ?? a.cpuAtStart) - a.cpuAtStart), 0)
    // the kernel's share: on these links it includes the network stack of both ends of a veth pair
    const agentsSystemCpu = survivors().reduce((sum, a) => sum + ((processCpu(a.child.pid, { systemOnly: true }) ?? a.systemCpuAtStart) - a.systemCpuAtStart), 0)
    const threads = {}
    for (const a of survivors()) {
      for (const [name, seconds] of Object.entries(threadCpu(a.child.pid))) threads[name] = (threads[name] ?? 0) + seconds - (a.threadsAtStart[name] ?? 0)
    }
    const gatewayCpu = await originCpu() - originCpuBefore
    const fleetCpu = agentsCpu + gatewayCpu
    const doneTimes = survivors().map(a => barrier.outcome.get(a.index)).filter(o => o?.ok === true).map(o => o.ms)
    const lastMs = doneTimes.length === survivors().length ? Math.max(...doneTimes) : limitMs
    link.stop()
    const links = link.figures(barrier.t0, lastMs, agents.map(a => barrier.outcome.get(a.index)?.ok === true ? barrier.outcome.get(a.index).ms : undefined))
    if (settings.cpuProf != null) {
      // the pull's window on the clock the profiles use (V8 stamps samples with the monotonic clock, as hrtime)
      await writeFile(join(settings.cpuProf, `${basename(dir)}.window.json`), JSON.stringify({ n, fromUs: Number(t0Ns / 1000n), toUs: Number(t0Ns / 1000n) + Math.round(lastMs * 1000), endUs: Number(tEndNs / 1000n) }) + '\n')
    }
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
      // what the hosts sent, by protocol: libp2p (control protocol, fleet gossip, DHT, pings), the
      // chunk servers' TLS, S3 requests; from connections open at the end (lower bounds where some closed)
      tcpSentBytes: tcpSentByPort(tcpBefore, tcpAfter, { libp2p: 4001, data: 4002, s3: S3_PORT }),
      originBytes: metrics.reduce((sum, m) => sum + m.originBytes, 0),
      peerBytes: metrics.reduce((sum, m) => sum + m.peerBytes, 0),
      // chunk bytes the agents' data servers answered with: above peerBytes, peers sent what was not kept
      servedBytes: metrics.reduce((sum, m) => sum + (m.servedBytes ?? 0), 0),
      // chunks the agents sent on while they still arrived (cut-through), and those cut short
      relays: metrics.reduce((sum, m) => sum + (m.relays ?? 0), 0),
      relaysCut: metrics.reduce((sum, m) => sum + (m.relaysCut ?? 0), 0),
      // control messages an agent sent, by type, the mean over the agents (counted from its start,
      // or from after the warm-up pull)
      controlSentPerAgent: Object.fromEntries(CONTROL_TYPES.map(type => [type, metrics.length === 0 ? 0 : metrics.reduce((sum, m) => sum + m.controlSent[type], 0) / metrics.length])),
      perNode: survivors().map((a, k) => ({ host: a.host, ms: barrier.outcome.get(a.index)?.ms, originBytes: metrics[k].originBytes, peerBytes: metrics[k].peerBytes, servedBytes: metrics[k].servedBytes })),
      ...links,
      cpu: {
        ...fleetCpuFigures(cpu, fleetCpu, wallMs, times.length * ctx.modelBytes),
        agentsCpuSeconds: agentsCpu,
        agentsSystemCpuSeconds: agentsSystemCpu,
        gatewayCpuSeconds: gatewayCpu,
        cliCpuSeconds: [...cliCpu.values()].reduce((a, b) => a + b, 0),
        idleSeconds: idleS,
        idleAgentCores: idleCpu / idleS / n,
        agentThreads: threads
      }
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

/**
 * What a new user would set for aria2c on a private fleet: the tracker as the only source of peers
 * (no DHT, LPD or peer exchange), seeding without a ratio limit (the bench ends it once every node
 * has finished), no preallocation and no re-check of what is on disk, no console readout. Upload
 * slots are aria2's own choking (it has no setting for them); --bt-max-peers lets every node meet
 * every other.
 */
function aria2Options (n) {
  return [
    '--no-conf=true', '--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--enable-peer-exchange=false',
    `--bt-max-peers=${Math.max(55, n + 1)}`, '--seed-ratio=0.0', '--file-allocation=none', '--check-integrity=false',
    '--auto-save-interval=0', '--disable-ipv6=true', `--listen-port=${BT_PORT}`, '--summary-interval=0', '--show-console-readout=false', '--console-log-level=warn'
  ]
}

/**
 * N aria2c leechers (one per host) and one aria2c seeder in the origin's namespace, with the
 * tracker there too. A node's completion time runs from the leechers' start to aria2's
 * download-complete hook (every piece verified against its SHA-1); leechers keep seeding until
 * the last one is done.
 */
async function bittorrentRun (n, ctx, pieceLength) {
  const limitMs = Math.max(settings.runLimit * lowerBoundMs(n, ctx.modelBytes), 60_000)
  const dir = await mkdtemp(join(work, `bt-${n}-${pieceLength}-`))
  const aria = []
  try {
    // a fresh info hash per run (info.source), so the tracker has no peers of an earlier run
    const { torrent, pieces } = await makeTorrent({ dir: ctx.modelParent, name: ctx.modelName, files: ctx.modelFiles, pieceLength, announce: ctx.tracker.announce, source: basename(dir) })
    const torrentFile = join(dir, 'model.torrent')
    await writeFile(torrentFile, torrent)
    const mark = ctx.tracker.child.lines.length
    const seeder = spawnIn('o', ['aria2c', ...aria2Options(n), `--dir=${ctx.modelParent}`, '--bt-seed-unverified=true', torrentFile], {})
    aria.push(seeder)
    const until = performance.now() + 30_000
    while (!ctx.tracker.child.lines.slice(mark).some(l => l.event === 'start' && l.addr?.startsWith(`${originAddress}:`))) {
      if (seeder.exitCode != null) throw new Error(`aria2c seeder exited with ${seeder.exitCode}: ${seeder.stderrTail}`)
      if (performance.now() > until) throw new Error('the aria2c seeder did not announce itself in 30 s')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const hosts = Array.from({ length: n }, (_, i) => `h${i + 1}`)
    for (const host of hosts) {
      await mkdir(join(dir, host))
      // aria2 runs this when the download is complete (and goes on seeding): the wall clock, in ns
      await writeFile(join(dir, `${host}.hook`), `#!/bin/sh
date +%s%N > ${join(dir, `${host}.done`)}.tmp && mv ${join(dir, `${host}.done`)}.tmp ${join(dir, `${host}.done`)}
`, { mode: 0o755 })
    }
    const before = await fabric.counters('o')
    const hostsBefore = await Promise.all(hosts.map(async h => await fabric.counters(h)))
    const originCpuBefore = await originCpu()
    const seederCpuBefore = processCpu(seeder.pid) ?? 0
    const trackerCpuBefore = processCpu(ctx.tracker.child.pid) ?? 0
    const sampler = cpuSampler()
    const link = linkSampler(hosts)
    const t0 = performance.now()
    const t0Wall = Date.now()
    const leechers = hosts.map(host => spawnIn(host, ['aria2c', ...aria2Options(n), `--dir=${join(dir, host)}`, `--on-bt-download-complete=${join(dir, `${host}.hook`)}`, torrentFile], {}))
    aria.push(...leechers)
    log(`  N=${n}: ${n} aria2c leechers started (${pieces} pieces of ${fmt(pieceLength / 1024, 0)} KiB)`)
    const doneMs = new Map()
    const lastCpu = new Map()
    const lastSystemCpu = new Map()
    const deadline = t0 + limitMs
    while (performance.now() < deadline && doneMs.size < n) {
      hosts.forEach((host, k) => {
        const v = processCpu(leechers[k].pid)
        if (v != null) lastCpu.set(k, v)
        const system = processCpu(leechers[k].pid, { systemOnly: true })
        if (system != null) lastSystemCpu.set(k, system)
        if (doneMs.has(k)) return
        const file = join(dir, `${host}.done`)
        if (existsSync(file)) doneMs.set(k, Number(BigInt(readFileSync(file, 'utf8').trim()) / 1000000n) - t0Wall)
      })
      if (leechers.some((l, k) => l.exitCode != null && !doneMs.has(k))) break
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const cpu = sampler.stop()
    const wallMs = performance.now() - t0
    const after = await fabric.counters('o')
    const hostsAfter = await Promise.all(hosts.map(async h => await fabric.counters(h)))
    leechers.forEach((l, k) => {
      const v = processCpu(l.pid)
      if (v != null) lastCpu.set(k, v)
      const system = processCpu(l.pid, { systemOnly: true })
      if (system != null) lastSystemCpu.set(k, system)
    })
    const seederCpu = (processCpu(seeder.pid) ?? seederCpuBefore) - seederCpuBefore
    const trackerCpu = (processCpu(ctx.tracker.child.pid) ?? trackerCpuBefore) - trackerCpuBefore
    const gatewayCpu = await originCpu() - originCpuBefore - seederCpu - trackerCpu
    const leechersCpu = [...lastCpu.values()].reduce((a, b) => a + b, 0)
    const times = [...doneMs.values()]
    const lastMs = times.length === n ? Math.max(...times) : limitMs
    link.stop()
    const links = link.figures(t0, lastMs, hosts.map((_, k) => doneMs.get(k)))
    const errors = leechers.map((l, k) => l.exitCode != null && !doneMs.has(k) ? `${hosts[k]}: aria2c exited with ${l.exitCode}: ${l.stderrTail.slice(-300)}` : undefined).filter(Boolean)
    if (errors.length > 0) log(`  bittorrent errors: ${errors.slice(0, 3).join(' | ')}`)
    const received = hostsAfter.reduce((sum, c, k) => sum + c.rxBytes - hostsBefore[k].rxBytes, 0)
    const originWireBytes = after.txBytes - before.txBytes
    const fleetCpu = leechersCpu + seederCpu
    return {
      ...timesSummary(times, n, limitMs),
      limitMs,
      pieceLength,
      pieces,
      errors,
      originWireBytes,
      // aria2 reports no per-source split; on the wire, what the hosts received beyond what the origin sent came from peers
      originBytes: NaN,
      peerBytes: NaN,
      peerShareWire: received > 0 ? Math.max(0, 1 - originWireBytes / received) : NaN,
      perNode: hosts.map((host, k) => ({ host, ms: doneMs.get(k), rxWireBytes: hostsAfter[k].rxBytes - hostsBefore[k].rxBytes, txWireBytes: hostsAfter[k].txBytes - hostsBefore[k].txBytes })),
      ...links,
      cpu: {
        ...fleetCpuFigures(cpu, fleetCpu, wallMs, times.length * ctx.modelBytes),
        leechersCpuSeconds: leechersCpu,
        leechersSystemCpuSeconds: [...lastSystemCpu.values()].reduce((a, b) => a + b, 0),
        seederCpuSeconds: seederCpu,
        trackerCpuSeconds: trackerCpu,
        gatewayIdleCpuSeconds: gatewayCpu
      }
    }
  } finally {
    await Promise.all(aria.map(async p => {
      if (p.exitCode != null || p.signalCode != null) return
      p.kill('SIGTERM')
      const timer = setTimeout(() => { p.kill('SIGKILL') }, 5000)
      await p.exited
      clearTimeout(timer)
    }))
    await rm(dir, { recursive: true, force: true })
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
  if (settings.cpuProf != null) await mkdir(settings.cpuProf, { recursive: true })
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
  const push = await runIn('o', ['node', cli, 'push', written.dir, '--name', 'fanout:v1', '--chunk-size', settings.chunkSize, '--block-size', settings.blockSize, '--json'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })
  const pushed = push.lines.find(l => l.event === 'done')
  const { stdout: manifestText } = await exec('ip', ['netns', 'exec', 'swfo-o', 'curl', '-sf', '--max-time', '10', '--aws-sigv4', 'aws:amz:us-east-1:s3', '--user', 'test:testsecret',
    '-H', 'x-amz-content-sha256: UNSIGNED-PAYLOAD', `http://${originAddress}:${S3_PORT}/swarm-test/${prefix}/manifests/${pushed.manifestCid}`], { maxBuffer: 64 * MiB })
  const manifest = JSON.parse(manifestText)
  const chunks = uniqueChunks(manifest)
  const modelBytes = chunks.reduce((sum, c) => sum + c.size, 0)
  model = { bytes: modelBytes, files: written.files.length, chunks, manifestCid: pushed.manifestCid, shape }
  log(`model: ${fmt(modelBytes / MiB)} MiB in ${chunks.length} unique chunks; T* = ${fmt(lowerBoundMs(1, modelBytes) / 1000)} s`)
  const ctx = { env, keyFile, ref: 'fanout:v1', modelBytes, modelParent: work, modelName: basename(written.dir), modelFiles: [] }
  if (settings.warmupMiB > 0) {
    // other bytes (seed) and another shape (header): nothing of it is a chunk of the measured model
    const warm = await writeSyntheticModel(join(work, 'warm-up'), { ...modelShape(settings.warmupMiB * MiB), seed: 'fanout warm-up' })
    await runIn('o', ['node', cli, 'push', warm.dir, '--name', 'fanout-warm-up:v1', '--chunk-size', settings.chunkSize, '--block-size', settings.blockSize, '--json'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })
    ctx.warmupRef = 'fanout-warm-up:v1'
    log(`warm-up model: ${fmt(warm.totalBytes / MiB)} MiB, pulled by every agent before each Swarm run`)
  }
  if (settings.cases.includes('bittorrent')) {
    // the same bytes Swarm moves: the model's files, in the order the manifest lists them
    ctx.modelFiles = manifest.files.map(f => ({ path: f.path, size: f.size }))
    const tracker = spawnIn('o', [process.execPath, join(root, 'bench', 'fanout', 'tracker.mjs'), originAddress, String(TRACKER_PORT), String(settings.btAnnounceS)], {})
    const until = performance.now() + 20_000
    while (!tracker.lines.some(l => l.event === 'listening')) {
      if (tracker.exitCode != null || performance.now() > until) throw new Error(`the tracker did not start: ${tracker.stderrTail}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    ctx.tracker = { child: tracker, announce: tracker.lines.find(l => l.event === 'listening').announce }
    log(`tracker at ${ctx.tracker.announce}`)
  }

  for (const n of settings.sizes) {
    const entry = { n, tStarMs: lowerBoundMs(n, modelBytes), baselineIdealMs: 1000 * Math.max(modelBytes / Mbyte(settings.linkMbit), n * modelBytes / Mbyte(settings.originMbit)) }
    results.push(entry)
    if (settings.cases.includes('swarm')) {
      if (timeLeftS() < 120) { log(`N=${n}: skipped swarm, ${fmt(timeLeftS(), 0)} s left`); continue }
      log(`N=${n}: swarm`)
      entry.swarm = await swarmRun(n, ctx, { late: settings.cases.includes('late') && n === settings.eventsN })
      log(`  N=${n} swarm: p50 ${fmt(entry.swarm.p50Ms / 1000)} s, p99 ${fmt(entry.swarm.p99Ms / 1000)} s, ${entry.swarm.finished}/${entry.swarm.nodes} finished, origin ${fmt(entry.swarm.originWireBytes / modelBytes, 2)} × M on the wire`)
      log(`    origin link busy per second: ${entry.swarm.originLinkTimeline.map(v => fmt(v * 100, 0)).join(' ')}`)
      log(`    nodes' links receiving per second (mean of those pulling): ${entry.swarm.nodeLinksTimeline.map(v => fmt(v * 100, 0)).join(' ')}`)
      log(`    chunks sent on while arriving: ${entry.swarm.relays ?? 0} (${entry.swarm.relaysCut ?? 0} cut short)`)
      log(`    control messages sent per agent: ${Object.entries(entry.swarm.controlSentPerAgent).map(([type, n]) => `${type} ${fmt(n, 0)}`).join(', ')}`)
      if (entry.swarm.late != null) log(`  late joiner: ${fmt((entry.swarm.late.ms ?? NaN) / 1000)} s, origin ${fmt(entry.swarm.late.originBytes / MiB)} MiB`)
    }
    if (settings.cases.includes('bittorrent')) {
      entry.bittorrent = []
      for (const pieceLength of settings.btPieces) {
        if (timeLeftS() < 120) { log(`N=${n}: skipped bittorrent, ${fmt(timeLeftS(), 0)} s left`); break }
        log(`N=${n}: bittorrent, ${fmt(pieceLength / 1024, 0)} KiB pieces`)
        const r = await bittorrentRun(n, ctx, pieceLength)
        entry.bittorrent.push(r)
        log(`  N=${n} bittorrent ${fmt(pieceLength / 1024, 0)} KiB: p50 ${fmt(r.p50Ms / 1000)} s, p99 ${fmt(r.p99Ms / 1000)} s, ${r.finished}/${r.nodes} finished, origin ${fmt(r.originWireBytes / modelBytes, 2)} × M on the wire, link busy ${fmt(100 * r.originLinkBusy, 0)}%`)
        log(`    nodes' links receiving per second (mean of those pulling): ${r.nodeLinksTimeline.map(v => fmt(v * 100, 0)).join(' ')}`)
      }
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
  lines.push(`Fan-out over shaped links: ${fmt(M / MiB, 1)} MiB model (${model.chunks.length} chunks of ≤ ${settings.chunkSize}, ${settings.blockSize === '0' ? 'no block digests' : `block digests of ${settings.blockSize}`}${settings.workers != null ? `, agents with ${settings.workers} byte workers` : ''}), per-node links ${settings.linkMbit} Mbit/s up and down, origin ${settings.originMbit} Mbit/s; ` +
    `a run stops at ${settings.runLimit} × T* (≥ 60 s), and a node still pulling then counts as that long ("≥").`)
  lines.push('')
  lines.push(row(['N', 'run', 'p50 s', 'p99 s', 'max s', 'T* s', 'p99 / T*', 'origin egress / M (wire)', 'origin / M (chunks)', 'peer share', 'origin link busy', 'node links busy (mean)', 'finished', 'fleet CPU s / GB', 'CPU: machine busy mean / max, fleet cores']))
  lines.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']))
  const pct = v => Number.isFinite(v) ? `${fmt(100 * v, 0)}%` : '–'
  const num = (v, d) => Number.isFinite(v) ? fmt(v, d) : '–'
  const ge = r => r.capped ? '≥ ' : ''
  const mean = values => Array.isArray(values) && values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : NaN
  for (const e of results) {
    const add = (label, r) => {
      if (r == null) return
      const peerShare = r.peerShareWire ?? r.peerBytes / Math.max(1, r.peerBytes + r.originBytes)
      const cores = r.cpu.fleetCores ?? r.cpu.gatewayCores
      lines.push(row([e.n, label, ge(r) + s(r.p50Ms), ge(r) + s(r.p99Ms), ge(r) + s(r.maxMs), s(e.tStarMs), ge(r) + fmt(r.p99Ms / e.tStarMs, 2), fmt(r.originWireBytes / M, 2), num(r.originBytes / M, 2), num(peerShare, 2) + (r.peerShareWire != null ? ' (wire)' : ''), pct(r.originLinkBusy), pct(mean(r.nodeLinksBusy)), `${r.finished}/${r.nodes}`,
        num(r.cpu.cpuSecondsPerGB, 1), `${fmt(100 * r.cpu.machineBusyMean, 0)}% / ${fmt(100 * r.cpu.machineBusyMax, 0)}%, ${fmt(cores, 2)}`]))
    }
    add(settings.warmupMiB > 0 ? `swarm (second pull, after ${fmt(settings.warmupMiB, 0)} MiB)` : 'swarm', e.swarm)
    for (const r of e.bittorrent ?? []) add(`BitTorrent (aria2c), ${fmt(r.pieceLength / 1024, 0)} KiB pieces`, r)
    add(`swarm, ${e.churn?.killed} of ${e.n} killed at ${s(e.churn?.killAtMs)} s`, e.churn)
    add('baseline: all from origin', e.baseline)
    const late = e.swarm?.late
    if (late != null) {
      const single = 1000 * M / Mbyte(settings.linkMbit)
      lines.push(row([e.n + 1, 'late joiner (after the others)', s(late.ms), s(late.ms), s(late.ms), s(single), fmt(late.ms / single, 2), fmt(late.originWireBytes / M, 2), fmt(late.originBytes / M, 2), fmt(late.peerBytes / Math.max(1, late.peerBytes + late.originBytes), 2), '', late.ok ? '1/1' : '0/1', '', '']))
    }
  }
  lines.push('')
  lines.push('Origin link busy: the share of the time from the release to the last node\'s finish that the origin\'s link spent sending (100 ms samples of its wire counter against its rate). Node links busy: the same for each node\'s link receiving, from the release to that node\'s finish, averaged over the nodes (with the origin as fast as a node, a node\'s idle download is time added to its finish). Fleet CPU: Swarm: the agents and the S3 server\'s namespace (gateway, monitor, storage daemon); BitTorrent: every aria2c, the seeder included; per GB delivered to the nodes.')
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
    { label: 'Swarm p50', color: '#8ab17d', dashed: true, points: results.filter(e => e.swarm != null).map(e => ({ n: e.n, seconds: e.swarm.p50Ms / 1000, capped: e.swarm.capped })) },
    ...settings.btPieces.map((pieceLength, k) => ({
      label: `BitTorrent p99, ${pieceLength >= MiB ? `${fmt(pieceLength / MiB, 0)} MiB` : `${fmt(pieceLength / 1024, 0)} KiB`}`,
      color: ['#9b5de5', '#f4a261', '#577590'][k % 3],
      dashed: k > 0,
      points: results.flatMap(e => (e.bittorrent ?? []).filter(r => r.pieceLength === pieceLength).map(r => ({ n: e.n, seconds: r.p99Ms / 1000, capped: r.capped })))
    })).filter(series => series.points.length > 0)
  ]
  const svg = lineChart({
    title: `Fan-out of a ${fmt(M / MiB, 0)} MiB model: completion time vs N`,
    subtitle: `links ${settings.linkMbit} Mbit/s up/down per node, origin ${settings.originMbit} Mbit/s; network namespaces + tbf`,
    series
  })
  // the cores the whole fleet shared: bench/sim gives each simulated node its share of them
  const file = await saveResult(settings.name, { settings, machineCores: availableParallelism(), model: { ...model }, chunks: model.chunks, results })
  const svgFile = file.replace(/\.json$/, '.svg')
  await writeFile(svgFile, svg)
  // FANOUT_DOCS_SVG: also copy the plot there (the README's docs/fanout.svg)
  if (process.env.FANOUT_DOCS_SVG) await copyFile(svgFile, process.env.FANOUT_DOCS_SVG)
  console.log(`\nresults: ${file}\nplot: ${svgFile}`)
}
process.exit(exitCode)
