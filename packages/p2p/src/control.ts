/**
 * The control channel: which peers hold or pull which manifests, which of its chunks each
 * holds, and where each peer's data server listens. Bytes never travel here.
 *
 * Streams. Each node writes its messages on one outbound stream per peer and reads the streams
 * peers open to it, so a pair of peers uses two half-duplex streams. Each side opening its own
 * needs no tie-break when both open at once (they always do: both learn the other speaks the
 * protocol from identify at the same moment), and a dead stream is replaced by whichever side
 * next has something to say.
 *
 * State. A writer stream starts with `hello` and then a `join` per manifest we hold, with the
 * whole bitfield, so a fresh stream always carries our full state and anything queued for a
 * stream that died is simply dropped. After that:
 * - `join` goes to every connected peer at once, so the peers of a small fleet find each other
 *   without waiting for the DHT; peers connecting later get it in their stream's first messages.
 * - `have` goes only to peers that joined the same manifest and lack some of its chunks, and
 *   names only chunks the peer lacks as far as its join and haves say: a peer asks nobody for a
 *   chunk it holds, so hearing of it only costs both ends a frame (a pull from one seeder spent
 *   a tenth of its main thread on haves to it; in bench/fanout at 8 nodes an agent's haves a
 *   pull went from 399 to 219 with this rule, its arrivals from 448 to 396).
 *   Indices are coalesced for {@link HAVE_FLUSH_DELAY_MS} and only chunks not already announced
 *   are sent.
 * - When a peer joins a manifest we hold and it had not joined before, or its join lacks a chunk
 *   it held before (it evicted some), we send it our current `join` again, because the `have`s
 *   it missed in between were never sent to it.
 * - `arriving` / `not-arriving` go, at once, to the same peers as `have`s, for the chunks they
 *   lack: chunks we began receiving and our data server passes on as they arrive, and chunks
 *   whose transfer ended without them. Not kept as state: a peer hears of an arrival only while
 *   it is under way.
 * A peer's state lives until its last connection closes (`peer:disconnected`) or it sends a
 * new `hello`.
 *
 * The parts, each with its note: our streams to peers and their backpressure in
 * `control-writer.ts`; the streams peers open and the checks on their messages in
 * `control-reader.ts`; each peer's session and the bounds on what peers make us hold in
 * `control-peers.ts`; our own manifests in `control-local.ts`; addresses in `control-address.ts`.
 */

import { TypedEventEmitter } from '@libp2p/interface'
import { hasBit, setBit, silentLogger } from '@swarm/interface'
import { CONTROL_PROTOCOL, DIAL_TIMEOUT_MS, HAVE_FLUSH_DELAY_MS, MAX_CONTROL_STREAMS, MAX_HAVE_INDICES_PER_MESSAGE } from './constants.js'
import { addressKey, LocalDataAddress, parseMultiaddr, parsePeerId, withPeerId } from './control-address.js'
import { joinMessage, localManifest, manifestKey } from './control-local.js'
import { DEFAULT_CONTROL_LIMITS, PeerSessions } from './control-peers.js'
import { ControlReader } from './control-reader.js'
import { ControlWriter } from './control-writer.js'
import { InvalidChunkStateError, NodeNotStartedError } from './errors.js'
import { canonicalCid, PROTOCOL_VERSION } from './messages.js'
import { peerScores } from './peer-score.js'
import type { LocalManifest } from './control-local.js'
import type { ControlLimits, ControlStats, RemoteManifest } from './control-peers.js'
import type { ControlMessage, DataAddress, NamedFetcher } from './messages.js'
import type { PeerScores } from './peer-score.js'
import type { Connection, Libp2p, PeerId, Stream, TypedEventTarget } from '@libp2p/interface'
import type { AbortOptions, Logger } from '@swarm/interface'

export { CONTROL_REJECTIONS, DEFAULT_CONTROL_LIMITS } from './control-peers.js'
export type { ControlLimits, ControlRejection, ControlStats } from './control-peers.js'
export type { DataAddress }

