/**
 * The control protocol's wire format.
 *
 * A stream carries frames: a 4-byte big-endian body length, then a UTF-8 JSON object with a
 * string `type`. The length is checked before the body is buffered, so an oversized prefix
 * costs nothing. Everything from the network is validated here; callers get typed messages
 * whose bitfields already match their chunk counts.
 *
 * Messages a sender writes on one stream, in order:
 * - `hello` first: protocol version and where our data server listens. It also starts a fresh
 *   session: the receiver forgets whatever the sender announced before.
 * - `join`: we hold or pull a manifest; carries our whole bitfield and, optionally, the
 *   manifest's origin fetchers we know of, each a peer id and how many hops away we heard of it
 *   (see `@swarm/pull`: a fleet agrees on them by passing them on). Sent again when state changes.
 * - `have`: chunks that landed since; only for a manifest joined on this stream.
 * - `arriving`: chunks we began receiving and pass on as they arrive (cut-through, see
 *   `@swarm/fetcher`'s `ArrivingChunks`); `not-arriving`: chunks whose transfer ended without
 *   them. Only for a manifest joined on this stream; a `have` ends a chunk's arrival too.
 * - `leave`: we dropped a manifest.
 * - `address`: the data server moved (or stopped: `null`).
 *
 * A JSON object with a `type` this version does not know is skipped, so later versions can add
 * messages; anything else that fails validation closes the stream.
 *
 * Sizes are bounded so that no message holds the event loop for long: a frame body is at most
 * {@link MAX_MESSAGE_BYTES} (room for a `join` with the bitfield of the largest manifest the
 * manifest schema allows), and a `have` carries at most {@link MAX_HAVE_INDICES_PER_MESSAGE}
 * indices. Whether a message fits this node's own state (a manifest it holds, that manifest's
 * chunk count) is the control channel's check, not this module's.
 */

import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { z } from 'zod'
import { bitfieldLength, fitsChunkCount } from '@swarm/interface'
import { CANONICAL_CID_MEMO_ENTRIES, MAX_BITFIELD_BYTES, MAX_CHUNK_COUNT, MAX_HAVE_INDICES_PER_MESSAGE, MAX_FETCHER_HOPS, MAX_JOIN_FETCHERS, MAX_MESSAGE_BYTES } from './constants.js'
import { ControlMessageTooLargeError, InvalidControlMessageError } from './errors.js'

export const PROTOCOL_VERSION = 1

const FRAME_HEADER_BYTES = 4

export interface DataAddress {
  /** when absent, peers use the address they see our connection come from */
  host?: string
  port: number
}

export type ControlMessage =
  | { type: 'hello', version: number, dataAddress?: DataAddress }
  | { type: 'address', dataAddress: DataAddress | null }
  | { type: 'join', manifest: string, chunkCount: number, pulling: boolean, bitfield: Uint8Array, fetchers?: NamedFetcher[] }
  | { type: 'have', manifest: string, indices: number[] }
  | { type: 'arriving' | 'not-arriving', manifest: string, indices: number[] }
  | { type: 'leave', manifest: string }

/** An origin fetcher a join names: its peer id, and how far from the sender it is (0: the sender itself). */
export interface NamedFetcher {
  peerId: string
  hops: number
}

const canonicalMemo = new Map<string, string | undefined>()

/** A CID in canonical string form (CIDv1 base32 or CIDv0 base58), or undefined when it is not one. */
export function canonicalCid (value: string): string | undefined {
  const known = canonicalMemo.get(value)
  if (known !== undefined || canonicalMemo.has(value)) return known
  let canonical: string | undefined
  try {
    canonical = CID.parse(value).toString()
  } catch {
    canonical = undefined
  }
  if (canonicalMemo.size >= CANONICAL_CID_MEMO_ENTRIES) canonicalMemo.clear()
  canonicalMemo.set(value, canonical)
  return canonical
}

const manifestSchema = z.string().max(256).transform((value, ctx) => {
  const cid = canonicalCid(value)
  if (cid == null) {
    ctx.addIssue({ code: 'custom', message: 'not a CID' })
    return z.NEVER
  }
  return cid
})

