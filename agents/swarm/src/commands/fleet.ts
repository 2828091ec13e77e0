/**
 * Fleet commands, all through the local agent's control socket: `swarm preheat` asks the fleet to
 * pull a model and follows it, `swarm wait` is the rollout gate (exit 0 once enough matching nodes
 * hold a model, verified; exit 7 with the missing nodes and why otherwise), `swarm fleet` shows
 * nodes × models. The rules for judging the fleet are in `fleet-watch.ts`.
 */

import { setTimeout as sleep } from 'node:timers/promises'
import { Option } from 'commander'
import { formatRef, isManifestCid, parseRef } from '@swarm/manifest'
import { formatBytes, outputMode, reporter } from '../progress.js'
import type { Command } from 'commander'
import type { Config } from '@swarm/config'
import type { FleetModel, FleetView } from '../agent/fleet.js'
import type { Assessment, FleetGoal, Seen } from './fleet-watch.js'
import { SwarmError } from '@swarm/interface'
import type * as P2p from '@swarm/p2p'
import type * as ControlApi from '../agent/control-client.js'
import type * as FleetWatch from './fleet-watch.js'

// the peer stack (for selectors), the control API's client and the rules load when a fleet command runs,
// not with every command of the CLI
let p2p: typeof P2p
let api: typeof ControlApi
let rules: typeof FleetWatch
async function load (): Promise<void> {
  p2p ??= await import('@swarm/p2p')
  api ??= await import('../agent/control-client.js')
  rules ??= await import('./fleet-watch.js')
}

/** How often the fleet view is read while watching. */
export const FLEET_POLL_MS = 500

export const DEFAULT_WAIT_TIMEOUT = '10m'
export const DEFAULT_PREHEAT_TIMEOUT = '30m'

/** The fleet did not reach the goal in time. */
export class FleetWaitTimeoutError extends SwarmError {
  override readonly code = 'ERR_FLEET_WAIT_TIMEOUT'
  constructor (message: string, readonly assessment: Assessment) {
    super(message)
  }
}

/** Every node a preheat asked has answered, and too few hold the model. */
export class PreheatIncompleteError extends SwarmError {
  override readonly code = 'ERR_PREHEAT_INCOMPLETE'
  constructor (message: string, readonly assessment: Assessment) {
    super(message)
  }
}

export class FleetUsageError extends SwarmError {
  override readonly code = 'ERR_CONFIG'
}

export interface FleetCommandDeps {
  /** the configuration and global options of a command */
  setup(command: Command): Promise<{ config: Config, json: boolean }>
  signal: AbortSignal
}

interface GoalFlags { nodes?: string, min?: string, all?: boolean, local?: boolean, timeout?: string }

function goalFrom (flags: GoalFlags, target: { manifestCid?: string, ref?: string }, needGoal: boolean): FleetGoal {
  if (flags.min != null && flags.all === true) throw new FleetUsageError('give --min N or --all, not both')
  const min = flags.min != null ? Number(flags.min) : undefined
  if (min != null && (!Number.isSafeInteger(min) || min < 1)) throw new FleetUsageError(`--min must be a whole number of nodes, 1 or more, not "${flags.min}"`)
  if (needGoal && min == null && flags.all !== true && flags.local !== true) throw new FleetUsageError('say how many nodes: --min N, --all, or --local')
  return { ...target, selector: p2p.parseSelector(flags.nodes ?? ''), ...(min != null ? { min } : { all: flags.all !== false || flags.local === true }), ...(flags.local === true ? { local: true } : {}) }
}

function targetName (goal: FleetGoal): string {
  return `${goal.ref ?? goal.manifestCid ?? '?'}${goal.ref != null && goal.manifestCid != null ? ` (${goal.manifestCid})` : ''}`
}

function scope (goal: FleetGoal): string {
  if (goal.local === true) return 'this node'
  const selector = p2p.formatSelector(goal.selector)
  return selector === '' ? 'nodes' : `nodes matching ${selector}`
}

/** Resolves a target through the agent (which has the origin), so the CLI needs no credentials. */
async function resolveTarget (socket: string, target: string): Promise<{ manifestCid?: string, ref?: string }> {
  if (!isManifestCid(target)) parseRef(target)
  const answer = await api.agentRequest(socket, '/v1/resolve', { target })
  return {
    ...(typeof answer.manifestCid === 'string' ? { manifestCid: answer.manifestCid } : {}),
    ...(typeof answer.ref === 'string' ? { ref: answer.ref } : {})
  }
}

