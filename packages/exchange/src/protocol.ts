/**
 * The data wire protocol, version 1.
 *
 * Transport: TLS 1.3 over TCP, ALPN `swarm-data/1`. Both sides present a self-signed certificate
 * carrying the libp2p public-key extension (libp2p TLS spec), so each side learns the other's
 * peer id. Certificate chains are not checked by TLS (`rejectUnauthorized: false`); instead, right
 * after the handshake each side runs `verifyPeerCertificate` on the other's certificate: the
 * client requires the peer id it dialled, the server requires a peer the swarm admits. Nothing is
 * written to or read from a connection before that check passes; a peer that fails it has its
 * socket destroyed.
 *
 * Framing: every message is `u32be bodyLength | body`. A receiver checks `bodyLength` against
 * its limit as soon as the four length bytes arrive, before it waits for or allocates the body.
 *
 * Request (client → server), body ≤ 1 KiB:
 *
 * ```
 * u8    type        1 = GET, 2 = CANCEL
 * u32be requestId   chosen by the client, unique among its requests in flight on this connection
 * GET only:
 * u32be maxSize     bits 0–30: the most payload bytes the client accepts, ≤ 64 MiB;
 *                   bit 31 (RELAY_FLAG): the client takes a chunk the server is still receiving
 * u8    cidLength   1..128
 * bytes cid         printable ASCII, the CID's string form
 * ```
 *
 * A GET body is exactly `10 + cidLength` bytes, a CANCEL body exactly 5.
 *
 * Response (server → client), body ≤ 5 + 64 MiB:
 *
 * ```
 * u32be requestId
 * u8    status      0 OK, 1 NOT_FOUND, 2 BUSY, 3 ERROR, 4 CANCELLED
 * bytes payload     OK: the chunk (≤ maxSize); ERROR: a UTF-8 reason (≤ 1 KiB); otherwise empty
 * ```
 *
 * Every GET gets exactly one response; responses may come in any order. A GET names a chunk or a
 * manifest by CID: the server answers with whichever it holds and does not vouch for it, the
 * client's caller verifies the bytes against the CID. A CANCEL for a request the server has not
 * answered yet makes it answer CANCELLED instead (a response already being written is finished);
 * a CANCEL for an unknown id is ignored, as it may have crossed the response. A client drops
 * responses to requests it cancelled. BUSY means every upload slot is taken: ask another peer.
 *
 * Relays (cut-through). A GET with RELAY_FLAG may be answered from a chunk the server is still
 * receiving: the OK header names the chunk's whole length, and the payload follows as the
 * server's own copy arrives and is checked block by block against the manifest's digests, so
 * the answer takes as long as the server's transfer does. Nothing else is written on that
 * connection meanwhile (frames do not interleave), so a client sends a relay GET on a connection
 * of its own. A server whose transfer fails mid-answer closes the connection, the only way to
 * end a frame early; a client that gives a relay up closes it too. Only peers that announced the
 * chunk as arriving over the control channel are asked so.
 *
 * Any frame over its limit, of an unknown type, of the wrong length, with a reused id or, on the
 * client, a response to no request or larger than asked, closes the connection; other
 * connections are unaffected.
 */

import { MAX_CHUNK_SIZE, MAX_CID_LENGTH, MAX_ERROR_MESSAGE_LENGTH, SKIP_BUFFER_LENGTH } from './constants.js'
import { ProtocolError } from './errors.js'

export const LENGTH_PREFIX_BYTES = 4
/** type + request id, and request id + status: both directions have a 5-byte header */
export const HEADER_BYTES = 5
const GET_FIXED_BYTES = HEADER_BYTES + 4 + 1

export const RequestType = { GET: 1, CANCEL: 2 } as const
export type RequestType = typeof RequestType[keyof typeof RequestType]

export const Status = { OK: 0, NOT_FOUND: 1, BUSY: 2, ERROR: 3, CANCELLED: 4 } as const
export type Status = typeof Status[keyof typeof Status]

