/**
 * Fleet knowledge without a central server: every node publishes its labels and a compact
 * per-manifest progress record on one gossipsub topic ({@link FLEET_TOPIC}), and keeps a table
 * of what the others published. Preheat requests travel on the same topic.
 *
 * Why gossipsub: a pull's progress must reach every node of a fleet of hundreds within seconds,
 * and the control protocol only talks to peers that share a manifest. Gossipsub relays through
 * a mesh of a few peers each, signs every message with its originator's key (StrictSign), so a
 * record is always about the node that signed it, and runs on the libp2p connections the swarm
 * key already guards: a node without the key connects to nobody and sees nothing.
 *
 * Publishing: our state (read from the `local` callback at each publish) goes out when `changed()`
 * is called, at most once per {@link FLEET_MIN_PUBLISH_INTERVAL_MS} for a change of state and once
 * per {@link FLEET_PROGRESS_INTERVAL_MS} for progress alone (`changed('progress')`: a pull's bytes
 * move many times a second, and each message costs every node of the fleet), and after a
 * heartbeat ({@link FLEET_HEARTBEAT_MS}) of silence; a state too big for {@link FLEET_MAX_MESSAGE_BYTES} is
 * cut from the end of its model list (callers order it by importance). In a large fleet both
 * stretch with the number of nodes we know of, so that the fleet as a whole publishes at most
 * {@link FLEET_MESSAGES_PER_SECOND} messages a second ({@link fleetPublishSpacing}); each message
 * says how long its sender's heartbeat is, and receivers keep the entry for
 * {@link FLEET_TTL_HEARTBEATS} of them.
 *
 * Receiving: each message is checked in gossipsub's topic validator, before it is stored or
 * relayed, in this order:
 * - a token bucket per connected peer it came through and one per node that signed it; a
 *   message past either is ignored (not relayed, so a flood stops at its first honest hop), and
 *   the peer is scored `rate-limited` when it is the signer itself;
 * - size (gossipsub drops bigger data before decoding) and a strict zod schema; a message that
 *   fails is rejected and its sender scored `malformed`, which bans a repeat offender through the
 *   node's peer scores, hanging up its connections;
 * - a state older than the one stored (`seq`) is ignored;
 * - the table's memory budget ({@link FLEET_MAX_TABLE_BYTES}, counted as message bytes plus
 *   {@link FLEET_ENTRY_OVERHEAD_BYTES} per node, and {@link FLEET_MAX_NODES}): a node that would
 *   take it past is not recorded, except a directly connected one, for which the entry heard
 *   from longest ago of a node not connected to us goes. A node can only replace its own entry,
 *   so one peer flooding costs one entry; many forged identities cost at most the budget.
 * Entries expire {@link FLEET_NODE_TTL_MS} after they were last heard (or four of the node's
 * heartbeats, if longer), and at once when the node's last connection to us closes.
 *
 * Streams: gossipsub opens its stream to a peer when the peer connects, and never again while
 * the connection stays up. If that stream fails to open (a timeout on a busy host) or closes
 * (a reset, or the remote dropping it after a read error), the peer hears nothing from us until
 * it reconnects, and our state and everything we relay stop reaching it. Upstream leaves this
 * open (libp2p/js-libp2p#3531 restores the stream on reconnect only). So at every sweep a peer
 * gossipsub knows, found without an outbound stream at two sweeps in a row (a stream being opened
 * is not yet listed), is handed to gossipsub's own stream opener again, which the remote answers
 * by re-opening its stream to us. Counted in `stats().streamsReopened`.
 */

