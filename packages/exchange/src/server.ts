/**
 * The serving side: a TLS server that answers GETs for chunks and manifests from the local store.
 *
 * Upload slots bound the work a server takes on: a GET holds a slot from the moment it is
 * accepted until its last payload byte is handed to the socket, so slots also bound the memory
 * of chunks read but not yet sent. A GET that accepts at most `SMALL_ANSWER_LENGTH` bytes takes
 * no slot (up to `MAX_SMALL_ANSWERS` at once): its answer is a few packets, and one that names a
 * larger chunk is refused once the chunk's size is known, before it is read. When every slot (or
 * the peer's share) is taken the answer is BUSY at once, never a queue: the client has other
 * peers and the origin to ask (who gets a slot: `slots.ts`). Responses on
 * one connection are written one after another (frames must not interleave); the upload rate
 * limit paces payloads in slices, shared by all connections. A connection whose client stops
 * reading is not read either once enough responses wait for it, so it cannot pile up work.
 * Admission is checked on every GET as well as after the handshake, so a peer removed from the
 * swarm loses its open connections at its next request.
 *
 * No peer can hold a slot or a connection for long without doing its part (the data plane
 * limits in the README list them):
 *
 * - A response whose bytes the peer does not take (the socket's write buffer does not drain)
 *   within `writeTimeoutMs` closes the connection, which frees every slot held there. Without it a
 *   peer that sends GETs and never reads holds its slots forever.
 * - Slots are fair between peers: the last `reservedUploads` free slots go only to a peer that
 *   holds none, so peers at their per-peer share cannot fill the server between them. While
 *   uploads follow landing times, the reservation is that share of the slots open now. Many
 *   identities can still fill it, each with a slot; the write timeout bounds how long.
 * - A connection with nothing in flight that stays silent for `idleTimeoutMs` is closed.
 * - A connection must finish TLS and present an admitted peer's certificate within
 *   `handshakeTimeoutMs` of the TCP accept: one deadline, which a peer trickling handshake bytes
 *   cannot stretch as it could an inactivity timer.
 * - Connections are capped in all (`maxConnections`, closed at accept before TLS starts) and per
 *   peer (`maxConnectionsPerPeer`, closed right after authentication, before any byte is read).
 *   The protocol has no way to say BUSY outside a response, and a closed connection tells the
 *   client what BUSY would: ask another source.
 *
 * Who is admitted, the connection caps and the upload slots are the gate's (`gate.ts`): the
 * server's own `UploadGate`, or, for a server a byte worker hosts, the node's one gate on the main
 * thread asked through messages, with the bytes read from the store's files by path
 * (`ServedContent`). Such servers share the node's port (`reusePort`) and its limits.
 *
 * A GET with the relay flag for a chunk the store does not hold yet but is arriving here
 * (`arrivals`: checked block by block against the manifest's digests, see @swarm/fetcher's
 * `ArrivingChunks`) is answered as the chunk arrives: the header names its whole length and each
 * checked block follows as a copy, written as soon as it is checked. It holds an upload slot like
 * any GET, but its time does not count as a landing time (the gate's landing-time limit would
 * read a relay, paced by its source, as a slow peer). A relay whose chunk stops arriving closes
 * its connection, the only way to cut a frame short; so does a write that times out.
 *
 * Chunks are read into buffers from a pool (see BufferPool in @swarm/interface) and each goes back once the
 * socket has taken its payload: Node's TLS encrypts a write before its callback runs, so the
 * buffer is free then. Buffers of responses that are never written are left to the collector.
 */

