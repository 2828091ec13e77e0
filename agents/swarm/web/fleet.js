// @ts-check
// The fleet page's script (see agents/swarm/src/agent/fleet-page.ts): polls /api/fleet, keeps
// the history the rates and charts need in memory, and redraws. Peers supply the text shown
// (labels, refs, reasons): it goes into the page with textContent only, never as markup.
'use strict'

const SVG = 'http://www.w3.org/2000/svg'
const params = new URLSearchParams(location.search)
/** poll period, ms (?every=500 for a faster page) */
const EVERY = Math.max(200, Number(params.get('every')) || 1000)
/** points kept per model chart; older ones are thinned out, so memory stays bounded */
const MAX_POINTS = 600
/** rates are measured over this window, ms */
const RATE_WINDOW = 5000
const COLORS = ['#1f6feb', '#2e8540', '#c62828', '#8250df', '#bf8700', '#0a7ea4', '#d63384', '#57606a']

/** @type {Map<string, Array<{ t: number, fleet: number, nodes: Record<string, number> }>>} per manifest CID */
const history = new Map()
/** @type {Array<{ t: number, done: Map<string, number> }>} done bytes per node+model, for rates */
const samples = []
/** @type {Map<string, string>} */
const nodeColors = new Map()

/** @param {number} n */
function bytes (n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${units[i]}`
}

/** @param {string} id */
function short (id) { return id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-6)}` : id }

/** @param {string} peerId */
function colorOf (peerId) {
  let color = nodeColors.get(peerId)
  if (color == null) {
    color = COLORS[nodeColors.size % COLORS.length] ?? '#57606a'
    nodeColors.set(peerId, color)
  }
  return color
}

/**
 * @param {string} tag
 * @param {Record<string, string>} [attrs]
 * @param {Array<Node | string>} [children]
 * @returns {HTMLElement}
 */
function el (tag, attrs = {}, children = []) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
  for (const child of children) node.append(child)
  return node
}

/**
 * @param {string} tag
 * @param {Record<string, string | number>} attrs
 */
function svg (tag, attrs) {
  const node = document.createElementNS(SVG, tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v))
  return node
}

/** @param {string} key @param {string} value */
function setSummary (key, value) {
  const node = document.querySelector(`#summary [data-k="${key}"]`)
  if (node != null) node.textContent = value
}

/** @param {{ doneBytes: number, totalBytes: number }} m */
function fraction (m) { return m.totalBytes > 0 ? Math.min(1, m.doneBytes / m.totalBytes) : 1 }

/** Bytes per second of one node+model (or of all with key null), from the samples in the window. */
function rateOf (/** @type {string | null} */ key) {
  const last = samples[samples.length - 1]
  if (last == null) return 0
  const first = samples.find(s => last.t - s.t <= RATE_WINDOW) ?? last
  if (first === last) return 0
  let delta = 0
  for (const [k, done] of last.done) {
    if (key != null && k !== key) continue
    const before = first.done.get(k)
    if (before != null && done > before) delta += done - before
  }
  return delta / ((last.t - first.t) / 1000)
}

/** @param {any} view */
function record (view) {
  const t = Date.now()
  /** @type {Map<string, number>} */
  const done = new Map()
  /** @type {Map<string, { done: number, total: number, nodes: Record<string, number> }>} */
  const perModel = new Map()
  for (const node of view.nodes) {
    for (const m of node.models) {
      done.set(`${node.peerId} ${m.manifestCid}`, m.doneBytes)
      let agg = perModel.get(m.manifestCid)
      if (agg == null) { agg = { done: 0, total: 0, nodes: {} }; perModel.set(m.manifestCid, agg) }
      agg.done += m.doneBytes
      agg.total += m.totalBytes
      agg.nodes[node.peerId] = fraction(m)
    }
  }
  samples.push({ t, done })
  while (samples.length > 2 && t - samples[0].t > RATE_WINDOW * 2) samples.shift()
  for (const [cid, agg] of perModel) {
    let points = history.get(cid)
    if (points == null) { points = []; history.set(cid, points) }
    points.push({ t, fleet: agg.total > 0 ? agg.done / agg.total : 1, nodes: agg.nodes })
    // keep the whole span at half the resolution rather than drop the start
    if (points.length > MAX_POINTS) history.set(cid, points.filter((_, i) => i % 2 === 0 || i === points.length - 1))
  }
}

