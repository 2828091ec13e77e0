/**
 * Where the fleet stands on one model, from the local agent's fleet view: which matching nodes
 * hold it, pull it, failed or declined it, have not started, or left. `swarm preheat` and
 * `swarm wait` poll the view and judge each poll with {@link assess}; it is pure, so its rules
 * are tested without a fleet.
 *
 * Rules. A node matches when its labels fit the selector (with `local`, only the agent's own
 * node). It counts as done only with state `held`: every chunk present, and every chunk was
 * verified against its CID before it was stored. The goal is `min` such nodes, or with `all`
 * every matching node now in the view (and at least one). A matching node seen earlier in the
 * watch and gone from the view since (killed, partitioned, expired) is reported as having left,
 * with what it last said, so a timeout names it.
 */

import { matchesSelector } from '@swarm/p2p'
import { formatBytes } from '../progress.js'
import type { FleetModel, FleetNode, FleetView } from '../agent/fleet.js'
import type { Selector } from '@swarm/p2p'
import { SwarmError } from '@swarm/interface'

export class InvalidDurationError extends SwarmError {
  override readonly code = 'ERR_INVALID_DURATION'
  constructor (text: string) {
    super(`"${text}" is not a duration (e.g. 90s, 10m, 1h30m, 500ms)`)
  }
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** `10m`, `1h30m`, `90s`, `500ms`, or a plain number of seconds, to milliseconds. */
export function parseDuration (text: string): number {
  const trimmed = text.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
  if (parts.length === 0 || parts.map(p => p[0]).join('') !== trimmed) throw new InvalidDurationError(text)
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * (UNIT_MS[p[2] ?? ''] ?? 0), 0))
}

export function formatDuration (ms: number): string {
  const s = Math.round(ms / 1000)
  return s >= 60 ? `${Math.floor(s / 60)}m${s % 60 > 0 ? `${s % 60}s` : ''}` : `${s}s`
}

export interface FleetGoal {
  /** the manifest, when the name resolved; else the model is matched by `ref` */
  manifestCid?: string
  ref?: string
  selector: Selector
  /** this many matching nodes must hold it */
  min?: number
  /** every matching node in the view must hold it */
  all?: boolean
  /** only this node (the local agent's) */
  local?: boolean
}

export interface NodeStanding {
  peerId: string
  labels: Record<string, string>
  state: FleetModel['state'] | 'not-started' | 'left'
  model?: FleetModel
  /** for people: why it is not done */
  why: string
}

export interface Assessment {
  matching: number
  required: number
  held: NodeStanding[]
  /** matching nodes not holding it, including those that left, each with why */
  missing: NodeStanding[]
  counts: Record<NodeStanding['state'], number>
  met: boolean
  /** every matching node has reached an end (held, failed, declined) or left: waiting longer changes nothing by itself */
  settled: boolean
  doneBytes: number
  totalBytes: number
  bytesFromPeers: number
  bytesFromOrigin: number
}

/** What the watch remembers between polls: each matching node's last report. */
export type Seen = Map<string, { node: FleetNode, model?: FleetModel, lastSeen: number }>

export function modelOn (node: FleetNode, goal: Pick<FleetGoal, 'manifestCid' | 'ref'>): FleetModel | undefined {
  return (goal.manifestCid != null ? node.models.find(m => m.manifestCid === goal.manifestCid) : undefined) ??
    node.models.find(m => m.ref != null && m.ref === goal.ref && (goal.manifestCid == null || m.manifestCid === ''))
}

function percent (model: FleetModel): string {
  return model.totalBytes > 0 ? `${Math.floor(model.doneBytes / model.totalBytes * 100)}%` : '0%'
}

