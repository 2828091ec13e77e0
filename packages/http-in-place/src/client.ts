/**
 * GETs whose bodies land where they are kept: HTTP/1.1 over keep-alive sockets opened with Node's
 * `onread`, so the kernel (or TLS, record by record) copies a body straight into the buffer the
 * caller names for it, a pooled chunk buffer say, and no buffer is allocated per read.
 *
 * Why not undici, as the origins used before: it hands a body over in pieces, one fresh buffer of
 * up to 64 KiB per socket read, which were copied into the chunk buffer and left to the garbage
 * collector. V8 collects such external memory lazily, so a byte worker could hold tens of MB of
 * dead read buffers beside its chunks in flight (most of what a pull's peak RSS had over the
 * chunks themselves), and paid a copy and a collection per 64 KiB.
 *
 * What it speaks is what a GET of an object needs, no more:
 * - one request per connection at a time, no pipelining; idle connections are reused, closed
 *   after `keepAliveMs` of idleness or when the server says `Connection: close`;
 * - the caller's `into` names the buffer a body of Content-Length bytes is read into, given the
 *   status and headers; a body it names none for (an error document, a redirect) is read into a
 *   buffer of its own, of which at most `maxErrorBodyBytes` are kept; one it does not want at all
 *   is not read, and its connection is closed;
 * - a body framed otherwise (`Transfer-Encoding: chunked`, or ended by closing the connection)
 *   fails with {@link UnsupportedFramingError}, and the caller reads that response another way;
 * - a request that meets a kept connection the server closed while it idled is sent again, once,
 *   on a new one (nothing of the answer had arrived), as HTTP clients do;
 * - `timeoutMs` bounds silence (connecting, waiting for the head, between body bytes), not the
 *   whole transfer, and fails the request with `ETIMEDOUT`;
 * - a body shorter or longer than its Content-Length fails with {@link BodyLengthError}, which
 *   says how many bytes landed, and closes the connection.
 * Other failures carry the socket's own codes (`ECONNREFUSED`, `ECONNRESET`, TLS's certificate
 * codes), for the callers' retry policies.
 */

import net from 'node:net'
import tls from 'node:tls'
import { AbortError } from '@swarm/interface'
import { MAX_HEAD_BYTES } from './constants.js'
import { BodyLengthError, UnsupportedFramingError } from './errors.js'

export interface InPlaceGetInit {
  /** connections per endpoint at most; requests beyond wait for one */
  maxConnections: number
  keepAliveMs: number
  timeoutMs: number
  maxErrorBodyBytes: number
  /** trust anchors for HTTPS in place of Node's (for an endpoint with a private CA) */
  ca?: string | string[]
}

export interface InPlaceResponse {
  status: number
  /** lowercase names */
  headers: ReadonlyMap<string, string>
  /** the buffer `into` named, filled; else the first `maxErrorBodyBytes` of the body */
  body: Uint8Array
}

/**
 * Where a body of `length` bytes goes, given the answer's status and headers: a buffer of exactly
 * `length` bytes to read it into; undefined to keep only its start; false to read none of it
 * (the answer comes back with an empty body and the connection is closed, not drained: a whole
 * blob sent for a range is not worth reading through).
 */
export type BodyTarget = (status: number, headers: ReadonlyMap<string, string>, length: number) => Uint8Array | undefined | false

export interface GetOptions {
  /** sent after Host; `host` itself is not taken from here */
  headers?: Readonly<Record<string, string>>
  into?: BodyTarget
  /** bytes `[0, received)` of the buffer `into` named have landed (called as they do) */
  onBody?(body: Uint8Array, received: number): void
  signal?: AbortSignal
}

/** `http:` or `https:`, the host name (an IPv6 address in brackets or not), the port, and the Host header (with the port unless it is the default) */
export interface Endpoint {
  protocol: string
  hostname: string
  port: number | undefined
  host: string
}

/** A response head: status, lowercase header names. */
interface Head {
  status: number
  headers: Map<string, string>
  httpVersion: string
}

interface Exchange {
  resolve(response: InPlaceResponse): void
  reject(err: Error): void
  into: BodyTarget | undefined
  onBody: ((body: Uint8Array, received: number) => void) | undefined
  /** set once the head has been read */
  head?: Head
  /** the buffer `into` named */
  body?: Uint8Array
  /** bytes of a body `into` named no buffer for, up to the cap */
  other?: Buffer[]
  otherBytes?: number
  /** body bytes expected in all, and read so far */
  length?: number
  received: number
  /** whether any byte of the answer arrived (a connection that closes before is stale, not failed) */
  heard: boolean
}