export const MAX_RESPONSE_BODY_LENGTH = HEADER_BYTES + MAX_CHUNK_SIZE

/** In a GET's maxSize field: the client takes a chunk the server is still receiving. */
export const RELAY_FLAG = 0x8000_0000

export type Request =
  | { type: typeof RequestType.GET, id: number, maxSize: number, cid: string, relay: boolean }
  | { type: typeof RequestType.CANCEL, id: number }

export function encodeGet (id: number, cid: string, maxSize: number, relay = false): Buffer {
  const cidBytes = Buffer.from(cid, 'latin1')
  const body = GET_FIXED_BYTES + cidBytes.length
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + body)
  frame.writeUInt32BE(body, 0)
  frame[4] = RequestType.GET
  frame.writeUInt32BE(id, 5)
  frame.writeUInt32BE((relay ? RELAY_FLAG : 0) + maxSize, 9)
  frame[13] = cidBytes.length
  cidBytes.copy(frame, 14)
  return frame
}

export function encodeCancel (id: number): Buffer {
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + HEADER_BYTES)
  frame.writeUInt32BE(HEADER_BYTES, 0)
  frame[4] = RequestType.CANCEL
  frame.writeUInt32BE(id, 5)
  return frame
}

/** The length prefix and header of a response whose payload is written after it. */
export function encodeResponseHeader (id: number, status: Status, payloadLength: number): Buffer {
  const header = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + HEADER_BYTES)
  header.writeUInt32BE(HEADER_BYTES + payloadLength, 0)
  header.writeUInt32BE(id, 4)
  header[8] = status
  return header
}

/** A response whose payload is small enough to copy behind its header. */
export function encodeResponse (id: number, status: Status, payload?: Uint8Array): Buffer {
  const length = payload?.byteLength ?? 0
  const frame = Buffer.allocUnsafe(LENGTH_PREFIX_BYTES + HEADER_BYTES + length)
  frame.writeUInt32BE(HEADER_BYTES + length, 0)
  frame.writeUInt32BE(id, 4)
  frame[8] = status
  if (payload != null) frame.set(payload, LENGTH_PREFIX_BYTES + HEADER_BYTES)
  return frame
}

/** An ERROR payload: the reason, cut to the protocol's bound on a character boundary. */
export function encodeErrorMessage (message: string): Buffer {
  let bytes = Buffer.from(message, 'utf8')
  if (bytes.length > MAX_ERROR_MESSAGE_LENGTH) {
    bytes = Buffer.from(bytes.subarray(0, MAX_ERROR_MESSAGE_LENGTH).toString('utf8').replace(/\uFFFD$/, ''), 'utf8')
  }
  return bytes
}

export function isValidCid (cid: string): boolean {
  if (cid.length === 0 || cid.length > MAX_CID_LENGTH) return false
  for (let i = 0; i < cid.length; i++) {
    const c = cid.charCodeAt(i)
    if (c < 0x21 || c > 0x7e) return false
  }
  return true
}

/** Parses a complete request body (header + rest); throws ProtocolError on anything malformed. */
export function decodeRequest (header: Buffer, rest: Buffer): Request {
  const type = header[0]
  const id = header.readUInt32BE(1)
  if (type === RequestType.CANCEL) {
    if (rest.length !== 0) throw new ProtocolError(`CANCEL frame has ${rest.length} trailing bytes`)
    return { type, id }
  }
  if (type !== RequestType.GET) throw new ProtocolError(`unknown request type ${String(type)}`)
  if (rest.length < GET_FIXED_BYTES - HEADER_BYTES) throw new ProtocolError('GET frame too short')
  const field = rest.readUInt32BE(0)
  const relay = field >= RELAY_FLAG
  const maxSize = relay ? field - RELAY_FLAG : field
  const cidLength = rest[4] ?? 0
  if (rest.length !== GET_FIXED_BYTES - HEADER_BYTES + cidLength) {
    throw new ProtocolError(`GET frame of ${HEADER_BYTES + rest.length} bytes does not match its CID length ${cidLength}`)
  }
  if (maxSize > MAX_CHUNK_SIZE) throw new ProtocolError(`GET asks for up to ${maxSize} bytes, more than ${MAX_CHUNK_SIZE}`)
  const cid = rest.toString('latin1', 5)
  if (!isValidCid(cid)) throw new ProtocolError('GET carries an invalid CID string')
  return { type, id, maxSize, cid, relay }
}

