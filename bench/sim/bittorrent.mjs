// bench/sim's BitTorrent: the policy of a classic swarm (BEP 3 and what mainline and libtorrent do
// by default) on the same simulated network as the agent's engine (`network.mjs`: links, flow
// weights, latency, receive CPU, the graph of neighbours, churn), so the two are compared in one
// run on equal terms.
//
// The policy
// - Pieces of `pieceBytes`, announced to the neighbours ("have") one latency after they land.
// - Choking: each node uploads to at most `UPLOAD_SLOTS` (4) neighbours at once: every
//   `RECHOKE_MS` (10 s) it unchokes the 3 interested ones that gave it the most in the last 10 s
//   (a node that has everything: the 3 it gave the most, as mainline seeds do), and every
//   `OPTIMISTIC_MS` (30 s) it turns one more, picked at random among the other interested ones,
//   into the optimistic unchoke. A node that becomes interested while its peer has a free slot is
//   unchoked at once (libtorrent does this), so nobody waits 10 s for a slot nobody uses.
// - Requests: a node keeps one piece in flight from each peer that unchokes it (requests are
//   pipelined, so pieces follow each other without a gap; the first waits one round trip), and
//   picks the rarest among its neighbours of the pieces that peer has and it lacks and has not
//   asked anybody for, ties broken at random.
// - A choked or vanished transfer keeps what arrived: BitTorrent moves 16 KiB blocks, so a piece
//   resumes from another peer where it stopped.
// - Endgame: once every piece a node lacks is in flight, an idle unchoked connection asks for one
//   of them again (the one with the fewest copies in flight); the first copy to land cancels the
//   rest, whose bytes were spent anyway.
// - The seeder is one more node with the origin's upload link; it holds everything from the start
//   and chokes like any node that has everything. Every node stays and seeds when done.

import { seededRandom } from '@swarm/scheduler'
import { DEFAULT_SETTINGS, EventQueue, Network, ORIGIN, latencies, linkRandomly, percentile, receiveRate, weights, Mbit } from './network.mjs'

/** upload slots: 3 by rate and 1 optimistic */
export const UPLOAD_SLOTS = 4
export const RECHOKE_MS = 10_000
export const OPTIMISTIC_MS = 30_000

/**
 * One BitTorrent download by `n` nodes at once, as `simulate` in fleet.mjs runs Swarm's:
 * `modelBytes` in pieces of `pieceBytes`; `churnAt`: when `churnShare` of them vanish; `lateAt`:
 * when `lateShare` × n extra nodes start. `onPick({ node, peer, piece, endgame })` sees each
 * request as it is chosen, before it is sent (for tests).
 */