import { TypedEventEmitter } from '@libp2p/interface'
import { TopicValidatorResult } from '@libp2p/gossipsub'
import { silentLogger } from '@swarm/interface'
import { createHash, randomBytes } from 'node:crypto'
import { z } from 'zod'
import {
  FLEET_ENTRY_OVERHEAD_BYTES,
  FLEET_HEARTBEAT_MS,
  FLEET_MAX_HEARTBEAT_MS,
  FLEET_MAX_LABELS,
  FLEET_MAX_MESSAGE_BYTES,
  FLEET_MAX_MODELS_PER_NODE,
  FLEET_MAX_NODES,
  FLEET_MAX_REASON_CHARS,
  FLEET_MAX_TABLE_BYTES,
  FLEET_MESSAGES_PER_SECOND,
  FLEET_MIN_PUBLISH_INTERVAL_MS,
  FLEET_PROGRESS_INTERVAL_MS,
  FLEET_NODE_TTL_MS,
  FLEET_ORIGIN_MESSAGE_BURST,
  FLEET_ORIGIN_MESSAGES_PER_SECOND,
  FLEET_SEEN_PREHEATS,
  FLEET_SOURCE_MESSAGE_BURST,
  FLEET_SOURCE_MESSAGES_PER_SECOND,
  FLEET_TOPIC,
  FLEET_TTL_HEARTBEATS
} from './constants.js'
import { canonicalCid } from './messages.js'
import { TokenBucket } from './rate-limit.js'
import { checkLabelKey, checkLabelValue, parseSelector } from './selector.js'
import type { PeerOffence, PeerScores } from './peer-score.js'
import type { GossipSub, GossipsubOpts, Message } from '@libp2p/gossipsub'
import type { Connection, Libp2p, PeerId, TypedEventTarget } from '@libp2p/interface'
import type { Logger } from '@swarm/interface'

/** A message as it came off the wire, before gossipsub checked it. */
export type GossipRpcMessage = Parameters<GossipsubOpts['fastMsgIdFn']>[0]

/**
 * Gossipsub's id for telling a copy of a message from a new one before it checks the signature.
 * Gossipsub verifies a message's signature before it looks the message up in its seen cache, so
 * without this every copy relayed by every mesh peer costs an Ed25519 key import and verification
 * (6.4 % of the agents' busy samples in a shaped fan-out of 8). The id hashes every field, signature
 * included, and gossipsub records it only for a message whose signature checked out, so a forged
 * message can neither take a real one's id nor be passed off as a copy of it.
 */
export function fleetFastMessageId (message: GossipRpcMessage): string {
  const hash = createHash('sha256')
  hash.update(message.topic)
  // each field after its length (absent: all ones), so bytes cannot shift from one field to the next
  const length = Buffer.allocUnsafe(4)
  for (const field of [message.from, message.seqno, message.data, message.signature, message.key]) {
    length.writeUInt32BE(field?.byteLength ?? 0xffffffff)
    hash.update(length)
    if (field != null) hash.update(field)
  }
  return hash.digest('base64')
}

export type FleetModelStatus = 'held' | 'pulling' | 'failed' | 'declined'

/** One node's state for one manifest, as published. */
export interface FleetModelState {
  manifestCid: string
  ref?: string
  state: FleetModelStatus
  doneBytes: number
  totalBytes: number
  bytesFromPeers: number
  bytesFromOrigin: number
  /** why it failed or was declined */
  reason?: string
}

/** What this node publishes; models in order of importance (the tail is cut to fit a message). */
export interface FleetLocalState {
  labels: Record<string, string>
  models: FleetModelState[]
}

export interface FleetNodeState {
  peerId: string
  labels: Record<string, string>
  models: FleetModelState[]
  /** when we last heard from it, ms epoch (our clock) */
  lastSeen: number
  /** the heartbeat it says it keeps, ms */
  heartbeatMs: number
}

/** A request to the fleet to pull a model; nodes whose labels match `selector` consider it. */
export interface PreheatRequest {
  id: string
  /** `name[:tag]`: each node resolves it at its own origin */
  target: string
  /** a selector as `parseSelector` reads it; empty: every node */
  selector: string
  /** the CID the requester resolved, for reports of nodes that decline before resolving */
  manifestCid?: string
  /** the requesting node */
  from: string
  at: number
}

export type FleetRejection = 'malformed' | 'rate-limited' | 'stale' | 'over-budget'

export const FLEET_REJECTIONS: readonly FleetRejection[] = ['malformed', 'rate-limited', 'stale', 'over-budget']

export interface FleetLimits {
  maxTableBytes: number
  maxNodes: number
  nodeTtlMs: number
  heartbeatMs: number
  minPublishIntervalMs: number
  /** between two messages for progress alone; never shorter than `minPublishIntervalMs` */
  progressIntervalMs: number
  /** state messages the whole fleet publishes per second, at most (see {@link fleetPublishSpacing}) */
  fleetMessagesPerSecond: number
  originMessagesPerSecond: number
  originMessageBurst: number
  sourceMessagesPerSecond: number
  sourceMessageBurst: number
}

