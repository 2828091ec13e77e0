/**
 * The fleet page on the agent's metrics port: `GET /fleet` serves a hand-written page and its
 * script from this package's `web/` folder (shipped as they are: there is no build step to run),
 * `GET /api/fleet` the fleet view as JSON, which the page polls, and the fleet series join
 * `/metrics`.
 *
 * Where the view comes from. An agent that knows the fleet (`fleet()`, the gossiped fleet
 * knowledge) answers with that. Until then, and for an agent without it, the view is what this
 * one agent knows for itself ({@link localFleetView}): its own models and pulls, the peers it is
 * connected to, and, for every model it holds or pulls, each peer that joined that model on the
 * control channel with its bitfield, so how far that peer has got. It cannot see models this
 * node has not joined (the control channel keeps peers' state only for those), nor where a
 * peer's bytes came from (those count 0) or its labels.
 *
 * The page keeps its history in the browser: rates and the completion chart come from successive
 * views, so nothing here grows with time. Peers name the text it shows (labels, refs, reasons),
 * so the page writes it with `textContent` only, and a Content-Security-Policy allows no script
 * but its own.
 */

import { readFile } from 'node:fs/promises'
import { countBits, hasBit } from '@swarm/p2p'
import { Gauge } from 'prom-client'
import { uniqueChunks } from './session.js'
import type { Agent, TransferStatus } from './agent.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

export interface FleetModel {
  manifestCid: string
  /** `name:tag`, when the node knows one */
  ref?: string
  state: 'held' | 'pulling' | 'failed' | 'declined'
  doneBytes: number
  totalBytes: number
  bytesFromPeers: number
  bytesFromOrigin: number
  /** why a pull failed or was declined */
  reason?: string
}

export interface FleetNode {
  peerId: string
  labels: Record<string, string>
  /** ms since epoch */
  lastSeen: number
  self: boolean
  models: FleetModel[]
}

export interface FleetView {
  /** this agent's peer id */
  self: string
  /** ms since epoch */
  updatedAt: number
  nodes: FleetNode[]
}

/** What the fleet routes read from an agent; `fleet`, once an agent has it, is the fleet-wide view. */
export type FleetSource = Pick<Agent, 'node' | 'store' | 'status' | 'metrics' | 'log'> & {
  fleet?: () => FleetView | Promise<FleetView>
}

/** Files of the page, in this package's `web/` folder (beside `src/` and `dist/`). */
const WEB_DIR = new URL('../../web/', import.meta.url)
const ASSETS: Record<string, { file: string, type: string }> = {
  '/fleet': { file: 'fleet.html', type: 'text/html; charset=utf-8' },
  '/fleet/fleet.js': { file: 'fleet.js', type: 'text/javascript; charset=utf-8' }
}
/** the page's own script and inline styles, nothing else; peers' text never becomes markup */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** The view: the agent's fleet knowledge when it has some, else what it knows locally. */
export async function fleetView (agent: FleetSource): Promise<FleetView> {
  return await (agent.fleet?.() ?? localFleetView(agent))
}

/** Where this node's bytes of each model came from, as last seen while its pull ran (see {@link localFleetView}). */
const lastSources = new WeakMap<FleetSource, Map<string, TransferStatus['progress']['bytesBySource']>>()

/**
 * The fleet as one agent sees it without fleet knowledge (see the notes at the top). Its own
 * bytes by source are the running pull's; once a pull is over they are what the last view built
 * while it ran saw (the page asks every second, Prometheus at each scrape).
 */
