/**
 * Peer scoring: one record per node of how each peer has behaved, and the bans that follow.
 *
 * Everything a peer can do wrong is reported here as an offence: a control message that does not
 * parse, does not fit this node's own state (a chunk count that is not the manifest's, an index
 * past its end), comes too fast, or would take more control state than a peer may hold; and bytes
 * that fail verification, in a pull or in a read through the FUSE view. Each offence has a weight
 * ({@link PEER_OFFENCE_WEIGHTS}); a peer's score is the sum of its weights, halving every
 * {@link PEER_SCORE_HALF_LIFE_MS}. Decay matters because some offences can happen to an honest
 * peer now and then (a `have` that crosses our `leave`): those weigh little and fade, while a peer
 * that keeps misbehaving reaches {@link PEER_BAN_THRESHOLD} within a few messages, and one whose
 * bytes fail verification is banned at once.
 *
 * A ban lasts `banMs`; a repeat offender's next ban lasts twice as long as its last, up to
 * {@link MAX_BAN_MULTIPLIER} times. One table serves the whole node, so a ban holds across pulls
 * and for FUSE reads alike: the node refuses the peer at libp2p connection gating and hangs up its
 * connections, the data server's admission check refuses it, pull sessions drop it, and the FUSE
 * view does not ask it. Bans expire lazily (checked when asked), so there are no timers.
 *
 * The table is bounded ({@link MAX_SCORED_PEERS}): a peer that offends again moves to the end,
 * and past the bound the longest-quiet peer that is not banned is forgotten first.
 *
 * `banMs: 0` turns bans off; offences are still scored and counted.
 */

import { TypedEventEmitter } from '@libp2p/interface'
import { silentLogger } from '@swarm/interface'
import {
  MAX_BAN_MULTIPLIER,
  MAX_SCORED_PEERS,
  PEER_BAN_MS,
  PEER_BAN_THRESHOLD,
  PEER_OFFENCE_WEIGHTS,
  PEER_SCORE_HALF_LIFE_MS
} from './constants.js'
import type { TypedEventTarget } from '@libp2p/interface'
import type { Logger } from '@swarm/interface'

export type PeerOffence = keyof typeof PEER_OFFENCE_WEIGHTS

export const PEER_OFFENCES = Object.keys(PEER_OFFENCE_WEIGHTS) as PeerOffence[]

export interface PeerScoreInit {
  /** how long a first ban lasts, ms; 0: never ban (default 10 minutes) */
  banMs?: number
  banThreshold?: number
  halfLifeMs?: number
  weights?: Partial<Record<PeerOffence, number>>
  maxPeers?: number
  /** the clock, ms (default `Date.now`) */
  now?: () => number
  logger?: Logger
}

export interface PeerBannedEvent {
  peerId: string
  /** the offence that crossed the threshold */
  offence: PeerOffence
  /** when the ban ends (the clock's ms) */
  until: number
  /** how many times this peer has been banned, this one included */
  bans: number
}

export interface PeerScoreEvents {
  'peer:banned': CustomEvent<PeerBannedEvent>
}

export interface PeerScoreStats {
  /** bans since start */
  bans: number
  /** peers banned now */
  banned: number
  /** offences reported since start, by kind */
  offences: Record<PeerOffence, number>
}

export interface PeerScores extends TypedEventTarget<PeerScoreEvents> {
  /** Records an offence; returns true when it got the peer banned. Offences of banned peers are ignored. */
  penalize(peerId: string, offence: PeerOffence): boolean
  isBanned(peerId: string): boolean
  /** the peer's current (decayed) score */
  score(peerId: string): number
  /** peers banned now, with when each ban ends */
  banned(): Array<{ peerId: string, until: number }>
  /** Lifts a ban and clears the score; the count of past bans is kept. */
  unban(peerId: string): void
  stats(): PeerScoreStats
}

interface PeerRecord {
  score: number
  /** when `score` was last brought up to date */
  at: number
  bans: number
  bannedUntil: number
}

export class DefaultPeerScores extends TypedEventEmitter<PeerScoreEvents> implements PeerScores {
  readonly #banMs: number
  readonly #threshold: number
  readonly #halfLifeMs: number
  readonly #weights: Record<PeerOffence, number>
  readonly #maxPeers: number
  readonly #now: () => number
  readonly #log: Logger
  readonly #peers = new Map<string, PeerRecord>()
  readonly #offences: Record<PeerOffence, number>
  #bans = 0