/** What we tell peers about one manifest. */
export interface ChunkState {
  /** bit i set when chunk i is present; see `bitfield.ts` for the bit order. Copied, not kept. */
  bitfield: Uint8Array
  chunkCount: number
  /** true while we are still pulling it (peers may prefer seeders) */
  pulling: boolean
  /**
   * the manifest's origin fetchers we know of, at most `MAX_JOIN_FETCHERS` (constants.ts): passed on so
   * a fleet agrees on who fetches from the origin (see `@swarm/pull`)
   */
  fetchers?: readonly NamedFetcher[]
}

/** A peer as a DHT lookup or any other discovery returns it. */
export interface PeerAddress {
  peerId: string
  multiaddrs: string[]
}

/** Where a peer's data server listens, as we can reach it. */
export interface ResolvedDataAddress {
  host: string
  port: number
}

/** One peer's state for one manifest, as {@link ControlChannel.peersFor} returns it. */
export interface ManifestPeer {
  peerId: string
  pulling: boolean
  chunkCount: number
  /** live: updated in place as `have` messages arrive; treat it as read-only */
  bitfield: Uint8Array
  /** the origin fetchers the peer named in its last join */
  fetchers: readonly NamedFetcher[]
  dataAddress?: ResolvedDataAddress
}

export interface PeerJoinedEvent {
  peerId: string
  manifestCid: string
  /**
   * the peer's whole bitfield; replaces any earlier one (a peer re-joins when its state changes).
   * It is the same array `peersFor` returns, updated in place by later `have`s.
   */
  bitfield: Uint8Array
  chunkCount: number
  pulling: boolean
  /** the origin fetchers the peer knows of (see {@link ChunkState.fetchers}) */
  fetchers: readonly NamedFetcher[]
}

export interface PeerHaveEvent {
  peerId: string
  manifestCid: string
  /** chunks that became present at the peer */
  indices: number[]
}

export interface PeerLeftEvent {
  peerId: string
  manifestCid: string
}

/** The peer's last connection closed: everything it announced is gone. */
export interface PeerDisconnectedEvent {
  peerId: string
}

export interface PeerDataAddressEvent {
  peerId: string
  host: string
  port: number
}

/**
 * A peer that opens a new control stream (after losing one) first un-announces everything
 * (`peer:left` per manifest) and then joins again with its current state.
 */
export interface ControlEvents {
  'peer:joined': CustomEvent<PeerJoinedEvent>
  'peer:have': CustomEvent<PeerHaveEvent>
  /** the peer began receiving these chunks and passes them on as they arrive (same detail as a have) */
  'peer:arriving': CustomEvent<PeerHaveEvent>
  /** the peer's transfers of these chunks ended without them */
  'peer:not-arriving': CustomEvent<PeerHaveEvent>
  'peer:left': CustomEvent<PeerLeftEvent>
  'peer:disconnected': CustomEvent<PeerDisconnectedEvent>
  'peer:data-address': CustomEvent<PeerDataAddressEvent>
}

export interface ControlChannel extends TypedEventTarget<ControlEvents> {
  /**
   * Tells every connected peer, and every peer that connects later, that we hold or pull this
   * manifest, with our bitfield. Calling it again replaces the state (e.g. `pulling: false`
   * once complete).
   */
  join(manifestCid: string, state: ChunkState): void
  /** Chunks that landed locally; coalesced and sent to the peers that joined the manifest. Ignored for manifests not joined. */
  have(manifestCid: string, indices: Iterable<number>): void
  /**
   * Chunks we began receiving (`arriving: true`) and pass on as they arrive, or whose transfer
   * ended without them (false); sent at once to the peers that joined the manifest and lack
   * chunks. Ignored for manifests not joined.
   */
  arriving(manifestCid: string, indices: number[], arriving: boolean): void
  leave(manifestCid: string): void
  /** manifests we have joined */
  joined(): string[]
  /** Sends our data address again if `dataAddress()` now returns something else. */
  announceDataAddress(): void
  /** Connects to a peer (e.g. one a DHT lookup found); it then gets our state. */
  dial(peer: PeerAddress, options?: AbortOptions): Promise<void>
  /** Peers that joined a manifest, with their bitfields. */
  peersFor(manifestCid: string): ManifestPeer[]
  dataAddressOf(peerId: string): ResolvedDataAddress | undefined
  /** what the control state costs now and what was dropped */
  stats(): ControlStats
}