export const DEFAULT_FLEET_LIMITS: Readonly<FleetLimits> = Object.freeze({
  maxTableBytes: FLEET_MAX_TABLE_BYTES,
  maxNodes: FLEET_MAX_NODES,
  nodeTtlMs: FLEET_NODE_TTL_MS,
  heartbeatMs: FLEET_HEARTBEAT_MS,
  minPublishIntervalMs: FLEET_MIN_PUBLISH_INTERVAL_MS,
  progressIntervalMs: FLEET_PROGRESS_INTERVAL_MS,
  fleetMessagesPerSecond: FLEET_MESSAGES_PER_SECOND,
  originMessagesPerSecond: FLEET_ORIGIN_MESSAGES_PER_SECOND,
  originMessageBurst: FLEET_ORIGIN_MESSAGE_BURST,
  sourceMessagesPerSecond: FLEET_SOURCE_MESSAGES_PER_SECOND,
  sourceMessageBurst: FLEET_SOURCE_MESSAGE_BURST
})

export interface FleetStats {
  /** remote nodes in the table */
  nodes: number
  /** what the table costs, as the budget counts it */
  tableBytes: number
  maxTableBytes: number
  /** messages not stored since start, by reason */
  rejected: Record<FleetRejection, number>
  /** gossip streams to connected peers found closed and opened again (see "Streams" at the top) */
  streamsReopened: number
}

export interface FleetEvents {
  /** a preheat request, ours or a peer's, each id once */
  preheat: CustomEvent<PreheatRequest>
  /** a node's state arrived, changed or went */
  change: CustomEvent<{ peerId: string }>
}

/** What changed in our state: its shape (a model added, finished, failed, declined), or a pull's progress alone. */
export type FleetChange = 'state' | 'progress'

export interface FleetGossip extends TypedEventTarget<FleetEvents> {
  /** Publishes our state soon: within the minimum interval for a change of state, the progress interval for progress. */
  changed(what?: FleetChange): void
  /** remote nodes, not expired */
  nodes(): FleetNodeState[]
  /** Publishes a preheat request and hands it to our own listeners too. */
  preheat(request: { target: string, selector: string, manifestCid?: string }): PreheatRequest
  stats(): FleetStats
}

export interface FleetGossipInit {
  /** read at each publish */
  local?: () => FleetLocalState
  peerScores?: PeerScores
  limits?: Partial<FleetLimits>
  logger?: Logger
}

const cidSchema = z.string().max(256).refine(v => canonicalCid(v) === v, 'not a canonical CID')
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)
const labelsSchema = z.record(z.string().max(317), z.string().max(63))
  .refine(labels => Object.keys(labels).length <= FLEET_MAX_LABELS, `more than ${FLEET_MAX_LABELS} labels`)
  .superRefine((labels, ctx) => {
    for (const [key, value] of Object.entries(labels)) {
      try {
        checkLabelKey(key)
        checkLabelValue(value)
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message })
      }
    }
  })

/** On the wire, short keys: a fleet of thousands publishes these every few seconds. */
const modelWire = z.object({
  c: cidSchema,
  r: z.string().min(1).max(512).optional(),
  s: z.enum(['held', 'pulling', 'failed', 'declined']),
  d: count,
  n: count,
  p: count,
  o: count,
  w: z.string().max(FLEET_MAX_REASON_CHARS).optional()
}).strict()

const stateWire = z.object({
  t: z.literal('state'),
  seq: count,
  /** the sender's heartbeat, ms; absent from older nodes */
  h: z.number().int().min(1).max(FLEET_MAX_HEARTBEAT_MS).optional(),
  labels: labelsSchema,
  models: z.array(modelWire).max(FLEET_MAX_MODELS_PER_NODE)
}).strict()

const preheatWire = z.object({
  t: z.literal('preheat'),
  id: z.string().regex(/^[0-9a-f]{32}$/),
  target: z.string().min(1).max(512),
  selector: z.string().max(1024).refine(v => { try { parseSelector(v); return true } catch { return false } }, 'not a selector'),
  cid: cidSchema.optional(),
  at: count
}).strict()

const wire = z.discriminatedUnion('t', [stateWire, preheatWire])

type ModelWire = z.infer<typeof modelWire>

