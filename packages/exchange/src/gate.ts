/**
 * What a node's data servers share, whichever threads they run on: who is admitted, how many
 * connections there are (in all and per peer), and the upload slots (who gets one: `slots.ts`).
 *
 * A server on the main thread holds an `UploadGate` and asks it directly. A node whose byte
 * workers serve (one data server per worker, all on one port with SO_REUSEPORT, so the kernel
 * spreads the connections over them) keeps its one `UploadGate` on the main thread, and each
 * worker's server asks it through messages (`ServeGate` answers may be promises): the node's
 * limits stay the node's however many threads serve, and a worker that dies gives back what
 * its connections held (`release`).
 */

import { LandingLimit } from '@swarm/interface'
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_PEER, DEFAULT_MAX_RELAYS, DEFAULT_MAX_UPLOADS, DEFAULT_MAX_UPLOADS_PER_PEER, MAX_SMALL_ANSWERS, MIN_UPLOADS } from './constants.js'
import { InvalidRequestError } from './errors.js'
import { positiveInteger } from './options.js'
import { defaultReservedUploads, slotGranted } from './slots.js'

/** an authenticated connection: kept, its peer not admitted, or one too many for its peer */
export type PeerVerdict = 'ok' | 'not-admitted' | 'too-many'
/** a GET: it goes ahead holding a slot (or a small answer's place), BUSY, or its peer is no longer admitted */
export type SlotVerdict = 'ok' | 'busy' | 'not-admitted'

/** What a data server asks before it takes on work. */
export interface ServeGate {
  /** a TCP connection was accepted; false: over the node's cap, closed before TLS */
  connectionOpened(): boolean | Promise<boolean>
  /** an accepted connection closed */
  connectionClosed(): void
  /** a connection authenticated as `peer` */
  peerConnected(peer: string): PeerVerdict | Promise<PeerVerdict>
  /** an authenticated connection of `peer` closed */
  peerDisconnected(peer: string): void
  /**
   * a GET from `peer`; `small`: it accepts at most SMALL_ANSWER_LENGTH bytes and takes no upload
   * slot; `relay`: it is answered as its chunk arrives here, paced by that chunk's source, and
   * takes one of `maxRelays`, not an upload slot (see `slotGranted`)
   */
  begin(peer: string, small: boolean, options?: { relay?: boolean }): SlotVerdict | Promise<SlotVerdict>
  /** a GET begun with 'ok' is over; `landedAfterMs`: its chunk went out whole, this long after it was asked for */
  end(peer: string, small: boolean, landedAfterMs?: number, options?: { relay?: boolean }): void
}

/** What an `UploadGate` holds now. */
export interface GateCounts {
  /** accepted connections, handshaking ones included */
  connections: number
  /** authenticated connections */
  peerConnections: number
  uploads: number
  /** of `uploads`, relays (see ServeGate.begin) */
  relays: number
  smallAnswers: number
  /** upload slots open now */
  uploadLimit: number
}

/** A node's limits on uploads and connections. */
export interface UploadLimits {
  /** concurrent uploads in all; a GET beyond gets BUSY (default 8) */
  maxUploads?: number
  /**
   * how long an upload should take to land, in ms: uploads at once follow it, from 2 up to
   * `maxUploads` (see `LandingLimit` in @swarm/interface). Default 0: always `maxUploads`; an
   * agent gives `DEFAULT_UPLOAD_LANDING_MS`
   */
  uploadLandingMs?: number
  /** concurrent relays (GETs answered as their chunk arrives), beside `maxUploads` (default 8) */
  maxRelays?: number
  /** concurrent uploads to one peer, relays included (default 4) */
  maxUploadsPerPeer?: number
  /** free slots only a peer that holds none may take (default `min(2, maxUploads / 4)`, rounded down); 0 turns it off */
  reservedUploads?: number
  /** connections in all, handshaking ones included; more are closed at accept (default 512) */
  maxConnections?: number
  /** connections of one peer; more are closed after authentication, unread (default 8) */
  maxConnectionsPerPeer?: number
}