/** Polls the fleet view until the goal is met; throws when the time is up or (preheat) every node has answered short of it. */
async function watch (socket: string, goal: FleetGoal, options: { label: string, json: boolean, timeoutMs: number, stopWhenSettled: boolean, signal: AbortSignal }): Promise<Assessment> {
  const seen: Seen = new Map()
  const progress = reporter(outputMode(options.json), options.label)
  const started = Date.now()
  try {
    for (;;) {
      const assessment = rules.assess(await api.agentFleet(socket), goal, seen)
      progress.update({
        doneBytes: assessment.doneBytes,
        totalBytes: assessment.totalBytes,
        detail: { status: rules.statusText(assessment), nodes: assessment.counts, required: assessment.required, matching: assessment.matching, bytesFromPeers: assessment.bytesFromPeers, bytesFromOrigin: assessment.bytesFromOrigin }
      })
      if (assessment.met) return assessment
      const summary = `${assessment.held.length} of ${assessment.required} required ${scope(goal)} hold ${targetName(goal)}`
      const missing = assessment.matching === 0 && assessment.missing.length === 0 ? `no ${scope(goal).replace(/^nodes/, 'node')} is in the fleet` : `missing: ${rules.missingText(assessment)}`
      if (options.stopWhenSettled && assessment.settled) throw new PreheatIncompleteError(`preheat incomplete: ${summary}; every matching node has answered; ${missing}`, assessment)
      const left = options.timeoutMs - (Date.now() - started)
      if (left <= 0) throw new FleetWaitTimeoutError(`timed out after ${rules.formatDuration(options.timeoutMs)}: ${summary}; ${missing}`, assessment)
      await sleep(Math.min(FLEET_POLL_MS, left), undefined, { signal: options.signal })
    }
  } finally {
    progress.stop()
  }
}

function outcome (assessment: Assessment): Record<string, unknown> {
  return {
    held: assessment.held.map(s => s.peerId),
    missing: assessment.missing.map(s => ({ peerId: s.peerId, labels: s.labels, state: s.state, why: s.why })),
    nodes: assessment.counts,
    matching: assessment.matching,
    required: assessment.required,
    bytesFromPeers: assessment.bytesFromPeers,
    bytesFromOrigin: assessment.bytesFromOrigin
  }
}

function write (json: boolean, result: Record<string, unknown>, human: string): void {
  process.stdout.write((json ? JSON.stringify({ event: 'done', ...result }) : human) + '\n')
}

const goalOptions = (command: Command): Command => command
  .option('--nodes <selector>', 'only nodes whose labels match, e.g. pool=a,zone!=b (default: every node)')
  .option('--min <n>', 'done once this many matching nodes hold it')
  .addOption(new Option('--all', 'done once every matching node holds it').conflicts('min'))