export function simulateBitTorrent ({ modelBytes, pieceBytes, settings: given = {}, n, seed, churnAt, lateAt, limitMs, onPick }) {
  const settings = { ...DEFAULT_SETTINGS, ...given }
  const started = performance.now()
  const random = seededRandom(seed)
  const pickRandom = seededRandom(seed + 41)
  const queue = new EventQueue()
  const linkRate = settings.linkMbit * Mbit * settings.efficiency
  const originRate = settings.originMbit * Mbit * settings.efficiency
  const pieces = Math.ceil(modelBytes / pieceBytes)
  const pieceSize = p => Math.min(pieceBytes, modelBytes - p * pieceBytes)
  const lat = latencies(seededRandom(seed + 31), settings)
  const nodes = []
  let now = 0
  let events = 0
  let maxUploads = 0
  let lastFinishAt = 0
  let originBusyAtLastFinish = 0
  let incomplete = 0

  const net = new Network({
    queue,
    linkRate,
    downRate: receiveRate(linkRate, settings),
    originRate,
    maxDownloads: UPLOAD_SLOTS,
    weight: weights(seededRandom(seed + 17), settings.fairnessSigma),
    onComplete: landed
  })

  function addNode (kind, at, seeder = false) {
    const index = seeder ? ORIGIN : net.addNode()
    if (!seeder) lat.add()
    const node = {
      index,
      kind,
      seeder,
      startAt: at,
      alive: true,
      neighbours: new Set(),
      holds: new Uint8Array(pieces),
      count: 0,
      /** per piece: how many neighbours have it */
      avail: new Uint16Array(pieces),
      /** per piece: bytes of it that arrived (kept across chokes) */
      partial: new Float64Array(pieces),
      /** per piece: transfers bringing it now */
      inflight: new Uint8Array(pieces),
      inflightCount: 0,
      /** peers this node unchokes, and the optimistic one among them */
      unchoked: new Set(),
      optimistic: undefined,
      /** the transfer each unchoking peer is sending us now, by peer */
      incoming: new Map(),
      /** bytes received from each peer and sent to each peer since the last rechoke */
      got: new Map(),
      sent: new Map(),
      finishedAt: undefined,
      leftAt: undefined
    }
    nodes.push(node)
    return node
  }
  const done = node => node.count === pieces
  const linkLatency = (a, b) => a.seeder || b.seeder ? settings.originLatencyMs : lat.link(a.index, b.index)
  const nodeLatency = node => node.seeder ? settings.originLatencyMs : lat.node(node.index)

  const seederNode = addNode('seeder', 0, true)
  seederNode.holds.fill(1)
  seederNode.count = pieces

  function connect (a, b) {
    if (a === b || a.neighbours.has(b) || !a.alive || !b.alive) return
    a.neighbours.add(b)
    b.neighbours.add(a)
    // bitfields are exchanged on connecting
    for (let p = 0; p < pieces; p++) {
      if (b.holds[p] === 1) a.avail[p]++
      if (a.holds[p] === 1) b.avail[p]++
    }
    if (interested(a, b)) becameInterested(a, b)
    if (interested(b, a)) becameInterested(b, a)
  }

  /** whether `d` wants something `u` has */
  function interested (d, u) {
    if (done(d) || !d.alive) return false
    if (done(u)) return true
    for (let p = 0; p < pieces; p++) if (u.holds[p] === 1 && d.holds[p] === 0) return true
    return false
  }

  function becameInterested (d, u) {
    if (u.unchoked.has(d)) { request(d, u); return }
    if (u.unchoked.size < UPLOAD_SLOTS) unchoke(u, d)
  }

  function unchoke (u, d) {
    u.unchoked.add(d)
    // the unchoke message, then our request back: one round trip before bytes flow
    queue.push(now + linkLatency(u, d), { type: 'unchoked', u, d })
  }

  /** A slot that fell free goes to a neighbour that wants it, without waiting for the rechoke. */
  function fillSlots (u) {
    if (!u.alive || u.unchoked.size >= UPLOAD_SLOTS) return
    for (const w of u.neighbours) {
      if (u.unchoked.size >= UPLOAD_SLOTS) break
      if (!u.unchoked.has(w) && interested(w, u)) unchoke(u, w)
    }
  }

  function choke (u, d) {
    u.unchoked.delete(d)
    if (u.optimistic === d) u.optimistic = undefined
    const transfer = d.incoming.get(u)
    if (transfer !== undefined) stop(transfer)
  }

  /** Ends a transfer early; what arrived of the piece stays. */
  function stop (transfer) {
    const { d, u, piece } = transfer
    d.incoming.delete(u)
    d.inflight[piece]--
    d.inflightCount--
    if (transfer.flow !== undefined) {
      const moved = net.remove(transfer.flow, now)
      if (d.holds[piece] === 0) d.partial[piece] = Math.min(pieceSize(piece), d.partial[piece] + moved)
    }
  }

  /** `d` asks `u`, which unchokes it, for its next piece. */
  function request (d, u) {
    if (!d.alive || !u.alive || d.incoming.has(u) || !u.unchoked.has(d) || done(d)) return
    let best = -1
    let bestAvail = Infinity
    const offset = Math.floor(pickRandom() * pieces)
    for (let k = 0; k < pieces; k++) {
      const p = (offset + k) % pieces
      if (d.holds[p] === 1 || u.holds[p] === 0 || d.inflight[p] > 0) continue
      if (d.avail[p] < bestAvail) { best = p; bestAvail = d.avail[p] }
    }
    let endgame = false
    if (best < 0 && pieces - d.count === countInflightPieces(d)) {
      endgame = true
      // endgame: everything missing is on its way; ask for the piece with the fewest copies coming
      let fewest = Infinity
      for (let p = 0; p < pieces; p++) {
        if (d.holds[p] === 1 || u.holds[p] === 0 || d.inflight[p] === 0) continue
        if (d.inflight[p] < fewest) { best = p; fewest = d.inflight[p] }
      }
    }
    if (best < 0) {
      // "not interested": the peer chokes us and gives the slot to somebody who wants it
      if (!interested(d, u)) { choke(u, d); fillSlots(u) }
      return
    }
    onPick?.({ node: d, peer: u, piece: best, endgame })
    const transfer = { d, u, piece: best, flow: undefined }
    d.incoming.set(u, transfer)
    d.inflight[best]++
    d.inflightCount++
    const size = pieceSize(best) - d.partial[best]
    transfer.flow = net.start(u.index, d.index, Math.max(1, size), transfer, now)
    maxUploads = Math.max(maxUploads, u.seeder ? net.originFlows.size : net.uploads(u.index))
  }

  function countInflightPieces (d) {
    let count = 0
    for (let p = 0; p < pieces; p++) if (d.inflight[p] > 0 && d.holds[p] === 0) count++
    return count
  }

  function landed (flow) {
    const transfer = flow.tag
    const { d, u, piece } = transfer
    if (d.incoming.get(u) !== transfer) return
    d.incoming.delete(u)
    d.inflight[piece]--
    d.inflightCount--
    d.got.set(u, (d.got.get(u) ?? 0) + flow.size)
    u.sent.set(d, (u.sent.get(d) ?? 0) + flow.size)
    if (d.holds[piece] === 0) {
      d.holds[piece] = 1
      d.count++
      // endgame copies of it still coming are cancelled
      if (d.inflight[piece] > 0) {
        for (const other of [...d.incoming.values()]) {
          if (other.piece === piece) { stop(other); queue.push(now, { type: 'next', d, u: other.u }) }
        }
      }
      queue.push(now + nodeLatency(d), { type: 'have', node: d, piece })
      if (done(d)) {
        d.finishedAt = now
        incomplete--
        lastFinishAt = now
        originBusyAtLastFinish = net.originBusyAt(now)
        // nothing more to want: close what is left
        for (const other of [...d.incoming.values()]) stop(other)
        for (const v of d.neighbours) if (v.unchoked.has(d)) { choke(v, d); fillSlots(v) }
      }
    }
    request(d, u)
  }

  function have (node, piece) {
    if (!node.alive) return
    for (const v of node.neighbours) {
      if (!v.alive) continue
      v.avail[piece]++
      if (v.holds[piece] === 0) becameInterested(v, node)
    }
  }

  /** Every 10 s: the 3 interested neighbours that gave the most (or, done, took the most), plus the optimistic one. */
  function rechoke (u, round) {
    if (!u.alive) return
    const seeding = done(u)
    const wanting = [...u.neighbours].filter(v => v.alive && interested(v, u))
    const rate = v => (seeding ? u.sent.get(v) : u.got.get(v)) ?? 0
    // ties (nothing exchanged yet) in random order
    const ranked = wanting.map(v => [v, rate(v), pickRandom()]).sort((a, b) => b[1] - a[1] || a[2] - b[2]).map(e => e[0])
    const regular = new Set(ranked.slice(0, UPLOAD_SLOTS - 1))
    let optimistic = u.optimistic
    if (round % (OPTIMISTIC_MS / RECHOKE_MS) === 0 || optimistic === undefined || !optimistic.alive || regular.has(optimistic) || !wanting.includes(optimistic)) {
      const others = ranked.filter(v => !regular.has(v))
      optimistic = others.length > 0 ? others[Math.floor(pickRandom() * others.length)] : undefined
    }
    for (const v of [...u.unchoked]) if (!regular.has(v) && v !== optimistic) choke(u, v)
    u.optimistic = optimistic
    for (const v of regular) if (!u.unchoked.has(v)) unchoke(u, v)
    if (optimistic !== undefined && !u.unchoked.has(optimistic)) unchoke(u, optimistic)
    u.sent.clear()
    u.got.clear()
    queue.push(now + RECHOKE_MS, { type: 'rechoke', node: u, round: round + 1 })
  }

  function vanish (node) {
    node.alive = false
    node.leftAt = now
    if (!done(node)) incomplete--
    for (const transfer of [...node.incoming.values()]) stop(transfer)
    for (const v of node.neighbours) {
      const transfer = v.incoming.get(node)
      if (transfer !== undefined) { stop(transfer) }
      v.unchoked.delete(node)
      if (v.optimistic === node) v.optimistic = undefined
      v.neighbours.delete(node)
      for (let p = 0; p < pieces; p++) if (node.holds[p] === 1) v.avail[p]--
      fillSlots(v)
    }
    node.neighbours.clear()
    node.unchoked.clear()
  }

  function start (node) {
    incomplete++
    queue.push(now + pickRandom() * RECHOKE_MS, { type: 'rechoke', node, round: 0 })
  }

  // the fleet: the seeder is linked like anybody, with about as many neighbours
  const peersOnly = () => nodes.filter(p => !p.seeder && p.alive)
  for (let i = 0; i < n; i++) addNode('initial', 0)
  const initial = peersOnly()
  for (const node of initial) linkRandomly(node, initial, settings.neighbours, random, connect)
  linkRandomly(seederNode, initial, 2 * settings.neighbours, random, connect)
  queue.push(pickRandom() * RECHOKE_MS, { type: 'rechoke', node: seederNode, round: 0 })
  for (const node of initial) start(node)
  if (churnAt !== undefined) queue.push(churnAt, { type: 'churn' })
  if (lateAt !== undefined) queue.push(lateAt, { type: 'late' })

  let lateDone = lateAt === undefined
  while (queue.size > 0) {
    if (incomplete === 0 && lateDone) break
    const next = queue.peekTime()
    if (next > limitMs) break
    now = next
    const event = queue.pop()
    events++
    switch (event.type) {
      case 'flow':
      case 'origin':
        net.handle(event, now)
        break
      case 'unchoked':
        if (event.u.unchoked.has(event.d)) request(event.d, event.u)
        break
      case 'next':
        request(event.d, event.u)
        break
      case 'have':
        have(event.node, event.piece)
        break
      case 'rechoke':
        rechoke(event.node, event.round)
        break
      case 'churn': {
        const pulling = nodes.filter(p => p.kind === 'initial' && p.alive && !done(p))
        const count = Math.round(settings.churnShare * n)
        for (let k = 0; k < count && pulling.length > 0; k++) {
          const pick = Math.floor(random() * pulling.length)
          const node = pulling[pick]
          pulling[pick] = pulling[pulling.length - 1]
          pulling.pop()
          vanish(node)
        }
        break
      }
      case 'late': {
        lateDone = true
        const count = Math.max(1, Math.round(settings.lateShare * n))
        for (let k = 0; k < count; k++) {
          const node = addNode('late', now)
          start(node)
          linkRandomly(node, peersOnly(), settings.neighbours, random, connect)
        }
        break
      }
    }
  }

  const summary = kind => {
    const group = nodes.filter(p => p.kind === kind && p.leftAt === undefined)
    const times = group.filter(p => p.finishedAt !== undefined).map(p => p.finishedAt - p.startAt).sort((a, b) => a - b)
    return { nodes: group.length, finished: times.length, failed: 0, p50Ms: percentile(times, 50), p99Ms: percentile(times, 99), maxMs: times.length > 0 ? times[times.length - 1] : NaN }
  }
  return {
    n,
    pieceBytes,
    initial: summary('initial'),
    late: lateAt !== undefined ? summary('late') : undefined,
    left: nodes.filter(p => p.leftAt !== undefined).length,
    originBytes: net.bytes.origin,
    peerBytes: net.bytes.peer,
    originBusyShare: lastFinishAt > 0 ? originBusyAtLastFinish / lastFinishAt : NaN,
    maxUploads,
    events,
    wallSeconds: (performance.now() - started) / 1000,
    endedAtMs: now
  }
}
