// bench/sim: a discrete-event simulation of a fleet pulling one model at once, in virtual time,
// in which every node runs the agent's own pull engine (`@swarm/pull`'s PullSession, built, with its
// scheduler) over a simulated network, with no copy of its logic, and beside it a BitTorrent swarm
// on the same network. The network model is `network.mjs`, Swarm's fleet `fleet.mjs` (the engine's
// tests run it too), BitTorrent's policy `bittorrent.mjs` (see its header); this file reads the
// settings, runs the scenarios for each system and prints the figures.
//
// What is modelled
// - Every node runs one PullSession, started `SIM_SETTLE_MS` after its pull starts (the agent's
//   session waits that long for pullers' joins before it owns anything). Its fetches become
//   transfers; its timers are events in virtual time; its peers are the node's neighbours.
// - Bandwidth: each node has an upload and a download link (`SIM_LINK_MBIT`), the origin one
//   upload link (`SIM_ORIGIN_MBIT`). A transfer of weight w gets
//   w × min(sender up / sender's total weight, receiver down / receiver's total weight),
//   recomputed whenever a transfer starts or ends at either end (only the transfers touching
//   those two links change). Weights are log-normal (σ = `SIM_FAIRNESS_SIGMA`, 0.5, clipped to
//   [1/4, 4]) because TCP flows through one token bucket are far from equal: measured here, 60
//   flows of 2 MiB through one 50 Mbit/s tbf finished between 0.63 and 1.0 of the equal-share
//   time (median 0.92); σ = 0.5 gives 0.59–1.0 (median 0.85), and with equal weights synchronised
//   transfers all hit the same timeouts together, which real links do not do. This is a share per
//   link, not max-min fairness: what a sender-limited transfer leaves unused on the receiver's
//   link is not handed to its other transfers, so with unbalanced loads the model is slower
//   than TCP. Above 2 × origin rate × max downloads per node / link rate transfers at the origin
//   (64 by default), origin transfers share one virtual clock and the receivers' limits are
//   ignored for them (their share is then far below a receiver's), which keeps a flood of origin
//   requests cheap. All links carry `SIM_EFFICIENCY` × their rate in payload (TCP/IP framing on
//   Ethernet: 1448 of every 1514 bytes), so times compare with a real network; T* uses the
//   nominal rates.
// - Latency: a peer transfer starts one round trip after it is asked for, an origin transfer
//   `SIM_ORIGIN_LATENCY_MS` after. A link's round trip is `SIM_PEER_LATENCY_MS` (1) for every link,
//   or with `SIM_LATENCY_MS` the mean of its two ends' access latencies, each log-normal around
//   that median (σ `SIM_LATENCY_SIGMA`, 0.5), so a far node is far from everybody. A peer
//   already running `SIM_UPLOAD_SLOTS` uploads answers BUSY (a failed request), as the data server
//   does. A chunk that lands is announced ("have") to the node's neighbours after the control
//   channel's 20 ms coalescing plus the node's latency.
// - CPU: with `SIM_CPU_S_PER_GB` (measured: about 1.5 CPU-s per GB received on one core) and
//   `SIM_CORES` (1), a node's download takes at most what its cores can process: its receive
//   link is the lesser of the two. At 50 Mbit/s links (6 MB/s) against 667 MB/s per core this
//   never binds; it does with fast links or slow cores. Against a measured fan-out
//   (`SIM_CHUNKS_FROM`) each N also runs with the CPU that run measured: its fleet's CPU-s per
//   GB delivered, on the machine's cores / N a node (the agents shared one machine).
// - Peers: each node is connected to about `SIM_NEIGHBOURS` random others (each picks half of
//   them, links are symmetric), as a DHT and gossip would give; it only sees and asks those.
//   Ownership needs the origin fetchers (the few best-ranked pullers), and who knows whom is
//   modelled three ways. In all three, a join names the fetchers its node knows of (the
//   session's list, sent again when it changes), and reaches the neighbours a node's latency
//   later: names spread from neighbour to neighbour, as they do between agents.
//   `SIM_VIEW=partial` (default): each node knows its neighbours that pull (from their joins, at
//   once), what they name, and what fleet gossip brought it. The agent publishes its state on the fleet topic when
//   a pull starts or ends (at most once a second), its progress every 5 s, and every 5 s in any case, both stretched past 100 nodes so the whole
//   fleet publishes at most 100 a second (at 1,000 nodes, a change waits up to 10 s for its node's
//   turn, which the 1 s delay here does not model); gossipsub relays it through the mesh. Here a
//   puller's start or end reaches others `SIM_GOSSIP_DELAY_MS` (1,000) later, and each node takes
//   in at most `SIM_GOSSIP_PER_INTERVAL` (100) pullers drawn at random from those it could know,
//   every `SIM_GOSSIP_INTERVAL_MS` (1,000): what arrives is what the mesh relayed, duplicates
//   included, and what the validator's per-peer rate limits let through. `SIM_VIEW=shared` gives
//   every scheduler one shared `pullerSet` holding every puller at once (a perfect control plane,
//   which flatters); `SIM_VIEW=neighbours` gives each node only its neighbours and the fetchers
//   their joins name, which is what an agent knows (it takes no pullers from fleet gossip).
//   A node that finishes stops being a puller (the session re-joins with `pulling: false`).
// - Failures: a node with no progress for `SIM_STALL_MS` gives up, like the session's stall
//   timeout (it stays and serves what it has). Churn: a share of the nodes vanish at once mid-pull
//   (connections reset: their transfers end, neighbours get `peerLeft`). Late joiners: extra nodes
//   start mid-pull, plus one after everybody finished.
// - The baseline (every node straight from the origin, `concurrency` GETs each) runs on the same
//   network model without a scheduler.
// - BitTorrent (`SIM_SYSTEMS=swarm,bittorrent`, both by default) runs the same N, seed, graph
//   size, links, weights, latency, CPU and churn, with pieces of each size in `SIM_BT_PIECE_KIB`
//   (256,4096): rarest first, 4 upload slots by tit-for-tat, one seeder on the origin's link.
//   Churn and late joiners come halfway to each system's own undisturbed median.
// - Origin busy: the share of the time until the last node finished in which the origin's link
//   carried at least one transfer; below 1, the origin idled while nodes still lacked data.
//
// Not modelled: disk, TCP slow start and loss, DHT and connection set-up, sending CPU.
//
// Wall time: most instants only move a transfer's end (its rate changed); the loop waits for the
// sessions' microtasks (a tick) only after instants that settled a fetch or
// called into a session.
//
// Env: SIM_N (100,1000,10000), SIM_SCENARIOS (base,churn,late), SIM_MODEL_MIB (128),
// SIM_CHUNK_MIB (4), SIM_LINK_MBIT (50), SIM_ORIGIN_MBIT (50), SIM_NEIGHBOURS (40), SIM_VIEW
// (partial, shared, neighbours), SIM_GOSSIP_DELAY_MS, SIM_GOSSIP_PER_INTERVAL,
// SIM_GOSSIP_INTERVAL_MS, SIM_LATENCY_MS, SIM_LATENCY_SIGMA, SIM_CPU_S_PER_GB, SIM_CORES,
// SIM_SYSTEMS (swarm,bittorrent), SIM_BT_PIECE_KIB (256,4096),
// SIM_CHURN (0.1), SIM_LATE (0.1), SIM_SEED (1), SIM_SCHEDULER (JSON: scheduler init overrides,
// e.g. '{"originFallbackMs":60000}'), SIM_UPLOAD_SLOTS (8, the agent's default), SIM_RELAY_SLOTS (8, the agent's default: relays beside the upload slots), SIM_UPLOAD_LANDING_MS (1000, the agent's data server's: uploads at once follow how long they take to land; 0: always SIM_UPLOAD_SLOTS at once; '{"peerLandingMs":0}' in SIM_SCHEDULER does the same for downloads), SIM_CHUNKS_FROM
// (a bench/results/fanout*.json: use that model's chunks, links and origin, and compare with its
// measurements at the N both ran), SIM_LIMIT_S (virtual time a run may take; 20 × T*, ≥ 300 s),
// SIM_TRACE (ms: print the fleet's state every so often, and events by kind at the end),
// SIM_TRACE_ORIGIN (set: print every origin request, who made it in what role, and those given up),
// SIM_CANCEL (finish: a peer's answer to a cancelled request still crosses both links, as the data
// server sends an answer it began whole; stop: it ends at once, which flatters duplicates),
// SIM_START_SPREAD_MS (0: each node's session begins at a uniformly random time up to this after
// the release), SIM_CUT_THROUGH (on, as an agent does with a version 3 manifest: the engine tells
// its neighbours which chunks it began receiving and which it no longer is, asks a neighbour
// receiving a chunk when none holds it, and the neighbour serves it while it arrives, never
// faster; off: chunks passed on only once whole, as with a version 1 or 2 manifest or byte
// workers; see fleet.mjs), SIM_NAME (results file name, "sim").

