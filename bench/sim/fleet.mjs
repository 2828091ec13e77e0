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
// The network (links, latency, receive CPU, the graph) is `network.mjs`, which the BitTorrent
// policy in `bittorrent.mjs` runs on too; see run.mjs for what it models.

import { PullSession } from '@swarm/pull'
import { LandingLimit, PEER_BUSY_CODE, encodeBitfield } from '@swarm/interface'
import { DEFAULT_MAX_INFLIGHT_TOTAL, pullerSet, seededRandom } from '@swarm/scheduler'
import { DEFAULT_MAX_UPLOADS_PER_PEER, MIN_UPLOADS, SMALL_ANSWER_LENGTH, defaultReservedUploads, slotGranted } from '@swarm/exchange'
import { DEFAULT_SETTINGS, EventQueue, Mbit, Network, ORIGIN, latencies, linkRandomly, percentile, receiveRate, weights } from './network.mjs'

export { DEFAULT_SETTINGS, EventQueue, Mbit, Network, lowerBound, percentile } from './network.mjs'

/** A failed fetch's error, without the stack trace nobody reads: busy peers fail by the million. */
function failure (why) {
  const limit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  const err = new Error(why)
  Error.stackTraceLimit = limit
  // as the data client words a BUSY answer
  if (why === 'busy') err.code = PEER_BUSY_CODE
  return err
}

/** the control channel's coalescing of haves */
export const HAVE_FLUSH_MS = 20


// ---- one run ----

/**
 * One pull by `n` nodes at once. `churnAt`: when `churnShare` of them vanish; `lateAt`: when
 * `lateShare` × n extra nodes start (one more starts after everybody else finished).
 * `chunks`: the model's unique chunks; `settings`: as DEFAULT_SETTINGS; `onSession`: each node's
 * PullSession as it starts; `note`: a line of trace (SIM_TRACE); `traceOrigin`: a line for each
 * origin request as it opens and each one given up (SIM_TRACE_ORIGIN).
 */
