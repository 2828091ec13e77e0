// bench/sim: a discrete-event simulation of a fleet pulling one model at once, in virtual time,
// driving the very scheduler the agent runs (`@swarm/scheduler`, built) with no copy of its logic.
//
// What is modelled
// - Every node runs one scheduler, started `SIM_SETTLE_MS` after its pull starts (the agent's
//   session waits that long for pullers' joins before it owns anything). Its decisions become
//   transfers; transfers finishing, failing and being cancelled become its events, as in
//   `agents/swarm/src/agent/session.ts`.
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
// - Latency: a peer transfer starts `SIM_PEER_LATENCY_MS` after it is asked for, an origin transfer
//   `SIM_ORIGIN_LATENCY_MS` after. A peer already running `SIM_UPLOAD_SLOTS` uploads answers BUSY
//   (a failed request), as the data server does. A chunk that lands is announced ("have") to the
//   node's neighbours after the control channel's 20 ms coalescing plus one peer latency.
// - Peers: each node is connected to about `SIM_NEIGHBOURS` random others (each picks half of
//   them, links are symmetric), as a DHT and gossip would give; it only sees and asks those.
//   Ownership: `SIM_VIEW=shared` (default) gives every scheduler one shared `pullerSet` holding
//   every puller, i.e. a control plane that spreads the whole set; `SIM_VIEW=neighbours` gives each
//   node only its neighbours as pullers, which is what the agent learns from its own connections.
//   A node that finishes stops being a puller (the session re-joins with `pulling: false`).
// - Failures: a node with no progress for `SIM_STALL_MS` gives up, like the session's stall
//   timeout (it stays and serves what it has). Churn: a share of the nodes vanish at once mid-pull
//   (connections reset: their transfers end, neighbours get `peerLeft`). Late joiners: extra nodes
//   start mid-pull, plus one after everybody finished.
// - The baseline (every node straight from the origin, `concurrency` GETs each) runs on the same
//   network model without a scheduler.
//
// Not modelled: CPU, disk, TCP slow start and loss, DHT and connection set-up, control-message
// delays beyond the fixed one above.
//
// Env: SIM_N (100,1000,10000), SIM_SCENARIOS (base,churn,late), SIM_MODEL_MIB (128),
// SIM_CHUNK_MIB (4), SIM_LINK_MBIT (50), SIM_ORIGIN_MBIT (50), SIM_NEIGHBOURS (40), SIM_VIEW,
// SIM_CHURN (0.1), SIM_LATE (0.1), SIM_SEED (1), SIM_SCHEDULER (JSON: scheduler init overrides,
// e.g. '{"originFallbackMs":60000}'), SIM_UPLOAD_SLOTS (8, the agent's default), SIM_CHUNKS_FROM
// (a bench/results/fanout*.json: use that model's chunks, links and origin, and compare with its
// measurements at the N both ran), SIM_LIMIT_S (virtual time a run may take; 20 × T*, ≥ 300 s),
// SIM_TRACE (ms: print the fleet's state every so often, and events by kind at the end),
// SIM_START_SPREAD_MS (0: each node's session begins at a uniformly random time up to this after
// the release), SIM_NAME (results file name, "sim").

import { chunkScheduler, pullerSet, seededRandom, DEFAULT_MAX_INFLIGHT_TOTAL } from '@swarm/scheduler'
import { DEFAULT_MAX_UPLOADS, DEFAULT_MAX_UPLOADS_PER_PEER } from '@swarm/exchange'
import { readFile } from 'node:fs/promises'
import { MiB, fmt, saveResult } from '../lib/common.mjs'

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

const Mbit = 1e6 / 8 / 1000 // bytes per ms in one Mbit/s
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
  view: envList('SIM_VIEW', ['shared'], ['shared', 'neighbours'])[0],
  peerLatencyMs: envNumber('SIM_PEER_LATENCY_MS', 1),
  originLatencyMs: envNumber('SIM_ORIGIN_LATENCY_MS', 20),
  settleMs: envNumber('SIM_SETTLE_MS', 500),
  startSpreadMs: envNumber('SIM_START_SPREAD_MS', 0),
  stallMs: envNumber('SIM_STALL_MS', 120_000, 1),
  uploadSlots: envNumber('SIM_UPLOAD_SLOTS', DEFAULT_MAX_UPLOADS, 1),
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
const HAVE_FLUSH_MS = 20

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

/** The lower bound no system beats, in ms (nominal rates). */
function lowerBound (n) {
  const B = settings.linkMbit * Mbit
  const S = settings.originMbit * Mbit
  return Math.max(modelBytes / S, modelBytes / B, n * modelBytes / (S + n * B))
}

// ---- events ----