interface Entry {
  state: FleetNodeState
  seq: number
  bytes: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

function toWire (model: FleetModelState): ModelWire {
  return {
    c: model.manifestCid,
    ...(model.ref != null ? { r: model.ref.slice(0, 512) } : {}),
    s: model.state,
    d: model.doneBytes,
    n: model.totalBytes,
    p: model.bytesFromPeers,
    o: model.bytesFromOrigin,
    ...(model.reason != null ? { w: model.reason.slice(0, FLEET_MAX_REASON_CHARS) } : {})
  }
}

function fromWire (model: ModelWire): FleetModelState {
  return {
    manifestCid: model.c,
    ...(model.r != null ? { ref: model.r } : {}),
    state: model.s,
    doneBytes: model.d,
    totalBytes: model.n,
    bytesFromPeers: model.p,
    bytesFromOrigin: model.o,
    ...(model.w != null ? { reason: model.w } : {})
  }
}

/**
 * Our state as one message of at most {@link FLEET_MAX_MESSAGE_BYTES}: models past
 * {@link FLEET_MAX_MODELS_PER_NODE}, then from the end, are left out until it fits.
 * `heartbeatMs`: how long we may stay silent, so receivers keep our entry that long.
 */
export function encodeFleetState (state: FleetLocalState, seq: number, heartbeatMs?: number): Uint8Array {
  const models = state.models.slice(0, FLEET_MAX_MODELS_PER_NODE).map(toWire)
  const h = heartbeatMs === undefined ? {} : { h: Math.min(FLEET_MAX_HEARTBEAT_MS, Math.max(1, Math.round(heartbeatMs))) }
  for (;;) {
    const bytes = encoder.encode(JSON.stringify({ t: 'state', seq, ...h, labels: state.labels, models }))
    if (bytes.length <= FLEET_MAX_MESSAGE_BYTES || models.length === 0) return bytes
    models.pop()
  }
}

/** How far apart a node spaces its messages. */
export interface FleetPublishSpacing {
  /** between two messages for changes (a pull's progress) */
  changeMs: number
  /** the most silence before the state goes out anyway */
  heartbeatMs: number
}

/**
 * How far apart a node that knows of `nodes` nodes (itself included) spaces its messages, so
 * that the fleet publishes at most `fleetMessagesPerSecond` while every node pulls, and a fifth
 * of that while all are idle. Small fleets keep the configured intervals: up to 100 nodes by
 * default, changes once a second and a heartbeat every 5 s; at 1,000 nodes, 10 s and 50 s. The
 * heartbeat is at most {@link FLEET_MAX_HEARTBEAT_MS}. Views of the fleet size differ from node
 * to node, and so does the spacing; the budget holds within that difference.
 */
export function fleetPublishSpacing (nodes: number, limits: Pick<FleetLimits, 'minPublishIntervalMs' | 'heartbeatMs' | 'fleetMessagesPerSecond'> = DEFAULT_FLEET_LIMITS): FleetPublishSpacing {
  if (!Number.isFinite(nodes) || nodes < 1) throw new RangeError(`the fleet size must be a number ≥ 1, got ${nodes}`)
  if (!(limits.fleetMessagesPerSecond > 0)) throw new RangeError(`fleetMessagesPerSecond must be > 0, got ${limits.fleetMessagesPerSecond}`)
  const changeMs = Math.max(limits.minPublishIntervalMs, Math.ceil(nodes * 1000 / limits.fleetMessagesPerSecond))
  const heartbeatMs = Math.min(FLEET_MAX_HEARTBEAT_MS, Math.max(limits.heartbeatMs, 5 * changeMs))
  return { changeMs: Math.min(changeMs, heartbeatMs), heartbeatMs }
}

/** What of gossipsub's insides the stream repair reads (see "Streams" at the top); checked before use. */
interface GossipStreams {
  streamsOutbound?: Map<string, unknown>
  outboundInflightQueue?: { push?: (item: { peerId: PeerId, connection: Connection }) => void }
}

export class DefaultFleetGossip extends TypedEventEmitter<FleetEvents> implements FleetGossip {
  readonly #libp2p: Libp2p
  readonly #pubsub: GossipSub
  readonly #log: Logger
  readonly #local: () => FleetLocalState
  readonly #scores?: PeerScores
  readonly #limits: FleetLimits
  readonly #table = new Map<string, Entry>()
  readonly #origins = new Map<string, TokenBucket>()
  readonly #sources = new Map<string, TokenBucket>()
  readonly #seenPreheats = new Set<string>()
  readonly #rejected = Object.fromEntries(FLEET_REJECTIONS.map(r => [r, 0])) as Record<FleetRejection, number>
  #tableBytes = 0
  #seq = 0
  #lastPublish = 0
  #publishTimer: ReturnType<typeof setTimeout> | undefined
  /** when the pending publish goes out (performance.now() time) */
  #publishDue = 0
  #heartbeat: ReturnType<typeof setTimeout> | undefined
  #sweep: ReturnType<typeof setInterval> | undefined
  #running = false
  /** peers found without an outbound gossip stream at the last sweep */
  readonly #streamless = new Set<string>()
  #streamsReopened = 0

