/**
 * The fetching side: a pool of authenticated TLS connections per peer, many requests in flight
 * on each.
 *
 * Connections open on demand. A request goes to the least-loaded connection, but while the pool
 * may still grow, a request that would share a busy connection dials another one instead, so a
 * burst spreads over `connectionsPerPeer` connections rather than queueing behind one. A failed
 * dial rejects the waiting requests when the peer has no working connection; otherwise it only
 * stops further dials for a moment and the working connections carry on.
 *
 * `requestTimeoutMs` bounds a whole fetch, including waiting for a connection. A request that
 * times out or is aborted is cancelled on the wire; its connection still expects the one response
 * the protocol guarantees and drops it unread. A connection that has received nothing at all since
 * a request timed out is taken for dead and closed.
 *
 * The client enforces the size bound (no response may exceed the size asked for, checked before
 * the payload is read) but not the CID: the caller verifies bytes in one place, and calls
 * `disconnect` on a peer that sent bad ones. The download rate limit stops reading sockets,
 * so TCP flow control slows the senders.
 *
 * A relay (a GET of a chunk the peer is still receiving, see the protocol's notes) goes on a
 * connection with nothing else in flight, and nothing else is sent on that connection until its
 * answer is in: the answer takes as long as the peer's own transfer, and a request queued behind
 * it would wait as long. A relay given up closes its connection, which ends the answer. Its
 * timeout counts from the last bytes it brought, not from when it was sent: it is as slow as
 * the peer's source, and alive while bytes come.
 *
 * Responses are read in place (see `FrameReader`): Node's TLS decrypts each record straight into
 * the buffer the payload is handed out in, so a chunk costs no allocation per read and no copy in
 * JavaScript. Payload buffers come from a pool; a caller that is done with the bytes gives them
 * back with `release`, and the next response is read into the same memory instead of fresh
 * memory the garbage collector has to chase (see BufferPool in @swarm/interface). A caller that does not release
 * loses nothing but that reuse.
 */

import tls from 'node:tls'
import { AbortError, BufferPool, NotFoundError, silentLogger } from '@swarm/interface'
import {
  DEFAULT_CONNECTIONS_PER_PEER, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_INFLIGHT_PER_CONNECTION, DEFAULT_REQUEST_TIMEOUT_MS,
  HANDSHAKE_TIMEOUT_MS, MAX_CANCELLED_PER_CONNECTION, MAX_CHUNK_SIZE, MAX_ERROR_MESSAGE_LENGTH, PEER_ID_FORM, RECONNECT_BACKOFF_MS,
  RELAY_TIMEOUT_REFRESH_MS
} from './constants.js'
import {
  ClientClosedError, ConnectionClosedError, ConnectionFailedError, InvalidRequestError, PeerAuthenticationError,
  PeerBusyError, ProtocolError, RemoteError, RequestTimeoutError, ResponseTooLargeError, UnexpectedPeerError
} from './errors.js'
import { authenticate, identityOf, tlsOptions } from './identity.js'
import { FrameReader, MAX_RESPONSE_BODY_LENGTH, Status, encodeCancel, encodeGet, isValidCid } from './protocol.js'
import { positiveInteger } from './options.js'
import { TokenBucket } from './rate-limit.js'
import type { Certificate } from './identity.js'
import type { PeerIdentity } from './identity.js'
import type { PrivateKey } from '@libp2p/interface'
import type { ChunkFetchOptions, ChunkRequest, ChunkSource, Logger, OnChunkData } from '@swarm/interface'
import type { OnReadOpts } from 'node:net'
import type { TLSSocket } from 'node:tls'

/** Where a peer serves data: its libp2p peer id and its data port, as announced over libp2p. */
export interface DataPeer {
  peerId: string
  host: string
  port: number
}

export interface DataClientInit {
  /** the node's libp2p key; servers see this node's peer id (or `identity`) */
  privateKey?: PrivateKey
  /** how this client shows who it is and checks who a server is, in place of `privateKey` (see identity.ts) */
  identity?: PeerIdentity
  /** connections opened to one peer at most (default 4) */
  connectionsPerPeer?: number
  /** requests in flight on one connection at most; more wait (default 8) */
  maxInflightPerConnection?: number
  /** download rate over all connections in bytes per second; 0 or absent = unlimited */
  downloadBytesPerSecond?: number
  /** a fetch that is not answered in full within this many ms fails (default 30 s) */
  requestTimeoutMs?: number
  /** connections with nothing in flight are closed after this many ms (default 60 s) */
  idleTimeoutMs?: number
  /** a connection not through TLS and the server's certificate check this many ms after the dial fails (default 10 s, or the request timeout if shorter) */
  handshakeTimeoutMs?: number
  logger?: Logger
}

