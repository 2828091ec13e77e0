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
 * - `have` goes only to peers that joined the same manifest and lack some of its chunks (a
 *   seeder asks nobody for anything: haves to it only cost both ends a frame, and a pull from
 *   one seeder spent a tenth of its main thread on them); indices are coalesced for
 *   {@link HAVE_FLUSH_DELAY_MS} and only chunks not already announced are sent.
 * - When a peer joins a manifest we hold and it had not joined before, or it held every chunk
 *   and now lacks some, we send it our current `join` again, because the `have`s it missed in
 *   between were never sent to it.
 * A peer's state lives until its last connection closes (`peer:disconnected`) or it sends a
 * new `hello`.
 *
 * Backpressure: messages queue per peer and are written with `stream.send()`, waiting for
 * `'drain'` whenever it returns false. A peer that lets {@link MAX_QUEUED_BYTES} pile up loses
 * its stream; the next message opens a new one with our full state.
 *
 * Network input is validated in `messages.ts`; a malformed message, an oversized length or a
 * stream that does not start with `hello` closes that one stream with a logged warning and
 * changes nothing else.
 *
 * Every message is then checked against this node's own state before anything uses it, so no
 * listener ever sees a bitfield or index that does not fit the manifest:
 * - a `join` is used only for a manifest we have joined ourselves, and only when its chunk count
 *   is ours. One for a manifest we do not hold is set aside, a few per peer
 *   ({@link MAX_PEER_ASIDE_MANIFESTS}, oldest out first) and checked only against its own chunk
 *   count, so that a pull or a FUSE read that joins the manifest a moment later has the peer at
 *   once; our `join` adopts it if its chunk count is ours. One that was not kept is not lost:
 *   our own `join` makes the peer send its state again (see above), a round trip later;
 * - a `have` must name a manifest the peer joined, with indices inside it;
 * - when we leave a manifest, every peer's state for it is forgotten.
 * A message that fails is dropped, counted by reason ({@link ControlChannel.stats}) and reported
 * to the node's peer scores, which ban repeat offenders (`peer-score.ts`); messages of a banned
 * peer are not read.
 *
 * Bounds (constants, overridable by init): a token bucket per peer for messages and for bytes,
 * checked before a message is even parsed; a cap on manifests per peer; and a budget for the
 * control state (bitfields plus a fixed cost per joined manifest) per peer and for all peers
 * together. A join past a budget is dropped; one past the total budget is not the peer's fault and
 * is not scored.
 *
 * Data address: peers announce the port of their data server and, optionally, a host. Without
 * a host the address is the IP the peer's connection comes from, which is right for pods and
 * hosts behind no NAT and needs no configuration.
 */

import { TypedEventEmitter } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr as toMultiaddr } from '@multiformats/multiaddr'
import { bitfieldLength, countBits, hasBit, setBit, silentLogger } from '@swarm/interface'
import {
  CONTROL_PROTOCOL,
  DIAL_TIMEOUT_MS,
  HAVE_FLUSH_DELAY_MS,
  FETCHER_ENTRY_BYTES,
  MANIFEST_ENTRY_BYTES,
  MAX_CHUNK_COUNT,
  MAX_CONTROL_STREAMS,
  MAX_HAVE_INDICES_PER_MESSAGE,
  MAX_FETCHER_HOPS,
  MAX_JOIN_FETCHERS,
  MAX_MESSAGE_BYTES,
  MAX_PEER_ASIDE_BYTES,
  MAX_PEER_ASIDE_MANIFESTS,
  MAX_PEER_MANIFESTS,
  MAX_PEER_STATE_BYTES,
  MAX_QUEUED_BYTES,
  MAX_TOTAL_STATE_BYTES,
  OPEN_STREAM_TIMEOUT_MS,
  PEER_BYTE_BURST,
  PEER_BYTES_PER_SECOND,
  PEER_MESSAGE_BURST,
  PEER_MESSAGES_PER_SECOND
} from './constants.js'
import {
  ControlMessageTooLargeError,
  InvalidChunkStateError,
  InvalidControlMessageError,
  InvalidManifestCidError,
  InvalidMultiaddrError,
  InvalidPeerIdError,
  NodeNotStartedError
} from './errors.js'
import { canonicalCid, decodeMessage, encodeMessage, FrameDecoder, isPeerIdText, isValidDataAddress, PROTOCOL_VERSION } from './messages.js'
import { peerScores } from './peer-score.js'
import { TokenBucket } from './rate-limit.js'
import type { ControlMessage, DataAddress, NamedFetcher } from './messages.js'
import type { PeerOffence, PeerScores } from './peer-score.js'
import type { Connection, Libp2p, PeerId, Stream, TypedEventTarget } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { AbortOptions, Logger } from '@swarm/interface'