const dataAddressSchema = z.strictObject({
  host: z.union([z.ipv4(), z.ipv6(), z.hostname().max(253)]).optional(),
  port: z.number().int().min(1).max(65_535)
})

/** Whether peers will accept this data address (they close the stream on one they do not). */
export function isValidDataAddress (address: DataAddress): boolean {
  return dataAddressSchema.safeParse(address).success
}

const chunkCountSchema = z.number().int().min(0).max(MAX_CHUNK_COUNT)

/** Whether a string is a peer id in its canonical text form. */
export function isPeerIdText (value: string): boolean {
  try {
    return peerIdFromString(value).toString() === value
  } catch {
    return false
  }
}

const fetchersSchema = z.array(z.strictObject({
  peerId: z.string().max(128).refine(isPeerIdText, 'not a peer id'),
  hops: z.number().int().min(0).max(MAX_FETCHER_HOPS)
})).max(MAX_JOIN_FETCHERS)

/** chunk indices, checked in one loop rather than a schema per element: 65,536 in a millisecond or two */
const indicesSchema = z.array(z.unknown()).max(MAX_HAVE_INDICES_PER_MESSAGE).transform((indices, ctx) => {
  for (let i = 0; i < indices.length; i++) {
    const index = indices[i]
    if (typeof index !== 'number' || !Number.isInteger(index) || index < 0 || index >= MAX_CHUNK_COUNT) {
      ctx.addIssue({ code: 'custom', path: [i], message: `expected an integer from 0 to ${MAX_CHUNK_COUNT - 1}, got ${JSON.stringify(index)?.slice(0, 20)}` })
      return z.NEVER
    }
  }
  return indices as number[]
})

const messageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('hello'),
    version: z.number().int().min(1),
    dataAddress: dataAddressSchema.optional()
  }),
  z.object({
    type: z.literal('address'),
    dataAddress: dataAddressSchema.nullable()
  }),
  z.object({
    type: z.literal('join'),
    manifest: manifestSchema,
    chunkCount: chunkCountSchema,
    pulling: z.boolean(),
    bitfield: z.string().max(Math.ceil(MAX_BITFIELD_BYTES / 3) * 4),
    fetchers: fetchersSchema.optional()
  }).transform((message, ctx) => {
    // Node's own codec instead of a regular expression over 1.7 MB; it skips characters that are
    // not base64, so a string with any decodes to fewer bytes than its length promises
    const text = message.bitfield
    const decoded = Buffer.from(text, 'base64')
    const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0
    if (text.length % 4 !== 0 || decoded.length !== text.length / 4 * 3 - padding) {
      ctx.addIssue({ code: 'custom', path: ['bitfield'], message: 'not base64' })
      return z.NEVER
    }
    const bitfield = new Uint8Array(decoded)
    if (!fitsChunkCount(bitfield, message.chunkCount)) {
      const problem = bitfield.length !== bitfieldLength(message.chunkCount) ? `${bitfield.length} bytes for ${message.chunkCount} chunks` : 'bits set past the last chunk'
      ctx.addIssue({ code: 'custom', path: ['bitfield'], message: problem })
      return z.NEVER
    }
    return { ...message, bitfield }
  }),
  z.object({
    type: z.literal('have'),
    manifest: manifestSchema,
    indices: indicesSchema
  }),
  z.object({
    type: z.literal('arriving'),
    manifest: manifestSchema,
    indices: indicesSchema
  }),
  z.object({
    type: z.literal('not-arriving'),
    manifest: manifestSchema,
    indices: indicesSchema
  }),
  z.object({
    type: z.literal('leave'),
    manifest: manifestSchema
  })
])

const KNOWN_TYPES = new Set(['hello', 'address', 'join', 'have', 'arriving', 'not-arriving', 'leave'])

/**
 * Parses one frame body. Returns undefined for a well-formed message of a type this version
 * does not know; throws {@link InvalidControlMessageError} for anything else that is wrong.
 */
