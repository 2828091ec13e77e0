/**
 * Monitoring for real: Debian's `prometheus` server, started here with its own config and data
 * directory, scrapes three real agents while they pull a model, loads the alert rules shipped
 * in agents/swarm/deploy/monitoring/, and answers through its HTTP API that the bytes-by-source
 * and fleet-progress series are there. The rules pass `promtool check rules` and their unit
 * tests (`promtool test rules`), and every series the rules and the Grafana dashboard read is one
 * the agent exports; the dashboard's queries are also run through the real server's parser.
 */

import { execFile, spawn } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { swarm } from './helpers/cli.js'
import { SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { openWorld } from './helpers/world.js'
import type { ChildProcess } from 'node:child_process'
import type { RunningAgent } from './helpers/agents.js'
import type { TestWorld } from './helpers/world.js'

const MONITORING = fileURLToPath(new URL('../agents/swarm/deploy/monitoring/', import.meta.url))
const RULES = join(MONITORING, 'prometheus-rules.yaml')
const RULE_TESTS = join(MONITORING, 'prometheus-rules.test.yaml')
const DASHBOARD = join(MONITORING, 'grafana-dashboard.json')

const run = promisify(execFile)

const Rules = z.object({
  groups: z.array(z.object({
    name: z.string(),
    rules: z.array(z.object({ alert: z.string(), expr: z.string() }).passthrough()).min(1)
  })).min(1)
})

const Dashboard = z.object({
  title: z.string(),
  uid: z.string(),
  panels: z.array(z.object({
    title: z.string(),
    type: z.string(),
    targets: z.array(z.object({ refId: z.string(), expr: z.string().min(1) }).passthrough()).min(1)
  }).passthrough()).min(1)
}).passthrough()

const QueryResult = z.object({
  status: z.literal('success'),
  data: z.object({ resultType: z.literal('vector'), result: z.array(z.object({ metric: z.record(z.string(), z.string()), value: z.tuple([z.number(), z.string()]) })) })
})
type Sample = z.infer<typeof QueryResult>['data']['result'][number]

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  if (address == null || typeof address === 'string') throw new Error('no port')
  return address.port
}

/** Series names a PromQL expression reads (every name here starts with swarm_). */
function seriesIn (expr: string): string[] {
  return [...expr.matchAll(/\bswarm_[a-z0-9_]+/g)].map(m => m[0])
}

