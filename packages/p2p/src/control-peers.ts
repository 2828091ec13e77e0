/**
 * The peers' side of the control state: a session per peer (its streams, the manifests it joined,
 * the joins it set aside, its rate limits and data address) and what that state costs.
 *
 * Bounds (constants, overridable by init): a token bucket per peer for messages and for bytes,
 * checked before a message is even parsed; a cap on manifests per peer; and a budget for the
 * control state (bitfields plus a fixed cost per joined manifest) per peer and for all peers
 * together. A join past a budget is dropped; one past the total budget is not the peer's fault and
 * is not scored.
 */

import { countBits } from '@swarm/interface'
import {
  FETCHER_ENTRY_BYTES,
  MANIFEST_ENTRY_BYTES,
  MAX_MESSAGE_BYTES,
  MAX_PEER_ASIDE_BYTES,
  MAX_PEER_ASIDE_MANIFESTS,
  MAX_PEER_MANIFESTS,
  MAX_PEER_STATE_BYTES,
  MAX_TOTAL_STATE_BYTES,
  PEER_BYTE_BURST,
  PEER_BYTES_PER_SECOND,
  PEER_MESSAGE_BURST,
  PEER_MESSAGES_PER_SECOND
} from './constants.js'
import { TokenBucket } from './rate-limit.js'
import type { ControlEvents, ResolvedDataAddress } from './control.js'
import type { ControlMessage, DataAddress, NamedFetcher } from './messages.js'
import type { PeerOffence, PeerScores } from './peer-score.js'
import type { PeerId, Stream, TypedEventEmitter } from '@libp2p/interface'
import type { Logger } from '@swarm/interface'

/** Why a peer's control message was dropped (every offence but bad chunk bytes). */
export type ControlRejection = Exclude<PeerOffence, 'bad-data'>

export const CONTROL_REJECTIONS: readonly ControlRejection[] = [
  'too-large', 'malformed', 'bitfield', 'chunk-count', 'index-out-of-range', 'too-many-manifests',
  'peer-over-budget', 'rate-limited', 'peer-not-joined', 'not-joined', 'over-budget'
]

/** The control channel's bounds; every one defaults to the constant of the same meaning. */
export interface ControlLimits {
  /** largest frame body read, bytes ({@link MAX_MESSAGE_BYTES}) */
  maxMessageBytes: number
  /** manifests one peer may have joined ({@link MAX_PEER_MANIFESTS}) */
  maxPeerManifests: number
  /** control state one peer may make us hold, bytes ({@link MAX_PEER_STATE_BYTES}) */
  maxPeerStateBytes: number
  /** control state all peers together may make us hold, bytes ({@link MAX_TOTAL_STATE_BYTES}) */
  maxTotalStateBytes: number
  /** joins for manifests not held that one peer may have set aside ({@link MAX_PEER_ASIDE_MANIFESTS}) */
  maxPeerAsideManifests: number
  /** their bytes, counted in the peer's control state too ({@link MAX_PEER_ASIDE_BYTES}) */
  maxPeerAsideBytes: number
  messagesPerSecond: number
  messageBurst: number
  bytesPerSecond: number
  byteBurst: number
}

export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = Object.freeze({
  maxMessageBytes: MAX_MESSAGE_BYTES,
  maxPeerManifests: MAX_PEER_MANIFESTS,
  maxPeerStateBytes: MAX_PEER_STATE_BYTES,
  maxTotalStateBytes: MAX_TOTAL_STATE_BYTES,
  maxPeerAsideManifests: MAX_PEER_ASIDE_MANIFESTS,
  maxPeerAsideBytes: MAX_PEER_ASIDE_BYTES,
  messagesPerSecond: PEER_MESSAGES_PER_SECOND,
  messageBurst: PEER_MESSAGE_BURST,
  bytesPerSecond: PEER_BYTES_PER_SECOND,
  byteBurst: PEER_BYTE_BURST
})

