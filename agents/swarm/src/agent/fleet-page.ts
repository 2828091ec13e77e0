/**
 * The fleet page on the agent's metrics port: `GET /fleet` serves a hand-written page and its
 * script from this package's `web/` folder (shipped as they are: there is no build step to run),
 * `GET /api/fleet` the fleet view as JSON, which the page polls, and the fleet series join
 * `/metrics`.
 * The view is the agent's fleet knowledge (`Agent.fleet()`, gossiped; see `fleet.ts`).
 *
 * The page keeps its history in the browser: rates and the completion chart come from successive
 * views, so nothing here grows with time. Peers name the text it shows (labels, refs, reasons),
 * so the page writes it with `textContent` only, and a Content-Security-Policy allows no script
 * but its own.
 */

import { readFile } from 'node:fs/promises'
import { Gauge } from 'prom-client'
import type { Agent } from './agent.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** What the fleet routes read from an agent. */
export type FleetSource = Pick<Agent, 'fleet' | 'status' | 'metrics' | 'log'>

/** Files of the page, in this package's `web/` folder (beside `src/` and `dist/`). */
const WEB_DIR = new URL('../../web/', import.meta.url)
const ASSETS: Record<string, { file: string, type: string }> = {
  '/fleet': { file: 'fleet.html', type: 'text/html; charset=utf-8' },
  '/fleet/fleet.js': { file: 'fleet.js', type: 'text/javascript; charset=utf-8' }
}
/** the page's own script and inline styles, nothing else; peers' text never becomes markup */
const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/** This node's own `swarm_pulls_in_progress` (the alert for a stuck pull reads it); the fleet series are in `metrics.ts`. */
export function registerFleetMetrics (agent: FleetSource): void {
  const registry = agent.metrics.registry
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
 * or returns false for a request that is not its own. Registers `swarm_pulls_in_progress` too.
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
      if (asset == null) return { type: 'application/json', body: JSON.stringify(agent.fleet()) }
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