/** Metric names the agent exports, from its /metrics (# TYPE lines, so series with no sample yet count), with a histogram's series. */
async function exportedSeries (agent: RunningAgent): Promise<Set<string>> {
  const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text()
  const names = new Set<string>()
  for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(name!)
    if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name!}${suffix}`)
  }
  return names
}

describe('Prometheus scraping three agents', () => {
  let world: TestWorld
  let prometheus: ChildProcess | undefined
  let prometheusLog = ''
  let api: string
  let agents: RunningAgent[] = []

  async function query (expr: string): Promise<Sample[]> {
    const res = await fetch(`${api}/api/v1/query?${new URLSearchParams({ query: expr })}`)
    const body = await res.json() as unknown
    if (!res.ok) throw new Error(`query ${expr}: ${res.status} ${JSON.stringify(body)}`)
    return QueryResult.parse(body).data.result
  }

  /** Polls until the query's samples pass the check, or fails with the last answer. */
  async function until (expr: string, ok: (samples: Sample[]) => boolean, timeoutMs = 30_000): Promise<Sample[]> {
    const deadline = Date.now() + timeoutMs
    let last: Sample[] = []
    while (Date.now() < deadline) {
      last = await query(expr)
      if (ok(last)) return last
      await new Promise(resolve => setTimeout(resolve, 500))
    }
    throw new Error(`${expr} never passed; last: ${JSON.stringify(last)}\nprometheus: ${prometheusLog}`)
  }

  beforeAll(async () => {
    world = await openWorld('prometheus')
  })

  afterAll(async () => {
    if (prometheus != null && prometheus.exitCode == null) {
      const exited = new Promise(resolve => prometheus?.once('exit', resolve))
      prometheus.kill('SIGTERM')
      await exited
    }
    await world?.close()
  }, 60_000)

  it('the alert rules pass promtool check rules and their unit tests', async () => {
    const check = await run('promtool', ['check', 'rules', RULES])
    expect(check.stdout).toMatch(/SUCCESS: 5 rules found/)
    const tests = await run('promtool', ['test', 'rules', RULE_TESTS])
    expect(tests.stdout).toMatch(/SUCCESS/)
  })

  it('promtool refuses a broken rule: the check is not vacuous', async () => {
    const broken = join(world.work, 'broken-rules.yaml')
    const rules = Rules.parse(parseYaml(await readFile(RULES, 'utf8')))
    rules.groups[0]!.rules[0]!.expr = 'sum by (instance) (rate(swarm_bytes_total[5m])'
    await writeFile(broken, JSON.stringify(rules))
    await expect(run('promtool', ['check', 'rules', broken])).rejects.toMatchObject({ stderr: expect.stringMatching(/FAILED[\s\S]*unclosed left parenthesis/) })
  })

  it('scrapes bytes by source and fleet progress from three agents pulling, with the rules loaded', async () => {
    const model = await writeSyntheticModel(join(world.work, 'model'), { ...SMALL_SHAPE, shards: 1 })
    await world.push(model.dir, 'prom:v1', { args: ['--data-dir', join(world.work, 'pusher')] })
    agents = await world.startFleet('agent', 3)

    const port = await freePort()
    api = `http://127.0.0.1:${port}`
    const config = join(world.work, 'prometheus.yml')
    await writeFile(config, JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: [RULES],
      scrape_configs: [{ job_name: 'swarm', static_configs: [{ targets: agents.map(a => `127.0.0.1:${a.metricsPort}`) }] }]
    }))
    prometheus = spawn('prometheus', [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(world.work, 'prometheus-data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn'
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    prometheus.stderr?.setEncoding('utf8').on('data', (d: string) => { prometheusLog += d })
    for (let ready = false; !ready;) {
      if (prometheus.exitCode != null) throw new Error(`prometheus exited with ${prometheus.exitCode}: ${prometheusLog}`)
      ready = await fetch(`${api}/-/ready`).then(r => r.ok, () => false)
      if (!ready) await new Promise(resolve => setTimeout(resolve, 200))
    }
    await until('up{job="swarm"} == 1', samples => samples.length === 3)

    const pulls = await Promise.all(agents.map(async agent => await swarm(['pull', 'prom:v1', '--json'], agent.env)))
    for (const [i, pull] of pulls.entries()) expect(pull.code, `${pull.stderr}\n${agents[i]!.stderr()}`).toBe(0)

    // bytes by source: every node reports peer and origin, and together they stored three copies
    const bySource = await until('swarm_bytes_total{job="swarm",source=~"peer|origin"}', samples => {
      const total = samples.reduce((sum, s) => sum + Number(s.value[1]), 0)
      return samples.length === 6 && total >= 3 * model.totalBytes * 0.95
    })
    expect(new Set(bySource.map(s => s.metric.instance))).toEqual(new Set(agents.map(a => `127.0.0.1:${a.metricsPort}`)))
    const [fromPeers] = await query('sum(swarm_bytes_total{job="swarm",source="peer"})')
    expect(Number(fromPeers?.value[1])).toBeGreaterThan(0)
    // fleet progress: each agent sees three nodes, and all three holding the model
    await until('swarm_fleet_nodes{job="swarm"}', samples => samples.length === 3 && samples.every(s => s.value[1] === '3'))
    const held = await until('swarm_fleet_model_nodes{job="swarm",model="prom:v1",state="held"}', samples => samples.length === 3 && samples.every(s => s.value[1] === '3'))
    expect(held).toHaveLength(3)
    await until('sum(swarm_pulls_in_progress{job="swarm"})', samples => samples[0]?.value[1] === '0')

    // the shipped rules are loaded and evaluate without error against the real series
    const rules = await (await fetch(`${api}/api/v1/rules`)).json() as { data: { groups: Array<{ name: string, rules: Array<{ name: string, health: string, lastError?: string }> }> } }
    const swarmRules = rules.data.groups.find(g => g.name === 'swarm')?.rules ?? []
    expect(swarmRules.map(r => r.name).sort()).toEqual(['SwarmNodeStuckPulling', 'SwarmOriginEgressAboveBudget', 'SwarmOriginShareHigh', 'SwarmPeerBanned', 'SwarmPeerSentBadBytes'])
    await expect.poll(async () => {
      const body = await (await fetch(`${api}/api/v1/rules`)).json() as typeof rules
      return body.data.groups.find(g => g.name === 'swarm')?.rules.map(r => `${r.name}:${r.health}${r.lastError ?? ''}`)
    }, { timeout: 10_000 }).toEqual(swarmRules.map(r => `${r.name}:ok`))

    // the dashboard's queries parse and run on the real server (Grafana's variables given values)
    const dashboard = Dashboard.parse(JSON.parse(await readFile(DASHBOARD, 'utf8')))
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const expr = target.expr.replaceAll('$__rate_interval', '1m').replaceAll('$__range', '5m')
        await expect(query(expr), `${panel.title}: ${expr}`).resolves.toBeInstanceOf(Array)
      }
    }
  }, 240_000)

  it('the rules and the dashboard read only series the agent exports', async () => {
    expect(agents.length).toBeGreaterThan(0)
    const exported = await exportedSeries(agents[0]!)
    const rules = Rules.parse(parseYaml(await readFile(RULES, 'utf8')))
    const dashboard = Dashboard.parse(JSON.parse(await readFile(DASHBOARD, 'utf8')))
    const read = new Map<string, string>()
    for (const rule of rules.groups.flatMap(g => g.rules)) for (const name of seriesIn(rule.expr)) read.set(name, `rule ${rule.alert}`)
    for (const panel of dashboard.panels) for (const target of panel.targets) for (const name of seriesIn(target.expr)) read.set(name, `panel ${panel.title}`)
    // what this check exists for: the fleet series, bytes by source, and the alerts' subjects
    for (const name of ['swarm_bytes_total', 'swarm_fleet_nodes', 'swarm_fleet_model_nodes', 'swarm_pulls_in_progress', 'swarm_chunks_rejected_total', 'swarm_peer_bans_total']) {
      expect(read.has(name), name).toBe(true)
    }
    const unknown = [...read].filter(([name]) => !exported.has(name)).map(([name, where]) => `${name} (${where})`)
    expect(unknown).toEqual([])
    // and the check catches a name the agent does not export
    expect(seriesIn('rate(swarm_bytes_totl[5m])').filter(name => !exported.has(name))).toEqual(['swarm_bytes_totl'])
  })
})