import { seededRandom } from '@swarm/scheduler'
import { DEFAULT_MAX_RELAYS, DEFAULT_MAX_UPLOADS, DEFAULT_UPLOAD_LANDING_MS } from '@swarm/exchange'
import { readFile } from 'node:fs/promises'
import { availableParallelism } from 'node:os'
import { MiB, fmt, saveResult } from '../lib/common.mjs'
import { Mbit, baseline as runBaseline, lowerBound as bound, simulate as runSimulation } from './fleet.mjs'
import { simulateBitTorrent } from './bittorrent.mjs'

// ---- settings ----

function envNumber (name, fallback, min = 0) {
  const raw = process.env[name]
  if (raw == null || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number ≥ ${min}, got "${raw}"`)
  return value
}

function envList (name, fallback, allowed) {
  const raw = process.env[name]
  const items = raw == null || raw === '' ? fallback : raw.split(',').map(s => s.trim()).filter(Boolean)
  if (allowed != null) for (const item of items) if (!allowed.includes(item)) throw new Error(`${name}: "${item}" is not one of ${allowed.join(', ')}`)
  return items
}

const settings = {
  sizes: envList('SIM_N', ['100', '1000', '10000']).map(s => {
    const n = Number(s)
    if (!Number.isInteger(n) || n < 1) throw new Error(`SIM_N: "${s}" is not a positive integer`)
    return n
  }),
  scenarios: envList('SIM_SCENARIOS', ['base', 'churn', 'late'], ['base', 'churn', 'late']),
  modelBytes: Math.round(envNumber('SIM_MODEL_MIB', 128, 0.001) * MiB),
  chunkBytes: Math.round(envNumber('SIM_CHUNK_MIB', 4, 0.001) * MiB),
  linkMbit: envNumber('SIM_LINK_MBIT', 50, 0.001),
  originMbit: envNumber('SIM_ORIGIN_MBIT', 50, 0.001),
  efficiency: envNumber('SIM_EFFICIENCY', 1448 / 1514, 0.01),
  neighbours: envNumber('SIM_NEIGHBOURS', 40, 1),
  view: envList('SIM_VIEW', ['partial'], ['partial', 'shared', 'neighbours'])[0],
  cancelledPeerAnswers: envList('SIM_CANCEL', ['finish'], ['finish', 'stop'])[0],
  cutThrough: envList('SIM_CUT_THROUGH', ['on'], ['off', 'on'])[0] === 'on',
  gossipDelayMs: envNumber('SIM_GOSSIP_DELAY_MS', 1_000),
  gossipIntervalMs: envNumber('SIM_GOSSIP_INTERVAL_MS', 1_000, 1),
  gossipPerInterval: envNumber('SIM_GOSSIP_PER_INTERVAL', 100, 1),
  latencyMs: process.env.SIM_LATENCY_MS ? envNumber('SIM_LATENCY_MS', 0) : undefined,
  latencySigma: envNumber('SIM_LATENCY_SIGMA', 0.5),
  cpuSPerGB: process.env.SIM_CPU_S_PER_GB ? envNumber('SIM_CPU_S_PER_GB', 0) : undefined,
  cores: envNumber('SIM_CORES', 1, 0.001),
  systems: envList('SIM_SYSTEMS', ['swarm', 'bittorrent'], ['swarm', 'bittorrent']),
  btPieceKiB: envList('SIM_BT_PIECE_KIB', ['256', '4096']).map(s => {
    const kib = Number(s)
    if (!Number.isFinite(kib) || kib <= 0) throw new Error(`SIM_BT_PIECE_KIB: "${s}" is not a positive number`)
    return kib
  }),
  peerLatencyMs: envNumber('SIM_PEER_LATENCY_MS', 1),
  originLatencyMs: envNumber('SIM_ORIGIN_LATENCY_MS', 20),
  settleMs: envNumber('SIM_SETTLE_MS', 500),
  startSpreadMs: envNumber('SIM_START_SPREAD_MS', 0),
  stallMs: envNumber('SIM_STALL_MS', 120_000, 1),
  uploadSlots: envNumber('SIM_UPLOAD_SLOTS', DEFAULT_MAX_UPLOADS, 1),
  relaySlots: envNumber('SIM_RELAY_SLOTS', DEFAULT_MAX_RELAYS, 1),
  uploadLandingMs: envNumber('SIM_UPLOAD_LANDING_MS', DEFAULT_UPLOAD_LANDING_MS),
  baselineConcurrency: envNumber('SIM_BASELINE_CONCURRENCY', 16, 1),
  churnShare: envNumber('SIM_CHURN', 0.1),
  lateShare: envNumber('SIM_LATE', 0.1),
  seed: envNumber('SIM_SEED', 1),
  fairnessSigma: envNumber('SIM_FAIRNESS_SIGMA', 0.5),
  schedulerInit: JSON.parse(process.env.SIM_SCHEDULER ?? '{}'),
  chunksFrom: process.env.SIM_CHUNKS_FROM,
  name: process.env.SIM_NAME ?? 'sim',
  limitS: process.env.SIM_LIMIT_S != null ? envNumber('SIM_LIMIT_S', 600, 1) : undefined
}
if (settings.schedulerInit == null || typeof settings.schedulerInit !== 'object') throw new Error('SIM_SCHEDULER must be a JSON object')

// ---- the model's chunks ----

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'
function fakeCid (random) {
  let cid = 'bafkrei'
  for (let i = 0; i < 52; i++) cid += BASE32[Math.floor(random() * 32)]
  return cid
}

let measured // the fan-out run to compare with, when SIM_CHUNKS_FROM names one
let chunks
if (settings.chunksFrom != null) {
  measured = JSON.parse(await readFile(settings.chunksFrom, 'utf8'))
  if (!Array.isArray(measured.chunks)) throw new Error(`${settings.chunksFrom} has no chunk list`)
  chunks = measured.chunks.map(c => ({ cid: c.cid, size: c.size }))
  settings.linkMbit = measured.settings.linkMbit
  settings.originMbit = measured.settings.originMbit
} else {
  const random = seededRandom(settings.seed)
  chunks = []
  for (let left = settings.modelBytes; left > 0; left -= settings.chunkBytes) {
    chunks.push({ cid: fakeCid(random), size: Math.min(settings.chunkBytes, left) })
  }
}
const modelBytes = chunks.reduce((sum, c) => sum + c.size, 0)

const note = line => { process.stderr.write(line + '\n') }
const lowerBound = n => bound(n, modelBytes, settings)
const simulate = async options => await runSimulation({ chunks, settings, trace: process.env.SIM_TRACE != null ? Number(process.env.SIM_TRACE) : undefined, traceOrigin: process.env.SIM_TRACE_ORIGIN != null, note, ...options })
const baseline = options => runBaseline({ chunks, settings, ...options })
/** The virtual time a run may take, and the seed of a run of n nodes: the same for every system and variant. */
const runLimitMs = tStar => settings.limitS !== undefined ? settings.limitS * 1000 : Math.max(20 * tStar, 300_000)
const seedFor = n => settings.seed * 7919 + n

// ---- the runs ----

const s = ms => fmt(ms / 1000, 1)
const row = cells => '| ' + cells.join(' | ') + ' |'
const results = []
const out = []

note(`sim: ${fmt(modelBytes / MiB, 1)} MiB in ${chunks.length} chunks, links ${settings.linkMbit} Mbit/s, origin ${settings.originMbit} Mbit/s, ` +
  `~${settings.neighbours} neighbours, cancelled peer answers ${settings.cancelledPeerAnswers === "stop" ? "stop" : "finish"}, ${settings.view} view of the pullers, latency ${settings.latencyMs ?? settings.peerLatencyMs} ms, ` +
  `CPU ${settings.cpuSPerGB ?? 0} s/GB, systems ${settings.systems.join(',')}, scheduler ${JSON.stringify(settings.schedulerInit)}`)

const systemRuns = (entry, scenario) => [
  ...(entry.runs[scenario] !== undefined ? [['swarm', entry.runs[scenario]]] : []),
  ...settings.btPieceKiB.filter(kib => entry.bittorrent[`${kib}`]?.[scenario] !== undefined).map(kib => [`bittorrent, ${kib >= 1024 ? `${fmt(kib / 1024, 0)} MiB` : `${kib} KiB`} pieces`, entry.bittorrent[`${kib}`][scenario]])
]

for (const n of settings.sizes) {
  const tStar = lowerBound(n)
  const limitMs = runLimitMs(tStar)
  const base = baseline({ n, limitMs: Math.max(limitMs, 4 * n * modelBytes / (settings.originMbit * Mbit)) })
  const entry = { n, tStarMs: tStar, baseline: base, runs: {}, bittorrent: {} }
  results.push(entry)
  note(`N=${n}: T* ${s(tStar)} s; baseline p99 ${s(base.p99Ms)} s`)
  const undisturbed = {}
  for (const scenario of settings.scenarios) {
    const seed = seedFor(n)
    // mid-pull: half the system's own undisturbed median (T* when that run had no median)
    const moments = system => {
      const reference = Number.isFinite(undisturbed[system]?.initial.p50Ms) ? undisturbed[system].initial.p50Ms : tStar
      const at = settings.settleMs + reference / 2
      return { churnAt: scenario === 'churn' ? at : undefined, lateAt: scenario === 'late' ? at : undefined, at }
    }
    const told = (system, run) => note(`  ${system} ${scenario}: p50 ${s(run.initial.p50Ms)} s, p99 ${s(run.initial.p99Ms)} s, ${run.initial.finished}/${run.initial.nodes} finished, ` +
      `origin ${fmt(run.originBytes / modelBytes, 2)} × M, busy ${fmt(run.originBusyShare, 2)}, ${run.events} events in ${fmt(run.wallSeconds, 1)} s`)
    if (settings.systems.includes('swarm')) {
      const { churnAt, lateAt, at } = moments('swarm')
      const run = await simulate({ n, seed, limitMs, churnAt, lateAt })
      run.eventAtMs = at
      if (scenario === 'base') undisturbed.swarm = run
      entry.runs[scenario] = run
      told('swarm', run)
    }
    if (settings.systems.includes('bittorrent')) {
      for (const kib of settings.btPieceKiB) {
        const { churnAt, lateAt, at } = moments(`bittorrent ${kib}`)
        const run = simulateBitTorrent({ modelBytes, pieceBytes: Math.round(kib * 1024), settings, n, seed, limitMs, churnAt, lateAt })
        run.eventAtMs = at
        if (scenario === 'base') undisturbed[`bittorrent ${kib}`] = run
        entry.bittorrent[`${kib}`] ??= {}
        entry.bittorrent[`${kib}`][scenario] = run
        told(`bittorrent ${kib} KiB`, run)
      }
    }
  }
}

const realism = [
  settings.latencyMs != null ? `link round trips log-normal, median ${settings.latencyMs} ms (σ ${settings.latencySigma})` : `peer links ${settings.peerLatencyMs} ms`,
  settings.cpuSPerGB != null ? `receiving costs ${settings.cpuSPerGB} CPU-s/GB on ${settings.cores} core${settings.cores === 1 ? '' : 's'}` : 'no CPU limit',
  ...(settings.cutThrough ? ['chunks relayed while they arrive (cut-through: the engine\'s policy, a modelled data plane)'] : [])
].join(', ')
const viewText = settings.view === 'partial'
  ? `partial view of the pullers (neighbours, and gossip: ${settings.gossipPerInterval} per ${fmt(settings.gossipIntervalMs / 1000, 0)} s, ${fmt(settings.gossipDelayMs / 1000, 1)} s late)`
  : `${settings.view} view of the pullers`
out.push(`Simulated fan-out: ${fmt(modelBytes / MiB, 0)} MiB model in ${chunks.length} chunks, per-node links ${settings.linkMbit} Mbit/s up and down, origin ${settings.originMbit} Mbit/s, ` +
  `~${settings.neighbours} neighbours per node, ${viewText}, ${realism}${Object.keys(settings.schedulerInit).length > 0 ? `, scheduler ${JSON.stringify(settings.schedulerInit)}` : ''}.`)
out.push('')
out.push(row(['N', 'run', 'p50 s', 'p99 s', 'max s', 'T* s', 'p50 / T*', 'p99 / T*', 'max / T*', 'origin egress / M', 'origin busy', 'peer share', 'finished']))
out.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']))
for (const entry of results) {
  const t = entry.tStarMs
  const b = entry.baseline
  out.push(row([entry.n, 'baseline (all from origin)', s(b.p50Ms), s(b.p99Ms), s(b.maxMs), s(t), fmt(b.p50Ms / t, 2), fmt(b.p99Ms / t, 2), fmt(b.maxMs / t, 2), fmt(b.originBytes / modelBytes, 2), '', '0', `${b.finished}/${entry.n}`]))
  for (const scenario of settings.scenarios) {
    for (const [system, run] of systemRuns(entry, scenario)) {
      const label = { base: system, churn: `${system}, ${run.left} leave at ${s(run.eventAtMs)} s`, late: `${system}, late joiners` }[scenario]
      const i = run.initial
      const peerShare = run.peerBytes / Math.max(1, run.peerBytes + run.originBytes)
      out.push(row([entry.n, label, s(i.p50Ms), s(i.p99Ms), s(i.maxMs), s(t), fmt(i.p50Ms / t, 2), fmt(i.p99Ms / t, 2), fmt(i.maxMs / t, 2), fmt(run.originBytes / modelBytes, 2), fmt(run.originBusyShare, 2), fmt(peerShare, 3), `${i.finished}/${i.nodes}`]))
      if (scenario === 'late') {
        const one = modelBytes / (settings.linkMbit * Mbit)
        for (const [kind, what] of [['late', `${run.late.nodes} joining at ${s(run.eventAtMs)} s`], ['after', '1 joining after all finished']]) {
          const g = run[kind]
          if (g === undefined) continue
          out.push(row([entry.n, `… ${what}`, s(g.p50Ms), s(g.p99Ms), s(g.maxMs), s(one), fmt(g.p50Ms / one, 2), fmt(g.p99Ms / one, 2), fmt(g.maxMs / one, 2), '', '', '', `${g.finished}/${g.nodes}`]))
        }
      }
    }
  }
}
out.push('')
out.push('T*: the time no system can beat. Origin busy: the share of the time until the last node finished in which the origin\'s link carried a transfer.')
if (measured != null) {
  const both = results.filter(r => measured.results?.some(m => m.n === r.n && m.swarm != null) && r.runs.base != null)
  if (both.length > 0) {
    out.push('')
    out.push(`Against the measured fan-out (${settings.chunksFrom}), same model, links and origin:`)
    out.push('')
    // The measured agents shared one machine's cores; the same pull with each node given its share
    // of them (cores / N) and the CPU the run measured per GB delivered (the whole fleet's, sending
    // and the S3 server included, charged to receiving) shows how much of the gap CPU explains.
    const machineCores = measured.machineCores ?? availableParallelism()
    const withCpu = new Map()
    for (const r of both) {
      const real = measured.results.find(m => m.n === r.n)
      const cpuSPerGB = real.swarm.cpu?.cpuSecondsPerGB
      if (!(cpuSPerGB > 0)) continue
      const cores = machineCores / r.n
      const run = await runSimulation({ chunks, settings: { ...settings, cpuSPerGB, cores }, note, n: r.n, seed: seedFor(r.n), limitMs: runLimitMs(r.tStarMs) })
      withCpu.set(r.n, { run, cpuSPerGB, cores })
      note(`  swarm with the measured CPU (${fmt(cpuSPerGB, 1)} CPU-s/GB, ${fmt(cores, 2)} cores a node): p50 ${s(run.initial.p50Ms)} s, p99 ${s(run.initial.p99Ms)} s`)
    }
    out.push(row(['N', 'run', 'measured p50 s', 'simulated p50 s', 'measured p99 s', 'simulated p99 s', 'simulated p99 s, CPU as measured', 'measured origin / M', 'simulated origin / M']))
    out.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']))
    for (const r of both) {
      const real = measured.results.find(m => m.n === r.n)
      const sim = r.runs.base
      const capped = real.swarm.capped ? '≥ ' : ''
      const cpu = withCpu.get(r.n)
      const cpuCell = cpu != null ? `${s(cpu.run.initial.p99Ms)} (${fmt(cpu.cpuSPerGB, 1)} CPU-s/GB, ${fmt(cpu.cores, 2)} cores)` : ''
      out.push(row([r.n, 'swarm', capped + s(real.swarm.p50Ms), s(sim.initial.p50Ms), capped + s(real.swarm.p99Ms), s(sim.initial.p99Ms), cpuCell, fmt(real.swarm.originWireBytes * settings.efficiency / modelBytes, 2), fmt(sim.originBytes / modelBytes, 2)]))
      if (real.baseline != null) {
        out.push(row([r.n, 'baseline', s(real.baseline.p50Ms), s(r.baseline.p50Ms), s(real.baseline.p99Ms), s(r.baseline.p99Ms), '', fmt(real.baseline.originWireBytes * settings.efficiency / modelBytes, 2), fmt(r.baseline.originBytes / modelBytes, 2)]))
      }
      if (cpu != null) r.withMeasuredCpu = { cpuSPerGB: cpu.cpuSPerGB, cores: cpu.cores, p50Ms: cpu.run.initial.p50Ms, p99Ms: cpu.run.initial.p99Ms, originBytes: cpu.run.originBytes }
    }
    out.push('')
    out.push('Origin / M here counts every byte the origin sent, also of transfers cancelled half-way (measured: wire bytes × 1448/1514).')
    out.push(`CPU as measured: each node gets ${machineCores} cores / N (the measured agents shared one machine of ${machineCores}) and spends what the measured fleet spent per GB delivered (sending and the S3 server included) on each GB it receives.`)
  }
}
console.log(out.join('\n'))
const file = await saveResult(settings.name, { settings: { ...settings, modelBytes, chunks: chunks.length }, results })
console.log(`\nresults: ${file}`)
