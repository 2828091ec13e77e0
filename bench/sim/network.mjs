// bench/sim's network model, shared by the systems it compares (the agent's engine in `fleet.mjs`,
// the BitTorrent policy in `bittorrent.mjs`): virtual time, links with weighted shares, the
// origin's link, per-node latency and receive CPU, and the random graph of neighbours. Both
// systems run on this one model, so a difference between them is the policy's, not the network's.
// See run.mjs for what the model covers and leaves out.

/** bytes per ms in one Mbit/s */
export const Mbit = 1e6 / 8 / 1000
/** The settings a run takes when none are given (run.mjs reads them from the environment). */
export const DEFAULT_SETTINGS = {
  linkMbit: 50,
  originMbit: 50,
  efficiency: 1448 / 1514,
  neighbours: 40,
  /** who knows which pullers: 'partial' (neighbours, and gossip with a delay and a bound), 'shared' or 'neighbours' */
  view: 'partial',
  peerLatencyMs: 1,
  originLatencyMs: 20,
  settleMs: 500,
  startSpreadMs: 0,
  stallMs: 120_000,
  uploadSlots: 8,
  /** relays a node's data server runs beside its upload slots (`maxRelays`) */
  relaySlots: 8,
  /** uploads at once follow how long they take to land, as an agent's data server (`uploadLandingMs`); 0: always `uploadSlots` */
  uploadLandingMs: 1_000,
  baselineConcurrency: 16,
  churnShare: 0.1,
  lateShare: 0.1,
  seed: 1,
  fairnessSigma: 0.5,
  schedulerInit: {},
  /** median round trip per peer link (ms); undefined: every peer link takes `peerLatencyMs` */
  latencyMs: undefined,
  latencySigma: 0.5,
  /** receive CPU (CPU-seconds per GB) and cores per node; undefined: no CPU limit */
  cpuSPerGB: undefined,
  cores: 1,
  /** fleet gossip: a puller's state reaches others this long after it changes, each node takes in at most `gossipPerInterval` new pullers per `gossipIntervalMs` */
  gossipDelayMs: 1_000,
  gossipIntervalMs: 1_000,
  gossipPerInterval: 100,
  /** a peer's answer to a request cancelled after it began: 'finish' (sent whole, as the data server does) or 'stop' */
  cancelledPeerAnswers: 'finish',
  /**
   * relaying a chunk while it arrives, as an agent does with a version 3 manifest (see fleet.mjs):
   * the engine announces what it begins receiving and withdraws what does not come, and a node
   * serves a chunk it is receiving at most as fast as it arrives
   */
  cutThrough: true
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
  // sifts move a hole rather than swap pairs: a third of the writes, and this is the hottest loop
  /** `seq`: one taken earlier with `takeSeq`, for an event that stands for one not queued then */
  push (time, item, seq = this.seq++) {
    const { times, seqs, items } = this
    let i = items.length
    times.push(time); seqs.push(seq); items.push(item)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (times[p] < time || (times[p] === time && seqs[p] < seq)) break
      times[i] = times[p]; seqs[i] = seqs[p]; items[i] = items[p]
      i = p
    }
    times[i] = time; seqs[i] = seq; items[i] = item
  }
  /** the order an event queued now would have among events of its time */
  takeSeq () { return this.seq++ }
  peekTime () { return this.items.length > 0 ? this.times[0] : undefined }
  pop () {
    const { times, seqs, items } = this
    const top = items[0]
    const time = times.pop()
    const seq = seqs.pop()
    const item = items.pop()
    const size = items.length
    if (size === 0) return top
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= size) break
      const r = l + 1
      const m = r < size && (times[r] < times[l] || (times[r] === times[l] && seqs[r] < seqs[l])) ? r : l
      if (time < times[m] || (time === times[m] && seq < seqs[m])) break
      times[i] = times[m]; seqs[i] = seqs[m]; items[i] = items[m]
      i = m
    }
    times[i] = time; seqs[i] = seq; items[i] = item
    return top
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

/** the origin's end of a transfer */
export const ORIGIN = -1
// flow weights are log-normal, clipped to this range
const MIN_WEIGHT = 0.25
const MAX_WEIGHT = 4
/** A relay this close behind its upstream counts as caught up (rounding in the rates must not start another catch-up). */
const CAUGHT_UP_BYTES = 64