export async function simulate ({ chunks, settings: given = {}, n, seed, churnAt, lateAt, limitMs, trace, traceOrigin = false, note = () => {}, onSession }) {
  const settings = { ...DEFAULT_SETTINGS, ...given }
  const started = performance.now()
  const random = seededRandom(seed)
  const queue = new EventQueue()
  const linkRate = settings.linkMbit * Mbit * settings.efficiency
  const originRate = settings.originMbit * Mbit * settings.efficiency
  const maxDownloads = settings.schedulerInit.maxInflightTotal ?? DEFAULT_MAX_INFLIGHT_TOTAL
  const nodes = []
  const byId = new Map()
  const fetchers = { fetchers: settings.schedulerInit?.originFetchers }
  const shared = settings.view === 'shared' ? pullerSet(chunks, [], fetchers) : undefined
  const indexOf = new Map(chunks.map((c, i) => [c.cid, i]))
  const manifestCid = `sim-${seed}`
  let offset = 0
  const manifest = { version: 1, chunkSize: Math.max(...chunks.map(c => c.size)), files: [{ path: 'model.bin', size: chunks.reduce((sum, c) => sum + c.size, 0), mode: 0o644, chunks: chunks.map(c => { const ref = { cid: c.cid, offset, size: c.size }; offset += c.size; return ref }) }] }
  let events = 0
  let allDoneAt
  const counters = { busy: 0, relays: 0 }
  let pullingCount = 0
  let now = 0
  let ended = false

  const lat = latencies(seededRandom(seed + 31), settings)
  const gossipRandom = seededRandom(seed + 37)
  /** pullers in the order they began, for gossip: who, and when each stopped pulling */
  const announced = []
  let lastFinishAt = 0
  let originBusyAtLastFinish = 0
  const net = new Network({
    queue,
    linkRate,
    downRate: receiveRate(linkRate, settings),
    originRate,
    maxDownloads,
    weight: weights(seededRandom(seed + 17), settings.fairnessSigma),
    onComplete: delivered,
    // a relay whose own source failed or was cancelled fails too: the requester asks elsewhere
    onUpstreamLost: flow => { queue.push(now, { type: 'fail', transfer: flow.tag, why: 'upstream gone' }) }
  })

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
    lat.add()
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
      // as an agent's data server: uploads at once follow how long they take to land
      uploads: new LandingLimit({ min: Math.min(MIN_UPLOADS, settings.uploadSlots), max: settings.uploadSlots, targetMs: settings.uploadLandingMs }),
      /** the chunk indices of `holds`, as announced to a peer that connects */
      held: [],
      pendingHaves: [],
      /** 'partial' view: the pullers this node knows, and those of them it learned by gossip */
      known: undefined,
      gossiped: [],
      stoppedAt: Infinity,
      /** the origin fetchers its last join named */
      named: [],
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

  // the shared view is every puller known to every node, kept by the simulator: nothing to name
  const peerState = peer => ({ peerId: peer.id, pulling: peer.pulling, bitfield: encodeBitfield(peer.holds), fetchers: shared === undefined ? peer.named : undefined })

  function connect (a, b) {
    if (a === b || a.neighbours.has(b.index)) return
    a.neighbours.add(b.index)
    b.neighbours.add(a.index)
    for (const [x, y] of [[a, b], [b, a]]) {
      if (x.events !== undefined && x.pulling) x.events.joined(peerState(y))
    }
  }

  const link = (node, candidates) => { linkRandomly(node, candidates, settings.neighbours, random, connect) }

  /** A node's neighbours as the session's peers. */
  function peersOf (node) {
    return {
      selfId: node.id,
      peers: () => [...node.neighbours].map(j => nodes[j]).filter(p => p.alive).map(peerState),
      connectedCount: () => node.neighbours.size,
      isBanned: () => false,
      // a join again, as the control channel sends it: our state and the origin fetchers we name
      join (state) {
        node.named = state.fetchers ?? []
        queue.push(now + lat.node(node.index), { type: 'joined', node })
      },
      have (indices) {
        if (node.pendingHaves.length === 0) queue.push(now + HAVE_FLUSH_MS + lat.node(node.index), { type: 'have', node })
        node.pendingHaves.push(...indices)
      },
      // cut-through: what the node began receiving, and what it no longer is, on the control
      // channel after the same coalescing as haves
      ...(settings.cutThrough
        ? {
            arriving (indices) { notice(node, 'arriving', indices) },
            notArriving (indices) { notice(node, 'notArriving', indices) }
          }
        : {}),
      subscribe (events) {
        node.events = events
        return () => { node.events = undefined }
      }
    }
  }

  /** Fetches as transfers: opened after a latency, ended by the network, failed when the peer cannot serve. */
  function fetcherOf (node) {
    return {
      fetch (request, { sources, signal, onReceiving }) {
        const source = sources[0]
        return new Promise((resolve, reject) => {
          const transfer = { node, chunk: indexOf.get(request.cid), size: request.size, source, flow: undefined, resolve, reject, done: false, onReceiving }
          transfer.abort = () => {
            if (transfer.done) return
            transfer.done = true
            if (traceOrigin && transfer.source.kind === 'origin') note(`origin given up t=${(now / 1000).toFixed(2)} node ${node.index} chunk ${transfer.chunk}${node.alive ? '' : ' (node gone)'}`)
            // A peer that has begun its answer finishes it (the data server sends a response it
            // started whole, and what it wrote sits in socket buffers anyway): the bytes still take
            // both links, and `delivered` drops them. An origin GET ends with its connection.
            if (transfer.flow !== undefined && (transfer.source.kind === 'origin' || settings.cancelledPeerAnswers === 'stop')) net.remove(transfer.flow, now)
            reject(signal.reason)
          }
          signal.addEventListener('abort', transfer.abort, { once: true })
          transfer.settle = () => { signal.removeEventListener('abort', transfer.abort) }
          const peer = source.kind === 'origin' ? undefined : byId.get(source.peerId)
          const latency = peer === undefined ? settings.originLatencyMs : lat.link(node.index, peer.index)
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

  /** Who asks the origin for what, in its own view, and how many live nodes hold it already: where duplicates come from. */
  function noteOriginRequest (transfer) {
    const { node, chunk } = transfer
    const pullers = node.session?.scheduler?.pullers
    const owner = pullers?.owner(chunk)
    const ownerNode = owner === undefined ? undefined : byId.get(owner)
    const role = owner === node.id ? 'owner' : pullers?.backup(chunk) === node.id ? 'runner-up' : pullers?.isFetcher(node.id) === true ? 'fetcher' : 'non-fetcher'
    const holders = nodes.filter(p => p.alive && p.holds[chunk] === 1).length
    const ownerText = ownerNode === undefined ? 'unknown' : `${ownerNode.index}${ownerNode.alive ? '' : ' (gone)'}`
    note(`origin t=${(now / 1000).toFixed(2)} node ${node.index} chunk ${chunk} as ${role} (owner ${ownerText}), ${holders} live holders`)
  }

  function fail (transfer, why) {
    if (transfer.done) return
    transfer.done = true
    transfer.settle()
    touch()
    transfer.reject(failure(why))
  }

  function startPull (node) {
    const view = settings.view === 'neighbours'
      ? { pullers: [...node.neighbours].map(j => nodes[j]).filter(p => p.alive && p.pulling).map(p => p.id) }
      : { pullerSet: shared ?? node.known }
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
      lastFinishAt = now
      originBusyAtLastFinish = net.originBusyAt(now)
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
    if (settings.view === 'partial') {
      // what it knows at first: itself and its neighbours that pull; gossip brings the rest
      node.known = pullerSet(chunks, [node.id], fetchers)
      for (const j of node.neighbours) if (nodes[j].alive && nodes[j].pulling) node.known.add(nodes[j].id)
      announced.push({ node, at })
      queue.push(at + gossipRandom() * settings.gossipIntervalMs, { type: 'gossip', node })
    }
    if (shared !== undefined) shared.add(node.id)
    else for (const j of node.neighbours) if (nodes[j].events !== undefined && nodes[j].pulling) nodes[j].events.joined(peerState(node))
    queue.push(at + settings.settleMs, { type: 'begin', node })
  }

  function stopPulling (node) {
    node.pulling = false
    node.stoppedAt = now
    pullingCount--
    if (shared !== undefined) shared.remove(node.id)
    else {
      for (const j of node.neighbours) {
        const peer = nodes[j]
        if (peer.events !== undefined && peer.pulling && peer.alive) peer.events.joined(peerState(node))
      }
    }
  }

  /**
   * Fleet gossip, one interval of it at one node: of the pullers whose start has had time to
   * spread, it takes in at most `gossipPerInterval` drawn at random (what arrives is what the mesh
   * relayed, not a list it can page through; one it knew already is a wasted message), and it
   * forgets those it learned this way that stopped pulling long enough ago for that to spread.
   */
  function gossip (node) {
    if (!node.alive || !node.pulling) return
    const horizon = now - settings.gossipDelayMs
    const version = node.known.version
    let visible = announced.length
    while (visible > 0 && announced[visible - 1].at > horizon) visible--
    for (let k = 0; k < settings.gossipPerInterval && visible > 0; k++) {
      const other = announced[Math.floor(gossipRandom() * visible)].node
      if (other === node || other.stoppedAt <= horizon || node.known.has(other.id)) continue
      node.known.add(other.id)
      // a node ranks only the best-ranked pullers it hears of (see `pullers.ts`)
      if (node.known.has(other.id)) node.gossiped.push(other)
    }
    if (node.gossiped.length > 0) {
      node.gossiped = node.gossiped.filter(other => {
        if (!node.known.has(other.id)) return false
        if (other.stoppedAt > horizon) return true
        if (!node.neighbours.has(other.index)) node.known.remove(other.id)
        return false
      })
    }
    // the agent's session acts on a changed view at once, as on any peer event
    if (node.known.version !== version) node.session?.pullersChanged()
    queue.push(now + settings.gossipIntervalMs, { type: 'gossip', node })
  }

  function delivered (flow) {
    const transfer = flow.tag
    const node = transfer.node
    if (!node.alive || transfer.done) return
    // a relay lands as fast as its upstream, not as the uploader's link allows: not a landing time
    if (transfer.source.kind !== 'origin' && transfer.size > SMALL_ANSWER_LENGTH && !transfer.relayed) {
      const peer = byId.get(transfer.source.peerId)
      peer?.uploads.landed(now - transfer.openedAt, net.uploads(peer.index) + 1)
    }
    if (node.holds[transfer.chunk] === 0) {
      node.holds[transfer.chunk] = 1
      node.held.push(transfer.chunk)
    }
    transfer.done = true
    transfer.settle()
    touch()
    transfer.resolve({ kind: transfer.source.kind })
  }

  /**
   * Cut-through (`settings.cutThrough`), as the agent's data plane does it (docs/cut-through.md): the engine
   * tells its neighbours which chunks it began receiving and which it no longer is (`arriving`,
   * `notArriving`), asks a neighbour receiving a chunk only when none holds it, and the
   * neighbour serves it while it arrives, never faster than it arrives: verified blocks of a chunk
   * passed on before the chunk is whole.
   */
  function notice (node, kind, indices) {
    // sent at once, as the control channel sends them (haves wait HAVE_FLUSH_MS to be coalesced)
    queue.push(now + lat.node(node.index), { type: 'notice', node, kind, indices: [...indices] })
  }

  /** The transfer into `node` of `chunk` that has come furthest, for a relay to follow. */
  function arriving (node, chunk) {
    let best
    for (const flow of net.down[node.index]) {
      if (flow.tag.chunk !== chunk || flow.tag.done) continue
      if (best === undefined || net.remainingAt(flow, now) < net.remainingAt(best, now)) best = flow
    }
    return best
  }

  function open (transfer) {
    const node = transfer.node
    if (transfer.done || !node.alive) return
    if (transfer.source.kind === 'origin') {
      if (traceOrigin) noteOriginRequest(transfer)
      transfer.flow = net.start(ORIGIN, node.index, transfer.size, transfer, now)
      receiving(transfer)
      return
    }
    const peer = byId.get(transfer.source.peerId)
    const held = peer !== undefined && peer.alive && peer.holds[transfer.chunk] === 1
    // cut-through: a peer still receiving the chunk relays it, following its own transfer
    const upstream = settings.cutThrough && !held && peer?.alive === true ? arriving(peer, transfer.chunk) : undefined
    if (!held && upstream === undefined) {
      queue.push(now + (peer === undefined ? settings.peerLatencyMs : lat.link(node.index, peer.index)), { type: 'fail', transfer, why: 'not held' })
      return
    }
    // as the data server: a small answer takes no upload slot; a large one a free slot, within the
    // peer's share, and not one of those reserved for peers holding none
    if (transfer.size > SMALL_ANSWER_LENGTH && !slotFree(peer, node, upstream !== undefined)) {
      counters.busy++
      queue.push(now + lat.link(node.index, peer.index), { type: 'fail', transfer, why: 'busy' })
      return
    }
    transfer.openedAt = now
    if (upstream !== undefined) {
      transfer.relayed = true
      counters.relays++
    }
    transfer.flow = net.start(peer.index, node.index, transfer.size, transfer, now, upstream)
    receiving(transfer)
  }

  /** What a live node's control channel says reaches its neighbours that are pulling. */
  function toPullingNeighbours (node, tell) {
    if (!node.alive) return
    for (const j of node.neighbours) {
      const peer = nodes[j]
      if (peer.alive && peer.events !== undefined && peer.pulling) tell(peer.events)
    }
  }

  /** The transfer's bytes begin to flow: the engine may tell its peers (cut-through). */
  function receiving (transfer) {
    if (transfer.onReceiving === undefined) return
    touch()
    transfer.onReceiving()
  }

  /**
   * Whether `peer`'s data server gives `node` a slot: the server's own rule (its gate's,
   * `slotGranted`). A relay lands at its source's pace and takes one of `relaySlots`.
   */
  function slotFree (peer, node, relay) {
    let takenByPeer = 0
    let relays = 0
    for (const flow of net.up[peer.index]) {
      if (flow.dst === node.index) takenByPeer++
      if (flow.upstream !== undefined) relays++
    }
    return slotGranted({
      uploads: net.uploads(peer.index),
      relays,
      takenByPeer,
      landingLimit: peer.uploads.limit,
      maxUploads: settings.uploadSlots,
      maxRelays: settings.relaySlots,
      maxUploadsPerPeer: DEFAULT_MAX_UPLOADS_PER_PEER,
      reservedUploads: defaultReservedUploads(settings.uploadSlots)
    }, relay)
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
  // The sessions' answers to one instant's events: V8 runs the microtask queue until it is empty,
  // what those microtasks queue included, before Node takes the next tick, so a tick resolves
  // once every promise the instant settled has run its course. (The engine queues no ticks or
  // macrotasks of its own: its timers are the virtual clock's.) A turn of the event loop
  // (setImmediate) waits as well, at the cost of a poll of the loop each time: a fifth of a run.
  const settle = async () => { await new Promise(resolve => process.nextTick(resolve)) }
  // Waiting for the microtasks still costs a tick; an instant whose events settled no
  // promise and called into no session (a transfer's queued end that found it slowed down, the
  // origin's clock moving on) leaves nothing to wait for, and those are most instants.
  let touched = true
  const touch = () => { touched = true }

  const byType = {}
  let traceAt = 0
  for (;;) {
    if (touched) {
      touched = false
      await settle()
    }
    if (trace != null && now >= traceAt) {
      traceAt = now + trace
      const st = nodes.filter(p => p.session?.stats !== undefined).map(p => p.session.stats)
      const tot = k => st.reduce((a, x) => a + x[k], 0)
      let peerFlows = 0
      for (const flows of net.up) peerFlows += flows.length
      // how busy the links of the nodes still pulling are: what a p99 beyond T* is made of
      const pulling = nodes.filter(p => p.alive && p.finishedAt === undefined && p.failedAt === undefined)
      const linkUse = (links, rate) => pulling.length === 0 ? 0 : pulling.reduce((a, p) => a + Math.min(1, links[p.index].reduce((b, f) => b + net.rateOf(f), 0) / rate), 0) / pulling.length
      const idleDown = pulling.filter(p => net.down[p.index].length === 0).length
      note(`t=${(now / 1000).toFixed(1)} down ${(linkUse(net.down, net.downRate) * 100).toFixed(0)}% up ${(linkUse(net.up, net.linkRate) * 100).toFixed(0)}% idle downlinks ${idleDown}/${pulling.length} origin flows ${net.originFlows.size} peer flows ${peerFlows} done ${tot('chunksDone')} inflight ${tot('inflight')} timeouts ${tot('timeouts')} failures ${tot('failures')} busy ${counters.busy} dup ${tot('duplicateRequests')} originReq ${tot('originRequests')} originFallbacks ${tot('originFallbacks')} steals ${tot('originSteals')} peerReq ${tot('peerRequests')} finished ${nodes.filter(p => p.finishedAt !== undefined).length} failed ${nodes.filter(p => p.failedAt !== undefined).length} originMB ${(net.bytes.origin / 1e6).toFixed(0)} peerMB ${(net.bytes.peer / 1e6).toFixed(0)}`)
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
      if (event.type !== 'flow' && event.type !== 'origin' && event.type !== 'fail' && event.type !== 'open') touched = true
      if (trace != null) {
        byType[event.type] = (byType[event.type] ?? 0) + 1
        if (event.type === 'flow' && (!event.flow.live || event.due !== event.flow.due)) byType.staleFlow = (byType.staleFlow ?? 0) + 1
      }
      switch (event.type) {
        case 'flow':
        case 'origin':
        case 'catch-up':
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
          toPullingNeighbours(node, events => { events.have(node.id, indices) })
          break
        }
        case 'notice':
          toPullingNeighbours(event.node, events => { events[event.kind](event.node.id, event.indices) })
          break
        case 'gossip':
          gossip(event.node)
          break
        case 'joined':
          toPullingNeighbours(event.node, events => { events.joined(peerState(event.node)) })
          break
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
    /** cut-through: peer transfers that relayed a chunk still arriving at the sender */
    relays: counters.relays,
    /** the share of the time until the last node finished in which the origin's link carried a transfer */
    originBusyShare: lastFinishAt > 0 ? originBusyAtLastFinish / lastFinishAt : NaN,
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