export interface DataClientStats {
  /** GETs sent */
  requests: number
  /** bytes read from data connections after authentication, frames included */
  bytesReceived: number
  /** fetches that timed out */
  timeouts: number
  /** connections closed after the idle timeout with nothing in flight */
  idleTimeouts: number
  /** dials that did not get through the handshake in time */
  handshakeTimeouts: number
  connectionsOpened: number
  /** connections open or opening now */
  connections: number
}

export interface DataClient {
  /**
   * The bytes a peer holds under `request.cid` (a chunk or a manifest), at most `request.size`
   * of them, unverified; `onData` hears of them as they land, `relay` takes them from a chunk the
   * peer is still receiving. Rejects with NotFoundError, PeerBusyError, RemoteError,
   * RequestTimeoutError, UnexpectedPeerError, PeerAuthenticationError, ConnectionFailedError,
   * ConnectionClosedError, ResponseTooLargeError, ProtocolError, InvalidRequestError or AbortError.
   */
  fetch(peer: DataPeer, request: ChunkRequest, options?: PeerFetchOptions): Promise<Uint8Array>
  /**
   * Gives back bytes a fetch resolved with, once nothing reads them any more, so that their memory
   * carries a later response. Optional; anything else, or a second release, is ignored.
   */
  release(bytes: Uint8Array): void
  /** closes every connection to a peer and fails its requests, e.g. after it sent bytes that failed verification */
  disconnect(peerId: string): void
  /** closes every connection; fetches fail with ClientClosedError afterwards */
  close(): Promise<void>
  readonly stats: Readonly<DataClientStats>
}

export interface PeerFetchOptions extends ChunkFetchOptions {
  /** the peer said the chunk is arriving there: it may answer while it still arrives */
  relay?: boolean
}

export function dataClient (init: DataClientInit): DataClient {
  return new TlsDataClient(init)
}

/** A {@link ChunkSource} for one peer, named `peer:<peerId>`; `relay`: asked for a chunk it is still receiving. */
export function peerSource (client: DataClient, peer: DataPeer, relay = false): ChunkSource {
  return {
    name: `peer:${peer.peerId}`,
    kind: 'peer',
    remote: { kind: 'peer', peerId: peer.peerId, host: peer.host, port: peer.port, ...(relay ? { relay } : {}) },
    fetch: async (request, options) => await client.fetch(peer, request, relay ? { ...options, relay } : options),
    release: bytes => { client.release(bytes) }
  }
}

interface PendingRequest {
  readonly cid: string
  readonly maxSize: number
  readonly pool: PeerPool
  readonly relay: boolean
  readonly onData: OnChunkData | undefined
  /** a relay's bytes came: its timeout starts again */
  progressed?: () => void
  id: number
  connection: ClientConnection | undefined
  sentAt: number
  settled: boolean
  resolve(bytes: Uint8Array): void
  reject(err: Error): void
}

interface PeerPool {
  readonly peerId: string
  /** the peer id the server must prove */
  readonly expected: string
  host: string
  port: number
  readonly connections: Set<ClientConnection>
  readonly queue: PendingRequest[]
  /** no new dials before this (performance.now()) while other connections work */
  dialAfter: number
  disposed: boolean
}

interface ClientConnection {
  readonly socket: TLSSocket
  readonly pool: PeerPool
  ready: boolean
  error: Error | undefined
  readonly inflight: Map<number, PendingRequest>
  /** ids of cancelled requests still owed a response, with their size bound */
  readonly cancelled: Map<number, number>
  /** a relay in flight: nothing else is sent on the connection until its answer is in */
  relaying: boolean
  nextId: number
  lastReceiveAt: number
  readonly closed: Promise<void>
  /** while paced by the download limit: when reading resumes */
  resumeAt?: number
  resumeTimer?: NodeJS.Timeout
}

type ResponseContext = { request: PendingRequest, status: Status }