  constructor (init: PeerScoreInit = {}) {
    super()
    this.#banMs = init.banMs ?? PEER_BAN_MS
    this.#threshold = init.banThreshold ?? PEER_BAN_THRESHOLD
    this.#halfLifeMs = init.halfLifeMs ?? PEER_SCORE_HALF_LIFE_MS
    this.#weights = { ...PEER_OFFENCE_WEIGHTS, ...init.weights }
    this.#maxPeers = Math.max(1, init.maxPeers ?? MAX_SCORED_PEERS)
    this.#now = init.now ?? Date.now
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:peer-score' })
    this.#offences = Object.fromEntries(PEER_OFFENCES.map(offence => [offence, 0])) as Record<PeerOffence, number>
    if (!(this.#banMs >= 0) || !(this.#threshold > 0) || !(this.#halfLifeMs > 0)) {
      throw new RangeError('peer scoring needs banMs >= 0, banThreshold > 0 and halfLifeMs > 0')
    }
  }

  penalize (peerId: string, offence: PeerOffence): boolean {
    this.#offences[offence]++
    const weight = this.#weights[offence]
    if (weight <= 0) {
      return false
    }
    const now = this.#now()
    const record = this.#touch(peerId, now)
    if (record.bannedUntil > now) {
      return false
    }
    record.score += weight
    if (this.#banMs === 0 || record.score < this.#threshold) {
      return false
    }
    record.bans++
    record.score = 0
    record.bannedUntil = now + this.#banMs * Math.min(2 ** (record.bans - 1), MAX_BAN_MULTIPLIER)
    this.#bans++
    this.#log.warn({ peer: peerId, offence, bans: record.bans, seconds: Math.round((record.bannedUntil - now) / 1000) }, 'peer banned')
    this.safeDispatchEvent('peer:banned', { detail: { peerId, offence, until: record.bannedUntil, bans: record.bans } })
    return true
  }

  isBanned (peerId: string): boolean {
    const record = this.#peers.get(peerId)
    return record != null && record.bannedUntil > this.#now()
  }

  score (peerId: string): number {
    const record = this.#peers.get(peerId)
    if (record == null) {
      return 0
    }
    this.#decay(record, this.#now())
    return record.score
  }

  banned (): Array<{ peerId: string, until: number }> {
    const now = this.#now()
    const out: Array<{ peerId: string, until: number }> = []
    for (const [peerId, record] of this.#peers) {
      if (record.bannedUntil > now) {
        out.push({ peerId, until: record.bannedUntil })
      }
    }
    return out
  }

  unban (peerId: string): void {
    const record = this.#peers.get(peerId)
    if (record != null) {
      record.bannedUntil = 0
      record.score = 0
    }
  }

  stats (): PeerScoreStats {
    return { bans: this.#bans, banned: this.banned().length, offences: { ...this.#offences } }
  }

  /** The peer's record, brought up to date and moved to the end of the table (most recent). */
  #touch (peerId: string, now: number): PeerRecord {
    let record = this.#peers.get(peerId)
    if (record == null) {
      record = { score: 0, at: now, bans: 0, bannedUntil: 0 }
      this.#evict(now)
    } else {
      this.#peers.delete(peerId)
      this.#decay(record, now)
    }
    this.#peers.set(peerId, record)
    return record
  }

  #decay (record: PeerRecord, now: number): void {
    if (now > record.at) {
      record.score *= 0.5 ** ((now - record.at) / this.#halfLifeMs)
      record.at = now
    }
  }

  /** Makes room for one more record: the oldest unbanned peer goes, else the oldest of all. */
  #evict (now: number): void {
    if (this.#peers.size < this.#maxPeers) {
      return
    }
    for (const [peerId, record] of this.#peers) {
      if (record.bannedUntil <= now) {
        this.#peers.delete(peerId)
        return
      }
    }
    const oldest = this.#peers.keys().next().value
    if (oldest != null) {
      this.#peers.delete(oldest)
    }
  }
}

/** Creates the node's peer scores (a node makes its own unless given one). */
export function peerScores (init: PeerScoreInit = {}): PeerScores {
  return new DefaultPeerScores(init)
}