/** Draws flow weights: log-normal with `sigma` (0: all equal), from a seeded PRNG. */
export function weights (random, sigma) {
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
  constructor ({ queue, linkRate, downRate = linkRate, originRate, maxDownloads, weight, onComplete, onUpstreamLost = () => {} }) {
    this.queue = queue
    this.onUpstreamLost = onUpstreamLost
    this.linkRate = linkRate
    this.downRate = downRate
    this.originRate = originRate
    this.weight = weight
    this.onComplete = onComplete
    // per node: its flows, in the order they started (arrays: the rate loops walk them at every change)
    this.up = []
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
    // time the origin's link carried at least one transfer
    this.originBusyMs = 0
    this.originBusySince = 0
    this.nextId = 1
    /** transfers ever started as relays: until one is, links share by weight alone */
    this.relays = 0
    /** while a rate change works through the relays it moves: the transfers to look at, in order (see `rerate`) */
    this.cascade = undefined
    /** the running cascade's number: a flow marked with it is queued (`queuedIn`) or done (`ratedIn`) */
    this.cascadeId = 0
  }

  addNode () {
    this.up.push([])
    this.down.push([])
    this.upWeight.push(0)
    this.downWeight.push(0)
    return this.up.length - 1
  }

  uploads (node) { return this.up[node].length }

  /**
   * A transfer of `size` bytes. `upstream`: a live transfer into `src` of the same bytes, which
   * this one relays as they arrive: while it is behind the upstream it sends what has landed
   * there at its own share (as the data server sends every checked block at once), and once it
   * has caught up it is never faster than the upstream; when the upstream completes this one
   * goes on at its own share; when the upstream ends early, this one is removed and
   * `onUpstreamLost` told.
   */
  start (src, dst, size, tag, now, upstream) {
    const flow = { id: this.nextId++, src, dst, size, tag, weight: this.weight(), remaining: size, rate: 0, last: now, due: Infinity, live: true, pooled: false, pooledLive: false, vStart: 0, vEnd: 0, upstream: undefined, dependents: undefined, catchUpAt: undefined, catchUpSeq: 0, catchUpEvent: undefined, queuedIn: 0, ratedIn: 0 }
    if (upstream !== undefined && upstream.live) {
      flow.upstream = upstream
      ;(upstream.dependents ??= new Set()).add(flow)
      this.relays++
    }
    this.down[dst].push(flow)
    this.downWeight[dst] += flow.weight
    if (src === ORIGIN) {
      this.advanceClock(now)
      if (this.originFlows.size === 0) this.originBusySince = now
      this.originFlows.add(flow)
      this.originWeight += flow.weight
      if (this.pooled) this.pool(flow)
    } else {
      this.up[src].push(flow)
      this.upWeight[src] += flow.weight
    }
    this.relink(src, dst, now)
    return flow
  }

  /** Ends a transfer early (cancelled, or an end vanished); counts the bytes it moved. */
  remove (flow, now) {
    if (!flow.live) return 0
    return this.detach(flow, now)
  }

  /** A transfer's rate now: pooled origin transfers share the origin's link by weight and keep no rate of their own. */
  rateOf (flow) {
    return flow.pooled ? this.originRate * flow.weight / this.originWeight : flow.rate
  }

  /** The time the origin's link has been busy up to `now`. */
  originBusyAt (now) {
    return this.originBusyMs + (this.originFlows.size > 0 ? now - this.originBusySince : 0)
  }

  detach (flow, now, completed = false) {
    flow.live = false
    flow.upstream?.dependents?.delete(flow)
    flow.upstream = undefined
    const down = this.down[flow.dst]
    removeFlow(down, flow)
    this.downWeight[flow.dst] = down.length === 0 ? 0 : this.downWeight[flow.dst] - flow.weight
    let moved
    if (flow.src === ORIGIN) {
      this.advanceClock(now)
      this.originFlows.delete(flow)
      if (this.originFlows.size === 0) this.originBusyMs += now - this.originBusySince
      this.originWeight = this.originFlows.size === 0 ? 0 : this.originWeight - flow.weight
      moved = flow.pooled ? Math.min(flow.size, (this.V - flow.vStart) * flow.weight) : flow.size - this.remainingAt(flow, now)
      flow.pooledLive = false
      this.bytes.origin += moved
    } else {
      const up = this.up[flow.src]
      removeFlow(up, flow)
      this.upWeight[flow.src] = up.length === 0 ? 0 : this.upWeight[flow.src] - flow.weight
      moved = flow.size - this.remainingAt(flow, now)
      this.bytes.peer += moved
    }
    this.relink(flow.src, flow.dst, now)
    const dependents = flow.dependents
    flow.dependents = undefined
    for (const dependent of dependents ?? []) {
      dependent.upstream = undefined
      if (!dependent.live) continue
      if (completed) this.rerate(dependent, now)
      else {
        this.detach(dependent, now)
        this.onUpstreamLost(dependent, now)
      }
    }
    return moved
  }

  remainingAt (flow, now) {
    return Math.max(0, flow.remaining - flow.rate * (now - flow.last))
  }

  /** Bytes a live transfer has moved by `now` (a pooled origin transfer: by the origin's clock). */
  movedAt (flow, now) {
    if (!flow.pooled) return flow.size - this.remainingAt(flow, now)
    this.advanceClock(now)
    return Math.min(flow.size, Math.max(0, (this.V - flow.vStart) * flow.weight))
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

  /**
   * The rate per unit of weight a link gives the transfers on it that no upstream holds back:
   * relays held below their share leave the rest to the others (one round of water-filling,
   * as TCP would hand it on), which matters only once relays exist (cut-through).
   */
  shareOf (flows, rate, weight, exclude) {
    if (this.relays === 0) return rate / weight
    let capacity = rate
    let free = weight
    for (const other of flows) {
      if (other === exclude || other.upstream === undefined || !other.live) continue
      const cap = this.rateOf(other.upstream)
      if (cap < other.weight * rate / weight) {
        capacity -= cap
        free -= other.weight
      }
    }
    return free > 0 && capacity > 0 ? capacity / free : rate / weight
  }

  /**
   * Recomputes a transfer's rate. With relays, a change moves what relays it, and the shares of
   * the links those relays run on: the transfers touched are worked through once each, a queue
   * rather than a recursion, which in a fleet of 100 with relays of relays grew without bound.
   * The queue is an array and a flow's marks say whether this cascade has queued it or rated it
   * (a set of each cost more than the rating at 500 nodes): a flow is queued once, in the order
   * first touched, and rated once, as a set with deletions would have it.
   */
  rerate (flow, now) {
    if (this.cascade !== undefined) {
      this.enqueue(flow)
      return
    }
    if (!this.rerateOne(flow, now) || flow.dependents === undefined) return
    const id = ++this.cascadeId
    const cascade = []
    this.cascade = cascade
    flow.ratedIn = id
    try {
      this.touch(flow)
      for (let i = 0; i < cascade.length; i++) {
        const next = cascade[i]
        if (next.ratedIn === id || !next.live) continue
        next.ratedIn = id
        if (this.rerateOne(next, now)) this.touch(next)
      }
    } finally {
      this.cascade = undefined
    }
  }

  /** queues, in the running cascade, what relays a changed flow and the links those relays share */
  touch (changed) {
    for (const dependent of changed.dependents ?? []) {
      this.enqueue(dependent)
      for (const other of this.up[dependent.src]) this.enqueue(other)
      for (const other of this.down[dependent.dst]) this.enqueue(other)
    }
  }

  enqueue (flow) {
    if (flow.queuedIn === this.cascadeId) return
    flow.queuedIn = this.cascadeId
    this.cascade.push(flow)
  }

  /** Sets a transfer's rate from its links (and its upstream); whether it changed. */
  rerateOne (flow, now) {
    if (flow.pooled) return false
    const share = flow.src === ORIGIN ? this.originRate / this.originWeight : this.shareOf(this.up[flow.src], this.linkRate, this.upWeight[flow.src], flow)
    let rate = flow.weight * Math.min(share, this.shareOf(this.down[flow.dst], this.downRate, this.downWeight[flow.dst], flow))
    if (flow.upstream !== undefined) {
      const upstreamRate = this.rateOf(flow.upstream)
      const lead = this.movedAt(flow.upstream, now) - this.movedAt(flow, now)
      if (lead > CAUGHT_UP_BYTES && rate > upstreamRate) {
        // behind: what has landed upstream goes at this one's share, until it has caught up
        const at = now + lead / (rate - upstreamRate)
        if (flow.catchUpAt === undefined || Math.abs(at - flow.catchUpAt) > 1e-6) {
          flow.catchUpAt = at
          // One queued event per relay, not one per change (most changes move it later, and at
          // 1,000 nodes those stale events were most of the queue): a later catch-up waits for the
          // queued one, which then moves on to it. It keeps the order among events of its time
          // that an event queued now would have, so runs are the same, event for event.
          flow.catchUpSeq = this.queue.takeSeq()
          if (flow.catchUpEvent === undefined || at < flow.catchUpEvent.at) {
            flow.catchUpEvent = { type: 'catch-up', flow, at }
            this.queue.push(at, flow.catchUpEvent, flow.catchUpSeq)
          }
        }
      } else {
        // caught up: no faster than what it relays (a pooled origin transfer: its share now)
        flow.catchUpAt = undefined
        rate = Math.min(rate, upstreamRate)
      }
    }
    if (rate === flow.rate) return false
    flow.remaining = this.remainingAt(flow, now)
    flow.last = now
    flow.rate = rate
    // a slower flow keeps its queued event, which finds it unfinished and queues the real end
    const due = now + flow.remaining / rate
    if (due < flow.due) {
      flow.due = due
      this.queue.push(due, { type: 'flow', flow, due })
    }
    return true
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
    if (event.type === 'catch-up') {
      // a relay reached what its upstream has landed: from now on it follows the upstream
      const flow = event.flow
      if (flow.catchUpEvent !== event) return
      flow.catchUpEvent = undefined
      if (!flow.live || flow.catchUpAt === undefined) return
      if (flow.catchUpAt === event.at) {
        flow.catchUpAt = undefined
        this.rerate(flow, now)
      } else if (flow.catchUpAt > event.at) {
        flow.catchUpEvent = { type: 'catch-up', flow, at: flow.catchUpAt }
        this.queue.push(flow.catchUpAt, flow.catchUpEvent, flow.catchUpSeq)
      }
      return
    }
    if (event.type === 'flow') {
      const flow = event.flow
      if (!flow.live || flow.pooled || event.due !== flow.due) return
      if (flow.upstream !== undefined && flow.upstream.live && this.remainingAt(flow, now) / flow.rate <= 1e-6) {
        // a relay that caught up with a pooled upstream (whose share moved without telling it)
        // ends with the upstream: its last bytes are the upstream's last
        flow.remaining = 0
        flow.last = now
        flow.rate = 0
        flow.due = Infinity
        return
      }
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
    this.detach(flow, now, true)
    this.onComplete(flow, now)
  }
}



/** Takes a flow out of a link's list, keeping the others' order (the rates are summed in it). */
function removeFlow (flows, flow) {
  const at = flows.indexOf(flow)
  if (at >= 0) flows.splice(at, 1)
}

export function percentile (sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))]
}