class EventQueue {
  times = []
  seqs = []
  items = []
  seq = 0
  get size () { return this.items.length }
  push (time, item) {
    const { times, seqs, items } = this
    let i = items.length
    times.push(time); seqs.push(this.seq++); items.push(item)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (times[p] < time || (times[p] === time && seqs[p] < seqs[i])) break
      this.swap(i, p)
      i = p
    }
  }
  peekTime () { return this.items.length > 0 ? this.times[0] : undefined }
  pop () {
    const { times, items } = this
    const top = items[0]
    const last = items.length - 1
    this.swap(0, last)
    times.pop(); this.seqs.pop(); items.pop()
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < items.length && this.less(l, m)) m = l
      if (r < items.length && this.less(r, m)) m = r
      if (m === i) break
      this.swap(i, m)
      i = m
    }
    return top
  }
  less (a, b) { return this.times[a] < this.times[b] || (this.times[a] === this.times[b] && this.seqs[a] < this.seqs[b]) }
  swap (a, b) {
    const { times, seqs, items } = this
    ;[times[a], times[b]] = [times[b], times[a]]
    ;[seqs[a], seqs[b]] = [seqs[b], seqs[a]]
    ;[items[a], items[b]] = [items[b], items[a]]
  }
}

/** A min-heap of origin transfers by the virtual-clock value at which each ends. */
class FlowHeap {
  items = []
  push (flow) {
    const items = this.items
    items.push(flow)
    let i = items.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (items[p].vEnd <= flow.vEnd) break
      items[i] = items[p]; items[p] = flow; i = p
    }
  }
  peek () {
    while (this.items.length > 0 && !this.items[0].pooledLive) this.pop()
    return this.items[0]
  }
  pop () {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0) {
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < items.length && items[l].vEnd < items[m].vEnd) m = l
        if (r < items.length && items[r].vEnd < items[m].vEnd) m = r
        if (m === i) break
        ;[items[i], items[m]] = [items[m], items[i]]
        i = m
      }
    }
    return top
  }
}

// ---- the network ----

const ORIGIN = -1
// flow weights are log-normal, clipped to this range
const MIN_WEIGHT = 0.25
const MAX_WEIGHT = 4

/** Draws flow weights: log-normal with `sigma` (0: all equal), from a seeded PRNG. */
function weights (random, sigma) {
  if (sigma === 0) return () => 1
  return () => {
    const u = Math.max(random(), 1e-12)
    const gauss = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random())
    return Math.min(MAX_WEIGHT, Math.max(MIN_WEIGHT, Math.exp(sigma * gauss)))
  }
}

/**
 * Links and transfers. A transfer ("flow") ends by itself (`onComplete`) or is removed; either way
 * the rates of the transfers sharing its links are recomputed. Each flow has a weight: its share
 * of a link is weight / (sum of the weights there), as TCP flows through one queue do not get
 * equal shares.
 */
class Network {
  constructor ({ queue, linkRate, originRate, maxDownloads, weight, onComplete }) {
    this.queue = queue
    this.linkRate = linkRate
    this.originRate = originRate
    this.weight = weight
    this.onComplete = onComplete
    this.up = [] // per node: Set of flows
    this.down = []
    this.upWeight = []
    this.downWeight = []
    this.originFlows = new Set()
    this.originWeight = 0
    this.pooled = false
    // with this many origin transfers, the origin's share is far below a receiver's link share
    this.poolLow = Math.ceil(2 * originRate * maxDownloads / linkRate)
    this.poolHigh = 2 * this.poolLow + 1
    this.V = 0
    this.vAt = 0
    this.vHeap = new FlowHeap()
    this.originVersion = 0
    this.bytes = { origin: 0, peer: 0 }
    // time with at least one origin transfer running, for the origin link's busy share
    this.originBusyMs = 0
    this.originBusySince = 0
    this.nextId = 1
  }

  addNode () {
    this.up.push(new Set())
    this.down.push(new Set())
    this.upWeight.push(0)
    this.downWeight.push(0)
    return this.up.length - 1
  }

  uploads (node) { return this.up[node].size }

  start (src, dst, size, tag, now) {
    const flow = { id: this.nextId++, src, dst, size, tag, weight: this.weight(), remaining: size, rate: 0, last: now, due: Infinity, live: true, pooled: false, pooledLive: false, vStart: 0, vEnd: 0 }
    this.down[dst].add(flow)
    this.downWeight[dst] += flow.weight
    if (src === ORIGIN) {
      this.advanceClock(now)
      if (this.originFlows.size === 0) this.originBusySince = now
      this.originFlows.add(flow)
      this.originWeight += flow.weight
      if (this.pooled) this.pool(flow)
    } else {
      this.up[src].add(flow)
      this.upWeight[src] += flow.weight
    }
    this.relink(src, dst, now)
    return flow
  }

  /** Ends a transfer early (cancelled, or an end vanished); counts the bytes it moved. */
  remove (flow, now) {
    if (!flow.live) return
    this.detach(flow, now)
  }