/** The completion chart of one model: a line per node, and the fleet's as a dashed one. */
function chart (/** @type {string} */ cid) {
  const points = history.get(cid) ?? []
  const W = 900; const H = 220; const L = 36; const R = 8; const T = 8; const B = 20
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'completion over time' })
  for (const pct of [0, 50, 100]) {
    const y = T + (H - T - B) * (1 - pct / 100)
    root.append(svg('line', { x1: L, x2: W - R, y1: y, y2: y, stroke: '#dde1e6' }))
    const label = svg('text', { x: L - 6, y: y + 4, 'text-anchor': 'end', 'font-size': 10, fill: '#5b6470' })
    label.textContent = `${pct}%`
    root.append(label)
  }
  if (points.length === 0) return root
  const t0 = points[0].t
  const span = Math.max(1000, points[points.length - 1].t - t0)
  const x = (/** @type {number} */ t) => L + (W - L - R) * ((t - t0) / span)
  const y = (/** @type {number} */ f) => T + (H - T - B) * (1 - f)
  const spanLabel = svg('text', { x: W - R, y: H - 4, 'text-anchor': 'end', 'font-size': 10, fill: '#5b6470' })
  spanLabel.textContent = `last ${Math.round(span / 1000)} s`
  root.append(spanLabel)
  const peers = new Set(points.flatMap(p => Object.keys(p.nodes)))
  for (const peerId of peers) {
    const coords = points.filter(p => p.nodes[peerId] != null).map(p => `${x(p.t).toFixed(1)},${y(p.nodes[peerId]).toFixed(1)}`)
    root.append(svg('polyline', { points: coords.join(' '), fill: 'none', stroke: colorOf(peerId), 'stroke-width': 1.5, 'data-node': peerId }))
  }
  const fleet = points.map(p => `${x(p.t).toFixed(1)},${y(p.fleet).toFixed(1)}`)
  root.append(svg('polyline', { points: fleet.join(' '), fill: 'none', stroke: '#11161d', 'stroke-width': 2.5, 'stroke-dasharray': '6 4', 'data-fleet': cid }))
  return root
}