export interface UploadGateInit extends UploadLimits {
  /** only peers the swarm admits now are served */
  isAdmitted(peerId: string): boolean
  /** told of an admission check that threw (the peer is then refused) */
  onAdmissionError?(err: unknown, peer: string): void
}

/** What one holder (a worker's server) took from the gate, to give back if it goes. */
interface Holdings {
  connections: number
  peers: Map<string, number>
  uploads: Map<string, number>
  /** of `uploads`, relays */
  relays: number
  smallAnswers: number
}

/** The node's one gate: synchronous answers, for a server on this thread or relayed to workers. */
export class UploadGate implements ServeGate {
  readonly maxUploads: number
  readonly maxRelays: number
  readonly maxUploadsPerPeer: number
  readonly reservedUploads: number
  readonly maxConnections: number
  readonly maxConnectionsPerPeer: number
  private readonly landing: LandingLimit
  private readonly uploadsByPeer = new Map<string, number>()
  private readonly connectionsByPeer = new Map<string, number>()
  private readonly holders = new Map<number, Holdings>()
  private readonly counted: GateCounts

  constructor (private readonly init: UploadGateInit) {
    this.maxUploads = positiveInteger(init.maxUploads ?? DEFAULT_MAX_UPLOADS, 'maxUploads')
    const landingMs = init.uploadLandingMs ?? 0
    if (!Number.isFinite(landingMs) || landingMs < 0) throw new InvalidRequestError(`uploadLandingMs must be 0 (off) or a finite number of milliseconds, got ${String(landingMs)}`)
    this.landing = new LandingLimit({ min: Math.min(MIN_UPLOADS, this.maxUploads), max: this.maxUploads, targetMs: landingMs })
    this.maxRelays = positiveInteger(init.maxRelays ?? DEFAULT_MAX_RELAYS, 'maxRelays')
    this.maxUploadsPerPeer = positiveInteger(init.maxUploadsPerPeer ?? DEFAULT_MAX_UPLOADS_PER_PEER, 'maxUploadsPerPeer')
    const reserved = init.reservedUploads ?? defaultReservedUploads(this.maxUploads)
    this.reservedUploads = reserved === 0 ? 0 : positiveInteger(reserved, 'reservedUploads')
    this.maxConnections = positiveInteger(init.maxConnections ?? DEFAULT_MAX_CONNECTIONS, 'maxConnections')
    this.maxConnectionsPerPeer = positiveInteger(init.maxConnectionsPerPeer ?? DEFAULT_MAX_CONNECTIONS_PER_PEER, 'maxConnectionsPerPeer')
    this.counted = { connections: 0, peerConnections: 0, uploads: 0, relays: 0, smallAnswers: 0, uploadLimit: this.landing.limit }
  }

  get counts (): Readonly<GateCounts> {
    return { ...this.counted }
  }

  admitted (peer: string): boolean {
    try {
      return this.init.isAdmitted(peer)
    } catch (err) {
      this.init.onAdmissionError?.(err, peer)
      return false
    }
  }

  connectionOpened (holder?: number): boolean {
    if (this.counted.connections >= this.maxConnections) return false
    this.counted.connections++
    if (holder !== undefined) this.holding(holder).connections++
    return true
  }

  connectionClosed (holder?: number): void {
    if (holder !== undefined) {
      const held = this.holders.get(holder)
      if (held === undefined || held.connections === 0) return
      held.connections--
    }
    this.counted.connections = Math.max(0, this.counted.connections - 1)
  }

  peerConnected (peer: string, holder?: number): PeerVerdict {
    if (!this.admitted(peer)) return 'not-admitted'
    const held = this.connectionsByPeer.get(peer) ?? 0
    if (held >= this.maxConnectionsPerPeer) return 'too-many'
    this.connectionsByPeer.set(peer, held + 1)
    this.counted.peerConnections++
    if (holder !== undefined) bump(this.holding(holder).peers, peer, 1)
    return 'ok'
  }