  constructor (libp2p: Libp2p, pubsub: GossipSub, init: FleetGossipInit = {}) {
    super()
    this.#libp2p = libp2p
    this.#pubsub = pubsub
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:fleet' })
    this.#local = init.local ?? (() => ({ labels: {}, models: [] }))
    this.#scores = init.peerScores
    this.#limits = { ...DEFAULT_FLEET_LIMITS, ...init.limits }
    this.onPeerDisconnect = this.onPeerDisconnect.bind(this)
    this.onSubscriptionChange = this.onSubscriptionChange.bind(this)
  }

  start (): void {
    if (this.#running) return
    this.#running = true
    this.#pubsub.topicValidators.set(FLEET_TOPIC, (peer, message) => this.#validate(peer, message))
    this.#pubsub.subscribe(FLEET_TOPIC)
    this.#pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.#libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    this.#scheduleHeartbeat(this.#spacing().heartbeatMs)
    this.#sweep = setInterval(() => {
      this.#expire()
      this.#reopenStreams()
    }, Math.max(100, Math.floor(this.#limits.nodeTtlMs / 4)))
    this.#sweep.unref?.()
  }

  stop (): void {
    if (!this.#running) return
    this.#running = false
    clearTimeout(this.#heartbeat)
    this.#heartbeat = undefined
    clearInterval(this.#sweep)
    clearTimeout(this.#publishTimer)
    this.#publishTimer = undefined
    this.#pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.#libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    this.#pubsub.topicValidators.delete(FLEET_TOPIC)
    try {
      this.#pubsub.unsubscribe(FLEET_TOPIC)
    } catch {}
    this.#table.clear()
    this.#tableBytes = 0
  }

  changed (what: FleetChange = 'state'): void {
    if (!this.#running) return
    const { changeMs, heartbeatMs } = this.#spacing()
    // progress rides on the spacing of changes in a large fleet, and never waits past a heartbeat
    const spacing = what === 'progress' ? Math.min(heartbeatMs, Math.max(changeMs, this.#limits.progressIntervalMs)) : changeMs
    const due = this.#lastPublish + spacing
    // a change of state brings forward a publish that progress had put off
    if (this.#publishTimer != null && this.#publishDue <= due) return
    clearTimeout(this.#publishTimer)
    this.#publishDue = due
    this.#publishTimer = setTimeout(() => {
      this.#publishTimer = undefined
      this.#publish()
    }, Math.max(0, due - performance.now()))
    this.#publishTimer.unref?.()
  }

  nodes (): FleetNodeState[] {
    const now = Date.now()
    return [...this.#table.values()].filter(e => !this.#expired(e, now)).map(e => e.state)
  }

  preheat (request: { target: string, selector: string, manifestCid?: string }): PreheatRequest {
    const message = preheatWire.parse({ t: 'preheat', id: randomBytes(16).toString('hex'), target: request.target, selector: request.selector, ...(request.manifestCid != null ? { cid: request.manifestCid } : {}), at: Date.now() })
    const preheat = this.#preheatFrom(message, this.#libp2p.peerId.toString())
    this.#send(encoder.encode(JSON.stringify(message)))
    this.#remember(preheat.id)
    this.safeDispatchEvent('preheat', { detail: preheat })
    return preheat
  }

  stats (): FleetStats {
    return { nodes: this.#table.size, tableBytes: this.#tableBytes, maxTableBytes: this.#limits.maxTableBytes, rejected: { ...this.#rejected }, streamsReopened: this.#streamsReopened }
  }

  /** spacing for the fleet as we see it: the nodes in our table and us */
  #spacing (): FleetPublishSpacing {
    return fleetPublishSpacing(this.#table.size + 1, this.#limits)
  }

  /** the next heartbeat, `heartbeatMs` after our last message */
  #scheduleHeartbeat (heartbeatMs: number): void {
    clearTimeout(this.#heartbeat)
    this.#heartbeat = setTimeout(() => { this.#publish() }, heartbeatMs)
    this.#heartbeat.unref?.()
  }

  #expired (entry: Entry, now: number): boolean {
    return entry.state.lastSeen < now - Math.max(this.#limits.nodeTtlMs, FLEET_TTL_HEARTBEATS * entry.state.heartbeatMs)
  }

  #publish (): void {
    if (!this.#running) return
    // this message carries whatever a pending publish was for
    clearTimeout(this.#publishTimer)
    this.#publishTimer = undefined
    this.#lastPublish = performance.now()
    const { heartbeatMs } = this.#spacing()
    this.#scheduleHeartbeat(heartbeatMs)
    // a restart must not look older than what peers hold from before it
    this.#seq = Math.max(this.#seq + 1, Date.now())
    let state: FleetLocalState
    try {
      state = this.#local()
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'could not read the local fleet state')
      return
    }
    this.#send(encodeFleetState(state, this.#seq, heartbeatMs))
  }

  #send (bytes: Uint8Array): void {
    this.#pubsub.publish(FLEET_TOPIC, bytes).catch(err => {
      this.#log.debug({ err: (err as Error).message }, 'fleet publish failed')
    })
  }

  #validate (source: PeerId, message: Message): TopicValidatorResult {
    const via = source.toString()
    if (message.type !== 'signed') return this.#reject(via, 'malformed')
    const from = message.from.toString()
    if (!take(this.#sources, via, this.#limits.sourceMessagesPerSecond, this.#limits.sourceMessageBurst, this.#limits.maxNodes)) {
      return this.#ignore(via, 'rate-limited', true)
    }
    if (!take(this.#origins, from, this.#limits.originMessagesPerSecond, this.#limits.originMessageBurst, this.#limits.maxNodes)) {
      return this.#ignore(via, 'rate-limited', from === via)
    }
    if (message.data.length > FLEET_MAX_MESSAGE_BYTES) return this.#reject(via, 'malformed')
    let parsed: z.infer<typeof wire>
    try {
      const result = wire.safeParse(JSON.parse(decoder.decode(message.data)))
      if (!result.success) return this.#reject(via, 'malformed')
      parsed = result.data
    } catch {
      return this.#reject(via, 'malformed')
    }
    if (parsed.t === 'preheat') {
      if (this.#seenPreheats.has(parsed.id)) return TopicValidatorResult.Ignore
      this.#remember(parsed.id)
      this.safeDispatchEvent('preheat', { detail: this.#preheatFrom(parsed, from) })
      return TopicValidatorResult.Accept
    }
    return this.#store(from, via, parsed, message.data.length)
  }

  #store (from: string, via: string, message: z.infer<typeof stateWire>, size: number): TopicValidatorResult {
    const previous = this.#table.get(from)
    if (previous != null && previous.seq >= message.seq) return this.#ignore(via, 'stale', false)
    const bytes = size + FLEET_ENTRY_OVERHEAD_BYTES
    const fits = (): boolean => this.#tableBytes - (previous?.bytes ?? 0) + bytes <= this.#limits.maxTableBytes &&
      (previous != null || this.#table.size < this.#limits.maxNodes)
    // a node connected to us is worth more than one we only hear of through relays
    while (!fits() && from === via) {
      const victim = this.#oldestRelayed()
      if (victim == null) break
      this.#drop(victim)
    }
    if (!fits()) return this.#ignore(via, 'over-budget', false)
    if (previous != null) this.#tableBytes -= previous.bytes
    this.#table.delete(from)
    this.#table.set(from, { seq: message.seq, bytes, state: { peerId: from, labels: message.labels, models: message.models.map(fromWire), lastSeen: Date.now(), heartbeatMs: message.h ?? this.#limits.heartbeatMs } })
    this.#tableBytes += bytes
    this.safeDispatchEvent('change', { detail: { peerId: from } })
    return TopicValidatorResult.Accept
  }

  #oldestRelayed (): string | undefined {
    let oldest: Entry | undefined
    for (const entry of this.#table.values()) {
      if (this.#isConnected(entry.state.peerId)) continue
      if (oldest == null || entry.state.lastSeen < oldest.state.lastSeen) oldest = entry
    }
    return oldest?.state.peerId
  }

  #isConnected (peerId: string): boolean {
    return this.#libp2p.getConnections().some(c => c.remotePeer.toString() === peerId)
  }

  #preheatFrom (message: z.infer<typeof preheatWire>, from: string): PreheatRequest {
    return { id: message.id, target: message.target, selector: message.selector, ...(message.cid != null ? { manifestCid: message.cid } : {}), from, at: message.at }
  }

  #remember (id: string): void {
    this.#seenPreheats.add(id)
    if (this.#seenPreheats.size > FLEET_SEEN_PREHEATS) {
      const first = this.#seenPreheats.values().next().value
      if (first != null) this.#seenPreheats.delete(first)
    }
  }

  #reject (via: string, reason: FleetRejection): TopicValidatorResult {
    this.#rejected[reason]++
    this.#penalize(via, 'malformed')
    return TopicValidatorResult.Reject
  }

  #ignore (via: string, reason: FleetRejection, blame: boolean): TopicValidatorResult {
    this.#rejected[reason]++
    if (blame) this.#penalize(via, 'rate-limited')
    return TopicValidatorResult.Ignore
  }

  #penalize (peerId: string, offence: PeerOffence): void {
    this.#scores?.penalize(peerId, offence)
  }

  #drop (peerId: string): void {
    const entry = this.#table.get(peerId)
    if (entry == null) return
    this.#table.delete(peerId)
    this.#tableBytes -= entry.bytes
    this.safeDispatchEvent('change', { detail: { peerId } })
  }

  #expire (): void {
    const now = Date.now()
    for (const entry of [...this.#table.values()]) {
      if (this.#expired(entry, now)) this.#drop(entry.state.peerId)
    }
  }

  /** See "Streams" at the top. */
  #reopenStreams (): void {
    // gossipsub's streams, and its queue of peers to open one to (it skips a peer that has one or is gone)
    const { streamsOutbound, outboundInflightQueue: opener } = this.#pubsub as unknown as GossipStreams
    if (!(streamsOutbound instanceof Map) || typeof opener?.push !== 'function') return
    const streamless = new Set<string>()
    for (const peerId of this.#pubsub.getPeers()) {
      const id = peerId.toString()
      if (streamsOutbound.has(id)) continue
      if (!this.#streamless.has(id)) {
        streamless.add(id)
        continue
      }
      const connection = this.#libp2p.getConnections(peerId).find(c => c.status === 'open')
      if (connection == null) continue
      this.#log.debug({ peer: id }, 'gossip stream to a connected peer was closed; opening it again')
      try {
        opener.push({ peerId, connection })
        this.#streamsReopened++
      } catch (err) {
        // gossipsub stopping ends its queue; a sweep must never throw out of its timer
        this.#log.debug({ peer: id, err: (err as Error).message }, 'could not ask gossipsub to reopen a stream')
      }
    }
    this.#streamless.clear()
    for (const id of streamless) this.#streamless.add(id)
  }

  private onPeerDisconnect (event: CustomEvent<PeerId>): void {
    const peerId = event.detail.toString()
    this.#drop(peerId)
    this.#sources.delete(peerId)
  }

  private onSubscriptionChange (event: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void {
    // a peer that just joined the topic learns our state now rather than at the next heartbeat
    if (event.detail.subscriptions.some(s => s.topic === FLEET_TOPIC && s.subscribe)) this.changed()
  }
}

/** Takes a token from the key's bucket, creating it; the map keeps at most `max` buckets. */
function take (buckets: Map<string, TokenBucket>, key: string, perSecond: number, burst: number, max: number): boolean {
  let bucket = buckets.get(key)
  if (bucket == null) {
    bucket = new TokenBucket(perSecond, burst)
    buckets.set(key, bucket)
    if (buckets.size > max) {
      const first = buckets.keys().next().value
      if (first != null) buckets.delete(first)
    }
  }
  return bucket.tryTake()
}