export function decodeMessage (body: Uint8Array): ControlMessage | undefined {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch (err) {
    throw new InvalidControlMessageError(`control message is not UTF-8 JSON: ${(err as Error).message}`, { cause: err })
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidControlMessageError('control message is not a JSON object')
  }
  const type = (value as { type?: unknown }).type
  if (typeof type !== 'string') {
    throw new InvalidControlMessageError('control message has no string "type"')
  }
  if (!KNOWN_TYPES.has(type)) {
    return undefined
  }
  const result = messageSchema.safeParse(value)
  if (!result.success) {
    const issues = result.error.issues.map(issue => `${issue.path.join('.') || '(message)'}: ${issue.message}`).join('; ')
    const reason = type === 'join' && result.error.issues.some(issue => issue.path[0] === 'bitfield' && issue.code === 'custom') ? 'bitfield' : 'malformed'
    throw new InvalidControlMessageError(`invalid ${type} message: ${issues}`, { cause: result.error, reason })
  }
  return result.data as ControlMessage
}

/** One frame (length prefix and JSON body) ready for `stream.send`. */
export function encodeMessage (message: ControlMessage): Uint8Array {
  const wire = message.type === 'join'
    ? { ...message, bitfield: Buffer.from(message.bitfield.buffer, message.bitfield.byteOffset, message.bitfield.byteLength).toString('base64') }
    : message
  const body = new TextEncoder().encode(JSON.stringify(wire))
  if (body.length > MAX_MESSAGE_BYTES) {
    throw new ControlMessageTooLargeError(body.length, MAX_MESSAGE_BYTES)
  }
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length)
  new DataView(frame.buffer).setUint32(0, body.length)
  frame.set(body, FRAME_HEADER_BYTES)
  return frame
}

/**
 * Cuts a byte stream into frame bodies; throws as soon as a length prefix is over the limit.
 * Takes the stream's items as they come (a Uint8Array, or a list of them).
 */
export class FrameDecoder {
  readonly #maxBytes: number
  #chunks: Uint8Array[] = []
  #buffered = 0
  #expected: number | undefined

  constructor (maxBytes = MAX_MESSAGE_BYTES) {
    this.#maxBytes = maxBytes
  }

  push (data: Uint8Array | Iterable<Uint8Array>): Uint8Array[] {
    for (const chunk of data instanceof Uint8Array ? [data] : data) {
      if (chunk.length > 0) {
        this.#chunks.push(chunk)
        this.#buffered += chunk.length
      }
    }
    const bodies: Uint8Array[] = []
    for (;;) {
      if (this.#expected == null) {
        if (this.#buffered < FRAME_HEADER_BYTES) {
          break
        }
        const header = this.#take(FRAME_HEADER_BYTES)
        const length = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES).getUint32(0)
        if (length > this.#maxBytes) {
          throw new ControlMessageTooLargeError(length, this.#maxBytes)
        }
        this.#expected = length
      }
      if (this.#buffered < this.#expected) {
        break
      }
      bodies.push(this.#take(this.#expected))
      this.#expected = undefined
    }
    return bodies
  }

  /** bytes received but not yet part of a whole frame */
  get pendingBytes (): number {
    return this.#buffered + (this.#expected != null ? FRAME_HEADER_BYTES : 0)
  }

  #take (length: number): Uint8Array {
    const first = this.#chunks[0]
    if (first != null && first.length >= length) {
      // the common case: the bytes sit in one chunk, no copy
      const taken = first.subarray(0, length)
      if (first.length === length) {
        this.#chunks.shift()
      } else {
        this.#chunks[0] = first.subarray(length)
      }
      this.#buffered -= length
      return taken
    }
    const taken = new Uint8Array(length)
    let filled = 0
    while (filled < length) {
      const chunk = this.#chunks[0] as Uint8Array
      const part = Math.min(chunk.length, length - filled)
      taken.set(chunk.subarray(0, part), filled)
      filled += part
      if (part === chunk.length) {
        this.#chunks.shift()
      } else {
        this.#chunks[0] = chunk.subarray(part)
      }
    }
    this.#buffered -= length
    return taken
  }
}