  peerDisconnected (peer: string, holder?: number): void {
    if (holder !== undefined) {
      const held = this.holders.get(holder)
      if (held === undefined || (held.peers.get(peer) ?? 0) === 0) return
      bump(held.peers, peer, -1)
    }
    bump(this.connectionsByPeer, peer, -1)
    this.counted.peerConnections = Math.max(0, this.counted.peerConnections - 1)
  }

  /** `holder`: a worker the slot is counted for (see `release`) */
  begin (peer: string, small: boolean, { holder, relay = false }: { holder?: number, relay?: boolean } = {}): SlotVerdict {
    if (!this.admitted(peer)) return 'not-admitted'
    if (small) {
      if (this.counted.smallAnswers >= MAX_SMALL_ANSWERS) return 'busy'
      this.counted.smallAnswers++
      if (holder !== undefined) this.holding(holder).smallAnswers++
      return 'ok'
    }
    const takenByPeer = this.uploadsByPeer.get(peer) ?? 0
    const { uploads, relays } = this.counted
    if (!slotGranted({ uploads, relays, takenByPeer, landingLimit: this.landing.limit, maxUploads: this.maxUploads, maxRelays: this.maxRelays, maxUploadsPerPeer: this.maxUploadsPerPeer, reservedUploads: this.reservedUploads }, relay)) return 'busy'
    this.counted.uploads++
    if (relay) this.counted.relays++
    this.uploadsByPeer.set(peer, takenByPeer + 1)
    if (holder !== undefined) {
      const held = this.holding(holder)
      bump(held.uploads, peer, 1)
      if (relay) held.relays++
    }
    return 'ok'
  }

  end (peer: string, small: boolean, landedAfterMs?: number, { holder, relay = false }: { holder?: number, relay?: boolean } = {}): void {
    if (holder !== undefined) {
      const held = this.holders.get(holder)
      if (held === undefined) return
      if (small) {
        if (held.smallAnswers === 0) return
        held.smallAnswers--
      } else {
        if ((held.uploads.get(peer) ?? 0) === 0) return
        bump(held.uploads, peer, -1)
        if (relay) held.relays = Math.max(0, held.relays - 1)
      }
    }
    if (small) {
      this.counted.smallAnswers = Math.max(0, this.counted.smallAnswers - 1)
      return
    }
    if (landedAfterMs !== undefined) {
      this.landing.landed(landedAfterMs, this.counted.uploads)
      this.counted.uploadLimit = this.landing.limit
    }
    this.counted.uploads = Math.max(0, this.counted.uploads - 1)
    if (relay) this.counted.relays = Math.max(0, this.counted.relays - 1)
    bump(this.uploadsByPeer, peer, -1)
  }

  /** Gives back everything `holder` (a worker that went away) held: its connections, slots and places. */
  release (holder: number): void {
    const held = this.holders.get(holder)
    if (held === undefined) return
    this.holders.delete(holder)
    this.counted.connections = Math.max(0, this.counted.connections - held.connections)
    for (const [peer, n] of held.peers) {
      bump(this.connectionsByPeer, peer, -n)
      this.counted.peerConnections = Math.max(0, this.counted.peerConnections - n)
    }
    for (const [peer, n] of held.uploads) {
      bump(this.uploadsByPeer, peer, -n)
      this.counted.uploads = Math.max(0, this.counted.uploads - n)
    }
    this.counted.relays = Math.max(0, this.counted.relays - held.relays)
    this.counted.smallAnswers = Math.max(0, this.counted.smallAnswers - held.smallAnswers)
  }

  private holding (holder: number): Holdings {
    let held = this.holders.get(holder)
    if (held === undefined) {
      held = { connections: 0, peers: new Map(), uploads: new Map(), relays: 0, smallAnswers: 0 }
      this.holders.set(holder, held)
    }
    return held
  }
}

/** adds `by` to `key`'s count, dropping it at zero */
function bump (counts: Map<string, number>, key: string, by: number): void {
  const next = (counts.get(key) ?? 0) + by
  if (next <= 0) counts.delete(key)
  else counts.set(key, next)
}