function describe (model: FleetModel | undefined): string {
  if (model == null) return 'has not started it (no report of this model)'
  switch (model.state) {
    case 'held': return 'holds it'
    case 'pulling': return `pulling, ${percent(model)} (${formatBytes(model.doneBytes)} of ${formatBytes(model.totalBytes)})`
    case 'failed': return `failed: ${model.reason ?? 'no reason given'}`
    case 'declined': return `declined: ${model.reason ?? 'no reason given'}`
  }
}

export function assess (view: FleetView, goal: FleetGoal, seen: Seen, now = Date.now()): Assessment {
  const matching = view.nodes.filter(n => goal.local === true ? n.self : matchesSelector(goal.selector, n.labels))
  const standings: NodeStanding[] = []
  for (const node of matching) {
    const model = modelOn(node, goal)
    seen.set(node.peerId, { node, model, lastSeen: node.lastSeen })
    standings.push({ peerId: node.peerId, labels: node.labels, state: model?.state ?? 'not-started', ...(model != null ? { model } : {}), why: describe(model) })
  }
  const present = new Set(matching.map(n => n.peerId))
  for (const [peerId, last] of seen) {
    if (present.has(peerId)) continue
    const ago = formatDuration(Math.max(0, now - last.lastSeen))
    standings.push({ peerId, labels: last.node.labels, state: 'left', ...(last.model != null ? { model: last.model } : {}), why: `left the fleet: not heard from for ${ago} (it last reported: ${describe(last.model)})` })
  }
  const counts: Record<NodeStanding['state'], number> = { held: 0, pulling: 0, failed: 0, declined: 0, 'not-started': 0, left: 0 }
  for (const s of standings) counts[s.state]++
  const required = goal.all === true || goal.local === true ? Math.max(1, matching.length) : (goal.min ?? 1)
  const held = standings.filter(s => s.state === 'held')
  const models = standings.filter(s => s.state !== 'left').map(s => s.model).filter((m): m is FleetModel => m != null)
  return {
    matching: matching.length,
    required,
    held,
    missing: standings.filter(s => s.state !== 'held'),
    counts,
    met: held.length >= required,
    settled: matching.length > 0 && standings.every(s => s.state === 'held' || s.state === 'failed' || s.state === 'declined' || s.state === 'left'),
    doneBytes: models.reduce((sum, m) => sum + m.doneBytes, 0),
    totalBytes: models.reduce((sum, m) => sum + m.totalBytes, 0),
    bytesFromPeers: models.reduce((sum, m) => sum + m.bytesFromPeers, 0),
    bytesFromOrigin: models.reduce((sum, m) => sum + m.bytesFromOrigin, 0)
  }
}

export function labelsText (labels: Record<string, string>): string {
  const text = Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',')
  return text === '' ? '' : ` (${text})`
}

/** One line per missing node, for a timeout or an incomplete preheat. */
export function missingText (assessment: Assessment): string {
  return assessment.missing.map(s => `${s.peerId}${labelsText(s.labels)}: ${s.why}`).join('; ')
}

/** A short status for the progress line: nodes by state, bytes by source, slowest pullers. */
export function statusText (a: Assessment): string {
  const slowest = a.missing.filter(s => s.state === 'pulling' && s.model != null)
    .sort((x, y) => (x.model!.doneBytes / Math.max(1, x.model!.totalBytes)) - (y.model!.doneBytes / Math.max(1, y.model!.totalBytes)))
    .slice(0, 3).map(s => `${s.peerId.slice(-8)} ${percent(s.model!)}`)
  const parts = [`${a.held.length}/${a.required} held`, `${a.counts.pulling} pulling`, `${a.counts.failed} failed`]
  if (a.counts.declined > 0) parts.push(`${a.counts.declined} declined`)
  if (a.counts.left > 0) parts.push(`${a.counts.left} left`)
  parts.push(`peers ${formatBytes(a.bytesFromPeers)}, origin ${formatBytes(a.bytesFromOrigin)}`)
  if (slowest.length > 0) parts.push(`slowest: ${slowest.join(', ')}`)
  return parts.join(', ')
}