import tls from 'node:tls'
import { BufferPool, silentLogger } from '@swarm/interface'
import {
  COALESCE_PAYLOAD_LENGTH, DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SERVER_IDLE_TIMEOUT_MS,
  DEFAULT_WRITE_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, MAX_QUEUED_RESPONSES, MAX_REQUEST_BODY_LENGTH,
  RATE_LIMIT_SLICE_LENGTH, SMALL_ANSWER_LENGTH
} from './constants.js'
import { AnswerTooLargeError, ConnectionClosedError, InvalidRequestError, PeerNotAdmittedError, ProtocolError, ServerStateError, WriteTimeoutError } from './errors.js'
import { UploadGate } from './gate.js'
import { authenticate, identityOf, tlsOptions } from './identity.js'
import type { PeerIdentity } from './identity.js'
import {
  FrameDecoder, RequestType, Status, decodeRequest, encodeErrorMessage, encodeResponse, encodeResponseHeader
} from './protocol.js'
import { positiveInteger } from './options.js'
import { TokenBucket } from './rate-limit.js'
import { waitForDrain } from './socket.js'
import type { PeerVerdict, ServeGate, SlotVerdict, UploadLimits } from './gate.js'
import type { Request } from './protocol.js'
import type { PrivateKey } from '@libp2p/interface'
import type { AbortOptions, ArrivingChunk, ChunkArrivals, ChunkStore, Logger, ReadChunkOptions } from '@swarm/interface'
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'

/** The part of the store a server reads. */
export type ChunkProvider = Pick<ChunkStore, 'hasChunk' | 'readChunk' | 'getManifestBytes'>

/** Where a server that holds no store (one a byte worker hosts) gets what it serves. */
export interface ServedContent {
  /**
   * the chunk, else the manifest, stored under `cid`, read for `peer`; undefined when neither is
   * held. Rejects with PeerNotAdmittedError when the peer is no longer admitted
   */
  read(cid: string, peer: string, options: ReadChunkOptions): Promise<Uint8Array | undefined>
}

/** A data server's settings; the upload and connection limits (`UploadLimits`) are its own gate's, where it has no shared one. */
export interface DataServerInit extends UploadLimits {
  /** the node's libp2p key; the certificate is bound to its peer id (or `identity`) */
  privateKey?: PrivateKey
  /** how this server shows who it is and checks who a client is, in place of `privateKey` (see identity.ts) */
  identity?: PeerIdentity
  /** what the server serves from; or `content` */
  store?: ChunkProvider
  /** what the server serves, where it holds no store; takes the place of `store` */
  content?: ServedContent
  /** chunks arriving here, passed on as they arrive to a GET with the relay flag (see above) */
  arrivals?: ChunkArrivals
  /** only peers currently admitted to the swarm are served (required without a `gate`) */
  isAdmitted?(peerId: string): boolean
  /**
   * the node's admission, connection caps and upload slots, where servers on several threads
   * share them; absent: the server's own, from `isAdmitted` and the limits below
   */
  gate?: ServeGate
  /** default 127.0.0.1 */
  host?: string
  /** default 0 (any free port) */
  port?: number
  /** listens with SO_REUSEPORT, so servers on other threads can share the port (default false) */
  reusePort?: boolean
  /** ms a peer may leave a response's bytes untaken before its connection is closed (default 30 s) */
  writeTimeoutMs?: number
  /** ms a connection with nothing in flight may stay silent before it is closed (default 120 s) */
  idleTimeoutMs?: number
  /** ms from the TCP accept to an authenticated, admitted peer (default 10 s) */
  handshakeTimeoutMs?: number
  /** upload rate over all connections in bytes per second; 0 or absent = unlimited */
  uploadBytesPerSecond?: number
  logger?: Logger
}

export interface DataServerAddress {
  host: string
  port: number
}

export interface DataServerStats {
  /** payload bytes of OK responses handed to sockets */
  bytesServed: number
  /** GETs received */
  requests: number
  /** connections refused: no valid certificate, or a peer not admitted */
  rejectedPeers: number
  /** GETs answered BUSY */
  busy: number
  /** GETs answered from a chunk still arriving here, and those cut short when it stopped arriving */
  relays: number
  relaysCut: number
  notFound: number
  /** GETs answered ERROR */
  errors: number
  /** connections closed for breaking the protocol */
  protocolErrors: number
  /** authenticated connections open now */
  connections: number
  /** upload slots taken now */
  uploads: number
  /** GETs for at most `SMALL_ANSWER_LENGTH` bytes being answered now; they take no upload slot */
  smallAnswers: number
  /** upload slots open now: `maxUploads`, or with `uploadLandingMs` as many as land in that time */
  uploadLimit: number
  /** connections closed for a timeout: a response not taken in time, silence, an unfinished handshake */
  timeouts: { write: number, idle: number, handshake: number }
  /** connections refused for a cap: on all connections, or on the peer's */
  refusedConnections: { total: number, perPeer: number }
}