class Connection {
  readonly socket: net.Socket
  /** where a head is read; also the bytes of a body that came in the same read */
  private readonly headBuffer = Buffer.allocUnsafe(MAX_HEAD_BYTES)
  private headLength = 0
  exchange: Exchange | undefined
  idleTimer: NodeJS.Timeout | undefined
  closed = false
  /** whether a request has been answered on it: only a reused connection may be stale */
  reused = false
  constructor (endpoint: Endpoint, private readonly init: InPlaceGetInit, private readonly events: { answered(connection: Connection): void, closed(connection: Connection): void }) {
    const port = endpoint.port ?? (endpoint.protocol === 'https:' ? 443 : 80)
    // an IPv6 address as a URL writes it, in brackets
    const host = endpoint.hostname.replace(/^\[(.*)\]$/, '$1')
    const onread = { buffer: () => this.readBuffer(), callback: (length: number): boolean => { this.received(length); return !this.closed } }
    this.socket = endpoint.protocol === 'https:'
      ? tls.connect({ host, port, servername: net.isIP(host) === 0 ? host : undefined, ALPNProtocols: ['http/1.1'], ...(init.ca !== undefined ? { ca: init.ca } : {}), onread } as tls.ConnectionOptions)
      : net.connect({ host, port, onread })
    this.socket.setNoDelay(true)
    this.socket.setTimeout(init.timeoutMs, () => {
      this.close(Object.assign(new Error(`no answer within ${init.timeoutMs} ms`), { code: 'ETIMEDOUT' }))
    })
    this.socket.on('error', err => { this.close(err) })
    this.socket.on('end', () => { this.close(Object.assign(new Error('the server closed the connection'), { code: 'ECONNRESET' })) })
    this.socket.on('close', () => { this.close(Object.assign(new Error('the connection closed'), { code: 'ECONNRESET' })) })
  }

  send (host: string, path: string, headers: Readonly<Record<string, string>>, exchange: Exchange): void {
    this.exchange = exchange
    this.headLength = 0
    if (!path.startsWith('/') || /[\s]/.test(path)) throw new TypeError(`${JSON.stringify(path)} is not a request target (a path starting with /, with no spaces or line breaks)`)
    let request = `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n`
    for (const [name, value] of Object.entries(headers)) {
      if (name.toLowerCase() === 'host') continue
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new TypeError(`header ${JSON.stringify(name)} holds a line break`)
      request += `${name}: ${value}\r\n`
    }
    this.socket.write(`${request}\r\n`)
  }

  /** where the next read goes: the rest of the body `into` named a buffer for, else the head buffer */
  private readBuffer (): Uint8Array {
    const exchange = this.exchange
    if (exchange?.body !== undefined && exchange.length !== undefined) {
      // never past the body: the next answer's bytes stay in the socket
      return exchange.body.subarray(exchange.received, exchange.length)
    }
    return this.headBuffer.subarray(this.headLength)
  }