  detach (flow, now) {
    flow.live = false
    const down = this.down[flow.dst]
    down.delete(flow)
    this.downWeight[flow.dst] = down.size === 0 ? 0 : this.downWeight[flow.dst] - flow.weight
    let moved
    if (flow.src === ORIGIN) {
      this.advanceClock(now)
      this.originFlows.delete(flow)
      this.originWeight = this.originFlows.size === 0 ? 0 : this.originWeight - flow.weight
      if (this.originFlows.size === 0) this.originBusyMs += now - this.originBusySince
      moved = flow.pooled ? Math.min(flow.size, (this.V - flow.vStart) * flow.weight) : flow.size - this.remainingAt(flow, now)
      flow.pooledLive = false
      this.bytes.origin += moved
    } else {
      const up = this.up[flow.src]
      up.delete(flow)
      this.upWeight[flow.src] = up.size === 0 ? 0 : this.upWeight[flow.src] - flow.weight
      moved = flow.size - this.remainingAt(flow, now)
      this.bytes.peer += moved
    }
    this.relink(flow.src, flow.dst, now)
  }

  remainingAt (flow, now) {
    return Math.max(0, flow.remaining - flow.rate * (now - flow.last))
  }

  /** Recomputes the transfers on a sender's upload and a receiver's download. */
  relink (src, dst, now) {
    if (src === ORIGIN) {
      const k = this.originFlows.size
      if (!this.pooled && k >= this.poolHigh) this.enterPool(now)
      else if (this.pooled && k < this.poolLow) this.leavePool(now)
      if (this.pooled) this.scheduleOrigin(now)
      else for (const flow of this.originFlows) this.rerate(flow, now)
    } else {
      for (const flow of this.up[src]) this.rerate(flow, now)
    }
    for (const flow of this.down[dst]) this.rerate(flow, now)
  }

  rerate (flow, now) {
    if (flow.pooled) return
    const share = flow.src === ORIGIN ? this.originRate / this.originWeight : this.linkRate / this.upWeight[flow.src]
    const rate = flow.weight * Math.min(share, this.linkRate / this.downWeight[flow.dst])
    if (rate === flow.rate) return
    flow.remaining = this.remainingAt(flow, now)
    flow.last = now
    flow.rate = rate
    // a slower flow keeps its queued event, which finds it unfinished and queues the real end
    const due = now + flow.remaining / rate
    if (due < flow.due) {
      flow.due = due
      this.queue.push(due, { type: 'flow', flow, due })
    }
  }

  // Pooled origin transfers share one virtual clock V: a flow of weight w moves w bytes per unit
  // of V, and V advances at originRate / (sum of weights) per ms.

  advanceClock (now) {
    if (this.pooled && this.originWeight > 0) this.V += (now - this.vAt) * this.originRate / this.originWeight
    this.vAt = now
  }

  pool (flow) {
    flow.pooled = true
    flow.pooledLive = true
    flow.vStart = this.V - (flow.size - flow.remaining) / flow.weight
    flow.vEnd = this.V + flow.remaining / flow.weight
    flow.due = Infinity
    this.vHeap.push(flow)
  }

  enterPool (now) {
    this.advanceClock(now)
    this.pooled = true
    for (const flow of this.originFlows) {
      if (flow.pooled) continue
      flow.remaining = this.remainingAt(flow, now)
      flow.last = now
      this.pool(flow)
    }
  }

  leavePool (now) {
    this.advanceClock(now)
    this.pooled = false
    this.vHeap = new FlowHeap()
    for (const flow of this.originFlows) {
      flow.remaining = Math.max(0, (flow.vEnd - this.V) * flow.weight)
      flow.last = now
      flow.rate = 0
      flow.pooled = false
      flow.pooledLive = false
    }
    this.originVersion++
  }

  scheduleOrigin (now) {
    this.originVersion++
    const next = this.vHeap.peek()
    if (next === undefined) return
    const perWeight = this.originRate / this.originWeight
    this.queue.push(now + Math.max(0, next.vEnd - this.V) / perWeight, { type: 'origin', version: this.originVersion })
  }

  /** A queued event about a transfer ending: completes the ones really done. */
  handle (event, now) {
    if (event.type === 'flow') {
      const flow = event.flow
      if (!flow.live || flow.pooled || event.due !== flow.due) return
      const left = this.remainingAt(flow, now)
      if (left / flow.rate > 1e-6) {
        flow.due = now + left / flow.rate
        this.queue.push(flow.due, { type: 'flow', flow, due: flow.due })
        return
      }
      this.complete(flow, now)
      return
    }
    if (event.version !== this.originVersion || !this.pooled) return
    this.advanceClock(now)
    const done = []
    // due within a microsecond counts as due: rounding must not leave a flow a hair from its end
    const epsilon = 1e-3 * this.originRate / this.originWeight
    for (let next = this.vHeap.peek(); next !== undefined && next.vEnd - this.V <= epsilon; next = this.vHeap.peek()) {
      this.vHeap.pop()
      done.push(next)
    }
    for (const flow of done) if (flow.live) this.complete(flow, now)
    if (this.pooled) this.scheduleOrigin(now)
  }