export interface DataServer {
  /** listens; resolves with the bound address */
  start(options?: AbortOptions): Promise<DataServerAddress>
  /** stops taking connections and keeps serving those it has (servers on other threads took the port over) */
  stopListening(): Promise<void>
  /** stops listening and closes every connection; requests in progress are abandoned */
  stop(): Promise<void>
  /** the bound address; throws ServerStateError before start */
  readonly address: DataServerAddress
  readonly stats: Readonly<DataServerStats>
}

export function dataServer (init: DataServerInit): DataServer {
  return new TlsDataServer(init)
}

class TlsDataServer implements DataServer {
  /** what this server did and holds now; its connections' handlers count here */
  readonly counters: Omit<DataServerStats, 'uploadLimit'> = {
    bytesServed: 0,
    requests: 0,
    rejectedPeers: 0,
    busy: 0,
    relays: 0,
    relaysCut: 0,
    notFound: 0,
    errors: 0,
    protocolErrors: 0,
    connections: 0,
    uploads: 0,
    smallAnswers: 0,
    timeouts: { write: 0, idle: 0, handshake: 0 },
    refusedConnections: { total: 0, perPeer: 0 }
  }

  private server: tls.Server | undefined
  /** the listener's close, once begun (stopListening) */
  private closing: Promise<void> | undefined
  private bound: DataServerAddress | undefined
  /** every TCP connection, authenticated or not, so stop() need not wait for handshakes */
  private readonly sockets = new Set<Socket>()
  private readonly tlsSockets = new Set<TLSSocket>()
  private readonly connections = new Set<ServerConnection>()
  /** handshake deadlines by TCP connection (see connectionKey), until the peer is accepted */
  private readonly handshakes = new Map<string, NodeJS.Timeout>()
  /** the gate's answer on each TCP connection (see connectionKey), until its peer is accepted */
  private readonly opened = new Map<string, Promise<boolean>>()
  private readonly log: Logger
  readonly gate: ServeGate
  private readonly handshakeTimeoutMs: number
  readonly writeTimeoutMs: number
  readonly idleTimeoutMs: number
  readonly uploadBucket: TokenBucket | undefined
  readonly buffers = new BufferPool()
  private readonly identity: PeerIdentity

  constructor (private readonly init: DataServerInit) {
    this.log = (init.logger ?? silentLogger).child({ component: 'exchange-server' })
    if (init.store === undefined && init.content === undefined) throw new InvalidRequestError('a data server needs a store or content to serve')
    const identity = identityOf(init)
    if (identity === undefined) throw new InvalidRequestError('a data server needs the node\'s privateKey or an identity')
    this.identity = identity
    if (init.gate !== undefined) {
      this.gate = init.gate
    } else {
      const isAdmitted = init.isAdmitted
      if (isAdmitted === undefined) throw new InvalidRequestError('a data server needs isAdmitted, or a gate')
      this.gate = new UploadGate({
        ...init,
        isAdmitted,
        onAdmissionError: (err, peer) => { this.log.error({ err, peer }, 'admission check failed') }
      })
    }
    this.writeTimeoutMs = positiveInteger(init.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS, 'writeTimeoutMs')
    this.idleTimeoutMs = positiveInteger(init.idleTimeoutMs ?? DEFAULT_SERVER_IDLE_TIMEOUT_MS, 'idleTimeoutMs')
    this.handshakeTimeoutMs = positiveInteger(init.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS, 'handshakeTimeoutMs')
    const rate = init.uploadBytesPerSecond ?? 0
    this.uploadBucket = rate > 0 ? new TokenBucket(rate) : undefined
  }

  /** this server's counters; the slots open now are a gate's figure, known here where the gate is on this thread */
  get stats (): Readonly<DataServerStats> {
    const uploadLimit = this.gate instanceof UploadGate ? this.gate.counts.uploadLimit : 0
    return { ...this.counters, uploadLimit, timeouts: { ...this.counters.timeouts }, refusedConnections: { ...this.counters.refusedConnections } }
  }