  private received (length: number): void {
    const exchange = this.exchange
    if (exchange === undefined) {
      // bytes nobody asked for: the connection is out of step
      this.close(Object.assign(new Error('bytes arrived with no request outstanding'), { code: 'ECONNRESET' }))
      return
    }
    exchange.heard = true
    if (exchange.body !== undefined) {
      exchange.received += length
      if (exchange.received <= (exchange.length ?? 0)) exchange.onBody?.(exchange.body, exchange.received)
      this.maybeDone(exchange)
      return
    }
    this.headLength += length
    if (exchange.head === undefined) {
      const end = this.headBuffer.subarray(0, this.headLength).indexOf('\r\n\r\n')
      if (end < 0) {
        if (this.headLength >= MAX_HEAD_BYTES) this.close(Object.assign(new Error(`a response head over ${MAX_HEAD_BYTES} bytes`), { code: 'ECONNRESET' }))
        return
      }
      let head: Head
      try {
        head = parseHead(this.headBuffer.toString('latin1', 0, end))
      } catch (err) {
        this.close(err as Error)
        return
      }
      exchange.head = head
      const rest = this.headBuffer.subarray(end + 4, this.headLength)
      const lengthHeader = head.headers.get('content-length')
      const length = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined
      if (length === undefined || head.headers.has('transfer-encoding')) {
        this.close(new UnsupportedFramingError(head.headers.get('transfer-encoding') ?? 'no Content-Length'))
        return
      }
      exchange.length = length
      let body: Uint8Array | undefined | false
      try {
        body = exchange.into?.(head.status, head.headers, length)
      } catch (err) {
        this.close(err as Error)
        return
      }
      if (body === false) {
        this.exchange = undefined
        exchange.resolve({ status: head.status, headers: head.headers, body: new Uint8Array(0) })
        this.close(Object.assign(new Error('a body not wanted'), { code: 'ECONNRESET' }))
        return
      }
      if (body !== undefined) {
        if (body.byteLength !== length) {
          this.close(new RangeError(`a buffer of ${body.byteLength} bytes was named for a body of ${length}`))
          return
        }
        exchange.body = body
        const taken = Math.min(rest.byteLength, length)
        body.set(rest.subarray(0, taken), 0)
        exchange.received = taken
        if (rest.byteLength > length) {
          this.close(new BodyLengthError(length, rest.byteLength))
          return
        }
        if (taken > 0) exchange.onBody?.(body, taken)
      } else {
        exchange.other = []
        exchange.otherBytes = 0
        this.keepOther(exchange, rest)
      }
      this.headLength = 0
      this.maybeDone(exchange)
      return
    }
    // a body `into` named no buffer for, read through the head buffer
    this.keepOther(exchange, this.headBuffer.subarray(0, this.headLength))
    this.headLength = 0
    this.maybeDone(exchange)
  }

  private keepOther (exchange: Exchange, bytes: Buffer): void {
    exchange.received += bytes.byteLength
    const room = this.init.maxErrorBodyBytes - (exchange.otherBytes ?? 0)
    if (room > 0 && bytes.byteLength > 0) {
      const kept = Buffer.from(bytes.subarray(0, room))
      exchange.other?.push(kept)
      exchange.otherBytes = (exchange.otherBytes ?? 0) + kept.byteLength
    }
  }

  private maybeDone (exchange: Exchange): void {
    const length = exchange.length
    if (length === undefined || exchange.received < length) return
    if (exchange.received > length) {
      this.close(new BodyLengthError(length, exchange.received))
      return
    }
    const head = exchange.head as Head
    this.exchange = undefined
    this.reused = true
    const keep = head.httpVersion === '1.1' && head.headers.get('connection')?.toLowerCase() !== 'close'
    exchange.resolve({ status: head.status, headers: head.headers, body: exchange.body ?? Buffer.concat(exchange.other ?? []) })
    if (keep) this.events.answered(this)
    else this.close(Object.assign(new Error('the server asked to close the connection'), { code: 'ECONNRESET' }))
  }

  close (err: Error): void {
    if (this.closed) return
    this.closed = true
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer)
    this.socket.destroy()
    const exchange = this.exchange
    this.exchange = undefined
    if (exchange !== undefined) {
      const { length, received } = exchange
      exchange.reject(length !== undefined && received < length && !(err instanceof UnsupportedFramingError) && (err as { code?: string }).code === 'ECONNRESET'
        ? new BodyLengthError(length, exchange.body !== undefined ? received : 0)
        : err)
    }
    this.events.closed(this)
  }
}

function parseHead (text: string): Head {
  const lines = text.split('\r\n')
  const status = /^HTTP\/(1\.[01]) (\d{3})(?: |$)/.exec(lines[0] ?? '')
  if (status === null) throw Object.assign(new Error(`not an HTTP/1.x status line: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`), { code: 'ECONNRESET' })
  const headers = new Map<string, string>()
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const name = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    // a repeated Content-Length that disagrees is refused, as RFC 9112 asks
    const had = headers.get(name)
    if (name === 'content-length' && had !== undefined && had !== value) throw Object.assign(new Error('conflicting Content-Length headers'), { code: 'ECONNRESET' })
    headers.set(name, had !== undefined && name !== 'content-length' ? `${had}, ${value}` : value)
  }
  return { status: Number(status[2]), headers, httpVersion: status[1] as string }
}