  complete (flow, now) {
    // whole chunk: what rounding left of the last byte is not worth an event
    flow.remaining = 0
    flow.rate = 0
    if (flow.pooled) flow.vStart = this.V - flow.size / flow.weight
    this.detach(flow, now)
    this.onComplete(flow, now)
  }
}

// ---- one run ----

function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/**
 * One pull by `n` nodes at once. `churnAt`: when `churnShare` of them vanish; `lateAt`: when
 * `lateShare` × n extra nodes start (one more starts after everybody else finished).
 */
function simulate ({ n, seed, churnAt, lateAt, limitMs }) {
  const started = performance.now()
  const random = seededRandom(seed)
  const queue = new EventQueue()
  const linkRate = settings.linkMbit * Mbit * settings.efficiency
  const originRate = settings.originMbit * Mbit * settings.efficiency
  const maxDownloads = settings.schedulerInit.maxInflightTotal ?? DEFAULT_MAX_INFLIGHT_TOTAL
  const nodes = []
  const byId = new Map()
  const shared = settings.view === 'shared' ? pullerSet(chunks, []) : undefined
  const touched = new Set()
  let events = 0
  let allDoneAt
  let originAtDone // the origin's busy time and bytes sent when the last puller finished
  const counters = { busy: 0 }
  let pullingCount = 0

  const net = new Network({ queue, linkRate, originRate, maxDownloads, weight: weights(seededRandom(seed + 17), settings.fairnessSigma), onComplete: delivered })

  function addNode (kind, at) {
    const index = net.addNode()
    const node = {
      index,
      id: `12D3KooWsim${seed}n${String(index).padStart(6, '0')}`,
      kind,
      startAt: at,
      scheduler: undefined,
      neighbours: new Set(),
      holds: new Uint8Array(chunks.length),
      /** the chunk indices of `holds`, as announced to a peer that connects */
      held: [],
      requests: new Map(),
      pendingHaves: [],
      alive: true,
      pulling: true,
      finishedAt: undefined,
      failedAt: undefined,
      lastProgress: at + settings.settleMs,
      wakeAt: Infinity
    }
    nodes.push(node)
    byId.set(node.id, node)
    return node
  }

  function connect (a, b, now) {
    if (a === b || a.neighbours.has(b.index)) return
    a.neighbours.add(b.index)
    b.neighbours.add(a.index)
    for (const [x, y] of [[a, b], [b, a]]) {
      if (x.scheduler === undefined || !x.pulling) continue
      x.scheduler.peerJoined(y.id, now, { puller: settings.view === 'neighbours' && y.pulling })
      x.scheduler.peerHas(y.id, y.held, now)
      touched.add(x.index)
    }
  }

  /** Joins the graph: about `neighbours` / 2 links of its own, to random live nodes. */
  function link (node, candidates, now) {
    const want = Math.min(Math.ceil(settings.neighbours / 2), candidates.length - 1)
    let tries = 0
    while (node.neighbours.size < want && tries++ < want * 20) {
      const other = candidates[Math.floor(random() * candidates.length)]
      if (other.alive) connect(node, other, now)
    }
  }

  function startPull (node, now) {
    const flags = Array.from(node.holds, h => h === 1)
    const view = settings.view === 'neighbours'
      ? { pullers: [...node.neighbours].map(j => nodes[j]).filter(p => p.alive && p.pulling).map(p => p.id) }
      : { pullerSet: shared }
    node.scheduler = chunkScheduler({
      selfId: node.id,
      chunks,
      have: flags,
      random: seededRandom(seed * 100_003 + node.index),
      now,
      ...view,
      // as the agent's session sets it (agents/swarm/src/agent/session.ts): a peer's upload slots per peer
      maxInflightPerPeer: DEFAULT_MAX_UPLOADS_PER_PEER,
      // as the session sets it: every connected node may be about to pull
      expectedPullers: node.neighbours.size + 1,
      ...settings.schedulerInit
    })
    for (const j of node.neighbours) {
      const peer = nodes[j]
      if (!peer.alive) continue
      node.scheduler.peerJoined(peer.id, now)
      node.scheduler.peerHas(peer.id, peer.held, now)
    }
    touched.add(node.index)
  }

  /** A node begins its pull at `at`: it becomes a puller, and its scheduler runs after the settle time. */
  function join (node, at) {
    pullingCount++
    if (shared !== undefined) shared.add(node.id)
    else for (const j of node.neighbours) if (nodes[j].scheduler !== undefined && nodes[j].pulling) nodes[j].scheduler.pullerJoined(node.id, at)
    queue.push(at + settings.settleMs, { type: 'begin', node })
  }

  function stopPulling (node, now) {
    node.pulling = false
    pullingCount--
    if (shared !== undefined) shared.remove(node.id)
    else {
      for (const j of node.neighbours) {
        const peer = nodes[j]
        if (peer.scheduler !== undefined && peer.pulling && peer.alive) {
          peer.scheduler.pullerLeft(node.id, now)
          touched.add(j)
        }
      }
    }
  }

  function delivered (flow, now) {
    const { node, request } = flow.tag
    if (!node.alive) return
    node.requests.delete(request.id)
    const fresh = node.holds[request.chunk] === 0
    if (node.pulling) node.scheduler.chunkArrived(request.chunk, now, request.id)
    touched.add(node.index)
    if (!fresh) return
    node.holds[request.chunk] = 1
    node.held.push(request.chunk)
    node.lastProgress = now
    if (node.pendingHaves.length === 0) queue.push(now + HAVE_FLUSH_MS + settings.peerLatencyMs, { type: 'have', node })
    node.pendingHaves.push(request.chunk)
  }

  function requestFailed (node, request, now) {
    node.requests.delete(request.id)
    if (!node.pulling || !node.alive) return
    node.scheduler.requestFailed(request.id, now, 'error')
    touched.add(node.index)
  }

  function run (node, now) {
    if (!node.alive || !node.pulling) return
    const scheduler = node.scheduler
    const { start, cancel, wakeAt } = scheduler.tick(now)
    for (const request of cancel) {
      const entry = node.requests.get(request.id)
      node.requests.delete(request.id)
      if (entry?.flow !== undefined) net.remove(entry.flow, now)
    }
    for (const request of start) {
      node.requests.set(request.id, { request, flow: undefined })
      const latency = request.source.kind === 'origin' ? settings.originLatencyMs : settings.peerLatencyMs
      queue.push(now + latency, { type: 'open', node, request })
    }
    if (scheduler.done) {
      node.finishedAt = now
      for (const entry of node.requests.values()) if (entry.flow !== undefined) net.remove(entry.flow, now)
      node.requests.clear()
      stopPulling(node, now)
      if (allDoneAt === undefined && pullingCount === 0) {
        allDoneAt = now
        originAtDone = { busyMs: net.originBusyMs, bytes: net.bytes.origin }
      }
      return
    }
    if (now >= node.lastProgress + settings.stallMs) {
      node.failedAt = now
      for (const entry of node.requests.values()) if (entry.flow !== undefined) net.remove(entry.flow, now)
      node.requests.clear()
      stopPulling(node, now)
      return
    }
    const next = Math.min(wakeAt ?? Infinity, node.lastProgress + settings.stallMs)
    if (next < node.wakeAt || node.wakeAt <= now) {
      node.wakeAt = next
      queue.push(next, { type: 'wake', node })
    }
  }

  function open (node, request, now) {
    const entry = node.requests.get(request.id)
    if (entry === undefined || !node.alive) return
    if (request.source.kind === 'origin') {
      entry.flow = net.start(ORIGIN, node.index, request.size, { node, request }, now)
      return
    }
    const peer = byId.get(request.source.peerId)
    if (peer === undefined || !peer.alive || peer.holds[request.chunk] !== 1) {
      queue.push(now + settings.peerLatencyMs, { type: 'fail', node, request })
      return
    }
    if (net.uploads(peer.index) >= settings.uploadSlots) {
      counters.busy++
      queue.push(now + settings.peerLatencyMs, { type: 'fail', node, request })
      return
    }
    entry.flow = net.start(peer.index, node.index, request.size, { node, request }, now)
  }

  function vanish (node, now) {
    node.alive = false
    for (const entry of node.requests.values()) if (entry.flow !== undefined) net.remove(entry.flow, now)
    node.requests.clear()
    for (const flow of [...net.up[node.index]]) {
      net.remove(flow, now)
      queue.push(now, { type: 'fail', node: flow.tag.node, request: flow.tag.request })
    }
    if (node.pulling) stopPulling(node, now)
    node.pulling = false
    for (const j of node.neighbours) {
      const peer = nodes[j]
      peer.neighbours.delete(node.index)
      if (peer.alive && peer.scheduler !== undefined && peer.pulling) {
        peer.scheduler.peerLeft(node.id, now)
        touched.add(j)
      }
    }
  }

  // the fleet
  for (let i = 0; i < n; i++) addNode('initial', 0)
  for (const node of nodes) link(node, nodes, 0)
  // pulls released together reach their sessions over a spread (resolving the name and the
  // manifest at the origin takes each node its own time): the puller set fills up meanwhile
  const spreadRandom = seededRandom(seed + 29)
  for (const node of nodes) join(node, settings.startSpreadMs > 0 ? spreadRandom() * settings.startSpreadMs : 0)
  if (churnAt !== undefined) queue.push(churnAt, { type: 'churn' })
  let lateCount = 0
  if (lateAt !== undefined) {
    lateCount = Math.max(1, Math.round(settings.lateShare * n))
    queue.push(lateAt, { type: 'late' })
  }
  let afterAll // the node that starts once all others finished
  let lateDone = lateAt === undefined
  const joinersPending = () => !lateDone || (lateAt !== undefined && afterAll === undefined)

  const byType = {}
  let now = 0
  let traceAt = 0
  for (;;) {
    if (process.env.SIM_TRACE != null && now >= traceAt) {
      traceAt = now + Number(process.env.SIM_TRACE)
      const st = nodes.filter(p => p.scheduler !== undefined).map(p => p.scheduler.stats)
      const tot = k => st.reduce((a, x) => a + x[k], 0)
      let peerFlows = 0
      for (const set of net.up) peerFlows += set.size
      note(`t=${s(now)} origin flows ${net.originFlows.size} peer flows ${peerFlows} done ${tot('chunksDone')} inflight ${tot('inflight')} timeouts ${tot('timeouts')} failures ${tot('failures')} busy ${counters.busy} dup ${tot('duplicateRequests')} originReq ${tot('originRequests')} peerReq ${tot('peerRequests')} finished ${nodes.filter(p => p.finishedAt !== undefined).length} failed ${nodes.filter(p => p.failedAt !== undefined).length} originMB ${fmt(net.bytes.origin / 1e6, 0)} peerMB ${fmt(net.bytes.peer / 1e6, 0)}`)
    }
    for (const i of touched) run(nodes[i], now)
    touched.clear()
    if (lateAt !== undefined && afterAll === undefined && allDoneAt !== undefined && now >= lateAt) {
      afterAll = addNode('after', now)
      link(afterAll, nodes.filter(p => p.alive && p !== afterAll), now)
      join(afterAll, now)
    }
    // everybody done and nobody left to come: what is queued (wake-ups) changes nothing
    if (pullingCount === 0 && !joinersPending()) break
    const next = queue.peekTime()
    if (next === undefined || next > limitMs) break
    now = next
    while (queue.size > 0 && queue.peekTime() === now) {
      const event = queue.pop()
      events++
      if (process.env.SIM_TRACE != null) {
        byType[event.type] = (byType[event.type] ?? 0) + 1
        if (event.type === 'flow' && (!event.flow.live || event.due !== event.flow.due)) byType.staleFlow = (byType.staleFlow ?? 0) + 1
      }
      switch (event.type) {
        case 'flow':
        case 'origin':
          net.handle(event, now)
          break
        case 'open':
          open(event.node, event.request, now)
          break
        case 'fail':
          if (event.node.requests.has(event.request.id)) requestFailed(event.node, event.request, now)
          break
        case 'wake':
          if (event.node.wakeAt === now) event.node.wakeAt = Infinity
          touched.add(event.node.index)
          break
        case 'have': {
          const node = event.node
          const indices = node.pendingHaves
          node.pendingHaves = []
          if (!node.alive) break
          for (const j of node.neighbours) {
            const peer = nodes[j]
            if (!peer.alive || peer.scheduler === undefined || !peer.pulling) continue
            peer.scheduler.peerHas(node.id, indices, now)
            touched.add(j)
          }
          break
        }
        case 'begin':
          if (event.node.alive) startPull(event.node, now)
          break
        case 'churn': {
          const pullingNow = nodes.filter(p => p.kind === 'initial' && p.alive && p.pulling)
          const count = Math.round(settings.churnShare * n)
          for (let k = 0; k < count && pullingNow.length > 0; k++) {
            const pick = Math.floor(random() * pullingNow.length)
            const node = pullingNow[pick]
            pullingNow[pick] = pullingNow[pullingNow.length - 1]
            pullingNow.pop()
            node.leftAt = now
            vanish(node, now)
          }
          break
        }
        case 'late': {
          lateDone = true
          for (let k = 0; k < lateCount; k++) {
            const node = addNode('late', now)
            link(node, nodes.filter(p => p.alive && p !== node), now)
            join(node, now)
          }
          break
        }
      }
    }
  }

  if (process.env.SIM_TRACE != null) note(`events by kind ${JSON.stringify(byType)}, busy ${counters.busy}`)
  const summary = kind => {
    const group = nodes.filter(p => p.kind === kind && p.leftAt === undefined)
    const times = group.filter(p => p.finishedAt !== undefined).map(p => p.finishedAt - p.startAt).sort((a, b) => a - b)
    return {
      nodes: group.length,
      finished: times.length,
      failed: group.filter(p => p.failedAt !== undefined).length,
      p50Ms: percentile(times, 50),
      p99Ms: percentile(times, 99),
      maxMs: times.length > 0 ? times[times.length - 1] : NaN
    }
  }
  const stats = nodes.filter(p => p.scheduler !== undefined).map(p => p.scheduler.stats)
  const sum = key => stats.reduce((acc, s) => acc + s[key], 0)
  return {
    n,
    initial: summary('initial'),
    late: lateAt !== undefined ? summary('late') : undefined,
    after: lateAt !== undefined ? summary('after') : undefined,
    left: nodes.filter(p => p.leftAt !== undefined).length,
    originBytes: net.bytes.origin,
    peerBytes: net.bytes.peer,
    bytesFromOrigin: sum('bytesFromOrigin'),
    bytesFromPeers: sum('bytesFromPeers'),
    originRequests: sum('originRequests'),
    peerRequests: sum('peerRequests'),
    duplicateRequests: sum('duplicateRequests'),
    timeouts: sum('timeouts'),
    failures: sum('failures'),
    busy: counters.busy,
    events,
    wallSeconds: (performance.now() - started) / 1000,
    endedAtMs: now,
    // until the last puller finished: the share of time the origin sent anything, and the share of its capacity used
    originBusyShare: originAtDone !== undefined ? originAtDone.busyMs / Math.max(1, allDoneAt) : NaN,
    originUseShare: originAtDone !== undefined ? originAtDone.bytes / (originRate * Math.max(1, allDoneAt)) : NaN
  }
}