  get address (): DataServerAddress {
    if (this.bound == null) throw new ServerStateError('data server is not started')
    return this.bound
  }

  async start (options: AbortOptions = {}): Promise<DataServerAddress> {
    if (this.server != null) throw new ServerStateError('data server is already started')
    const certificate = await this.identity.certificate()
    options.signal?.throwIfAborted()
    const server = tls.createServer({
      ...tlsOptions(certificate),
      requestCert: true,
      // Node's own timer measures inactivity; the deadline in 'connection' below comes first
      handshakeTimeout: 2 * this.handshakeTimeoutMs
    })
    this.server = server
    server.on('connection', (socket: Socket) => {
      this.sockets.add(socket)
      const key = connectionKey(socket)
      // the gate counts every accepted connection against the node's cap; one beyond it is closed before TLS goes far
      let counted = false
      const opened = settle(this.gate.connectionOpened(), false).then(ok => {
        if (ok && socket.destroyed) this.gate.connectionClosed()
        else if (ok) counted = true
        else if (!socket.destroyed) {
          this.counters.refusedConnections.total++
          this.log.debug({ remote: socket.remoteAddress }, 'refused a data connection: too many connections')
          socket.destroy()
        }
        return ok
      })
      this.opened.set(key, opened)
      const deadline = setTimeout(() => {
        this.counters.timeouts.handshake++
        this.log.info({ remote: socket.remoteAddress, timeoutMs: this.handshakeTimeoutMs }, 'closing a data connection that did not authenticate in time')
        socket.destroy()
      }, this.handshakeTimeoutMs)
      this.handshakes.set(key, deadline)
      socket.once('close', () => {
        this.sockets.delete(socket)
        clearTimeout(deadline)
        if (this.handshakes.get(key) === deadline) this.handshakes.delete(key)
        if (this.opened.get(key) === opened) this.opened.delete(key)
        if (counted) this.gate.connectionClosed()
        counted = false
      })
    })
    server.on('secureConnection', socket => { this.accept(socket) })
    server.on('tlsClientError', (err, socket) => {
      this.log.debug({ err, remote: socket.remoteAddress }, 'TLS handshake failed')
    })
    server.on('error', err => { this.log.error({ err }, 'data server error') })
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => { reject(err) }
      server.once('error', onError)
      server.listen({ port: this.init.port ?? DEFAULT_PORT, host: this.init.host ?? DEFAULT_HOST, reusePort: this.init.reusePort === true }, () => {
        server.off('error', onError)
        resolve()
      })
    }).catch(err => {
      this.server = undefined
      throw err
    })
    const address = server.address()
    if (address == null || typeof address === 'string') throw new ServerStateError('data server has no TCP address')
    this.bound = { host: address.address, port: address.port }
    this.log.info({ ...this.bound }, 'data server listening')
    return this.bound
  }

  async stopListening (): Promise<void> {
    const server = this.server
    if (server == null || this.closing !== undefined) return
    this.closing = this.close(server)
    this.log.info({ ...this.bound }, 'data server stopped listening; its connections go on')
  }

  /** stops accepting at once; resolves once the last connection has closed too */
  private async close (server: tls.Server): Promise<void> {
    await new Promise<void>(resolve => { server.close(() => { resolve() }) })
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    const closed = this.closing ?? this.close(server)
    this.closing = undefined
    for (const connection of this.connections) connection.destroy()
    for (const socket of this.tlsSockets) socket.destroy()
    for (const socket of this.sockets) socket.destroy()
    await closed
    this.buffers.clear()
    this.bound = undefined
    this.log.info('data server stopped')
  }

  private accept (socket: TLSSocket): void {
    socket.on('error', err => { this.log.debug({ err, remote: socket.remoteAddress }, 'data connection error') })
    socket.setNoDelay(true)
    this.tlsSockets.add(socket)
    socket.once('close', () => { this.tlsSockets.delete(socket) })
    const key = connectionKey(socket)
    const opened = this.opened.get(key) ?? Promise.resolve(true)
    // Until authenticate() passes and the gate keeps the connection, no listener reads the socket and nothing is written to it.
    authenticate(socket, this.identity).then(async peer => {
      const verdict: PeerVerdict = (await opened) ? await settle<PeerVerdict>(this.gate.peerConnected(peer), 'not-admitted') : 'not-admitted'
      if (socket.destroyed || this.server == null) {
        if (verdict === 'ok') this.gate.peerDisconnected(peer)
        socket.destroy()
        return
      }
      if (verdict === 'not-admitted') {
        this.counters.rejectedPeers++
        this.log.info({ peer, remote: socket.remoteAddress }, 'refused a peer that is not admitted')
        socket.destroy()
        return
      }
      if (verdict === 'too-many') {
        this.counters.refusedConnections.perPeer++
        this.log.info({ peer, remote: socket.remoteAddress }, 'refused a data connection: the peer holds too many')
        socket.destroy()
        return
      }
      clearTimeout(this.handshakes.get(key))
      this.handshakes.delete(key)
      const connection = new ServerConnection(this, socket, peer, this.log.child({ peer }))
      this.connections.add(connection)
      this.counters.connections++
      socket.once('close', () => {
        this.connections.delete(connection)
        this.counters.connections--
        this.gate.peerDisconnected(peer)
      })
      connection.start()
    }, (err: Error) => {
      this.counters.rejectedPeers++
      this.log.info({ err, remote: socket.remoteAddress }, 'refused a peer without a valid certificate')
      socket.destroy()
    })
  }

  /** The gate's verdict on a GET, and this server's count of the uploads and small answers it holds. */
  async begin (peer: string, small: boolean, relay: boolean): Promise<SlotVerdict> {
    const verdict = await settle<SlotVerdict>(this.gate.begin(peer, small, relay ? { relay } : undefined), 'busy')
    if (verdict === 'ok') {
      if (small) this.counters.smallAnswers++
      else this.counters.uploads++
    }
    return verdict
  }

  end (peer: string, small: boolean, relay: boolean, landedAfterMs?: number): void {
    if (small) this.counters.smallAnswers--
    else this.counters.uploads--
    this.gate.end(peer, small, landedAfterMs, relay ? { relay } : undefined)
  }

  /** whether a relay GET for `cid` is answered as the chunk arrives: the store does not hold it, and it is arriving */
  relays (cid: string): boolean | Promise<boolean> {
    const { arrivals, store } = this.init
    if (arrivals === undefined || store?.hasChunk(cid) === true) return false
    return arrivals.arriving(cid)
  }

  /** The chunk, else the manifest, stored under `cid`; undefined when neither is held. */
  async lookup (cid: string, peer: string, options: ReadChunkOptions): Promise<Uint8Array | undefined> {
    const { content, store } = this.init
    if (content !== undefined) return await content.read(cid, peer, options)
    if (store === undefined) return undefined
    if (store.hasChunk(cid)) return await store.readChunk(cid, options)
    return store.getManifestBytes(cid)
  }

  /** a reader of chunk `cid` while it arrives here, if it does */
  arriving (cid: string): ArrivingChunk | undefined {
    return this.init.arrivals?.open(cid)
  }
}