export interface FrameDecoderInit<T> {
  /** bodies longer than this are refused before any of them is read */
  maxBodyLength: number
  /**
   * Sees the 5-byte header of each frame and the length of the payload behind it, before the
   * payload is read; throws to refuse the frame, returns undefined to have the payload skipped,
   * or a value handed to `onFrame` with the payload. The header buffer is reused afterwards.
   */
  onHeader(header: Buffer, payloadLength: number): T | undefined
  onFrame(context: T, payload: Buffer): void
}

/**
 * Splits a byte stream into frames. A payload is copied once into a buffer of exactly its size,
 * which is allocated only after `onHeader` accepted it, or sliced without copying when one
 * incoming chunk holds all of it.
 */
export class FrameDecoder<T> {
  private readonly prefix = Buffer.alloc(LENGTH_PREFIX_BYTES + HEADER_BYTES)
  private prefixFilled = 0
  private bodyLength = -1
  private inPayload = false
  private payloadLength = 0
  private payloadFilled = 0
  private payload: Buffer | undefined
  private context: T | undefined

  constructor (private readonly init: FrameDecoderInit<T>) {}

  /** Feeds bytes; throws ProtocolError (or whatever `onHeader` throws) and must then not be fed again. */
  push (chunk: Buffer): void {
    let offset = 0
    while (offset < chunk.length) {
      if (!this.inPayload) {
        const want = (this.bodyLength < 0 ? LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + HEADER_BYTES) - this.prefixFilled
        const n = Math.min(want, chunk.length - offset)
        chunk.copy(this.prefix, this.prefixFilled, offset, offset + n)
        this.prefixFilled += n
        offset += n
        if (this.bodyLength < 0 && this.prefixFilled === LENGTH_PREFIX_BYTES) {
          const length = this.prefix.readUInt32BE(0)
          if (length > this.init.maxBodyLength) {
            throw new ProtocolError(`frame of ${length} bytes exceeds the limit of ${this.init.maxBodyLength}`)
          }
          if (length < HEADER_BYTES) throw new ProtocolError(`frame of ${length} bytes is shorter than a header`)
          this.bodyLength = length
        }
        if (this.prefixFilled === LENGTH_PREFIX_BYTES + HEADER_BYTES) {
          this.payloadLength = this.bodyLength - HEADER_BYTES
          this.context = this.init.onHeader(this.prefix.subarray(LENGTH_PREFIX_BYTES), this.payloadLength)
          this.inPayload = true
          this.payloadFilled = 0
          if (this.context !== undefined) {
            if (chunk.length - offset >= this.payloadLength) {
              this.payload = chunk.subarray(offset, offset + this.payloadLength)
              this.payloadFilled = this.payloadLength
              offset += this.payloadLength
            } else {
              this.payload = Buffer.allocUnsafe(this.payloadLength)
            }
          }
          if (this.payloadFilled === this.payloadLength) this.finishFrame()
        }
      } else {
        const n = Math.min(this.payloadLength - this.payloadFilled, chunk.length - offset)
        if (this.payload !== undefined) chunk.copy(this.payload, this.payloadFilled, offset, offset + n)
        this.payloadFilled += n
        offset += n
        if (this.payloadFilled === this.payloadLength) this.finishFrame()
      }
    }
  }

  private finishFrame (): void {
    const { context, payload } = this
    this.prefixFilled = 0
    this.bodyLength = -1
    this.inPayload = false
    this.payload = undefined
    this.context = undefined
    if (context !== undefined) this.init.onFrame(context, payload ?? Buffer.alloc(0))
  }
}