/** Every node straight from the origin, `concurrency` chunks at a time. */
function baseline ({ n, limitMs }) {
  const queue = new EventQueue()
  const linkRate = settings.linkMbit * Mbit * settings.efficiency
  const originRate = settings.originMbit * Mbit * settings.efficiency
  const concurrency = settings.baselineConcurrency
  const nodes = []
  const net = new Network({
    queue,
    linkRate,
    originRate,
    maxDownloads: concurrency,
    weight: weights(seededRandom(settings.seed + n), settings.fairnessSigma),
    onComplete: (flow, now) => {
      const node = flow.tag
      node.left--
      if (node.next < chunks.length) open(node, now)
      else if (node.left === 0) node.finishedAt = now
    }
  })
  function open (node, now) {
    const chunk = chunks[node.next++]
    queue.push(now + settings.originLatencyMs, { type: 'open', node, size: chunk.size })
  }
  for (let i = 0; i < n; i++) {
    const node = { index: net.addNode(), next: 0, left: chunks.length, finishedAt: undefined }
    nodes.push(node)
    for (let k = 0; k < concurrency && node.next < chunks.length; k++) open(node, 0)
  }
  let now = 0
  while (queue.size > 0 && queue.peekTime() <= limitMs) {
    now = queue.peekTime()
    const event = queue.pop()
    if (event.type === 'open') net.start(ORIGIN, event.node.index, event.size, event.node, now)
    else net.handle(event, now)
  }
  const times = nodes.filter(p => p.finishedAt !== undefined).map(p => p.finishedAt).sort((a, b) => a - b)
  return { finished: times.length, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times.at(-1) ?? NaN, originBytes: net.bytes.origin }
}