/** what a gate answered, or `fallback` where its answer failed (a worker's question to a main thread that is going away) */
async function settle<T> (answer: T | Promise<T>, fallback: T): Promise<T> {
  try {
    return await answer
  } catch {
    return fallback
  }
}

/** One authenticated connection on the server. */
class ServerConnection {
  /** GETs that hold an upload slot, by request id */
  private readonly requests = new Map<number, AbortController>()
  private readonly closed = new AbortController()
  private writeTail: Promise<void> = Promise.resolve()
  private queuedResponses = 0
  private readonly decoder: FrameDecoder<Buffer>

  constructor (
    private readonly server: TlsDataServer,
    private readonly socket: TLSSocket,
    private readonly peer: string,
    private readonly log: Logger
  ) {
    this.decoder = new FrameDecoder<Buffer>({
      maxBodyLength: MAX_REQUEST_BODY_LENGTH,
      onHeader: header => Buffer.from(header),
      onFrame: (header, rest) => { this.handle(decodeRequest(header, rest)) }
    })
  }

  start (): void {
    // a listener given to setTimeout itself runs once only, and the first may come mid-request
    this.socket.setTimeout(this.server.idleTimeoutMs)
    this.socket.on('timeout', () => { this.idle() })
    this.socket.once('close', () => {
      this.closed.abort(new ConnectionClosedError())
      for (const controller of this.requests.values()) controller.abort()
    })
    this.socket.on('data', (chunk: Buffer) => {
      if (this.socket.destroyed) return
      try {
        this.decoder.push(chunk)
      } catch (err) {
        this.server.counters.protocolErrors++
        this.log.error({ err, remote: this.socket.remoteAddress }, 'closing a data connection that broke the protocol')
        this.destroy()
      }
    })
  }

