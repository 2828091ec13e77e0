/**
 * Prometheus metrics and health endpoints on a local HTTP port: `/metrics`, `/healthz` (the
 * process answers), `/readyz` (the store is open and the libp2p node runs); the fleet page and
 * its JSON (`fleet-page.ts`: `/fleet`, `/api/fleet`) are served beside them.
 *
 * Fleet series come from this node's fleet view at each scrape, so every agent exports the whole
 * fleet as it sees it; the `model` label is bounded to {@link MAX_FLEET_MODEL_SERIES} models.
 */

import { createServer } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { DataServerStats } from '@swarm/exchange'
import type { SourceKind } from '@swarm/interface'
import type { ControlStats, FleetStats, PeerScoreStats } from '@swarm/p2p'
import type { FleetView } from './fleet.js'

/** Models the fleet series name at most; the rest are left out of `swarm_fleet_model_nodes`. */
export const MAX_FLEET_MODEL_SERIES = 256

/** The fleet as this node sees it, and what the gossip table costs, read at each scrape. */
export interface FleetCounts {
  view: FleetView
  stats: FleetStats
}

export interface AgentMetrics {
  registry: Registry
  bytes: Counter<'source'>
  chunksVerified: Counter
  chunksRejected: Counter<'source'>
  peers: Gauge
  pullDuration: Histogram<'result'>
  bytesServed: Gauge
  /** exceptions caught in handlers of peer events (each one a bug, logged, never fatal) */
  handlerErrors: Counter<'handler'>
  countBytes(kind: SourceKind, bytes: number): void
}

/** What the libp2p node counts about peers' control messages and bans, read at each scrape. */
export interface PeerCounts {
  control: ControlStats
  scores: PeerScoreStats
}

/** What the kernel FUSE adapter counts, when the view is mounted with it. */
export interface FuseCounts {
  reads: number
  readsForwarded: number
  readsSpliced: number
  opensPassthrough: number
  requestTimeouts: number
  passthrough: boolean
}

/** CPU time of one thread of this process, as `swarm status` shows it. */
export interface ThreadCpuTime {
  /** `main`, or `worker-<i>` for the i-th byte worker */
  name: string
  userSeconds: number
  systemSeconds: number
}