interface EndpointState {
  endpoint: Endpoint
  idle: Connection[]
  busy: Set<Connection>
  waiting: Array<() => void>
}

/** Keep-alive connections per endpoint, and GETs over them. */
export class InPlaceGets {
  private readonly endpoints = new Map<string, EndpointState>()
  private closed = false

  constructor (private readonly init: InPlaceGetInit) {}

  /** GET `path` (with its query) from `endpoint` */
  async get (endpoint: Endpoint, path: string, options: GetOptions = {}): Promise<InPlaceResponse> {
    options.signal?.throwIfAborted()
    const state = this.stateFor(endpoint)
    try {
      return await this.attempt(state, path, options)
    } catch (err) {
      // a kept connection the server closed while it idled: once more, on a new one
      if ((err as { stale?: boolean }).stale !== true) throw err
      return await this.attempt(state, path, options)
    }
  }

  async close (): Promise<void> {
    this.closed = true
    for (const state of this.endpoints.values()) {
      for (const connection of [...state.idle, ...state.busy]) connection.close(new AbortError('the client closed'))
    }
    this.endpoints.clear()
  }

  private stateFor (endpoint: Endpoint): EndpointState {
    const key = `${endpoint.protocol}//${endpoint.hostname}:${endpoint.port ?? ''}`
    let state = this.endpoints.get(key)
    if (state === undefined) {
      state = { endpoint, idle: [], busy: new Set(), waiting: [] }
      this.endpoints.set(key, state)
    }
    return state
  }

  private async attempt (state: EndpointState, path: string, options: GetOptions): Promise<InPlaceResponse> {
    const connection = await this.connection(state, options.signal)
    const reused = connection.reused
    return await new Promise<InPlaceResponse>((resolve, reject) => {
      const onAbort = (): void => { connection.close(options.signal?.reason as Error) }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const exchange: Exchange = {
        into: options.into,
        onBody: options.onBody,
        received: 0,
        heard: false,
        resolve: response => {
          options.signal?.removeEventListener('abort', onAbort)
          resolve(response)
        },
        reject: err => {
          options.signal?.removeEventListener('abort', onAbort)
          const code = (err as { code?: string }).code
          reject(reused && !exchange.heard && options.signal?.aborted !== true && (code === 'ECONNRESET' || code === 'EPIPE') ? Object.assign(err, { stale: true }) : err)
        }
      }
      try {
        connection.send(state.endpoint.host, path, options.headers ?? {}, exchange)
      } catch (err) {
        connection.close(err as Error)
      }
    })
  }

  /** an idle connection, a new one while there is room, else the next one freed */
  private async connection (state: EndpointState, signal: AbortSignal | undefined): Promise<Connection> {
    for (;;) {
      if (this.closed) throw new AbortError('the client closed')
      const idle = state.idle.pop()
      if (idle !== undefined) {
        if (idle.idleTimer !== undefined) clearTimeout(idle.idleTimer)
        idle.idleTimer = undefined
        idle.socket.ref()
        state.busy.add(idle)
        return idle
      }
      if (state.busy.size < this.init.maxConnections) {
        const connection = new Connection(state.endpoint, this.init, {
          answered: c => { this.release(state, c) },
          closed: c => { this.forget(state, c) }
        })
        state.busy.add(connection)
        return connection
      }
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          state.waiting = state.waiting.filter(w => w !== wake)
          reject(signal?.reason)
        }
        const wake = (): void => {
          signal?.removeEventListener('abort', onAbort)
          resolve()
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        state.waiting.push(wake)
      })
    }
  }

  /** a connection answered and may be kept */
  private release (state: EndpointState, connection: Connection): void {
    state.busy.delete(connection)
    if (this.closed) {
      connection.close(new AbortError('the client closed'))
      return
    }
    connection.idleTimer = setTimeout(() => { connection.close(Object.assign(new Error('idle too long'), { code: 'ECONNRESET' })) }, this.init.keepAliveMs)
    connection.idleTimer.unref()
    // an idle connection does not keep the process alive, as undici's do not
    connection.socket.unref()
    state.idle.push(connection)
    state.waiting.shift()?.()
  }

  private forget (state: EndpointState, connection: Connection): void {
    state.busy.delete(connection)
    state.idle = state.idle.filter(c => c !== connection)
    state.waiting.shift()?.()
  }
}