  destroy (): void {
    this.socket.destroy()
  }

  /** No byte moved for the idle timeout; a response stuck in the socket is the write timeout's. */
  private idle (): void {
    if (this.socket.destroyed || this.requests.size > 0 || this.queuedResponses > 0) return
    this.server.counters.timeouts.idle++
    this.log.debug({ remote: this.socket.remoteAddress, timeoutMs: this.server.idleTimeoutMs }, 'closing an idle data connection')
    this.destroy()
  }

  private handle (request: Request): void {
    if (request.type === RequestType.CANCEL) {
      this.requests.get(request.id)?.abort()
      return
    }
    const stats = this.server.counters
    stats.requests++
    if (this.requests.has(request.id)) throw new ProtocolError(`request id ${request.id} is already in flight`)
    // a GET for a few bytes is answered beside the uploads, not behind them (a larger chunk is refused before it is read)
    const small = request.maxSize <= SMALL_ANSWER_LENGTH
    const controller = new AbortController()
    // held from now, so a CANCEL or a second GET with this id finds it while the gate answers
    this.requests.set(request.id, controller)
    const startedAt = performance.now()
    // decided now, for the slot it takes (see ServeGate.begin); served from the store if it lands meanwhile
    const relay = request.relay && !small ? this.server.relays(request.cid) : false
    if (relay instanceof Promise) {
      relay.then(relay => { this.admit(request, small, relay, controller, startedAt) }, (err: Error) => {
        this.log.warn({ err, cid: request.cid }, 'could not tell whether a chunk is arriving here; served as a GET')
        this.admit(request, small, false, controller, startedAt)
      })
    } else {
      this.admit(request, small, relay, controller, startedAt)
    }
  }

  /** takes a slot for a GET from the gate, then serves it */
  private admit (request: Extract<Request, { type: typeof RequestType.GET }>, small: boolean, relay: boolean, controller: AbortController, startedAt: number): void {
    const stats = this.server.counters
    if (this.socket.destroyed) {
      this.requests.delete(request.id)
      return
    }
    this.server.begin(this.peer, small, relay).then(verdict => {
      if (verdict === 'ok') return true
      this.requests.delete(request.id)
      if (verdict === 'not-admitted') {
        stats.rejectedPeers++
        this.log.info('closing the connection of a peer no longer admitted')
        this.destroy()
      } else {
        stats.busy++
        void this.respond(request.id, Status.BUSY)
      }
      return false
    }).then(async go => {
      if (!go) return
      let landed = false
      try {
        landed = await this.serve({ ...request, relay }, controller)
      } catch (err) {
        if (err instanceof PeerNotAdmittedError) {
          stats.rejectedPeers++
          this.log.info('closing the connection of a peer no longer admitted')
        } else {
          this.log.error({ err, cid: request.cid }, 'failed to serve a request')
        }
        this.destroy()
      } finally {
        this.requests.delete(request.id)
        this.server.end(this.peer, small, relay, landed ? performance.now() - startedAt : undefined)
      }
    }).catch((err: Error) => {
      this.log.error({ err, cid: request.cid }, 'failed to serve a request')
      this.destroy()
    })
  }

