/**
 * The fleet page end to end: three real agents pull one model from the real S3 server behind a
 * proxy that lets one chunk GET start at a time, every so often, and peers' downloads are rate
 * limited, so the pull lasts seconds; headless Chromium (Debian's, driven by playwright-core)
 * watches the page one agent serves on its metrics port, sees the nodes progress, and ends
 * seeing all three hold the model. A screenshot goes to .test-results/fleet-page.png.
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { swarm } from './helpers/cli.js'
import { writeSyntheticModel } from './helpers/model.js'
import { openWorld } from './helpers/world.js'
import type { Browser, Page } from 'playwright-core'
import type { RunningAgent } from './helpers/agents.js'
import type { ProxiedWorld } from './helpers/world.js'

const RESULTS = fileURLToPath(new URL('../.test-results/', import.meta.url))
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']

/** What the page shows in its nodes × models table, read from the DOM. */
interface Cell { node: string, state: string, percent: number }

async function cells (page: Page, manifestCid: string): Promise<Cell[]> {
  return await page.$$eval(`#fleet tbody td[data-model="${manifestCid}"]`, tds => tds.map(td => ({
    node: td.parentElement?.getAttribute('data-node') ?? '',
    state: td.getAttribute('data-state') ?? '',
    percent: Number(td.getAttribute('data-percent'))
  })))
}

describe('the fleet page', () => {
  let world: ProxiedWorld
  let browser: Browser | undefined
  let agents: RunningAgent[] = []

  beforeAll(async () => {
    world = await openWorld('fleet-page', { proxy: true })
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS })
  })

  afterAll(async () => {
    await browser?.close()
    await world?.close()
  }, 60_000)

  it('shows three agents pulling, their progress, and all three complete', async () => {
    const model = await writeSyntheticModel(join(world.work, 'model'), { layers: 4, hidden: 512, intermediate: 1536, vocab: 8192, shards: 2 })
    const manifestCid = await world.push(model.dir, 'page:v1', { env: world.directEnv, args: ['--data-dir', join(world.work, 'pusher')] })
    agents = await world.startFleet('agent', 3, { env: { ...world.env, SWARM_DOWNLOAD_RATE: '6MiB' } })
    const peerIds = agents.map(a => a.peerId).sort()

    // the origin lets one chunk GET start every 100 ms
    let gate = Promise.resolve()
    world.proxy.holdChunkGet = () => {
      gate = gate.then(async () => { await new Promise(resolve => setTimeout(resolve, 100)) })
      return gate
    }

    const page = await browser!.newPage({ viewport: { width: 1280, height: 900 } })
    const errors: string[] = []
    page.on('pageerror', err => { errors.push(err.message) })
    page.on('console', message => { if (message.type() === 'error') errors.push(message.text()) })
    const response = await page.goto(`http://127.0.0.1:${agents[0]!.metricsPort}/fleet?every=250`)
    expect(response?.status()).toBe(200)
    expect(response?.headers()['content-security-policy']).toContain("script-src 'self'")
    // the three nodes are there before anything is pulled
    await page.waitForFunction(() => document.querySelectorAll('#fleet tbody tr').length === 3, undefined, { timeout: 20_000 })
    expect((await page.$$eval('#fleet tbody tr', rows => rows.map(r => r.getAttribute('data-node') ?? ''))).sort()).toEqual(peerIds)

    const started = performance.now()
    const pulls = Promise.all(agents.map(async agent => await swarm(['pull', 'page:v1', '--json'], agent.env)))
    let finished = false
    void pulls.finally(() => { finished = true })
    // what the page shows while they pull
    const seen: Cell[][] = []
    const rates: string[] = []
    while (!finished) {
      seen.push(await cells(page, manifestCid))
      rates.push(await page.$eval('#summary [data-k="rate"]', n => n.textContent ?? ''))
      await new Promise(resolve => setTimeout(resolve, 150))
    }
    process.stderr.write(`fleet page: 3 pulls took ${Math.round(performance.now() - started)} ms, ${seen.length} looks at the page\n`)
    for (const [i, pull] of (await pulls).entries()) expect(pull.code, `${pull.stderr}\n${agents[i]!.stderr()}`).toBe(0)

    const midway = seen.flat().filter(c => c.state === 'pulling' && c.percent > 0 && c.percent < 100)
    expect(midway.length, JSON.stringify(seen)).toBeGreaterThan(0)
    // each node's bar only moves forward
    for (const node of peerIds) {
      const percents = seen.flatMap(s => s.filter(c => c.node === node).map(c => c.percent))
      expect(percents).toEqual([...percents].sort((a, b) => a - b))
    }
    expect(rates.some(r => /^[1-9][\d.]* (KiB|MiB|GiB)\/s$/.test(r)), rates.join(', ')).toBe(true)

    // and at the end: all three complete, in the table, the counts and the chart
    await page.waitForFunction(cid => {
      const tds = [...document.querySelectorAll(`#fleet tbody td[data-model="${cid}"]`)]
      return tds.length === 3 && tds.every(td => td.getAttribute('data-state') === 'held' && td.getAttribute('data-percent') === '100')
    }, manifestCid, { timeout: 20_000 })
    const card = page.locator(`#models [data-model="${manifestCid}"]`)
    await expect.poll(async () => await card.locator('[data-count="held"]').textContent()).toBe('3 held')
    expect(await card.locator('h3').textContent()).toBe('page:v1')
    const fleetLine = await card.locator('polyline[data-fleet]').getAttribute('points') ?? ''
    const ys = fleetLine.split(' ').map(p => Number(p.split(',')[1]))
    // SVG y grows downwards: the fleet's line starts lower than it ends, at 100%
    expect(ys.length).toBeGreaterThan(3)
    expect(Math.max(...ys)).toBeGreaterThan(Math.min(...ys))
    expect(ys[ys.length - 1]).toBe(Math.min(...ys))
    expect(await card.locator('polyline[data-node]').count()).toBe(3)
    // this node's own sources are known: bytes it got from peers count as origin bytes saved
    expect(await page.$eval('#summary [data-k="saved"]', n => n.textContent)).toMatch(/\d/)
    expect(errors).toEqual([])

    await mkdir(RESULTS, { recursive: true })
    await page.screenshot({ path: join(RESULTS, 'fleet-page.png'), fullPage: true })
    await page.close()
  }, 180_000)

  it('answers /api/fleet with the view, and only GET and HEAD on its routes', async () => {
    const base = `http://127.0.0.1:${agents[0]!.metricsPort}`
    const view = await (await fetch(`${base}/api/fleet`)).json() as { self: string, nodes: Array<{ peerId: string, self: boolean, models: Array<{ state: string, doneBytes: number, totalBytes: number }> }> }
    expect(view.self).toBe(agents[0]!.peerId)
    expect(view.nodes.map(n => n.peerId).sort()).toEqual(agents.map(a => a.peerId).sort())
    expect(view.nodes.filter(n => n.self).map(n => n.peerId)).toEqual([agents[0]!.peerId])
    for (const node of view.nodes) {
      expect(node.models).toHaveLength(1)
      expect(node.models[0]).toMatchObject({ state: 'held' })
      expect(node.models[0]!.doneBytes).toBe(node.models[0]!.totalBytes)
    }
    expect((await fetch(`${base}/api/fleet`, { method: 'POST' })).status).toBe(405)
    expect((await fetch(`${base}/fleet/other.js`)).status).toBe(404)
    const script = await fetch(`${base}/fleet/fleet.js`)
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/)
    expect(await script.text()).toContain('/api/fleet')
  })
})
