/**
 * Prometheus metrics and health endpoints on a local HTTP port: `/metrics`, `/healthz` (the
 * process answers), `/readyz` (the store is open and the libp2p node runs).
 */

import { createServer } from 'node:http'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Server } from 'node:http'
import type { SourceKind } from '@swarm/interface'

export interface AgentMetrics {
  registry: Registry
  bytes: Counter<'source'>
  chunksVerified: Counter
  chunksRejected: Counter<'source'>
  peers: Gauge
  pullDuration: Histogram<'result'>
  bytesServed: Gauge
  countBytes(kind: SourceKind, bytes: number): void
}

/** What the kernel FUSE adapter counts, when the view is mounted with it. */
export interface FuseCounts {
  reads: number
  readsForwarded: number
  opensPassthrough: number
  requestTimeouts: number
  passthrough: boolean
}

export function agentMetrics (collect: { openSwarm?: boolean, peers(): number, bytesServed(): number, fuse?(): FuseCounts | undefined }): AgentMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'swarm_process_' })
  const bytes = new Counter({ name: 'swarm_bytes_total', help: 'Chunk bytes stored, by where they came from', labelNames: ['source'] as const, registers: [registry] })
  for (const source of ['peer', 'origin', 'local']) bytes.inc({ source }, 0)
  const chunksVerified = new Counter({ name: 'swarm_chunks_verified_total', help: 'Chunks that hashed to their CID and were stored', registers: [registry] })
  const chunksRejected = new Counter({ name: 'swarm_chunks_rejected_total', help: 'Chunks whose bytes failed verification', labelNames: ['source'] as const, registers: [registry] })
  const peers = new Gauge({ name: 'swarm_peers', help: 'Peers connected over libp2p', registers: [registry], collect () { this.set(collect.peers()) } })
  const bytesServed = new Gauge({ name: 'swarm_bytes_served', help: 'Bytes served to peers since start', registers: [registry], collect () { this.set(collect.bytesServed()) } })
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
  fuseGauge('swarm_fuse_passthrough_opens', 'Opens of complete files the kernel reads itself', c => c.opensPassthrough)
  fuseGauge('swarm_fuse_passthrough', '1 while the kernel accepts passthrough', c => c.passthrough ? 1 : 0)
  fuseGauge('swarm_fuse_request_timeouts', 'Requests the view did not answer in time, answered EIO by the FUSE server', c => c.requestTimeouts)
  new Gauge({ name: 'swarm_insecure_open_swarm', help: '1 when the agent runs without a swarm key (--insecure-open-swarm): any host that reaches it may join', registers: [registry] }).set(collect.openSwarm === true ? 1 : 0)
  const pullDuration = new Histogram({ name: 'swarm_pull_duration_seconds', help: 'Duration of pulls', labelNames: ['result'] as const, buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600], registers: [registry] })
  return {
    registry,
    bytes,
    chunksVerified,
    chunksRejected,
    peers,
    pullDuration,
    bytesServed,
    countBytes (kind, n) {
      bytes.inc({ source: kind }, n)
      chunksVerified.inc()
    }
  }
}

export async function serveMetrics (metrics: AgentMetrics, host: string, port: number, ready: () => boolean): Promise<Server> {
  const server = createServer((req, res) => {
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