  /** `relay`: as decided when the slot was taken (never on a slot the landing times opened); resolves true once an OK payload past the coalescing size went out whole: a chunk's landing (a small answer, an error, a refusal or a cancelled request is none) */
  private async serve ({ id, cid, maxSize, relay }: { id: number, cid: string, maxSize: number, relay: boolean }, controller: AbortController): Promise<boolean> {
    let status: Status
    let payload: Uint8Array | undefined
    let pooled: Buffer | undefined
    const allocate = (size: number): Buffer => {
      // refused before it is read: a GET may not make the server read more than it asked for
      if (size > maxSize) throw new AnswerTooLargeError(cid, size, maxSize)
      return (pooled = this.server.buffers.take(size))
    }
    try {
      payload = await this.server.lookup(cid, this.peer, { signal: controller.signal, allocate })
      const arriving = payload === undefined && relay ? this.server.arriving(cid) : undefined
      if (arriving !== undefined) {
        if (arriving.size <= maxSize) return await this.relay(id, cid, arriving, controller.signal)
        arriving.close()
        throw new AnswerTooLargeError(cid, arriving.size, maxSize)
      }
      if (payload === undefined) {
        status = Status.NOT_FOUND
      } else if (payload.byteLength > maxSize) {
        status = Status.ERROR
        payload = encodeErrorMessage(new AnswerTooLargeError(cid, payload.byteLength, maxSize).message)
      } else {
        status = Status.OK
      }
    } catch (err) {
      payload = undefined
      const name = (err as Error | undefined)?.name
      if (controller.signal.aborted) {
        status = Status.CANCELLED
      } else if (err instanceof PeerNotAdmittedError) {
        if (pooled !== undefined) this.server.buffers.give(pooled)
        throw err
      } else if (err instanceof AnswerTooLargeError) {
        status = Status.ERROR
        payload = encodeErrorMessage(err.message)
      } else if (name === 'NotFoundError' || name === 'ChunkMissingError') {
        // the chunk left the store between hasChunk and the read
        status = Status.NOT_FOUND
      } else {
        status = Status.ERROR
        payload = encodeErrorMessage(`failed to read ${cid}: ${err instanceof Error ? err.message : String(err)}`)
        this.log.warn({ err, cid }, 'failed to read a requested chunk')
      }
    }
    // the read is over; unless the chunk goes out in the pooled buffer, it is free now
    let release: (() => void) | undefined
    if (pooled !== undefined) {
      const buffer = pooled
      if (status === Status.OK && payload?.buffer === buffer.buffer) release = () => { this.server.buffers.give(buffer) }
      else this.server.buffers.give(buffer)
    }
    const sent = await this.respond(id, status, payload, controller.signal, release)
    // a request cancelled before its turn went out as CANCELLED, with no chunk
    return sent && !controller.signal.aborted && status === Status.OK && (payload?.byteLength ?? 0) > COALESCE_PAYLOAD_LENGTH
  }

  /**
   * Queues a response behind those already queued. A request cancelled before its turn is
   * answered CANCELLED instead. Resolves once it is handed to the socket, or dropped with the
   * connection; never rejects. True when it went out.
   */
  private async respond (id: number, status: Status, payload?: Uint8Array, cancelled?: AbortSignal, release?: () => void): Promise<boolean> {
    let sent = false
    this.queuedResponses++
    if (this.queuedResponses > MAX_QUEUED_RESPONSES) this.socket.pause()
    const write = this.writeTail.then(async () => {
      if (this.socket.destroyed) return
      if (cancelled?.aborted === true) {
        status = Status.CANCELLED
        payload = undefined
      }
      await this.write(id, status, payload, release)
      sent = true
      const stats = this.server.counters
      if (status === Status.OK) stats.bytesServed += payload?.byteLength ?? 0
      else if (status === Status.NOT_FOUND) stats.notFound++
      else if (status === Status.ERROR) stats.errors++
    }).catch((err: Error) => {
      if (err instanceof WriteTimeoutError) {
        this.server.counters.timeouts.write++
        this.log.info({ remote: this.socket.remoteAddress, timeoutMs: err.timeoutMs }, 'closing a data connection whose peer does not take its responses')
        this.destroy()
        return
      }
      this.log.debug({ err }, 'response dropped with its connection')
    }).finally(() => {
      this.queuedResponses--
      if (this.queuedResponses <= MAX_QUEUED_RESPONSES / 2 && this.socket.isPaused() && !this.socket.destroyed) this.socket.resume()
    })
    this.writeTail = write
    await write
    return sent
  }