export interface ControlStats {
  /** peers with a control session */
  peers: number
  /** control state held for peers (bitfields and joined manifests), bytes, as the budgets count it */
  stateBytes: number
  /** the most control state held for any one peer, bytes */
  maxPeerStateBytes: number
  /** messages dropped since start, by reason */
  rejected: Record<ControlRejection, number>
  /** our messages written to peers since start, by type */
  sent: Record<ControlMessage['type'], number>
}

export interface RemoteManifest {
  chunkCount: number
  pulling: boolean
  bitfield: Uint8Array
  fetchers: readonly NamedFetcher[]
  /** its join marked every chunk held: it asks nobody for anything, so it is sent no haves */
  complete: boolean
}

export interface PeerSession {
  readonly peerId: PeerId
  readonly id: string
  writer?: Stream
  opening?: Promise<void>
  queue: Uint8Array[]
  queuedBytes: number
  pumping: boolean
  readers: Set<Stream>
  manifests: Map<string, RemoteManifest>
  /** joins for manifests we do not hold, oldest first */
  aside: Map<string, RemoteManifest>
  asideBytes: number
  /** bytes of `manifests` and `aside` together */
  stateBytes: number
  messages: TokenBucket
  bytes: TokenBucket
  announced?: DataAddress
  observedHost?: string
  dataAddress?: ResolvedDataAddress
}

export interface PeerSessionsInit {
  limits: ControlLimits
  /** where offences are reported */
  scores: PeerScores
  log: Logger
  /** the channel whose listeners hear of peers' joins and leaves */
  events: TypedEventEmitter<ControlEvents>
}

/** The peers with a control session, their state, and its cost against the budgets. */
export class PeerSessions {
  readonly limits: ControlLimits
  readonly #scores: PeerScores
  readonly #log: Logger
  readonly #events: TypedEventEmitter<ControlEvents>
  readonly #sessions = new Map<string, PeerSession>()
  readonly #rejected = Object.fromEntries(CONTROL_REJECTIONS.map(reason => [reason, 0])) as Record<ControlRejection, number>
  #stateBytes = 0

  constructor (init: PeerSessionsInit) {
    this.limits = init.limits
    this.#scores = init.scores
    this.#log = init.log
    this.#events = init.events
  }

  get (id: string): PeerSession | undefined {
    return this.#sessions.get(id)
  }

  values (): IterableIterator<PeerSession> {
    return this.#sessions.values()
  }

  /** whether the session is still its peer's: the peer may have disconnected since */
  isCurrent (session: PeerSession): boolean {
    return this.#sessions.get(session.id) === session
  }

  /** The peer's session; a new one if it has none. */
  session (peerId: PeerId): PeerSession {
    const id = peerId.toString()
    let session = this.#sessions.get(id)
    if (session == null) {
      session = {
        peerId,
        id,
        queue: [],
        queuedBytes: 0,
        pumping: false,
        readers: new Set(),
        manifests: new Map(),
        aside: new Map(),
        asideBytes: 0,
        stateBytes: 0,
        messages: new TokenBucket(this.limits.messagesPerSecond, this.limits.messageBurst),
        bytes: new TokenBucket(this.limits.bytesPerSecond, this.limits.byteBurst)
      }
      this.#sessions.set(id, session)
    }
    return session
  }

  /** Ends a peer's session, if it has one: its state no longer counts against the budgets. */
  delete (id: string): PeerSession | undefined {
    const session = this.#sessions.get(id)
    if (session == null) {
      return undefined
    }
    this.#sessions.delete(id)
    this.#stateBytes -= session.stateBytes
    session.stateBytes = 0
    return session
  }

  clear (): void {
    this.#sessions.clear()
    this.#stateBytes = 0
  }