/**
 * Per-node latency: each node's access latency is log-normal around `latencyMs` (σ =
 * `latencySigma`), and a link's round trip is the mean of its two ends', so a slow node is slow
 * with everybody. With no `latencyMs` every peer link takes the fixed `peerLatencyMs`.
 */
export function latencies (random, settings) {
  const fixed = settings.latencyMs == null
  const draw = fixed ? () => settings.peerLatencyMs : () => settings.latencyMs * Math.exp(settings.latencySigma * gaussian(random))
  const perNode = []
  return {
    /** a node joins: its own latency */
    add () { perNode.push(draw()); return perNode.length - 1 },
    /** a request's round trip between two nodes */
    link (a, b) { return fixed ? settings.peerLatencyMs : (perNode[a] + perNode[b]) / 2 },
    /** what a node's announcements take to reach its neighbours (one way, about) */
    node (a) { return fixed ? settings.peerLatencyMs : perNode[a] }
  }
}

function gaussian (random) {
  const u = Math.max(random(), 1e-12)
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random())
}

/**
 * The rate at which a node can take in payload, bytes per ms: its download link, or what its
 * cores can process (`cpuSPerGB` CPU-seconds per GB received, `cores` of them) when that is less.
 */
export function receiveRate (linkRate, settings) {
  if (settings.cpuSPerGB == null || settings.cpuSPerGB <= 0) return linkRate
  const cpuRate = (settings.cores ?? 1) * 1e9 / settings.cpuSPerGB / 1000
  return Math.min(linkRate, cpuRate)
}

/**
 * Joins a node to the graph: about `neighbours` / 2 links of its own to random live candidates
 * (the other ends pick theirs too, so a node ends with about `neighbours`), as a DHT and gossip
 * would give. `connect(a, b)` makes one link, both ways.
 */
export function linkRandomly (node, candidates, neighbours, random, connect) {
  const want = Math.min(Math.ceil(neighbours / 2), candidates.length - 1)
  let tries = 0
  while (node.neighbours.size < want && tries++ < want * 20) {
    const other = candidates[Math.floor(random() * candidates.length)]
    if (other.alive && other !== node) connect(node, other)
  }
}