export function agentMetrics (collect: { openSwarm?: boolean, threads?(): Promise<ThreadCpuTime[]>, peers(): number, bytesServed(): Promise<number> | number, dataServer?(): Promise<Readonly<DataServerStats>> | Readonly<DataServerStats>, fuse?(): FuseCounts | undefined, peerCounts?(): PeerCounts | undefined, fleet?(): FleetCounts | undefined }): AgentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'swarm_process_' })
  const bytes = new Counter({ name: 'swarm_bytes_total', help: 'Chunk bytes stored, by where they came from', labelNames: ['source'] as const, registers: [registry] })
  for (const source of ['peer', 'origin', 'local']) bytes.inc({ source }, 0)
  const chunksVerified = new Counter({ name: 'swarm_chunks_verified_total', help: 'Chunks that hashed to their CID and were stored', registers: [registry] })
  const chunksRejected = new Counter({ name: 'swarm_chunks_rejected_total', help: 'Chunks whose bytes failed verification', labelNames: ['source'] as const, registers: [registry] })
  // present from the start, so an alert's increase() sees the first rejection too
  chunksRejected.inc({ source: 'peer' }, 0)
  // where each core goes: the main thread schedules and talks control, byte workers move bytes
  new Counter({
    name: 'swarm_thread_cpu_seconds_total',
    help: 'CPU time of each thread of the agent (main, and each byte worker), by mode',
    labelNames: ['thread', 'mode'] as const,
    registers: [registry],
    async collect () {
      const main = process.threadCpuUsage()
      const threads = await collect.threads?.() ?? [{ name: 'main', userSeconds: main.user / 1e6, systemSeconds: main.system / 1e6 }]
      this.reset()
      for (const thread of threads) {
        this.inc({ thread: thread.name, mode: 'user' }, thread.userSeconds)
        this.inc({ thread: thread.name, mode: 'system' }, thread.systemSeconds)
      }
    }
  })
  const peers = new Gauge({ name: 'swarm_peers', help: 'Peers connected over libp2p', registers: [registry], collect () { this.set(collect.peers()) } })
  const bytesServed = new Gauge({ name: 'swarm_bytes_served', help: 'Bytes served to peers since start', registers: [registry], async collect () { this.set(await collect.bytesServed()) } })
  // cumulative since the mount, read from the adapter at each scrape (hence gauges)
  const fuseGauge = (name: string, help: string, value: (counts: FuseCounts) => number): Gauge => new Gauge({
    name,
    help,
    registers: [registry],
    collect () {
      const counts = collect.fuse?.()
      if (counts !== undefined) this.set(value(counts))
    }
  })
  fuseGauge('swarm_fuse_read_requests', 'Read requests that reached the FUSE server (none for files opened in passthrough)', c => c.reads)
  fuseGauge('swarm_fuse_reads_forwarded', 'Read requests that needed chunks fetched first', c => c.readsForwarded)
  fuseGauge('swarm_fuse_reads_spliced', 'Read requests answered by splicing the store\'s file to the kernel', c => c.readsSpliced)
  fuseGauge('swarm_fuse_passthrough_opens', 'Opens of complete files the kernel reads itself', c => c.opensPassthrough)
  fuseGauge('swarm_fuse_passthrough', '1 while the kernel accepts passthrough', c => c.passthrough ? 1 : 0)
  fuseGauge('swarm_fuse_request_timeouts', 'Requests the view did not answer in time, answered EIO by the FUSE server', c => c.requestTimeouts)
  new Gauge({ name: 'swarm_insecure_open_swarm', help: '1 when the agent runs without a swarm key (--insecure-open-swarm): any host that reaches it may join', registers: [registry] }).set(collect.openSwarm === true ? 1 : 0)
  dataServerMetrics(registry, collect.dataServer)
  // counted inside @swarm/p2p and read at each scrape: a flood costs no metric updates
  const peerCounterBy = (name: string, help: string, label: string, counted: (counts: PeerCounts) => Record<string, number>): Counter => new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect () {
      const counts = collect.peerCounts?.()
      if (counts === undefined) return
      this.reset()
      for (const [value, n] of Object.entries(counted(counts))) this.inc({ [label]: value }, n)
    }
  })
  peerCounterBy('swarm_peer_messages_rejected_total', 'Control messages from peers dropped, by reason (see the Limits table in README.md)', 'reason', c => c.control.rejected)
  peerCounterBy('swarm_peer_messages_sent_total', 'Control messages written to peers, by type (join, have, arriving, ...)', 'type', c => c.control.sent)
  const peerGauge = (name: string, help: string, value: (counts: PeerCounts) => number): Gauge => new Gauge({
    name,
    help,
    registers: [registry],
    collect () {
      const counts = collect.peerCounts?.()
      if (counts !== undefined) this.set(value(counts))
    }
  })
  peerGauge('swarm_peer_control_state_bytes', 'Control state held for peers (bitfields and joined manifests), as the budgets count it', c => c.control.stateBytes)
  peerGauge('swarm_peer_control_state_max_peer_bytes', 'The most control state held for any one peer', c => c.control.maxPeerStateBytes)
  peerGauge('swarm_peers_banned', 'Peers banned now', c => c.scores.banned)
  new Counter({
    name: 'swarm_peer_bans_total',
    help: 'Peers banned for misbehaving since start',
    registers: [registry],
    collect () {
      const counts = collect.peerCounts?.()
      if (counts === undefined) return
      this.reset()
      this.inc(counts.scores.bans)
    }
  })
  fleetMetrics(registry, collect.fleet)
  const handlerErrors = new Counter({ name: 'swarm_peer_handler_errors_total', help: 'Exceptions caught in handlers of peer events (logged; never fatal)', labelNames: ['handler'] as const, registers: [registry] })
  const pullDuration = new Histogram({ name: 'swarm_pull_duration_seconds', help: 'Duration of pulls', labelNames: ['result'] as const, buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600], registers: [registry] })
  return {
    registry,
    bytes,
    chunksVerified,
    chunksRejected,
    peers,
    pullDuration,
    bytesServed,
    handlerErrors,
    countBytes (kind, n) {
      bytes.inc({ source: kind }, n)
      chunksVerified.inc()
    }
  }
}