// ---- the runs ----

const s = ms => fmt(ms / 1000, 1)
const row = cells => '| ' + cells.join(' | ') + ' |'
const results = []
const out = []
const note = line => { process.stderr.write(line + '\n') }

note(`sim: ${fmt(modelBytes / MiB, 1)} MiB in ${chunks.length} chunks, links ${settings.linkMbit} Mbit/s, origin ${settings.originMbit} Mbit/s, ` +
  `~${settings.neighbours} neighbours, ${settings.view} view of the pullers, scheduler ${JSON.stringify(settings.schedulerInit)}`)

for (const n of settings.sizes) {
  const tStar = lowerBound(n)
  const limitMs = settings.limitS !== undefined ? settings.limitS * 1000 : Math.max(20 * tStar, 300_000)
  const base = baseline({ n, limitMs: Math.max(limitMs, 4 * n * modelBytes / (settings.originMbit * Mbit)) })
  const entry = { n, tStarMs: tStar, baseline: base, runs: {} }
  results.push(entry)
  note(`N=${n}: T* ${s(tStar)} s; baseline p99 ${s(base.p99Ms)} s`)
  let undisturbed
  for (const scenario of settings.scenarios) {
    const seed = settings.seed * 7919 + n
    // mid-pull: half the undisturbed run's median (T* when that run had no median)
    const reference = Number.isFinite(undisturbed?.initial.p50Ms) ? undisturbed.initial.p50Ms : tStar
    const run = simulate({
      n,
      seed,
      limitMs,
      churnAt: scenario === 'churn' ? settings.settleMs + reference / 2 : undefined,
      lateAt: scenario === 'late' ? settings.settleMs + reference / 2 : undefined
    })
    if (scenario === 'base') undisturbed = run
    entry.runs[scenario] = run
    note(`  ${scenario}: p50 ${s(run.initial.p50Ms)} s, p99 ${s(run.initial.p99Ms)} s, ${run.initial.finished}/${run.initial.nodes} finished, ` +
      `origin ${fmt(run.originBytes / modelBytes, 2)} × M, origin link busy ${fmt(100 * run.originBusyShare, 0)} % / used ${fmt(100 * run.originUseShare, 0)} % until the last finished, ${run.events} events in ${fmt(run.wallSeconds, 1)} s`)
  }
}

