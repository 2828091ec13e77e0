import { randomBytes } from 'node:crypto'
import tls from 'node:tls'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateCertificate } from '@libp2p/tls/utils'
import { NotFoundError } from '@swarm/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach } from 'vitest'
import { PROTOCOL, dataServer } from '../src/index.js'
import type { DataServer, DataServerInit } from '../src/index.js'
import type { PrivateKey } from '@libp2p/interface'
import type { AbortOptions, Logger, ReadChunkOptions } from '@swarm/interface'
import type { TLSSocket } from 'node:tls'

export interface Identity {
  privateKey: PrivateKey
  peerId: string
}

export async function identity (): Promise<Identity> {
  const privateKey = await generateKeyPair('Ed25519')
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString() }
}

export async function cidOf (bytes: Uint8Array): Promise<string> {
  return CID.create(1, raw.code, await sha256.digest(bytes)).toString()
}

export async function randomChunk (size: number): Promise<{ cid: string, bytes: Uint8Array }> {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: await cidOf(bytes), bytes }
}

interface Gate {
  started: Promise<AbortSignal | undefined>
  release(): void
}

/** An in-memory store; reads of gated CIDs wait until released and report their abort signal. */
export class MemoryStore {
  readonly chunks = new Map<string, Uint8Array>()
  readonly manifests = new Map<string, Uint8Array>()
  private readonly gates = new Map<string, { started: PromiseWithResolvers<AbortSignal | undefined>, released: PromiseWithResolvers<void> }>()
  reads = 0
  concurrentReads = 0
  maxConcurrentReads = 0
  /** bytes read into buffers the caller supplied (`allocate`) */
  copiedBytes = 0

  hasChunk (cid: string): boolean {
    return this.chunks.has(cid)
  }

  getManifestBytes (cid: string): Uint8Array | undefined {
    return this.manifests.get(cid)
  }

  gate (cid: string): Gate {
    const gate = { started: Promise.withResolvers<AbortSignal | undefined>(), released: Promise.withResolvers<void>() }
    this.gates.set(cid, gate)
    return { started: gate.started.promise, release: () => { gate.released.resolve() } }
  }

  async readChunk (cid: string, options: ReadChunkOptions = {}): Promise<Uint8Array> {
    this.reads++
    this.concurrentReads++
    this.maxConcurrentReads = Math.max(this.maxConcurrentReads, this.concurrentReads)
    try {
      const gate = this.gates.get(cid)
      if (gate != null) {
        gate.started.resolve(options.signal)
        await gate.released.promise
      } else {
        // a disk read yields; without this every read would finish before the next request is parsed
        await new Promise(resolve => setTimeout(resolve, 2))
      }
      const bytes = this.chunks.get(cid)
      if (bytes == null) throw new NotFoundError(cid)
      // as the store does: into the caller's buffer, which learns the size before any byte is read
      if (options.allocate === undefined) return bytes
      const into = options.allocate(bytes.byteLength)
      into.set(bytes)
      this.copiedBytes += bytes.byteLength
      return into.subarray(0, bytes.byteLength)
    } finally {
      this.concurrentReads--
    }
  }
}

export interface LogEntry { level: string, obj?: object, msg?: string }

export function captureLogger (entries: LogEntry[] = []): Logger & { entries: LogEntry[] } {
  const at = (level: string) => (objOrMsg: object | string, msg?: string): void => {
    if (typeof objOrMsg === 'string') entries.push({ level, msg: objOrMsg })
    else entries.push({ level, obj: objOrMsg, msg })
  }
  const logger = {
    entries,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger
  }
  return logger
}

export interface RawClient {
  socket: TLSSocket
  /** application bytes received so far */
  received(): number
  /** the application bytes received so far */
  bytes(): Buffer
  /** resolves when the socket closes */
  closed: Promise<void>
}

/**
 * A TLS client that speaks no protocol of its own: it connects with the given libp2p identity
 * (or none; a fresh certificate for it unless one is given) and lets the test write raw bytes.
 */
export async function rawClient (port: number, privateKey?: PrivateKey, alpn: string[] = [PROTOCOL], certificate?: { cert: string, key: string }): Promise<RawClient> {
  certificate ??= privateKey != null ? await generateCertificate(privateKey) : undefined
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    ...certificate,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: alpn
  })
  let received = 0
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length
    chunks.push(chunk)
  })
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.once('close', () => { resolve() }))
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => { resolve() })
    socket.once('close', () => { reject(new Error('closed before the handshake finished')) })
  })
  return { socket, received: () => received, bytes: () => Buffer.concat(chunks), closed }
}

/** A server with a valid libp2p certificate that hands each authenticated-looking socket to `onSocket`. */
export async function rogueServer (privateKey: PrivateKey, onSocket: (socket: TLSSocket) => void): Promise<{ port: number, close(): Promise<void> }> {
  const certificate = await generateCertificate(privateKey)
  const sockets = new Set<TLSSocket>()
  const server = tls.createServer({
    ...certificate,
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: [PROTOCOL]
  }, socket => {
    sockets.add(socket)
    socket.on('error', () => {})
    onSocket(socket)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address == null || typeof address === 'string') throw new Error('no address')
  return {
    port: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

/** GET frame as the protocol defines it, written out by hand so the tests do not trust the encoder. */
export function getFrame (id: number, cid: string, maxSize: number): Buffer {
  const cidBytes = Buffer.from(cid, 'latin1')
  const frame = Buffer.alloc(4 + 10 + cidBytes.length)
  frame.writeUInt32BE(10 + cidBytes.length, 0)
  frame[4] = 1
  frame.writeUInt32BE(id, 5)
  frame.writeUInt32BE(maxSize, 9)
  frame[13] = cidBytes.length
  cidBytes.copy(frame, 14)
  return frame
}

export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what} did not happen within ${ms} ms`)) }, ms) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

/** A list of cleanups that run after each test of the file, the last registered first. */
export function cleanupsAfterEach (): Array<() => Promise<void>> {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })
  return cleanups
}

export interface AdmittingServer {
  server: DataServer
  store: MemoryStore
  id: Identity
  port: number
  /** the peers it serves; add to admit */
  admitted: Set<string>
}

/** A started server on a memory store that serves the peers in `admitted`; stopped by `cleanups`. */
export async function admittingServer (cleanups: Array<() => Promise<void>>, init: Partial<DataServerInit> = {}): Promise<AdmittingServer> {
  const id = await identity()
  const store = new MemoryStore()
  const admitted = new Set<string>()
  const server = dataServer({ privateKey: id.privateKey, store, isAdmitted: peerId => admitted.has(peerId), ...init })
  const { port } = await server.start()
  cleanups.push(async () => { await server.stop() })
  return { server, store, id, port, admitted }
}
