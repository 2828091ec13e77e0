/**
 * The agent's view of the fleet and its part in it: what this node publishes (labels, and per
 * manifest held / pulling / failed / declined with byte counts), the table the fleet gossip keeps
 * of every other node (`@swarm/p2p`, `fleet.ts`), and what it does with a preheat request.
 *
 * What a node publishes, in this order (the tail is cut when it does not fit one message):
 * pulls in flight, then failures and declines (newest first, kept until a later pull of the same
 * manifest succeeds, at most {@link MAX_OUTCOMES}), then complete models, most recently used
 * first. A complete model is `held`: its chunks were verified before they were stored. A model
 * partly present with no pull running (read lazily through the FUSE view, or an interrupted pull)
 * is reported only if its pull failed.
 *
 * A preheat request is a request, not an order. A node whose labels match its selector:
 * - takes it only within a rate ({@link PREHEATS_PER_MINUTE}); past it, declines;
 * - resolves the name at its own origin (peers never name models), and declines without one;
 * - declines when its cache budget cannot hold the model beside its pinned models, since pulling
 *   would evict it again or fail (the budget and pins are the node owner's choice);
 * - otherwise pulls it as `swarm pull` would, so it joins a pull already running.
 * Declines carry their reason in the fleet view, where the requester reads it.
 */

import { NotFoundError } from '@swarm/interface'
import { formatRef, parseRef, totalBytes } from '@swarm/manifest'
import { matchesSelector, parseSelector, TokenBucket } from '@swarm/p2p'
import { describeError } from '../exit-codes.js'
import type { Agent, TransferStatus } from './agent.js'
import type { ModelRef, TransferProgress } from '@swarm/interface'
import type { FleetLocalState, FleetModelState, PreheatRequest } from '@swarm/p2p'

export type FleetModel = FleetModelState

export interface FleetNode {
  peerId: string
  labels: Record<string, string>
  /** ms epoch, this node's clock */
  lastSeen: number
  self: boolean
  models: FleetModel[]
}

export interface FleetView {
  /** this node's peer id */
  self: string
  updatedAt: number
  nodes: FleetNode[]
}

/** Failures and declines remembered; older ones are forgotten first. */
export const MAX_OUTCOMES = 64

/** Preheat requests acted on per minute, and in one burst; past them a request is declined. */
export const PREHEATS_PER_MINUTE = 30
export const PREHEAT_BURST = 10

interface Outcome {
  manifestCid: string
  ref?: string
  state: 'failed' | 'declined'
  reason: string
  at: number
}

/** Bytes by source of the last completed pull of a manifest, so a held model still says where it came from. */
interface Completed {
  ref?: string
  bytesFromPeers: number
  bytesFromOrigin: number
}

export class AgentFleet {
  readonly #agent: Agent
  readonly #labels: Record<string, string>
  readonly #outcomes = new Map<string, Outcome>()
  readonly #completed = new Map<string, Completed>()
  readonly #preheats = new TokenBucket(PREHEATS_PER_MINUTE / 60, PREHEAT_BURST)

  constructor (agent: Agent, labels: Record<string, string>) {
    this.#agent = agent
    this.#labels = { ...labels }
    agent.node.fleet.addEventListener('preheat', ({ detail }) => {
      try {
        this.onPreheat(detail)
      } catch (err) {
        agent.log.warn({ err: (err as Error).message, request: detail.id }, 'could not handle a preheat request')
      }
    })
  }