class TlsDataClient implements DataClient {
  private readonly pools = new Map<string, PeerPool>()
  private readonly counters = { requests: 0, bytesReceived: 0, timeouts: 0, idleTimeouts: 0, handshakeTimeouts: 0, connectionsOpened: 0 }
  private certificate: Certificate | undefined
  private closed = false
  private readonly log: Logger
  private readonly connectionsPerPeer: number
  private readonly maxInflight: number
  private readonly requestTimeoutMs: number
  private readonly idleTimeoutMs: number
  private readonly handshakeTimeoutMs: number
  private readonly downloadBucket: TokenBucket | undefined
  private readonly buffers = new BufferPool()
  private readonly identity: PeerIdentity

  constructor (private readonly init: DataClientInit) {
    this.log = (init.logger ?? silentLogger).child({ component: 'exchange-client' })
    const identity = identityOf(init)
    if (identity === undefined) throw new InvalidRequestError('a data client needs the node\'s privateKey or an identity')
    this.identity = identity
    this.connectionsPerPeer = positiveInteger(init.connectionsPerPeer ?? DEFAULT_CONNECTIONS_PER_PEER, 'connectionsPerPeer')
    this.maxInflight = positiveInteger(init.maxInflightPerConnection ?? DEFAULT_MAX_INFLIGHT_PER_CONNECTION, 'maxInflightPerConnection')
    this.requestTimeoutMs = positiveInteger(init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
    this.idleTimeoutMs = positiveInteger(init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, 'idleTimeoutMs')
    this.handshakeTimeoutMs = positiveInteger(init.handshakeTimeoutMs ?? Math.min(HANDSHAKE_TIMEOUT_MS, this.requestTimeoutMs), 'handshakeTimeoutMs')
    const rate = init.downloadBytesPerSecond ?? 0
    this.downloadBucket = rate > 0 ? new TokenBucket(rate) : undefined
  }

  get stats (): DataClientStats {
    let connections = 0
    for (const pool of this.pools.values()) connections += pool.connections.size
    return { ...this.counters, connections }
  }

  async fetch (peer: DataPeer, request: ChunkRequest, options: PeerFetchOptions = {}): Promise<Uint8Array> {
    if (this.closed) throw new ClientClosedError()
    validateRequest(request)
    const expected = validatePeer(peer)
    const { signal } = options
    throwIfAborted(signal)
    // the identity makes its certificate once; this copy is for connections opened synchronously
    this.certificate ??= await this.identity.certificate()
    throwIfAborted(signal)
    if (this.closed) throw new ClientClosedError()
    const pool = this.poolFor(peer, expected)

    return await new Promise<Uint8Array>((resolve, reject) => {
      const finish = (): void => {
        pending.settled = true
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
      }
      const pending: PendingRequest = {
        cid: request.cid,
        maxSize: request.size,
        pool,
        relay: options.relay === true,
        onData: options.onData,
        id: -1,
        connection: undefined,
        sentAt: 0,
        settled: false,
        resolve: bytes => { finish(); resolve(bytes) },
        reject: err => { finish(); reject(err) }
      }
      const onAbort = (): void => {
        this.withdraw(pending)
        pending.reject(new AbortError())
      }
      const timer = setTimeout(() => {
        this.counters.timeouts++
        const connection = pending.connection
        this.withdraw(pending)
        pending.reject(new RequestTimeoutError(this.requestTimeoutMs, `no response from ${pool.peerId} for ${request.cid} within ${this.requestTimeoutMs} ms`))
        if (connection != null && connection.lastReceiveAt < pending.sentAt) {
          this.log.warn({ peer: pool.peerId }, 'closing a data connection that went silent')
          connection.error ??= new ConnectionClosedError(`connection to ${pool.peerId} went silent`)
          connection.socket.destroy()
        }
      }, this.requestTimeoutMs)
      if (pending.relay) {
        let refreshedAt = performance.now()
        pending.progressed = () => {
          // at most once a second: a timer moved per read would cost more than the read
          const now = performance.now()
          if (now - refreshedAt < RELAY_TIMEOUT_REFRESH_MS) return
          refreshedAt = now
          timer.refresh()
        }
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      pool.queue.push(pending)
      this.dispatch(pool)
    })
  }

  release (bytes: Uint8Array): void {
    this.buffers.give(bytes)
  }

  disconnect (peerId: string): void {
    const pool = this.pools.get(peerId)
    if (pool == null) return
    this.dispose(pool, new ConnectionClosedError(`disconnected from ${peerId}`))
  }

  async close (): Promise<void> {
    this.closed = true
    const closing: Array<Promise<void>> = []
    for (const pool of [...this.pools.values()]) {
      for (const connection of pool.connections) closing.push(connection.closed)
      this.dispose(pool, new ClientClosedError())
    }
    await Promise.all(closing)
    this.buffers.clear()
  }

  private poolFor (peer: DataPeer, expected: string): PeerPool {
    let pool = this.pools.get(peer.peerId)
    if (pool == null) {
      pool = { peerId: peer.peerId, expected, host: peer.host, port: peer.port, connections: new Set(), queue: [], dialAfter: 0, disposed: false }
      this.pools.set(peer.peerId, pool)
    } else {
      // a peer that moved: working connections stay, new ones go to the new address
      pool.host = peer.host
      pool.port = peer.port
    }
    return pool
  }

  /** Fails everything queued or in flight to a peer and closes its connections. */
  private dispose (pool: PeerPool, error: Error): void {
    pool.disposed = true
    if (this.pools.get(pool.peerId) === pool) this.pools.delete(pool.peerId)
    for (const request of pool.queue.splice(0)) request.reject(error)
    for (const connection of pool.connections) {
      connection.error ??= error
      for (const request of connection.inflight.values()) request.reject(error)
      connection.inflight.clear()
      connection.socket.destroy()
    }
  }

  /** Takes a request out of its queue, or cancels it on the wire. */
  private withdraw (request: PendingRequest): void {
    const { pool, connection } = request
    if (connection == null) {
      const index = pool.queue.indexOf(request)
      if (index >= 0) pool.queue.splice(index, 1)
      return
    }
    if (connection.inflight.get(request.id) !== request) return
    connection.inflight.delete(request.id)
    if (connection.socket.destroyed) return
    if (request.relay) {
      // the answer would go on for as long as the peer's transfer: closing the connection ends it
      connection.error ??= new ConnectionClosedError('relay given up')
      connection.socket.destroy()
      return
    }
    connection.cancelled.set(request.id, request.maxSize)
    connection.socket.write(encodeCancel(request.id))
    if (connection.cancelled.size > MAX_CANCELLED_PER_CONNECTION) {
      connection.error ??= new ProtocolError('too many cancelled requests left unanswered')
      connection.socket.destroy()
      return
    }
    this.dispatch(pool)
  }

  private dispatch (pool: PeerPool): void {
    if (pool.disposed) return
    while (pool.queue.length > 0) {
      let least: ClientConnection | undefined
      let connecting = 0
      for (const connection of pool.connections) {
        if (!connection.ready) connecting++
        else if (connection.relaying) continue
        else if (least == null || connection.inflight.size < least.inflight.size) least = connection
      }
      const canDial = pool.connections.size < this.connectionsPerPeer && (least == null || performance.now() >= pool.dialAfter)
      // the first request that can go now: a relay only on an empty connection, and the others need not wait behind it
      const index = pool.queue.findIndex(request => least != null && (request.relay
        ? least.inflight.size === 0
        : least.inflight.size < this.maxInflight && (least.inflight.size === 0 || !canDial)))
      if (least != null && index >= 0) {
        const [request] = pool.queue.splice(index, 1)
        if (request != null) this.send(least, request)
        continue
      }
      if (canDial && connecting < pool.queue.length) {
        this.dial(pool)
        continue
      }
      break
    }
  }

  private send (connection: ClientConnection, request: PendingRequest): void {
    let id = connection.nextId
    while (connection.inflight.has(id) || connection.cancelled.has(id)) id = (id + 1) >>> 0
    connection.nextId = (id + 1) >>> 0
    request.id = id
    request.connection = connection
    request.sentAt = performance.now()
    connection.inflight.set(id, request)
    if (request.relay) connection.relaying = true
    this.counters.requests++
    connection.socket.write(encodeGet(id, request.cid, request.maxSize, request.relay))
  }

  private dial (pool: PeerPool): void {
    const certificate = this.certificate
    // requests are queued only after the certificate is ready
    if (certificate == null) throw new ClientClosedError()
    this.counters.connectionsOpened++
    const log = this.log.child({ peer: pool.peerId })
    let markClosed!: () => void
    const reader = new FrameReader<ResponseContext>({
      maxBodyLength: MAX_RESPONSE_BODY_LENGTH,
      onHeader: (header, payloadLength) => this.responseHeader(connection, header, payloadLength),
      allocate: payloadLength => this.buffers.take(payloadLength),
      onProgress: ({ request, status }, payload, filled) => {
        if (status !== Status.OK || request.settled) return
        request.progressed?.()
        request.onData?.(payload, filled)
      },
      onFrame: (context, payload) => { this.response(connection, context, payload) }
    })
    // `onread` makes Node decrypt into the buffers the reader names (see FrameReader)
    const options: tls.ConnectionOptions & { onread: OnReadOpts } = {
      host: pool.host,
      port: pool.port,
      ...tlsOptions(certificate),
      onread: { buffer: () => reader.buffer(), callback: length => this.received(connection, reader, length, log) }
    }
    const socket = tls.connect(options)
    socket.setNoDelay(true)
    const connection: ClientConnection = {
      socket,
      pool,
      ready: false,
      error: undefined,
      inflight: new Map(),
      cancelled: new Map(),
      relaying: false,
      nextId: 0,
      lastReceiveAt: 0,
      closed: new Promise<void>(resolve => { markClosed = resolve })
    }
    pool.connections.add(connection)
    const handshakeTimer = setTimeout(() => {
      this.counters.handshakeTimeouts++
      connection.error ??= new ConnectionFailedError(`handshake with ${pool.peerId} at ${pool.host}:${pool.port} timed out`)
      socket.destroy()
    }, this.handshakeTimeoutMs)
    socket.on('error', err => {
      connection.error ??= err
      log.debug({ err }, 'data connection error')
    })
    socket.once('secureConnect', () => {
      // Until authenticate() passes, nothing is written to the socket, and a byte that arrives
      // closes it unread (see received).
      authenticate(socket, this.identity, pool.expected).then(() => {
        clearTimeout(handshakeTimer)
        if (socket.destroyed) return
        connection.ready = true
        // a listener given to setTimeout itself runs once only, and the first may come mid-request
        socket.setTimeout(this.idleTimeoutMs)
        socket.on('timeout', () => {
          if (connection.inflight.size > 0 || connection.cancelled.size > 0) return
          this.counters.idleTimeouts++
          socket.destroy()
        })
        this.dispatch(pool)
      }, (err: Error) => {
        log.warn({ err }, 'refused a data server that failed authentication')
        connection.error = err
        socket.destroy()
      })
    })
    socket.once('close', () => {
      clearTimeout(handshakeTimer)
      pool.connections.delete(connection)
      markClosed()
      this.closedConnection(connection, log)
    })
  }

  private closedConnection (connection: ClientConnection, log: Logger): void {
    const { pool } = connection
    const cause = connection.error
    if (!connection.ready) {
      const error = cause instanceof UnexpectedPeerError || cause instanceof PeerAuthenticationError || cause instanceof ConnectionFailedError
        ? cause
        : new ConnectionFailedError(`could not connect to ${pool.peerId} at ${pool.host}:${pool.port}${cause != null ? `: ${cause.message}` : ''}`, { cause })
      let ready = 0
      for (const other of pool.connections) if (other.ready) ready++
      if (ready > 0) {
        pool.dialAfter = performance.now() + RECONNECT_BACKOFF_MS
        this.dispatch(pool)
      } else if (pool.connections.size === 0) {
        for (const request of pool.queue.splice(0)) request.reject(error)
      }
    } else {
      const error = cause instanceof ProtocolError || cause instanceof ConnectionClosedError || cause instanceof ClientClosedError
        ? cause
        : new ConnectionClosedError(`connection to ${pool.peerId} closed${cause != null ? `: ${cause.message}` : ''}`, { cause })
      for (const request of connection.inflight.values()) request.reject(error)
      connection.inflight.clear()
      log.debug('data connection closed')
      this.dispatch(pool)
    }
    if (pool.connections.size === 0 && pool.queue.length === 0 && this.pools.get(pool.peerId) === pool) {
      this.pools.delete(pool.peerId)
      pool.disposed = true
    }
  }

  /** `length` bytes were decrypted into the reader's buffer; false stops reading */
  private received (connection: ClientConnection, reader: FrameReader<ResponseContext>, length: number, log: Logger): boolean {
    const { socket } = connection
    if (!connection.ready) {
      // the server speaks only when asked, and nothing is asked before it is authenticated
      connection.error ??= new ProtocolError('data server sent bytes before it was authenticated')
      socket.destroy()
      return false
    }
    connection.lastReceiveAt = performance.now()
    this.counters.bytesReceived += length
    try {
      reader.received(length)
    } catch (err) {
      log.error({ err }, 'closing a data connection that broke the protocol')
      connection.error = err instanceof ResponseTooLargeError ? new ProtocolError(err.message) : err as Error
      socket.destroy()
      return false
    }
    if (this.downloadBucket != null) {
      const delay = this.downloadBucket.consume(length)
      if (delay > 0) {
        // records already decrypted keep arriving after pause(): resume only once the last of them is paid for
        socket.pause()
        const resumeAt = performance.now() + delay
        if (resumeAt > (connection.resumeAt ?? 0)) {
          connection.resumeAt = resumeAt
          clearTimeout(connection.resumeTimer)
          connection.resumeTimer = setTimeout(() => {
            connection.resumeAt = undefined
            socket.resume()
          }, delay)
        }
      }
    }
    return true
  }

  private responseHeader (connection: ClientConnection, header: Buffer, payloadLength: number): ResponseContext | undefined {
    const id = header.readUInt32BE(0)
    const status = header[4] as Status
    if (status > Status.CANCELLED) throw new ProtocolError(`unknown response status ${String(status)}`)
    const request = connection.inflight.get(id)
    const maxSize = request?.maxSize ?? connection.cancelled.get(id)
    if (maxSize === undefined) throw new ProtocolError(`response to unknown request ${id}`)
    const limit = status === Status.OK ? maxSize : status === Status.ERROR ? MAX_ERROR_MESSAGE_LENGTH : 0
    if (payloadLength > limit) {
      const error = status === Status.OK
        ? new ResponseTooLargeError(payloadLength, limit)
        : new ProtocolError(`response with status ${status} carries ${payloadLength} bytes`)
      if (request != null) {
        connection.inflight.delete(id)
        request.reject(error)
      }
      throw error
    }
    if (request == null) {
      // the late answer to a cancelled request: skipped unread
      connection.cancelled.delete(id)
      return undefined
    }
    return { request, status }
  }

  private response (connection: ClientConnection, { request, status }: ResponseContext, payload: Buffer): void {
    const { pool } = connection
    if (connection.inflight.get(request.id) === request) connection.inflight.delete(request.id)
    else connection.cancelled.delete(request.id)
    if (request.relay) connection.relaying = false
    let delivered = false
    if (!request.settled) {
      switch (status) {
        case Status.OK:
          request.resolve(payload)
          delivered = true
          break
        case Status.NOT_FOUND:
          request.reject(new NotFoundError(`${request.cid} not found at ${pool.peerId}`))
          break
        case Status.BUSY:
          request.reject(new PeerBusyError(pool.peerId))
          break
        case Status.ERROR:
          request.reject(new RemoteError(pool.peerId, payload.toString('utf8')))
          break
        default:
          request.reject(new RemoteError(pool.peerId, 'request cancelled by the peer'))
      }
    }
    // a payload no caller got goes back at once
    if (!delivered) this.buffers.give(payload)
    this.dispatch(pool)
  }
}

function validateRequest (request: ChunkRequest): void {
  if (typeof request.cid !== 'string' || !isValidCid(request.cid)) {
    throw new InvalidRequestError(`invalid CID string ${JSON.stringify(request.cid)}`)
  }
  if (!Number.isInteger(request.size) || request.size < 0 || request.size > MAX_CHUNK_SIZE) {
    throw new InvalidRequestError(`chunk size ${String(request.size)} is not an integer in 0..${MAX_CHUNK_SIZE}`)
  }
}

/**
 * The peer id a request names, in the form libp2p writes it (base58btc). Only the form is
 * checked here: that the server is that peer, its certificate proves at the handshake, and a
 * string that names no key matches no certificate.
 */
function validatePeer (peer: DataPeer): string {
  if (typeof peer.host !== 'string' || peer.host.length === 0) throw new InvalidRequestError('peer host must be a non-empty string')
  if (!Number.isInteger(peer.port) || peer.port < 1 || peer.port > 65535) throw new InvalidRequestError(`invalid peer port ${String(peer.port)}`)
  if (typeof peer.peerId !== 'string' || !PEER_ID_FORM.test(peer.peerId)) throw new InvalidRequestError(`invalid peer id ${JSON.stringify(peer.peerId)}`)
  return peer.peerId
}

function throwIfAborted (signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new AbortError()
}