  /**
   * Answers with chunk `cid` as it arrives (see the notes at the top), queued like any response.
   * Resolves false: a relay's time is its source's, not a landing time. Never rejects.
   */
  private async relay (id: number, cid: string, arriving: ArrivingChunk, cancelled: AbortSignal): Promise<false> {
    this.queuedResponses++
    if (this.queuedResponses > MAX_QUEUED_RESPONSES) this.socket.pause()
    const stats = this.server.counters
    const write = this.writeTail.then(async () => {
      if (this.socket.destroyed) return
      if (cancelled.aborted) {
        await this.write(id, Status.CANCELLED)
        return
      }
      stats.relays++
      await this.writeArriving(id, arriving)
      stats.bytesServed += arriving.size
    }).catch((err: Error) => {
      if (err instanceof WriteTimeoutError) {
        stats.timeouts.write++
        this.log.info({ remote: this.socket.remoteAddress, timeoutMs: err.timeoutMs }, 'closing a data connection whose peer does not take its responses')
      } else {
        stats.relaysCut++
        this.log.debug({ err, cid }, 'a relay ended before its chunk was whole; closing its connection')
      }
      // a frame cut short: nothing more can be read right on this connection
      this.destroy()
    }).finally(() => {
      arriving.close()
      this.queuedResponses--
      if (this.queuedResponses <= MAX_QUEUED_RESPONSES / 2 && this.socket.isPaused() && !this.socket.destroyed) this.socket.resume()
    })
    this.writeTail = write
    await write
    return false
  }

  /** the OK header with the chunk's whole length, then each checked piece as a copy, as it is checked */
  private async writeArriving (id: number, arriving: ArrivingChunk): Promise<void> {
    const { socket } = this
    const bucket = this.server.uploadBucket
    const options = { signal: this.closed.signal }
    const buffers = this.server.buffers
    let flushed = socket.write(encodeResponseHeader(id, Status.OK, arriving.size))
    for (let offset = 0; offset < arriving.size;) {
      if (!flushed) await waitForDrain(socket, this.server.writeTimeoutMs)
      const piece = await arriving.read(offset, RATE_LIMIT_SLICE_LENGTH * 4, length => buffers.take(length), options)
      if (bucket !== undefined) await bucket.take(piece.byteLength, options)
      if (socket.destroyed) throw new ConnectionClosedError()
      flushed = socket.write(piece, () => { buffers.give(piece) })
      offset += piece.byteLength
    }
    if (!flushed) await waitForDrain(socket, this.server.writeTimeoutMs)
  }

  /** `release` runs once the socket is done with the payload's memory (not at all if it never gets all of it) */
  private async write (id: number, status: Status, payload?: Uint8Array, release?: () => void): Promise<void> {
    const { socket } = this
    const bucket = this.server.uploadBucket
    const options = { signal: this.closed.signal }
    const length = payload?.byteLength ?? 0
    let flushed: boolean
    if (payload === undefined || length <= COALESCE_PAYLOAD_LENGTH) {
      const frame = encodeResponse(id, status, payload)
      release?.()
      await bucket?.take(frame.length, options)
      flushed = socket.write(frame)
    } else if (bucket === undefined) {
      socket.write(encodeResponseHeader(id, status, length))
      flushed = socket.write(payload, release)
    } else {
      flushed = socket.write(encodeResponseHeader(id, status, length))
      for (let offset = 0; offset < length; offset += RATE_LIMIT_SLICE_LENGTH) {
        if (!flushed) await waitForDrain(socket, this.server.writeTimeoutMs)
        const slice = payload.subarray(offset, offset + RATE_LIMIT_SLICE_LENGTH)
        await bucket.take(slice.byteLength, options)
        if (socket.destroyed) throw new ConnectionClosedError()
        const last = offset + RATE_LIMIT_SLICE_LENGTH >= length
        flushed = socket.write(slice, last ? release : undefined)
      }
    }
    if (!flushed) await waitForDrain(socket, this.server.writeTimeoutMs)
  }
}

/**
 * Names a TCP connection to the server both as the raw socket 'connection' hands over and as
 * the TLS socket 'secureConnection' hands over later, which Node links only internally.
 */
function connectionKey (socket: Socket): string {
  return `${socket.localAddress ?? ''}|${socket.localPort ?? ''}|${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`
}