export interface FrameReaderInit<T> extends FrameDecoderInit<T> {
  /** the buffer a payload of `payloadLength` accepted bytes is read into; `onFrame` gets it once full */
  allocate(payloadLength: number): Buffer
  /** bytes `[0, filled)` of an accepted payload have been read (after each read, the last one before `onFrame`) */
  onProgress?(context: T, payload: Buffer, filled: number): void
}

/**
 * Reads frames in place, for a socket made with Node's `onread` option: the socket asks
 * {@link buffer} where to put the next bytes and reports with {@link received} how many it put
 * there. Node's TLS copies each decrypted record straight into the buffer named, so a payload
 * lands in the buffer its consumer gets: no buffer per read, no copy in JavaScript, no stream
 * machinery. The buffer named always ends where the current part of a frame ends, so a read
 * never spans two frames. As with {@link FrameDecoder}, the length is checked and `onHeader`
 * decides before any payload buffer is allocated.
 */
export class FrameReader<T> {
  private readonly prefix = Buffer.alloc(LENGTH_PREFIX_BYTES + HEADER_BYTES)
  private readonly skipped = Buffer.allocUnsafe(SKIP_BUFFER_LENGTH)
  /** the length prefix and header, an accepted payload, or a payload read and thrown away */
  private part: 'prefix' | 'payload' | 'skip' = 'prefix'
  private filled = 0
  private payloadLength = 0
  private payload: Buffer | undefined
  private context: T | undefined
  private failed = false

  constructor (private readonly init: FrameReaderInit<T>) {}

  /** Where the next bytes go; at least one byte long. */
  buffer (): Buffer {
    if (this.failed) return this.skipped
    switch (this.part) {
      case 'prefix':
        return this.prefix.subarray(this.filled)
      case 'payload':
        return (this.payload as Buffer).subarray(this.filled)
      default:
        return this.skipped.subarray(0, Math.min(this.skipped.length, this.payloadLength - this.filled))
    }
  }

  /**
   * `n` bytes were written at the start of the last {@link buffer}. Throws ProtocolError (or
   * whatever `onHeader` throws), after which the reader takes nothing more.
   */
  received (n: number): void {
    if (this.failed) throw new ProtocolError('frame reader used after a protocol error')
    try {
      this.filled += n
      if (this.part === 'prefix') {
        if (this.filled < this.prefix.length) return
        const length = this.prefix.readUInt32BE(0)
        if (length > this.init.maxBodyLength) {
          throw new ProtocolError(`frame of ${length} bytes exceeds the limit of ${this.init.maxBodyLength}`)
        }
        if (length < HEADER_BYTES) throw new ProtocolError(`frame of ${length} bytes is shorter than a header`)
        this.payloadLength = length - HEADER_BYTES
        this.filled = 0
        this.context = this.init.onHeader(this.prefix.subarray(LENGTH_PREFIX_BYTES), this.payloadLength)
        if (this.context === undefined) {
          this.part = 'skip'
        } else {
          this.part = 'payload'
          this.payload = this.init.allocate(this.payloadLength)
          // a longer buffer would let the next frame's bytes in
          if (this.payload.length !== this.payloadLength) throw new RangeError(`allocate returned ${this.payload.length} bytes for a payload of ${this.payloadLength}`)
        }
      } else if (this.part === 'payload' && this.init.onProgress !== undefined) {
        this.init.onProgress(this.context as T, this.payload as Buffer, this.filled)
      }
      if (this.filled === this.payloadLength) this.finishFrame()
    } catch (err) {
      this.failed = true
      throw err
    }
  }

  private finishFrame (): void {
    const { context, payload } = this
    this.part = 'prefix'
    this.filled = 0
    this.payload = undefined
    this.context = undefined
    if (context !== undefined) this.init.onFrame(context, payload ?? Buffer.alloc(0))
  }
}
