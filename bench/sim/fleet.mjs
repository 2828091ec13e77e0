// bench/sim's core: a discrete-event simulation of a fleet pulling one model at once, in virtual
// time, in which every node runs the agent's own pull engine (`@swarm/pull`'s PullSession, built)
// over a simulated network: the session, its scheduler and its handling of peers' events are the
// engine's, not a copy. `run.mjs` reads the settings and prints the figures; the engine's tests
// (packages/pull/test/simulation.test.ts) run a small fleet through this module, so the simulator
// cannot drift from the engine.
//
// How a node is driven: the session gets a virtual-time clock (its timers are events here), the
// node's neighbours as its peers (joins, haves, hang-ups as peer events; its haves go out to the
// neighbours after the control channel's coalescing), a source per neighbour and the origin, and a
// fetcher whose fetches are transfers on the simulated links. Promises settle between event
// times: after the events of one instant the loop waits for every microtask to run, so what the
// sessions do in answer (new requests, timers) lands in the queue before virtual time moves on.
// See run.mjs for what the network models.

import { PullSession } from '@swarm/pull'
import { encodeBitfield } from '@swarm/interface'
import { DEFAULT_MAX_INFLIGHT_TOTAL, pullerSet, seededRandom } from '@swarm/scheduler'
import { DEFAULT_MAX_UPLOADS_PER_PEER } from '@swarm/exchange'

/** bytes per ms in one Mbit/s */
export const Mbit = 1e6 / 8 / 1000
/** the control channel's coalescing of haves */
export const HAVE_FLUSH_MS = 20

/** The settings a run takes when none are given (run.mjs reads them from the environment). */
export const DEFAULT_SETTINGS = {
  linkMbit: 50,
  originMbit: 50,
  efficiency: 1448 / 1514,
  neighbours: 40,
  view: 'shared',
  peerLatencyMs: 1,
  originLatencyMs: 20,
  settleMs: 500,
  startSpreadMs: 0,
  stallMs: 120_000,
  uploadSlots: 8,
  baselineConcurrency: 16,
  churnShare: 0.1,
  lateShare: 0.1,
  seed: 1,
  fairnessSigma: 0.5,
  schedulerInit: {}
}

/** The lower bound no system beats, in ms (nominal rates). */
export function lowerBound (n, modelBytes, settings) {
  const B = settings.linkMbit * Mbit
  const S = settings.originMbit * Mbit
  return Math.max(modelBytes / S, modelBytes / B, n * modelBytes / (S + n * B))
}

// ---- events ----