export function registerFleetCommands (cmd: Command, deps: FleetCommandDeps): void {
  goalOptions(cmd.command('preheat')
    .description('ask the fleet to pull a model (through the local agent); matching agents pull it, keeping their cache budget and pins, and say why when they decline; follows the fleet until done'))
    .argument('<target>', 'name[:tag]; each node resolves it at its own origin')
    .option('--timeout <duration>', `give up after this long, e.g. 30m (default ${DEFAULT_PREHEAT_TIMEOUT})`)
    .action(async (target: string, flags: GoalFlags, command: Command) => {
      await load()
      const { config, json } = await deps.setup(command)
      const ref = formatRef(parseRef(target))
      const timeoutMs = rules.parseDuration(flags.timeout ?? DEFAULT_PREHEAT_TIMEOUT)
      const preliminary = goalFrom(flags, { ref }, false)
      const request = await api.agentRequest(config.agent.socket, '/v1/preheat', { target: ref, nodes: p2p.formatSelector(preliminary.selector) })
      const goal: FleetGoal = { ...preliminary, ...(typeof request.manifestCid === 'string' ? { manifestCid: request.manifestCid } : {}) }
      if (json) process.stdout.write(JSON.stringify({ event: 'requested', command: 'preheat', id: request.id, ref, manifestCid: goal.manifestCid ?? null, selector: p2p.formatSelector(goal.selector) }) + '\n')
      const assessment = await watch(config.agent.socket, goal, { label: `preheat ${ref}`, json, timeoutMs, stopWhenSettled: true, signal: deps.signal })
      const others = assessment.missing.map(s => `${s.peerId}${rules.labelsText(s.labels)}: ${s.why}`)
      write(json, { command: 'preheat', id: request.id, ref, manifestCid: goal.manifestCid ?? null, selector: p2p.formatSelector(goal.selector), ...outcome(assessment) },
        `preheated ${targetName(goal)}: ${assessment.held.length} of ${assessment.matching} ${scope(goal)} hold it (${formatBytes(assessment.bytesFromPeers)} from peers, ${formatBytes(assessment.bytesFromOrigin)} from the origin)${others.length > 0 ? `\n  not done: ${others.join('\n  not done: ')}` : ''}`)
    })

  goalOptions(cmd.command('wait')
    .description('the rollout gate: exit 0 once enough matching nodes hold a model completely and verified, exit 7 naming the missing nodes and why when the time is up'))
    .argument('<target>', 'name[:tag] or manifest CID')
    .option('--local', 'wait for this node only (an initContainer beside the agent)')
    .option('--timeout <duration>', `give up after this long, e.g. 10m, 90s (default ${DEFAULT_WAIT_TIMEOUT})`)
    .action(async (target: string, flags: GoalFlags, command: Command) => {
      await load()
      const { config, json } = await deps.setup(command)
      const timeoutMs = rules.parseDuration(flags.timeout ?? DEFAULT_WAIT_TIMEOUT)
      goalFrom(flags, {}, true)
      const goal = goalFrom(flags, await resolveTarget(config.agent.socket, target), true)
      const assessment = await watch(config.agent.socket, goal, { label: `wait ${goal.ref ?? target}`, json, timeoutMs, stopWhenSettled: false, signal: deps.signal })
      write(json, { command: 'wait', ref: goal.ref ?? null, manifestCid: goal.manifestCid ?? null, selector: p2p.formatSelector(goal.selector), local: goal.local === true, ...outcome(assessment) },
        `${targetName(goal)}: ${assessment.held.length} of ${assessment.required} required ${scope(goal)} hold it`)
    })

  cmd.command('fleet')
    .description('the fleet as the local agent knows it: nodes × models (held, pulling with %, failed, declined)')
    .action(async (_flags: unknown, command: Command) => {
      await load()
      const { config, json } = await deps.setup(command)
      const view = await api.agentFleet(config.agent.socket)
      if (json) process.stdout.write(JSON.stringify({ event: 'done', command: 'fleet', ...view }) + '\n')
      else process.stdout.write(fleetTable(view) + '\n')
    })
}

function cell (model: FleetModel | undefined): string {
  if (model == null) return '-'
  if (model.state === 'pulling') return `pulling ${model.totalBytes > 0 ? Math.floor(model.doneBytes / model.totalBytes * 100) : 0}%`
  return model.state
}

/** Nodes × models; reasons for failures and declines below. */
export function fleetTable (view: FleetView): string {
  const columns = new Map<string, string>()
  for (const node of view.nodes) for (const m of node.models) if (!columns.has(m.manifestCid || `ref:${m.ref ?? ''}`)) columns.set(m.manifestCid || `ref:${m.ref ?? ''}`, m.ref ?? m.manifestCid.slice(0, 16))
  const keys = [...columns.keys()]
  const rows = view.nodes.map(node => [
    `${node.self ? '* ' : '  '}${node.peerId}`,
    Object.entries(node.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-',
    ...keys.map(key => cell(node.models.find(m => (m.manifestCid || `ref:${m.ref ?? ''}`) === key)))
  ])
  const header = ['  NODE', 'LABELS', ...keys.map(k => columns.get(k) ?? k)]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()
  const notes = view.nodes.flatMap(node => node.models.filter(m => m.reason != null).map(m => `  ${node.peerId} ${m.ref ?? m.manifestCid}: ${m.state}: ${m.reason ?? ''}`))
  return [`${view.nodes.length} nodes (* this one), ${keys.length} models`, line(header), ...rows.map(line), ...(notes.length > 0 ? ['', ...notes] : [])].join('\n')
}