export interface ControlChannelInit {
  dataAddress?: () => DataAddress | undefined
  /** where offences are reported and bans looked up; the channel makes its own when absent */
  peerScores?: PeerScores
  limits?: Partial<ControlLimits>
  logger?: Logger
}
export class DefaultControlChannel extends TypedEventEmitter<ControlEvents> implements ControlChannel {
  readonly #libp2p: Libp2p
  readonly #log: Logger
  readonly #dataAddress: LocalDataAddress
  readonly #local = new Map<string, LocalManifest>()
  readonly #peers: PeerSessions
  readonly #scores: PeerScores
  readonly #writer: ControlWriter
  readonly #reader: ControlReader
  #announcedAddressKey = ''
  #flushTimer: ReturnType<typeof setTimeout> | undefined
  #topologyId: string | undefined
  #shutdown = new AbortController()
  #running = false

  constructor (libp2p: Libp2p, init: ControlChannelInit = {}) {
    super()
    this.#libp2p = libp2p
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:control' })
    this.#dataAddress = new LocalDataAddress(init.dataAddress ?? (() => undefined), this.#log)
    this.#scores = init.peerScores ?? peerScores({ logger: init.logger })
    this.#peers = new PeerSessions({ limits: { ...DEFAULT_CONTROL_LIMITS, ...init.limits }, scores: this.#scores, log: this.#log, events: this })
    this.#writer = new ControlWriter({
      libp2p,
      log: this.#log,
      running: () => this.#running,
      signal: () => this.#shutdown.signal,
      isCurrent: session => this.#peers.isCurrent(session),
      greeting: () => this.#greeting()
    })
    this.#reader = new ControlReader({ peers: this.#peers, writer: this.#writer, scores: this.#scores, log: this.#log, events: this, local: cid => this.#local.get(cid) })
    this.onPeerDisconnect = this.onPeerDisconnect.bind(this)
  }

  async start (options: AbortOptions = {}): Promise<void> {
    if (this.#running) {
      return
    }
    this.#running = true
    this.#shutdown = new AbortController()
    this.#announcedAddressKey = addressKey(this.#dataAddress.current())
    await this.#libp2p.handle(CONTROL_PROTOCOL, (stream, connection) => { this.onStream(stream, connection) }, {
      maxInboundStreams: MAX_CONTROL_STREAMS,
      maxOutboundStreams: MAX_CONTROL_STREAMS,
      signal: options.signal
    })
    this.#topologyId = await this.#libp2p.register(CONTROL_PROTOCOL, {
      onConnect: (peerId) => { this.#writer.ensureWriter(this.#peers.session(peerId)) }
    }, options)
    this.#libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
  }

  async stop (): Promise<void> {
    if (!this.#running) {
      return
    }
    this.#running = false
    this.#shutdown.abort()
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
    this.#libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    if (this.#topologyId != null) {
      this.#libp2p.unregister(this.#topologyId)
      this.#topologyId = undefined
    }
    await this.#libp2p.unhandle(CONTROL_PROTOCOL).catch(() => {})
    const closing: Array<Promise<void>> = []
    for (const session of this.#peers.values()) {
      for (const stream of [session.writer, ...session.readers]) {
        if (stream != null) {
          closing.push(stream.close({ signal: AbortSignal.timeout(500) }).catch(err => { stream.abort(err) }))
        }
      }
    }
    this.#peers.clear()
    await Promise.all(closing)
  }

  join (manifestCid: string, state: ChunkState): void {
    const cid = manifestKey(manifestCid)
    const local = localManifest(state)
    const { chunkCount } = local
    const previous = this.#local.get(cid)
    this.#local.set(cid, local)
    if (previous != null && previous.chunkCount !== chunkCount) {
      for (const session of this.#peers.values()) {
        if ((session.manifests.get(cid)?.chunkCount ?? chunkCount) !== chunkCount) {
          this.#peers.forget(session, cid)
        }
      }
    }
    for (const session of this.#peers.values()) {
      const aside = session.aside.get(cid)
      if (aside != null) {
        this.#peers.dropAside(session, cid)
        if (aside.chunkCount !== chunkCount) {
          this.#peers.reject(session, 'chunk-count', `join of ${cid} with ${aside.chunkCount} chunks, not ${chunkCount}`)
        } else {
          this.#peers.adopt(session, cid, aside)
        }
      }
    }
    this.announceDataAddress()
    for (const session of this.#peers.values()) {
      this.#writer.send(session, joinMessage(cid, local))
    }
  }

  have (manifestCid: string, indices: Iterable<number>): void {
    // a joined manifest's key is canonical already: no parse per chunk that lands
    const cid = this.#local.has(manifestCid) ? manifestCid : manifestKey(manifestCid)
    const local = this.#local.get(cid)
    if (local == null) {
      this.#log.debug({ manifest: cid }, 'have for a manifest not joined; ignored')
      return
    }
    for (const index of indices) {
      if (!Number.isInteger(index) || index < 0 || index >= local.chunkCount) {
        throw new InvalidChunkStateError(`chunk index ${index} is outside manifest ${cid} of ${local.chunkCount} chunks`)
      }
      if (!hasBit(local.bitfield, index)) {
        setBit(local.bitfield, index)
        local.pending.add(index)
      }
    }
    if (local.pending.size > 0 && this.#flushTimer == null) {
      this.#flushTimer = setTimeout(() => { this.#flushHaves() }, HAVE_FLUSH_DELAY_MS)
      this.#flushTimer.unref?.()
    }
  }

  arriving (manifestCid: string, indices: number[], arriving: boolean): void {
    const cid = this.#local.has(manifestCid) ? manifestCid : manifestKey(manifestCid)
    const local = this.#local.get(cid)
    if (local == null || indices.length === 0) return
    for (const index of indices) {
      if (!Number.isInteger(index) || index < 0 || index >= local.chunkCount) {
        throw new InvalidChunkStateError(`chunk index ${index} is outside manifest ${cid} of ${local.chunkCount} chunks`)
      }
    }
    const type = arriving ? 'arriving' : 'not-arriving'
    for (const session of this.#peers.values()) {
      const lacking = lackedBy(session.manifests.get(cid), indices)
      for (let start = 0; start < lacking.length; start += MAX_HAVE_INDICES_PER_MESSAGE) {
        this.#writer.send(session, { type, manifest: cid, indices: lacking.slice(start, start + MAX_HAVE_INDICES_PER_MESSAGE) })
      }
    }
  }

  leave (manifestCid: string): void {
    const cid = manifestKey(manifestCid)
    if (!this.#local.delete(cid)) {
      return
    }
    for (const session of this.#peers.values()) {
      this.#peers.forget(session, cid)
      if (session.writer != null) {
        this.#writer.send(session, { type: 'leave', manifest: cid })
      }
    }
  }

  joined (): string[] {
    return [...this.#local.keys()]
  }

  announceDataAddress (): void {
    const address = this.#dataAddress.current()
    const key = addressKey(address)
    if (key === this.#announcedAddressKey) {
      return
    }
    this.#announcedAddressKey = key
    for (const session of this.#peers.values()) {
      if (session.writer != null) {
        this.#writer.send(session, { type: 'address', dataAddress: address ?? null })
      }
    }
  }

  async dial (peer: PeerAddress, options: AbortOptions = {}): Promise<void> {
    if (!this.#running) {
      throw new NodeNotStartedError()
    }
    const peerId = parsePeerId(peer.peerId)
    if (peerId.equals(this.#libp2p.peerId)) {
      return
    }
    if (this.#libp2p.getConnections(peerId).length === 0) {
      const addresses = peer.multiaddrs.map(address => withPeerId(parseMultiaddr(address), peer.peerId))
      const signal = AbortSignal.any([AbortSignal.timeout(DIAL_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
      await this.#libp2p.dial(addresses.length > 0 ? addresses : peerId, { signal })
    }
    this.#writer.ensureWriter(this.#peers.session(peerId))
  }

  peersFor (manifestCid: string): ManifestPeer[] {
    const cid = canonicalCid(manifestCid)
    const peers: ManifestPeer[] = []
    if (cid == null) {
      return peers
    }
    for (const session of this.#peers.values()) {
      const state = session.manifests.get(cid)
      if (state != null) {
        peers.push({
          peerId: session.id,
          pulling: state.pulling,
          chunkCount: state.chunkCount,
          bitfield: state.bitfield,
          fetchers: state.fetchers,
          ...(session.dataAddress != null ? { dataAddress: { ...session.dataAddress } } : {})
        })
      }
    }
    return peers
  }

  dataAddressOf (peerId: string): ResolvedDataAddress | undefined {
    const address = this.#peers.get(peerId)?.dataAddress
    return address == null ? undefined : { ...address }
  }

  stats (): ControlStats {
    return { ...this.#peers.stats(), sent: { ...this.#writer.sent } }
  }

  private onPeerDisconnect (event: CustomEvent<PeerId>): void {
    const id = event.detail.toString()
    const session = this.#peers.delete(id)
    if (session == null) {
      return
    }
    session.queue = []
    session.queuedBytes = 0
    this.#log.debug({ peer: id }, 'peer disconnected')
    this.safeDispatchEvent('peer:disconnected', { detail: { peerId: id } })
  }

  private onStream (stream: Stream, connection: Connection): void {
    if (!this.#running) {
      stream.abort(new NodeNotStartedError())
      return
    }
    if (this.#scores.isBanned(connection.remotePeer.toString())) {
      stream.abort(new Error('peer is banned'))
      return
    }
    this.#reader.serve(this.#peers.session(connection.remotePeer), stream, connection)
  }

  /** what a new control stream starts with: our whole state */
  #greeting (): ControlMessage[] {
    const dataAddress = this.#dataAddress.current()
    const messages: ControlMessage[] = [{ type: 'hello', version: PROTOCOL_VERSION, ...(dataAddress != null ? { dataAddress } : {}) }]
    for (const [cid, local] of this.#local) {
      messages.push(joinMessage(cid, local))
    }
    return messages
  }

  #flushHaves (): void {
    this.#flushTimer = undefined
    for (const [cid, local] of this.#local) {
      if (local.pending.size === 0) {
        continue
      }
      const indices = [...local.pending].sort((a, b) => a - b)
      local.pending.clear()
      for (const session of this.#peers.values()) {
        const lacking = lackedBy(session.manifests.get(cid), indices)
        for (let start = 0; start < lacking.length; start += MAX_HAVE_INDICES_PER_MESSAGE) {
          this.#writer.send(session, { type: 'have', manifest: cid, indices: lacking.slice(start, start + MAX_HAVE_INDICES_PER_MESSAGE) })
        }
      }
    }
  }
}

/**
 * Of `indices`, the chunks a peer lacks as far as its join and haves say; none for a peer that
 * has not joined the manifest or holds every chunk (it asks nobody for anything).
 */
function lackedBy (state: RemoteManifest | undefined, indices: number[]): number[] {
  if (state == null || state.complete) return []
  return indices.filter(index => !hasBit(state.bitfield, index))
}