export type { DataAddress }

/** What we tell peers about one manifest. */
export interface ChunkState {
  /** bit i set when chunk i is present; see `bitfield.ts` for the bit order. Copied, not kept. */
  bitfield: Uint8Array
  chunkCount: number
  /** true while we are still pulling it (peers may prefer seeders) */
  pulling: boolean
  /**
   * the manifest's origin fetchers we know of, at most {@link MAX_JOIN_FETCHERS}: passed on so
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
  'peer:left': CustomEvent<PeerLeftEvent>
  'peer:disconnected': CustomEvent<PeerDisconnectedEvent>
  'peer:data-address': CustomEvent<PeerDataAddressEvent>
}

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

interface LocalManifest {
  chunkCount: number
  pulling: boolean
  bitfield: Uint8Array
  fetchers: readonly NamedFetcher[]
  /** present locally but not yet announced with `have` */
  pending: Set<number>
}

interface RemoteManifest {
  chunkCount: number
  pulling: boolean
  bitfield: Uint8Array
  fetchers: readonly NamedFetcher[]
  /** its join marked every chunk held: it asks nobody for anything, so it is sent no haves */
  complete: boolean
}

interface PeerSession {
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

export class DefaultControlChannel extends TypedEventEmitter<ControlEvents> implements ControlChannel {
  readonly #libp2p: Libp2p
  readonly #log: Logger
  readonly #dataAddress: () => DataAddress | undefined
  readonly #local = new Map<string, LocalManifest>()
  readonly #sessions = new Map<string, PeerSession>()
  readonly #scores: PeerScores
  readonly #limits: ControlLimits
  readonly #rejected = Object.fromEntries(CONTROL_REJECTIONS.map(reason => [reason, 0])) as Record<ControlRejection, number>
  #stateBytes = 0
  #announcedAddressKey = ''
  #invalidAddressKey = ''
  #flushTimer: ReturnType<typeof setTimeout> | undefined
  #topologyId: string | undefined
  #shutdown = new AbortController()
  #running = false

  constructor (libp2p: Libp2p, init: ControlChannelInit = {}) {
    super()
    this.#libp2p = libp2p
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:control' })
    this.#dataAddress = init.dataAddress ?? (() => undefined)
    this.#scores = init.peerScores ?? peerScores({ logger: init.logger })
    this.#limits = { ...DEFAULT_CONTROL_LIMITS, ...init.limits }
    this.onPeerDisconnect = this.onPeerDisconnect.bind(this)
  }

  async start (options: AbortOptions = {}): Promise<void> {
    if (this.#running) {
      return
    }
    this.#running = true
    this.#shutdown = new AbortController()
    this.#announcedAddressKey = addressKey(this.#currentDataAddress())
    await this.#libp2p.handle(CONTROL_PROTOCOL, (stream, connection) => { this.onStream(stream, connection) }, {
      maxInboundStreams: MAX_CONTROL_STREAMS,
      maxOutboundStreams: MAX_CONTROL_STREAMS,
      signal: options.signal
    })
    this.#topologyId = await this.#libp2p.register(CONTROL_PROTOCOL, {
      onConnect: (peerId) => { this.#ensureWriter(this.#session(peerId)) }
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
    for (const session of this.#sessions.values()) {
      for (const stream of [session.writer, ...session.readers]) {
        if (stream != null) {
          closing.push(stream.close({ signal: AbortSignal.timeout(500) }).catch(err => { stream.abort(err) }))
        }
      }
    }
    this.#sessions.clear()
    this.#stateBytes = 0
    await Promise.all(closing)
  }