/** @param {any} view */
function render (view) {
  document.getElementById('self').textContent = `this node ${short(view.self)}`
  document.getElementById('updated').textContent = `updated ${new Date(view.updatedAt).toLocaleTimeString()}`
  /** @type {Map<string, { cid: string, ref?: string, totalBytes: number, states: Record<string, number> }>} */
  const models = new Map()
  let fromPeers = 0; let fromOrigin = 0
  for (const node of view.nodes) {
    for (const m of node.models) {
      let model = models.get(m.manifestCid)
      if (model == null) { model = { cid: m.manifestCid, ref: m.ref, totalBytes: m.totalBytes, states: { held: 0, pulling: 0, failed: 0, declined: 0 } }; models.set(m.manifestCid, model) }
      model.ref ??= m.ref
      model.states[m.state] = (model.states[m.state] ?? 0) + 1
      fromPeers += m.bytesFromPeers
      fromOrigin += m.bytesFromOrigin
    }
  }
  const pulling = view.nodes.filter(n => n.models.some(m => m.state === 'pulling')).length
  setSummary('nodes', String(view.nodes.length))
  setSummary('nodes-sub', `${pulling} pulling`)
  setSummary('models', String(models.size))
  setSummary('models-sub', [...models.values()].map(m => `${m.states.held}/${Object.values(m.states).reduce((a, b) => a + b, 0)} held`).join(', '))
  setSummary('rate', `${bytes(rateOf(null))}/s`)
  setSummary('saved', bytes(fromPeers))
  setSummary('saved-sub', fromPeers + fromOrigin > 0 ? `${Math.round(100 * fromPeers / (fromPeers + fromOrigin))}% of fetched bytes came from peers` : 'bytes nodes got from peers')
  setSummary('origin', bytes(fromOrigin))

  const cards = document.getElementById('models')
  cards.replaceChildren(...[...models.values()].map(model => {
    const counts = el('div', { class: 'counts' }, ['held', 'pulling', 'failed', 'declined']
      .filter(s => s === 'held' || model.states[s] > 0)
      .map(s => el('span', { class: s, 'data-count': s }, [`${model.states[s]} ${s}`])))
    const points = history.get(model.cid) ?? []
    const last = points[points.length - 1]
    counts.append(el('span', {}, [`${Math.floor(100 * (last?.fleet ?? 0))}% of the fleet's bytes`]))
    const legend = el('div', { class: 'legend' }, view.nodes.filter(n => n.models.some(m => m.manifestCid === model.cid))
      .map(n => el('span', {}, [el('i', { style: `background:${colorOf(n.peerId)}` }), short(n.peerId)])))
    legend.append(el('span', {}, [el('i', { style: 'background:#11161d' }), 'fleet']))
    return el('div', { class: 'card model', 'data-model': model.cid }, [
      el('h3', {}, [model.ref ?? short(model.cid)]),
      el('div', { class: 'cid' }, [`${model.cid} · ${bytes(model.totalBytes)}`]),
      counts,
      chart(model.cid),
      legend
    ])
  }))
  if (models.size === 0) cards.replaceChildren(el('div', { class: 'empty' }, ['no models yet']))

  const table = /** @type {HTMLTableElement} */ (document.getElementById('fleet'))
  table.tHead?.replaceChildren(el('tr', {}, [el('th', {}, ['node']), ...[...models.values()].map(m => el('th', {}, [m.ref ?? short(m.cid)]))]))
  table.tBodies[0].replaceChildren(...view.nodes.map(node => {
    const labels = Object.entries(node.labels).map(([k, v]) => `${k}=${v}`).join(' ')
    const name = el('td', { class: 'node', title: node.peerId }, [short(node.peerId)])
    if (node.self) name.append(el('span', { class: 'you' }, ['this node']))
    if (labels !== '') name.append(el('div', { class: 'labels' }, [labels]))
    const row = el('tr', { 'data-node': node.peerId }, [name])
    for (const model of models.values()) {
      const m = node.models.find(x => x.manifestCid === model.cid)
      if (m == null) { row.append(el('td', { class: 'cell', 'data-model': model.cid, 'data-state': 'absent' }, ['–'])); continue }
      const pct = Math.floor(100 * fraction(m))
      const rate = rateOf(`${node.peerId} ${m.manifestCid}`)
      const cell = el('td', { class: 'cell', 'data-model': m.manifestCid, 'data-state': m.state, 'data-percent': String(pct) }, [
        el('div', { class: 'bar' }, [el('div', { class: `bg-${m.state}`, style: `width:${pct}%` })]),
        el('div', { class: 'line' }, [el('span', { class: `state ${m.state}` }, [m.state === 'pulling' ? `pulling ${pct}%` : m.state]), el('span', {}, [`${bytes(m.doneBytes)} / ${bytes(m.totalBytes)}`])]),
        el('div', { class: 'line' }, [el('span', {}, [m.state === 'pulling' ? `${bytes(rate)}/s` : '']), el('span', {}, [m.bytesFromPeers + m.bytesFromOrigin > 0 ? `peers ${bytes(m.bytesFromPeers)} · origin ${bytes(m.bytesFromOrigin)}` : ''])])
      ])
      if (m.reason != null) cell.append(el('div', { class: 'reason' }, [m.reason]))
      row.append(cell)
    }
    return row
  }))
}

async function poll () {
  const status = document.getElementById('status')
  try {
    const res = await fetch('/api/fleet', { cache: 'no-store' })
    if (!res.ok) throw new Error(`the agent answered ${res.status}`)
    const view = await res.json()
    record(view)
    render(view)
    status.textContent = 'live'
    status.className = ''
    document.body.dataset.updatedAt = String(view.updatedAt)
  } catch (err) {
    status.textContent = `cannot reach the agent: ${err instanceof Error ? err.message : String(err)}`
    status.className = 'down'
  } finally {
    setTimeout(poll, EVERY)
  }
}

poll()