  /**
   * Makes a join that fits a manifest we hold the peer's state for it, within the peer's and the
   * total budgets; returns false (and counts why) when it does not fit them.
   */
  adopt (session: PeerSession, cid: string, state: RemoteManifest): boolean {
    const previous = session.manifests.get(cid)
    // a join again replaces the state; its fetchers may have grown or shrunk
    const added = entryBytes(state) - (previous != null ? entryBytes(previous) : 0)
    if (previous == null && session.manifests.size >= this.limits.maxPeerManifests) {
      this.reject(session, 'too-many-manifests', `peer joined more than ${this.limits.maxPeerManifests} manifests`)
      return false
    }
    if (session.stateBytes + added > this.limits.maxPeerStateBytes) {
      this.reject(session, 'peer-over-budget', `peer's control state would exceed ${this.limits.maxPeerStateBytes} bytes`)
      return false
    }
    if (this.#stateBytes + added > this.limits.maxTotalStateBytes) {
      this.reject(session, 'over-budget', `control state of all peers would exceed ${this.limits.maxTotalStateBytes} bytes`)
      return false
    }
    session.stateBytes += added
    this.#stateBytes += added
    session.manifests.set(cid, state)
    this.#events.safeDispatchEvent('peer:joined', {
      detail: { peerId: session.id, manifestCid: cid, bitfield: state.bitfield, chunkCount: state.chunkCount, pulling: state.pulling, fetchers: state.fetchers }
    })
    return true
  }

  /** Keeps a join for a manifest we do not hold, if it fits what a peer may set aside; the oldest make room. */
  setAside (session: PeerSession, cid: string, state: RemoteManifest): void {
    this.dropAside(session, cid)
    const bytes = entryBytes(state)
    const limits = this.limits
    const full = (): boolean => session.aside.size >= limits.maxPeerAsideManifests || session.asideBytes + bytes > limits.maxPeerAsideBytes || session.stateBytes + bytes > limits.maxPeerStateBytes
    for (const oldest of session.aside.keys()) {
      if (!full()) {
        break
      }
      this.dropAside(session, oldest)
    }
    if (full() || this.#stateBytes + bytes > limits.maxTotalStateBytes) {
      // not kept: our own join, if we ever send one, brings it again
      return
    }
    session.aside.set(cid, state)
    session.asideBytes += bytes
    session.stateBytes += bytes
    this.#stateBytes += bytes
  }

  dropAside (session: PeerSession, cid: string): void {
    const state = session.aside.get(cid)
    if (state == null) {
      return
    }
    session.aside.delete(cid)
    const bytes = entryBytes(state)
    session.asideBytes -= bytes
    session.stateBytes -= bytes
    this.#stateBytes -= bytes
  }

  /** Drops a peer's state for one manifest, if it has any, and says so. */
  forget (session: PeerSession, cid: string): void {
    const state = session.manifests.get(cid)
    if (state == null) {
      return
    }
    session.manifests.delete(cid)
    const bytes = entryBytes(state)
    session.stateBytes -= bytes
    this.#stateBytes -= bytes
    this.#events.safeDispatchEvent('peer:left', { detail: { peerId: session.id, manifestCid: cid } })
  }

  /** Counts a dropped message and reports the offence; a ban hangs the peer up (see `node.ts`). */
  reject (session: PeerSession, reason: ControlRejection, detail?: string): void {
    this.#rejected[reason]++
    if (detail != null) {
      this.#log.debug({ peer: session.id, reason, detail }, 'dropped a control message')
    }
    this.#scores.penalize(session.id, reason)
  }

  /** the sessions' part of the channel's stats (what we sent is the writer's) */
  stats (): Omit<ControlStats, 'sent'> {
    let maxPeerStateBytes = 0
    for (const session of this.#sessions.values()) {
      maxPeerStateBytes = Math.max(maxPeerStateBytes, session.stateBytes)
    }
    return { peers: this.#sessions.size, stateBytes: this.#stateBytes, maxPeerStateBytes, rejected: { ...this.#rejected } }
  }
}

/** What one joined manifest counts against the control-state budgets. */
function entryBytes (state: RemoteManifest): number {
  let bytes = state.bitfield.length + MANIFEST_ENTRY_BYTES
  for (const fetcher of state.fetchers) bytes += fetcher.peerId.length + FETCHER_ENTRY_BYTES
  return bytes
}

/** A join's state as kept for the peer. */
export function remoteState (message: Extract<ControlMessage, { type: 'join' }>): RemoteManifest {
  return { chunkCount: message.chunkCount, pulling: message.pulling, bitfield: message.bitfield, fetchers: message.fetchers ?? [], complete: countBits(message.bitfield) === message.chunkCount }
}