  get labels (): Record<string, string> {
    return { ...this.#labels }
  }

  /** What this node publishes. */
  localState (): FleetLocalState {
    const models: FleetModelState[] = []
    const listed = new Set<string>()
    for (const transfer of this.#agent.transfers()) {
      listed.add(transfer.manifestCid)
      models.push(pulling(transfer))
    }
    const held = this.#agent.store.models()
    const complete = new Set(held.filter(m => m.presentBytes >= m.totalBytes).map(m => m.manifestCid))
    for (const outcome of [...this.#outcomes.values()].reverse()) {
      if (listed.has(outcome.manifestCid) || complete.has(outcome.manifestCid)) continue
      listed.add(outcome.manifestCid)
      const model = held.find(m => m.manifestCid === outcome.manifestCid)
      models.push({
        manifestCid: outcome.manifestCid,
        ...(outcome.ref != null ? { ref: outcome.ref } : {}),
        state: outcome.state,
        doneBytes: model?.presentBytes ?? 0,
        totalBytes: model?.totalBytes ?? 0,
        bytesFromPeers: 0,
        bytesFromOrigin: 0,
        reason: outcome.reason
      })
    }
    for (const model of held.filter(m => complete.has(m.manifestCid) && !listed.has(m.manifestCid)).sort((a, b) => b.lastUsed - a.lastUsed)) {
      const last = this.#completed.get(model.manifestCid)
      const ref = last?.ref ?? model.refs[0]
      models.push({
        manifestCid: model.manifestCid,
        ...(ref != null ? { ref } : {}),
        state: 'held',
        doneBytes: model.presentBytes,
        totalBytes: model.totalBytes,
        bytesFromPeers: last?.bytesFromPeers ?? 0,
        bytesFromOrigin: last?.bytesFromOrigin ?? 0
      })
    }
    return { labels: this.labels, models }
  }

  view (): FleetView {
    const now = Date.now()
    const self = this.#agent.node.peerId
    return {
      self,
      updatedAt: now,
      nodes: [
        { peerId: self, labels: this.labels, lastSeen: now, self: true, models: this.localState().models },
        ...this.#agent.node.fleet.nodes().map(node => ({ peerId: node.peerId, labels: node.labels, lastSeen: node.lastSeen, self: false, models: node.models }))
      ]
    }
  }

  /** A change of state (a pull started, finished, failed, declined): the fleet hears of it within the minimum publish interval. */
  changed (): void {
    this.#agent.node.fleet.changed('state')
  }

  /** A pull's progress alone: the fleet hears of it within the progress interval. */
  progressed (): void {
    this.#agent.node.fleet.changed('progress')
  }

  completed (manifestCid: string, ref: string | undefined, progress: TransferProgress): void {
    this.#outcomes.delete(manifestCid)
    this.#completed.delete(manifestCid)
    this.#completed.set(manifestCid, { ref, bytesFromPeers: progress.bytesBySource.peer, bytesFromOrigin: progress.bytesBySource.origin })
    trim(this.#completed, 4 * MAX_OUTCOMES)
    this.changed()
  }

  failed (manifestCid: string, ref: string | undefined, err: unknown): void {
    this.#record({ manifestCid, ref, state: 'failed', reason: describeError(err).message })
  }

  declined (manifestCid: string, ref: string | undefined, reason: string): void {
    this.#agent.log.info({ manifestCid, ref, reason }, 'preheat declined')
    this.#record({ manifestCid, ref, state: 'declined', reason })
  }

  /** A preheat request, ours or a peer's; see the notes at the top. */
  onPreheat (request: PreheatRequest): void {
    if (!matchesSelector(parseSelector(request.selector), this.#labels)) return
    const cid = request.manifestCid ?? ''
    let ref: ModelRef
    try {
      ref = parseRef(request.target)
    } catch (err) {
      this.declined(cid, request.target, (err as Error).message)
      return
    }
    if (!this.#preheats.tryTake()) {
      this.declined(cid, formatRef(ref), `rate-limited: this node takes at most ${PREHEATS_PER_MINUTE} preheat requests a minute`)
      return
    }
    this.#agent.log.info({ target: request.target, selector: request.selector, from: request.from }, 'preheat requested')
    this.#preheat(request, ref).catch(err => { this.failed(cid, formatRef(ref), err) })
  }

  async #preheat (request: PreheatRequest, ref: ModelRef): Promise<void> {
    const agent = this.#agent
    const name = formatRef(ref)
    if (agent.origin == null) {
      this.declined(request.manifestCid ?? '', name, 'no origin configured here: names resolve only through the origin')
      return
    }
    let manifestCid: string
    try {
      manifestCid = await agent.origin.resolveRef(ref)
    } catch (err) {
      this.failed(request.manifestCid ?? '', name, err instanceof NotFoundError ? new NotFoundError(`${name} is not at this node's origin`) : err)
      return
    }
    const held = agent.store.models().find(m => m.manifestCid === manifestCid)
    if ((held != null && held.presentBytes >= held.totalBytes && held.totalBytes > 0) || agent.transfers().some(t => t.manifestCid === manifestCid)) return
    const budget = agent.config.cacheSize
    if (budget > 0) {
      const size = totalBytes(await agent.fetchManifest(manifestCid))
      const pinned = agent.store.models().filter(m => m.pinned && m.manifestCid !== manifestCid).reduce((sum, m) => sum + m.totalBytes, 0)
      if (size + pinned > budget) {
        this.declined(manifestCid, name, `cache budget: the model needs ${size} bytes and the cache budget is ${budget}, ${pinned} of it pinned`)
        return
      }
    }
    // failures are recorded by the pull itself
    await agent.pull({ ref }).catch(() => {})
  }

  #record (outcome: Omit<Outcome, 'at'>): void {
    this.#outcomes.delete(outcome.manifestCid)
    this.#outcomes.set(outcome.manifestCid, { ...outcome, at: Date.now() })
    trim(this.#outcomes, MAX_OUTCOMES)
    this.changed()
  }
}

function pulling (transfer: TransferStatus): FleetModelState {
  const { progress } = transfer
  return {
    manifestCid: transfer.manifestCid,
    ...(transfer.ref != null ? { ref: transfer.ref } : {}),
    state: 'pulling',
    doneBytes: progress.doneBytes,
    totalBytes: progress.totalBytes,
    bytesFromPeers: progress.bytesBySource.peer,
    bytesFromOrigin: progress.bytesBySource.origin
  }
}

function trim<K, V> (map: Map<K, V>, max: number): void {
  while (map.size > max) {
    const first = map.keys().next().value
    if (first === undefined) return
    map.delete(first)
  }
}