function fleetMetrics (registry: Registry, fleet: (() => FleetCounts | undefined) | undefined): void {
  if (fleet === undefined) return
  new Gauge({ name: 'swarm_fleet_nodes', help: 'Nodes of the fleet this node knows of, itself included', registers: [registry], collect () { this.set(fleet()?.view.nodes.length ?? 0) } })
  new Gauge({
    name: 'swarm_fleet_model_nodes',
    help: 'Nodes of the fleet by model (its name:tag, or manifest CID) and state: held, pulling, failed, declined',
    labelNames: ['model', 'state'] as const,
    registers: [registry],
    collect () {
      const counts = fleet()
      this.reset()
      if (counts === undefined) return
      const names = new Map<string, string>()
      const tally = new Map<string, number>()
      for (const node of counts.view.nodes) {
        for (const model of node.models) {
          if (model.manifestCid === '' && model.ref == null) continue
          const key = model.manifestCid !== '' ? model.manifestCid : `ref:${model.ref ?? ''}`
          if (!names.has(key)) {
            if (names.size >= MAX_FLEET_MODEL_SERIES) continue
            names.set(key, model.ref ?? model.manifestCid)
          }
          const series = `${key}\n${model.state}`
          tally.set(series, (tally.get(series) ?? 0) + 1)
        }
      }
      for (const [key, name] of names) {
        for (const state of ['held', 'pulling', 'failed', 'declined']) this.set({ model: name, state }, tally.get(`${key}\n${state}`) ?? 0)
      }
    }
  })
  new Gauge({ name: 'swarm_fleet_table_bytes', help: 'Memory the fleet table holds for other nodes, as its budget counts it', registers: [registry], collect () { this.set(fleet()?.stats.tableBytes ?? 0) } })
  new Gauge({ name: 'swarm_fleet_table_budget_bytes', help: 'The fleet table\'s memory budget', registers: [registry], collect () { this.set(fleet()?.stats.maxTableBytes ?? 0) } })
  new Counter({
    name: 'swarm_fleet_messages_rejected_total',
    help: 'Fleet gossip messages not stored, by reason: malformed, rate-limited, stale, over-budget',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect () {
      const counts = fleet()
      if (counts === undefined) return
      this.reset()
      for (const [reason, n] of Object.entries(counts.stats.rejected)) this.inc({ reason }, n)
    }
  })
  new Counter({
    name: 'swarm_fleet_streams_reopened_total',
    help: 'Gossip streams to connected peers found closed and opened again',
    registers: [registry],
    collect () {
      const counts = fleet()
      if (counts === undefined) return
      this.reset()
      this.inc(counts.stats.streamsReopened)
    }
  })
}

/** The data server's limits at work: timeouts, refused connections, slots and connections in use, BUSY answers. */
function dataServerMetrics (registry: Registry, stats: (() => Promise<Readonly<DataServerStats>> | Readonly<DataServerStats>) | undefined): void {
  if (stats === undefined) return
  // the server counts; each scrape sets the counters to its totals
  const totals = <L extends string>(name: string, help: string, label: L, values: (s: Readonly<DataServerStats>) => Record<string, number>): Counter<L> => new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    async collect () {
      const now = values(await stats())
      this.reset()
      for (const [value, n] of Object.entries(now)) this.inc({ [label]: value } as Partial<Record<L, string>>, n)
    }
  })
  totals('swarm_data_timeouts_total', 'Data connections closed for a timeout: a response the peer did not take (write), silence (idle), no authentication in time (handshake)', 'kind', s => s.timeouts)
  totals('swarm_data_connections_refused_total', 'Data connections refused for a cap: on all connections (total) or on the peer\'s (peer)', 'cap', s => ({ total: s.refusedConnections.total, peer: s.refusedConnections.perPeer }))
  totals('swarm_data_relays_total', 'Chunks sent on while they still arrived here (cut-through): all (started), and those cut short when the chunk stopped arriving (cut)', 'outcome', s => ({ started: s.relays, cut: s.relaysCut }))
  new Counter({ name: 'swarm_data_busy_total', help: 'Requests answered BUSY: no upload slot free to the peer', registers: [registry], async collect () { const busy = (await stats()).busy; this.reset(); this.inc(busy) } })
  new Gauge({ name: 'swarm_data_connections', help: 'Authenticated data connections open', registers: [registry], async collect () { this.set((await stats()).connections) } })
  new Gauge({ name: 'swarm_data_upload_slots_used', help: 'Upload slots taken', registers: [registry], async collect () { this.set((await stats()).uploads) } })
  new Gauge({ name: 'swarm_data_upload_slots_open', help: 'Upload slots open now: as many as land within a second each, up to SWARM_UPLOAD_SLOTS', registers: [registry], async collect () { this.set((await stats()).uploadLimit) } })
}

export async function serveMetrics (metrics: AgentMetrics, host: string, port: number, ready: () => boolean, routes?: (req: IncomingMessage, res: ServerResponse) => boolean): Promise<Server> {
  const server = createServer((req, res) => {
    // more pages on this port (the fleet page): a route that answers returns true
    if (routes?.(req, res) === true) return
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(text => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType })
        res.end(text)
      }, err => {
        res.writeHead(500)
        res.end(String(err))
      })
      return
    }
    if (req.url === '/healthz') {
      res.writeHead(200).end('ok\n')
      return
    }
    if (req.url === '/readyz') {
      const ok = ready()
      res.writeHead(ok ? 200 : 503).end(ok ? 'ready\n' : 'starting\n')
      return
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { resolve() })
  })
  return server
}