out.push(`Simulated fan-out: ${fmt(modelBytes / MiB, 0)} MiB model in ${chunks.length} chunks, per-node links ${settings.linkMbit} Mbit/s up and down, origin ${settings.originMbit} Mbit/s, ` +
  `~${settings.neighbours} neighbours per node, ${settings.view} view of the pullers${Object.keys(settings.schedulerInit).length > 0 ? `, scheduler ${JSON.stringify(settings.schedulerInit)}` : ''}.`)
out.push('')
out.push(row(['N', 'run', 'p50 s', 'p99 s', 'max s', 'T* s', 'p99 / T*', 'origin egress / M', 'peer share', 'finished']))
out.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']))
for (const entry of results) {
  const t = entry.tStarMs
  const b = entry.baseline
  out.push(row([entry.n, 'baseline (all from origin)', s(b.p50Ms), s(b.p99Ms), s(b.maxMs), s(t), fmt(b.p99Ms / t, 2), fmt(b.originBytes / modelBytes, 2), '0', `${b.finished}/${entry.n}`]))
  for (const [scenario, run] of Object.entries(entry.runs)) {
    // the time churn and late joiners came, as chosen above
    const eventAt = settings.settleMs + (Number.isFinite(entry.runs.base?.initial.p50Ms) ? entry.runs.base.initial.p50Ms : t) / 2
    const label = { base: 'swarm', churn: `swarm, ${run.left} leave at ${s(eventAt)} s`, late: 'swarm, late joiners' }[scenario]
    const i = run.initial
    const peerShare = run.peerBytes / Math.max(1, run.peerBytes + run.originBytes)
    out.push(row([entry.n, label, s(i.p50Ms), s(i.p99Ms), s(i.maxMs), s(t), fmt(i.p99Ms / t, 2), fmt(run.originBytes / modelBytes, 2), fmt(peerShare, 3), `${i.finished}/${i.nodes}`]))
    if (scenario === 'late') {
      for (const [kind, what] of [['late', `${run.late.nodes} joining at ${s(eventAt)} s`], ['after', '1 joining after all finished']]) {
        const g = run[kind]
        out.push(row([entry.n, `… ${what}`, s(g.p50Ms), s(g.p99Ms), s(g.maxMs), s(modelBytes / (settings.linkMbit * Mbit)), fmt(g.p99Ms / (modelBytes / (settings.linkMbit * Mbit)), 2), '', '', `${g.finished}/${g.nodes}`]))
      }
    }
  }
}
if (measured != null) {
  const both = results.filter(r => measured.results?.some(m => m.n === r.n && m.swarm != null) && r.runs.base != null)
  if (both.length > 0) {
    out.push('')
    out.push(`Against the measured fan-out (${settings.chunksFrom}), same model, links and origin:`)
    out.push('')
    out.push(row(['N', 'run', 'measured p50 s', 'simulated p50 s', 'measured p99 s', 'simulated p99 s', 'measured origin / M', 'simulated origin / M']))
    out.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:']))
    for (const r of both) {
      const real = measured.results.find(m => m.n === r.n)
      const sim = r.runs.base
      const capped = real.swarm.capped ? '≥ ' : ''
      out.push(row([r.n, 'swarm', capped + s(real.swarm.p50Ms), s(sim.initial.p50Ms), capped + s(real.swarm.p99Ms), s(sim.initial.p99Ms), fmt(real.swarm.originWireBytes * settings.efficiency / modelBytes, 2), fmt(sim.originBytes / modelBytes, 2)]))
      if (real.baseline != null) {
        out.push(row([r.n, 'baseline', s(real.baseline.p50Ms), s(r.baseline.p50Ms), s(real.baseline.p99Ms), s(r.baseline.p99Ms), fmt(real.baseline.originWireBytes * settings.efficiency / modelBytes, 2), fmt(r.baseline.originBytes / modelBytes, 2)]))
      }
    }
    out.push('')
    out.push('Origin / M here counts every byte the origin sent, also of transfers cancelled half-way (measured: wire bytes × 1448/1514).')
  }
}
console.log(out.join('\n'))
const file = await saveResult(settings.name, { settings: { ...settings, modelBytes, chunks: chunks.length }, results })
console.log(`\nresults: ${file}`)