  join (manifestCid: string, state: ChunkState): void {
    const cid = manifestKey(manifestCid)
    const { chunkCount, bitfield, pulling } = state
    if (!Number.isSafeInteger(chunkCount) || chunkCount < 0 || chunkCount > MAX_CHUNK_COUNT) {
      throw new InvalidChunkStateError(`chunk count ${chunkCount} is not an integer from 0 to ${MAX_CHUNK_COUNT}`)
    }
    if (bitfield.length !== bitfieldLength(chunkCount)) {
      throw new InvalidChunkStateError(`a bitfield for ${chunkCount} chunks is ${bitfieldLength(chunkCount)} bytes, not ${bitfield.length}`)
    }
    const fetchers = (state.fetchers ?? []).map(({ peerId, hops }) => ({ peerId, hops }))
    if (fetchers.length > MAX_JOIN_FETCHERS) {
      throw new InvalidChunkStateError(`${fetchers.length} fetchers, at most ${MAX_JOIN_FETCHERS} travel with a join`)
    }
    for (const { peerId, hops } of fetchers) {
      if (typeof peerId !== 'string' || !isPeerIdText(peerId)) throw new InvalidChunkStateError(`fetcher ${JSON.stringify(peerId)} is not a peer id`)
      if (!Number.isInteger(hops) || hops < 0 || hops > MAX_FETCHER_HOPS) throw new InvalidChunkStateError(`fetcher ${peerId} is ${hops} hops away, expected an integer from 0 to ${MAX_FETCHER_HOPS}`)
    }
    const local: LocalManifest = { chunkCount, pulling, bitfield: Uint8Array.from(bitfield), fetchers, pending: new Set() }
    this.#clearSpareBits(local)
    const previous = this.#local.get(cid)
    this.#local.set(cid, local)
    if (previous != null && previous.chunkCount !== chunkCount) {
      for (const session of this.#sessions.values()) {
        if ((session.manifests.get(cid)?.chunkCount ?? chunkCount) !== chunkCount) {
          this.#forget(session, cid)
        }
      }
    }
    for (const session of this.#sessions.values()) {
      const aside = session.aside.get(cid)
      if (aside != null) {
        this.#dropAside(session, cid)
        if (aside.chunkCount !== chunkCount) {
          this.#reject(session, 'chunk-count', `join of ${cid} with ${aside.chunkCount} chunks, not ${chunkCount}`)
        } else {
          this.#adopt(session, cid, aside)
        }
      }
    }
    this.announceDataAddress()
    for (const session of this.#sessions.values()) {
      this.#send(session, this.#joinMessage(cid, local))
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

  leave (manifestCid: string): void {
    const cid = manifestKey(manifestCid)
    if (!this.#local.delete(cid)) {
      return
    }
    for (const session of this.#sessions.values()) {
      this.#forget(session, cid)
      if (session.writer != null) {
        this.#send(session, { type: 'leave', manifest: cid })
      }
    }
  }

  joined (): string[] {
    return [...this.#local.keys()]
  }

  announceDataAddress (): void {
    const address = this.#currentDataAddress()
    const key = addressKey(address)
    if (key === this.#announcedAddressKey) {
      return
    }
    this.#announcedAddressKey = key
    for (const session of this.#sessions.values()) {
      if (session.writer != null) {
        this.#send(session, { type: 'address', dataAddress: address ?? null })
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
    this.#ensureWriter(this.#session(peerId))
  }

  peersFor (manifestCid: string): ManifestPeer[] {
    const cid = canonicalCid(manifestCid)
    const peers: ManifestPeer[] = []
    if (cid == null) {
      return peers
    }
    for (const session of this.#sessions.values()) {
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
    const address = this.#sessions.get(peerId)?.dataAddress
    return address == null ? undefined : { ...address }
  }

  stats (): ControlStats {
    let maxPeerStateBytes = 0
    for (const session of this.#sessions.values()) {
      maxPeerStateBytes = Math.max(maxPeerStateBytes, session.stateBytes)
    }
    return { peers: this.#sessions.size, stateBytes: this.#stateBytes, maxPeerStateBytes, rejected: { ...this.#rejected } }
  }

  private onPeerDisconnect (event: CustomEvent<PeerId>): void {
    const id = event.detail.toString()
    const session = this.#sessions.get(id)
    if (session == null) {
      return
    }
    this.#sessions.delete(id)
    this.#stateBytes -= session.stateBytes
    session.stateBytes = 0
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
    const session = this.#session(connection.remotePeer)
    session.readers.add(stream)
    // reply even before identify tells us the peer speaks the protocol
    this.#ensureWriter(session)
    this.#read(session, stream, connection)
      .catch(err => {
        const bad = err instanceof InvalidControlMessageError || err instanceof ControlMessageTooLargeError
        if (bad) {
          this.#reject(session, err instanceof ControlMessageTooLargeError ? 'too-large' : err.reason, err.message)
          this.#log.warn({ peer: session.id, err: err.message }, 'closing control stream after a bad message')
        } else {
          this.#log.debug({ peer: session.id, err: err.message }, 'control stream failed')
        }
        stream.abort(err)
      })
      .finally(() => {
        session.readers.delete(stream)
      })
  }

  async #read (session: PeerSession, stream: Stream, connection: Connection): Promise<void> {
    const decoder = new FrameDecoder(this.#limits.maxMessageBytes)
    let greeted = false
    for await (const chunk of stream) {
      for (const body of decoder.push(chunk)) {
        if (this.#sessions.get(session.id) !== session || this.#scores.isBanned(session.id)) {
          // the peer left or was banned while this stream was still delivering
          stream.abort(new Error('control session ended'))
          return
        }
        // before parsing: a flood must cost as little as possible
        if (!session.messages.tryTake(1) || !session.bytes.tryTake(body.length)) {
          this.#reject(session, 'rate-limited')
          continue
        }
        const message = decodeMessage(body)
        if (message == null) {
          continue
        }
        if (!greeted && message.type !== 'hello') {
          throw new InvalidControlMessageError(`a control stream must start with hello, not ${message.type}`)
        }
        greeted = true
        this.#receive(session, connection, message)
      }
    }
    if (decoder.pendingBytes > 0) {
      throw new InvalidControlMessageError(`control stream ended inside a message (${decoder.pendingBytes} bytes left)`)
    }
    // we never write on a stream the peer opened: close our end so it is freed on both sides
    await stream.close({ signal: AbortSignal.timeout(OPEN_STREAM_TIMEOUT_MS) })
  }

  #receive (session: PeerSession, connection: Connection, message: ControlMessage): void {
    switch (message.type) {
      case 'hello': {
        for (const cid of [...session.manifests.keys()]) {
          this.#forget(session, cid)
        }
        for (const cid of [...session.aside.keys()]) {
          this.#dropAside(session, cid)
        }
        session.observedHost = observedHost(connection.remoteAddr)
        this.#updateDataAddress(session, message.dataAddress)
        break
      }
      case 'address': {
        session.observedHost = observedHost(connection.remoteAddr)
        this.#updateDataAddress(session, message.dataAddress ?? undefined)
        break
      }
      case 'join': {
        const local = this.#local.get(message.manifest)
        if (local == null) {
          this.#reject(session, 'not-joined')
          this.#setAside(session, message.manifest, remoteState(message))
          break
        }
        if (message.chunkCount !== local.chunkCount) {
          this.#reject(session, 'chunk-count', `join of ${message.manifest} with ${message.chunkCount} chunks, not ${local.chunkCount}`)
          break
        }
        const previous = session.manifests.get(message.manifest)
        const state = remoteState(message)
        // a peer that held everything was sent no haves: once it lacks chunks again (it evicted
        // some), it gets our whole state, as a peer that joins for the first time does
        if (this.#adopt(session, message.manifest, state) && (previous == null || (previous.complete && !state.complete))) {
          this.#send(session, this.#joinMessage(message.manifest, local))
        }
        break
      }
      case 'have': {
        const aside = session.aside.get(message.manifest)
        const state = session.manifests.get(message.manifest) ?? aside
        if (state == null) {
          this.#reject(session, 'peer-not-joined')
          break
        }
        const outside = message.indices.find(index => index >= state.chunkCount)
        if (outside != null) {
          this.#reject(session, 'index-out-of-range', `have index ${outside} is outside manifest ${message.manifest} of ${state.chunkCount} chunks`)
          break
        }
        for (const index of message.indices) {
          setBit(state.bitfield, index)
        }
        if (state === aside) {
          break
        }
        this.safeDispatchEvent('peer:have', { detail: { peerId: session.id, manifestCid: message.manifest, indices: message.indices } })
        break
      }
      case 'leave': {
        this.#forget(session, message.manifest)
        this.#dropAside(session, message.manifest)
        break
      }
    }
  }

  /**
   * Makes a join that fits a manifest we hold the peer's state for it, within the peer's and the
   * total budgets; returns false (and counts why) when it does not fit them.
   */
  #adopt (session: PeerSession, cid: string, state: RemoteManifest): boolean {
    const previous = session.manifests.get(cid)
    // a join again replaces the state; its fetchers may have grown or shrunk
    const added = entryBytes(state) - (previous != null ? entryBytes(previous) : 0)
    if (previous == null && session.manifests.size >= this.#limits.maxPeerManifests) {
      this.#reject(session, 'too-many-manifests', `peer joined more than ${this.#limits.maxPeerManifests} manifests`)
      return false
    }
    if (session.stateBytes + added > this.#limits.maxPeerStateBytes) {
      this.#reject(session, 'peer-over-budget', `peer's control state would exceed ${this.#limits.maxPeerStateBytes} bytes`)
      return false
    }
    if (this.#stateBytes + added > this.#limits.maxTotalStateBytes) {
      this.#reject(session, 'over-budget', `control state of all peers would exceed ${this.#limits.maxTotalStateBytes} bytes`)
      return false
    }
    session.stateBytes += added
    this.#stateBytes += added
    session.manifests.set(cid, state)
    this.safeDispatchEvent('peer:joined', {
      detail: { peerId: session.id, manifestCid: cid, bitfield: state.bitfield, chunkCount: state.chunkCount, pulling: state.pulling, fetchers: state.fetchers }
    })
    return true
  }

  /** Keeps a join for a manifest we do not hold, if it fits what a peer may set aside; the oldest make room. */
  #setAside (session: PeerSession, cid: string, state: RemoteManifest): void {
    this.#dropAside(session, cid)
    const bytes = entryBytes(state)
    const limits = this.#limits
    const full = (): boolean => session.aside.size >= limits.maxPeerAsideManifests || session.asideBytes + bytes > limits.maxPeerAsideBytes || session.stateBytes + bytes > limits.maxPeerStateBytes
    for (const oldest of session.aside.keys()) {
      if (!full()) {
        break
      }
      this.#dropAside(session, oldest)
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

  #dropAside (session: PeerSession, cid: string): void {
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
  #forget (session: PeerSession, cid: string): void {
    const state = session.manifests.get(cid)
    if (state == null) {
      return
    }
    session.manifests.delete(cid)
    const bytes = entryBytes(state)
    session.stateBytes -= bytes
    this.#stateBytes -= bytes
    this.safeDispatchEvent('peer:left', { detail: { peerId: session.id, manifestCid: cid } })
  }

  /** Counts a dropped message and reports the offence; a ban hangs the peer up (see `node.ts`). */
  #reject (session: PeerSession, reason: ControlRejection, detail?: string): void {
    this.#rejected[reason]++
    if (detail != null) {
      this.#log.debug({ peer: session.id, reason, detail }, 'dropped a control message')
    }
    this.#scores.penalize(session.id, reason)
  }

  /** our data address if peers will accept it; an invalid one is logged and not announced */
  #currentDataAddress (): DataAddress | undefined {
    const address = this.#dataAddress()
    if (address == null || isValidDataAddress(address)) {
      return address
    }
    const key = addressKey(address)
    if (key !== this.#invalidAddressKey) {
      this.#invalidAddressKey = key
      this.#log.error({ dataAddress: address }, 'not announcing an invalid data address')
    }
    return undefined
  }

  #updateDataAddress (session: PeerSession, announced: DataAddress | undefined): void {
    session.announced = announced
    const host = announced?.host ?? session.observedHost
    const resolved = announced != null && host != null ? { host, port: announced.port } : undefined
    if (addressKey(resolved) === addressKey(session.dataAddress)) {
      return
    }
    session.dataAddress = resolved
    if (resolved != null) {
      this.safeDispatchEvent('peer:data-address', { detail: { peerId: session.id, ...resolved } })
    }
  }

  #session (peerId: PeerId): PeerSession {
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
        messages: new TokenBucket(this.#limits.messagesPerSecond, this.#limits.messageBurst),
        bytes: new TokenBucket(this.#limits.bytesPerSecond, this.#limits.byteBurst)
      }
      this.#sessions.set(id, session)
    }
    return session
  }

  #joinMessage (cid: string, local: LocalManifest): ControlMessage {
    return { type: 'join', manifest: cid, chunkCount: local.chunkCount, pulling: local.pulling, bitfield: local.bitfield, ...(local.fetchers.length > 0 ? { fetchers: [...local.fetchers] } : {}) }
  }