export function localFleetView (agent: FleetSource): FleetView {
  const now = Date.now()
  const self = agent.node.peerId
  // status() is the agent's one list of pulls in flight
  const transfers = new Map((agent.status().transfers as TransferStatus[]).map(t => [t.manifestCid, t]))
  let sources = lastSources.get(agent)
  if (sources == null) {
    sources = new Map()
    lastSources.set(agent, sources)
  }
  const heldCids = new Set(agent.store.models().map(m => m.manifestCid))
  for (const cid of sources.keys()) if (!heldCids.has(cid)) sources.delete(cid)
  for (const [cid, transfer] of transfers) sources.set(cid, { ...transfer.progress.bytesBySource })
  const selfNode: FleetNode = { peerId: self, labels: {}, lastSeen: now, self: true, models: [] }
  const peers = new Map<string, FleetNode>()
  const peerNode = (peerId: string): FleetNode => {
    let node = peers.get(peerId)
    if (node == null) {
      node = { peerId, labels: {}, lastSeen: now, self: false, models: [] }
      peers.set(peerId, node)
    }
    return node
  }
  for (const peerId of agent.node.connectedPeers()) peerNode(peerId)

  for (const held of agent.store.models()) {
    const manifest = agent.store.getManifest(held.manifestCid)
    if (manifest == null) continue
    const chunks = uniqueChunks(manifest)
    const totalBytes = chunks.reduce((sum, c) => sum + c.size, 0)
    const ref = held.refs[0]
    const transfer = transfers.get(held.manifestCid)
    const doneBytes = transfer?.progress.doneBytes ?? chunks.reduce((sum, c) => sum + (agent.store.hasChunk(c.cid) ? c.size : 0), 0)
    selfNode.models.push({
      manifestCid: held.manifestCid,
      ...(ref != null ? { ref } : {}),
      ...stateOf(doneBytes, totalBytes, transfer != null),
      doneBytes,
      totalBytes,
      bytesFromPeers: sources.get(held.manifestCid)?.peer ?? 0,
      bytesFromOrigin: sources.get(held.manifestCid)?.origin ?? 0
    })
    for (const peer of agent.node.control.peersFor(held.manifestCid)) {
      // the control channel keeps only bitfields that fit this manifest's chunk count
      const done = countBits(peer.bitfield) === chunks.length
        ? totalBytes
        : chunks.reduce((sum, c, i) => sum + (hasBit(peer.bitfield, i) ? c.size : 0), 0)
      peerNode(peer.peerId).models.push({
        manifestCid: held.manifestCid,
        ...(ref != null ? { ref } : {}),
        ...stateOf(done, totalBytes, peer.pulling),
        doneBytes: done,
        totalBytes,
        bytesFromPeers: 0,
        bytesFromOrigin: 0
      })
    }
  }
  return { self, updatedAt: now, nodes: [selfNode, ...[...peers.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))] }
}

function stateOf (doneBytes: number, totalBytes: number, pulling: boolean): Pick<FleetModel, 'state' | 'reason'> {
  if (doneBytes >= totalBytes) return { state: 'held' }
  if (pulling) return { state: 'pulling' }
  return { state: 'failed', reason: 'incomplete, and no pull is running' }
}

/**
 * The fleet series, computed from the view at each scrape: `swarm_fleet_nodes` and
 * `swarm_fleet_model_nodes{model,state}`, and this node's own `swarm_pulls_in_progress` (the
 * alert for a stuck pull reads it). A series something else already registered is left to it.
 */
export function registerFleetMetrics (agent: FleetSource): void {
  const registry = agent.metrics.registry
  if (registry.getSingleMetric('swarm_fleet_nodes') == null) {
    new Gauge({
      name: 'swarm_fleet_nodes',
      help: 'Nodes in the fleet view of this agent',
      registers: [registry],
      async collect () { this.set((await fleetView(agent)).nodes.length) }
    })
  }
  if (registry.getSingleMetric('swarm_fleet_model_nodes') == null) {
    new Gauge({
      name: 'swarm_fleet_model_nodes',
      help: 'Nodes of the fleet view by model (name:tag, else manifest CID) and state: held, pulling, failed, declined',
      labelNames: ['model', 'state'] as const,
      registers: [registry],
      async collect () {
        const view = await fleetView(agent)
        this.reset()
        for (const node of view.nodes) {
          for (const model of node.models) this.inc({ model: model.ref ?? model.manifestCid, state: model.state })
        }
      }
    })
  }
  if (registry.getSingleMetric('swarm_pulls_in_progress') == null) {
    new Gauge({
      name: 'swarm_pulls_in_progress',
      help: 'Pulls this agent runs now',
      registers: [registry],
      collect () { this.set((agent.status().transfers as unknown[]).length) }
    })
  }
}

/**
 * The routes for `serveMetrics`: answers `/fleet`, its script and `/api/fleet` and returns true,
 * or returns false for a request that is not its own. Registers the fleet series too.
 */
export function fleetRoutes (agent: FleetSource): (req: IncomingMessage, res: ServerResponse) => boolean {
  registerFleetMetrics(agent)
  const files = new Map<string, Promise<Buffer>>()
  return (req, res) => {
    const path = (req.url ?? '').split('?')[0] ?? ''
    const asset = ASSETS[path]
    if (asset == null && path !== '/api/fleet') return false
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end()
      return true
    }
    const answer = async (): Promise<{ type: string, body: Buffer | string, headers?: Record<string, string> }> => {
      if (asset == null) return { type: 'application/json', body: JSON.stringify(await fleetView(agent)) }
      let file = files.get(asset.file)
      if (file == null) {
        file = readFile(new URL(asset.file, WEB_DIR))
        files.set(asset.file, file)
        // a failed read is tried again next time
        file.catch(() => { files.delete(asset.file) })
      }
      return { type: asset.type, body: await file, headers: asset.file.endsWith('.html') ? { 'content-security-policy': PAGE_CSP } : {} }
    }
    answer().then(({ type, body, headers }) => {
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers })
      res.end(req.method === 'HEAD' ? undefined : body)
    }, (err: Error) => {
      agent.log.warn({ err: err.message, path }, 'fleet route failed')
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`${err.message}\n`)
    })
    return true
  }
}