export class EventQueue {
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
export class Network {
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

export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/**
 * One pull by `n` nodes at once. `churnAt`: when `churnShare` of them vanish; `lateAt`: when
 * `lateShare` × n extra nodes start (one more starts after everybody else finished).
 * `chunks`: the model's unique chunks; `settings`: as DEFAULT_SETTINGS; `onSession`: each node's
 * PullSession as it starts; `note`: a line of trace (SIM_TRACE).
 */
export async function simulate ({ chunks, settings: given = {}, n, seed, churnAt, lateAt, limitMs, trace, note = () => {}, onSession }) {
  const settings = { ...DEFAULT_SETTINGS, ...given }
  const started = performance.now()
  const random = seededRandom(seed)
  const queue = new EventQueue()
  const linkRate = settings.linkMbit * Mbit * settings.efficiency
  const originRate = settings.originMbit * Mbit * settings.efficiency
  const maxDownloads = settings.schedulerInit.maxInflightTotal ?? DEFAULT_MAX_INFLIGHT_TOTAL
  const nodes = []
  const byId = new Map()
  const shared = settings.view === 'shared' ? pullerSet(chunks, []) : undefined
  const indexOf = new Map(chunks.map((c, i) => [c.cid, i]))
  const manifestCid = `sim-${seed}`
  let offset = 0
  const manifest = { version: 1, chunkSize: Math.max(...chunks.map(c => c.size)), files: [{ path: 'model.bin', size: chunks.reduce((sum, c) => sum + c.size, 0), mode: 0o644, chunks: chunks.map(c => { const ref = { cid: c.cid, offset, size: c.size }; offset += c.size; return ref }) }] }
  let events = 0
  let allDoneAt
  const counters = { busy: 0 }
  let pullingCount = 0
  let now = 0
  let ended = false

  const net = new Network({ queue, linkRate, originRate, maxDownloads, weight: weights(seededRandom(seed + 17), settings.fairnessSigma), onComplete: delivered })

  // virtual time for the sessions: their timers are events in the queue
  const clock = {
    now: () => now,
    setTimer (ms, fn) {
      const timer = { fn, cancelled: false }
      queue.push(now + Math.max(0, ms), { type: 'timer', timer })
      return timer
    },
    clearTimer (timer) { if (timer != null) timer.cancelled = true }
  }

  function addNode (kind, at) {
    const index = net.addNode()
    const node = {
      index,
      id: `12D3KooWsim${seed}n${String(index).padStart(6, '0')}`,
      kind,
      startAt: at,
      session: undefined,
      events: undefined,
      stop: new AbortController(),
      neighbours: new Set(),
      holds: new Uint8Array(chunks.length),
      /** the chunk indices of `holds`, as announced to a peer that connects */
      held: [],
      pendingHaves: [],
      alive: true,
      pulling: true,
      finishedAt: undefined,
      failedAt: undefined,
      progress: undefined
    }
    nodes.push(node)
    byId.set(node.id, node)
    return node
  }

  const peerState = peer => ({ peerId: peer.id, pulling: peer.pulling, bitfield: encodeBitfield(peer.holds) })

  function connect (a, b) {
    if (a === b || a.neighbours.has(b.index)) return
    a.neighbours.add(b.index)
    b.neighbours.add(a.index)
    for (const [x, y] of [[a, b], [b, a]]) {
      if (x.events !== undefined && x.pulling) x.events.joined(peerState(y))
    }
  }

  /** Joins the graph: about `neighbours` / 2 links of its own, to random live nodes. */
  function link (node, candidates) {
    const want = Math.min(Math.ceil(settings.neighbours / 2), candidates.length - 1)
    let tries = 0
    while (node.neighbours.size < want && tries++ < want * 20) {
      const other = candidates[Math.floor(random() * candidates.length)]
      if (other.alive) connect(node, other)
    }
  }

  /** A node's neighbours as the session's peers. */
  function peersOf (node) {
    return {
      selfId: node.id,
      peers: () => [...node.neighbours].map(j => nodes[j]).filter(p => p.alive).map(peerState),
      connectedCount: () => node.neighbours.size,
      isBanned: () => false,
      join () {},
      have (indices) {
        if (node.pendingHaves.length === 0) queue.push(now + HAVE_FLUSH_MS + settings.peerLatencyMs, { type: 'have', node })
        node.pendingHaves.push(...indices)
      },
      subscribe (events) {
        node.events = events
        return () => { node.events = undefined }
      }
    }
  }

  /** Fetches as transfers: opened after a latency, ended by the network, failed when the peer cannot serve. */
  function fetcherOf (node) {
    return {
      fetch (request, { sources, signal }) {
        const source = sources[0]
        return new Promise((resolve, reject) => {
          const transfer = { node, chunk: indexOf.get(request.cid), size: request.size, source, flow: undefined, resolve, reject, done: false }
          transfer.abort = () => {
            if (transfer.done) return
            transfer.done = true
            if (transfer.flow !== undefined) net.remove(transfer.flow, now)
            reject(signal.reason)
          }
          signal.addEventListener('abort', transfer.abort, { once: true })
          transfer.settle = () => { signal.removeEventListener('abort', transfer.abort) }
          const latency = source.kind === 'origin' ? settings.originLatencyMs : settings.peerLatencyMs
          queue.push(now + latency, { type: 'open', transfer })
        })
      }
    }
  }

  function sourcesOf () {
    return {
      origin: { name: 'origin', kind: 'origin', fetch: () => { throw new Error('the simulator fetches') } },
      peer: peerId => byId.has(peerId) ? { name: `peer:${peerId}`, kind: 'peer', peerId, fetch: () => { throw new Error('the simulator fetches') } } : undefined
    }
  }

  function fail (transfer, why) {
    if (transfer.done) return
    transfer.done = true
    transfer.settle()
    transfer.reject(new Error(why))
  }

  function startPull (node) {
    const view = settings.view === 'neighbours'
      ? { pullers: [...node.neighbours].map(j => nodes[j]).filter(p => p.alive && p.pulling).map(p => p.id) }
      : { pullerSet: shared }
    const store = { hasChunk: cid => node.holds[indexOf.get(cid)] === 1 }
    node.session = new PullSession({
      manifestCid,
      manifest,
      store,
      fetcher: fetcherOf(node),
      sources: sourcesOf(),
      peers: peersOf(node),
      clock,
      settleMs: settings.settleMs,
      stallTimeoutMs: settings.stallMs,
      // a pull wakes for its scheduler's deadlines and its stall limit, not to poll
      pollMs: Infinity,
      // as the agent sets it: a peer's upload slots per peer
      maxInflightPerPeer: DEFAULT_MAX_UPLOADS_PER_PEER,
      scheduler: { ...view, ...settings.schedulerInit }
    })
    onSession?.(node.session)
    node.session.run({ signal: node.stop.signal, onProgress: progress => { node.progress = progress } }).then(() => {
      node.finishedAt = now
      stopPulling(node)
      if (allDoneAt === undefined && pullingCount === 0) allDoneAt = now
    }, () => {
      if (ended) return
      if (node.alive) node.failedAt = now
      if (node.pulling) stopPulling(node)
    })
  }

  /** A node begins its pull at `at`: it becomes a puller, and its session runs after the settle time. */
  function join (node, at) {
    pullingCount++
    if (shared !== undefined) shared.add(node.id)
    else for (const j of node.neighbours) if (nodes[j].events !== undefined && nodes[j].pulling) nodes[j].events.joined(peerState(node))
    queue.push(at + settings.settleMs, { type: 'begin', node })
  }

  function stopPulling (node) {
    node.pulling = false
    pullingCount--
    if (shared !== undefined) shared.remove(node.id)
    else {
      for (const j of node.neighbours) {
        const peer = nodes[j]
        if (peer.events !== undefined && peer.pulling && peer.alive) peer.events.joined(peerState(node))
      }
    }
  }

  function delivered (flow) {
    const transfer = flow.tag
    const node = transfer.node
    if (!node.alive || transfer.done) return
    if (node.holds[transfer.chunk] === 0) {
      node.holds[transfer.chunk] = 1
      node.held.push(transfer.chunk)
    }
    transfer.done = true
    transfer.settle()
    transfer.resolve({ kind: transfer.source.kind })
  }

  function open (transfer) {
    const node = transfer.node
    if (transfer.done || !node.alive) return
    if (transfer.source.kind === 'origin') {
      transfer.flow = net.start(ORIGIN, node.index, transfer.size, transfer, now)
      return
    }
    const peer = byId.get(transfer.source.peerId)
    if (peer === undefined || !peer.alive || peer.holds[transfer.chunk] !== 1) {
      queue.push(now + settings.peerLatencyMs, { type: 'fail', transfer, why: 'not held' })
      return
    }
    if (net.uploads(peer.index) >= settings.uploadSlots) {
      counters.busy++
      queue.push(now + settings.peerLatencyMs, { type: 'fail', transfer, why: 'busy' })
      return
    }
    transfer.flow = net.start(peer.index, node.index, transfer.size, transfer, now)
  }

  function vanish (node) {
    node.alive = false
    for (const flow of [...net.up[node.index]]) {
      net.remove(flow, now)
      queue.push(now, { type: 'fail', transfer: flow.tag, why: 'connection reset' })
    }
    if (node.pulling) stopPulling(node)
    node.stop.abort(new Error('vanished'))
    for (const j of node.neighbours) {
      const peer = nodes[j]
      peer.neighbours.delete(node.index)
      if (peer.alive && peer.events !== undefined && peer.pulling) peer.events.left(node.id, 'disconnected')
    }
  }

  // the fleet
  for (let i = 0; i < n; i++) addNode('initial', 0)
  for (const node of nodes) link(node, nodes)
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
  // every microtask runs before a macrotask: the sessions' answers to one instant's events
  const settle = async () => { await new Promise(resolve => setImmediate(resolve)) }

  const byType = {}
  let traceAt = 0
  for (;;) {
    await settle()
    if (trace != null && now >= traceAt) {
      traceAt = now + trace
      const st = nodes.filter(p => p.session?.stats !== undefined).map(p => p.session.stats)
      const tot = k => st.reduce((a, x) => a + x[k], 0)
      let peerFlows = 0
      for (const set of net.up) peerFlows += set.size
      note(`t=${(now / 1000).toFixed(1)} origin flows ${net.originFlows.size} peer flows ${peerFlows} done ${tot('chunksDone')} inflight ${tot('inflight')} timeouts ${tot('timeouts')} failures ${tot('failures')} busy ${counters.busy} dup ${tot('duplicateRequests')} originReq ${tot('originRequests')} peerReq ${tot('peerRequests')} finished ${nodes.filter(p => p.finishedAt !== undefined).length} failed ${nodes.filter(p => p.failedAt !== undefined).length} originMB ${(net.bytes.origin / 1e6).toFixed(0)} peerMB ${(net.bytes.peer / 1e6).toFixed(0)}`)
    }
    if (lateAt !== undefined && afterAll === undefined && allDoneAt !== undefined && now >= lateAt) {
      afterAll = addNode('after', now)
      link(afterAll, nodes.filter(p => p.alive && p !== afterAll))
      join(afterAll, now)
    }
    // everybody done and nobody left to come: what is queued (timers) changes nothing
    if (pullingCount === 0 && !joinersPending()) break
    const next = queue.peekTime()
    if (next === undefined || next > limitMs) break
    now = next
    while (queue.size > 0 && queue.peekTime() === now) {
      const event = queue.pop()
      events++
      if (trace != null) {
        byType[event.type] = (byType[event.type] ?? 0) + 1
        if (event.type === 'flow' && (!event.flow.live || event.due !== event.flow.due)) byType.staleFlow = (byType.staleFlow ?? 0) + 1
      }
      switch (event.type) {
        case 'flow':
        case 'origin':
          net.handle(event, now)
          break
        case 'open':
          open(event.transfer)
          break
        case 'fail':
          fail(event.transfer, event.why)
          break
        case 'timer':
          if (!event.timer.cancelled) event.timer.fn()
          break
        case 'have': {
          const node = event.node
          const indices = node.pendingHaves
          node.pendingHaves = []
          if (!node.alive) break
          for (const j of node.neighbours) {
            const peer = nodes[j]
            if (peer.alive && peer.events !== undefined && peer.pulling) peer.events.have(node.id, indices)
          }
          break
        }
        case 'begin':
          if (event.node.alive) startPull(event.node)
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
            vanish(node)
          }
          break
        }
        case 'late': {
          lateDone = true
          for (let k = 0; k < lateCount; k++) {
            const node = addNode('late', now)
            link(node, nodes.filter(p => p.alive && p !== node))
            join(node, now)
          }
          break
        }
      }
    }
  }
  // what is still pulling at the limit stops, so nothing waits on a virtual clock that has stopped
  ended = true
  for (const node of nodes) if (node.session !== undefined && !node.session.finished) node.stop.abort(new Error('the simulation ended'))
  await settle()

  if (trace != null) note(`events by kind ${JSON.stringify(byType)}, busy ${counters.busy}`)
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
  const stats = nodes.filter(p => p.session?.stats !== undefined).map(p => p.session.stats)
  const sum = key => stats.reduce((acc, s) => acc + s[key], 0)
  const progressSum = kind => nodes.reduce((acc, p) => acc + (p.progress?.bytesBySource[kind] ?? 0), 0)
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
    /** what the sessions counted as arrived, by source */
    sessionBytes: { origin: progressSum('origin'), peer: progressSum('peer') },
    originRequests: sum('originRequests'),
    peerRequests: sum('peerRequests'),
    duplicateRequests: sum('duplicateRequests'),
    timeouts: sum('timeouts'),
    failures: sum('failures'),
    busy: counters.busy,
    events,
    wallSeconds: (performance.now() - started) / 1000,
    endedAtMs: now
  }
}

/** Every node straight from the origin, `concurrency` chunks at a time. */
export function baseline ({ chunks, settings: given = {}, n, limitMs }) {
  const settings = { ...DEFAULT_SETTINGS, ...given }
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