  #clearSpareBits (local: LocalManifest): void {
    const spare = local.bitfield.length * 8 - local.chunkCount
    if (spare > 0) {
      const last = local.bitfield.length - 1
      local.bitfield[last] = (local.bitfield[last] ?? 0) & (0xff << spare)
    }
  }

  #flushHaves (): void {
    this.#flushTimer = undefined
    for (const [cid, local] of this.#local) {
      if (local.pending.size === 0) {
        continue
      }
      const indices = [...local.pending].sort((a, b) => a - b)
      local.pending.clear()
      for (const session of this.#sessions.values()) {
        // a peer that holds every chunk would only spend a frame (and both ends' CPU) on them
        if (session.manifests.get(cid)?.complete !== false) {
          continue
        }
        for (let start = 0; start < indices.length; start += MAX_HAVE_INDICES_PER_MESSAGE) {
          this.#send(session, { type: 'have', manifest: cid, indices: indices.slice(start, start + MAX_HAVE_INDICES_PER_MESSAGE) })
        }
      }
    }
  }

  /**
   * Queues a message for a peer. Without a writer stream the message is dropped and one is
   * opened instead: a new stream starts with our whole state, which includes the message.
   */
  #send (session: PeerSession, message: ControlMessage): void {
    const writer = session.writer
    if (writer == null) {
      this.#ensureWriter(session)
      return
    }
    const frame = encodeMessage(message)
    session.queue.push(frame)
    session.queuedBytes += frame.length
    if (session.queuedBytes > MAX_QUEUED_BYTES) {
      this.#log.warn({ peer: session.id, bytes: session.queuedBytes }, 'peer is not reading control messages; resetting its stream')
      this.#dropWriter(session, writer)
      writer.abort(new Error('control messages not read'))
      return
    }
    void this.#pump(session)
  }

  #ensureWriter (session: PeerSession): void {
    if (!this.#running || session.writer != null || session.opening != null) {
      return
    }
    session.opening = this.#openWriter(session)
      .catch(err => {
        this.#log.debug({ peer: session.id, err: err.message }, 'could not open a control stream')
      })
      .finally(() => {
        session.opening = undefined
      })
  }

  async #openWriter (session: PeerSession): Promise<void> {
    const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(OPEN_STREAM_TIMEOUT_MS)])
    const stream = await this.#libp2p.dialProtocol(session.peerId, CONTROL_PROTOCOL, { signal })
    if (!this.#running || this.#sessions.get(session.id) !== session) {
      stream.abort(new Error('peer session ended while the control stream opened'))
      return
    }
    stream.addEventListener('close', () => { this.#dropWriter(session, stream) })
    session.writer = stream
    session.queue = []
    session.queuedBytes = 0
    const dataAddress = this.#currentDataAddress()
    this.#send(session, { type: 'hello', version: PROTOCOL_VERSION, ...(dataAddress != null ? { dataAddress } : {}) })
    for (const [cid, local] of this.#local) {
      this.#send(session, this.#joinMessage(cid, local))
    }
  }

  #dropWriter (session: PeerSession, stream: Stream): void {
    if (session.writer === stream) {
      session.writer = undefined
      session.queue = []
      session.queuedBytes = 0
    }
  }

  async #pump (session: PeerSession): Promise<void> {
    if (session.pumping) {
      return
    }
    session.pumping = true
    try {
      for (;;) {
        const stream = session.writer
        const frame = session.queue.shift()
        if (stream == null || frame == null) {
          break
        }
        session.queuedBytes -= frame.length
        if (!stream.send(frame)) {
          await drained(stream)
        }
      }
    } catch (err) {
      this.#log.debug({ peer: session.id, err: (err as Error).message }, 'control stream write failed')
      const stream = session.writer
      if (stream != null) {
        this.#dropWriter(session, stream)
        stream.abort(err as Error)
      }
    } finally {
      session.pumping = false
    }
  }
}

/** Resolves on the stream's next `'drain'`; rejects if it closes first. */
async function drained (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (): void => {
      stream.removeEventListener('drain', onDrain)
      reject(new Error('control stream closed while waiting to write'))
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}

function manifestKey (value: string): string {
  const cid = canonicalCid(value)
  if (cid == null) {
    throw new InvalidManifestCidError(value)
  }
  return cid
}

/** What one joined manifest counts against the control-state budgets. */
function entryBytes (state: RemoteManifest): number {
  let bytes = state.bitfield.length + MANIFEST_ENTRY_BYTES
  for (const fetcher of state.fetchers) bytes += fetcher.peerId.length + FETCHER_ENTRY_BYTES
  return bytes
}

/** A join's state as kept for the peer. */
function remoteState (message: Extract<ControlMessage, { type: 'join' }>): RemoteManifest {
  return { chunkCount: message.chunkCount, pulling: message.pulling, bitfield: message.bitfield, fetchers: message.fetchers ?? [], complete: countBits(message.bitfield) === message.chunkCount }
}

function addressKey (address: DataAddress | undefined): string {
  return address == null ? '' : `${address.host ?? ''}|${address.port}`
}

function observedHost (address: Multiaddr): string | undefined {
  for (const component of address.getComponents()) {
    if ((component.name === 'ip4' || component.name === 'ip6') && component.value != null) {
      return component.value
    }
  }
  return undefined
}

export function parsePeerId (value: string): PeerId {
  try {
    return peerIdFromString(value)
  } catch {
    throw new InvalidPeerIdError(value)
  }
}

export function parseMultiaddr (value: string): Multiaddr {
  try {
    return toMultiaddr(value)
  } catch (err) {
    throw new InvalidMultiaddrError(value, `not a multiaddr: ${JSON.stringify(value)} (${(err as Error).message})`)
  }
}

function withPeerId (address: Multiaddr, peerId: string): Multiaddr {
  const named = address.getComponents().find(component => component.name === 'p2p')?.value
  if (named == null) {
    return address.encapsulate(`/p2p/${peerId}`)
  }
  if (named !== peerId) {
    throw new InvalidMultiaddrError(address.toString(), `address ${address.toString()} names peer ${named}, not ${peerId}`)
  }
  return address
}
