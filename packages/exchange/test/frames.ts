/**
 * A reference reading of the data protocol's frames, written from the specification in
 * `src/protocol.ts` and not from its code, and fast-check generators of request streams: valid
 * frames, frames broken in every way the specification names, random bytes, and valid streams
 * with bits flipped, bytes overwritten, inserted or cut.
 */
import fc from 'fast-check'

export const MAX_REQUEST_BODY = 1024
export const MAX_CHUNK = 64 * 1024 * 1024

export type ModelRequest =
  | { type: 'get', id: number, maxSize: number, cid: string, relay: boolean }
  | { type: 'cancel', id: number }

export interface ModelParse {
  /** the requests the stream holds, in order, up to an error or an incomplete frame */
  requests: ModelRequest[]
  /** the stream breaks the protocol; the receiver must close the connection */
  error: boolean
  /** the stream ends inside a frame (and before any error) */
  partial: boolean
}

/** What a server must make of a request stream. */
export function parseRequests (bytes: Uint8Array): ModelParse {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const requests: ModelRequest[] = []
  let at = 0
  while (at < view.length) {
    if (view.length - at < 4) return { requests, error: false, partial: true }
    const length = view.readUInt32BE(at)
    // a length out of bounds is refused as soon as the prefix is in, before the body
    if (length > MAX_REQUEST_BODY || length < 5) return { requests, error: true, partial: false }
    if (view.length - at - 4 < length) return { requests, error: false, partial: true }
    const body = view.subarray(at + 4, at + 4 + length)
    at += 4 + length
    const type = body[0]
    const id = body.readUInt32BE(1)
    if (type === 2) {
      if (length !== 5) return { requests, error: true, partial: false }
      requests.push({ type: 'cancel', id })
    } else if (type === 1) {
      if (length < 10) return { requests, error: true, partial: false }
      // the top bit of the size field asks for a relay; the other 31 bits are the size
      const field = body.readUInt32BE(5)
      const relay = (field & 0x80000000) !== 0
      const maxSize = field & 0x7fffffff
      const cidLength = body[9] as number
      if (length !== 10 + cidLength || cidLength === 0 || maxSize > MAX_CHUNK) return { requests, error: true, partial: false }
      const cid = body.subarray(10)
      if (!cid.every(c => c >= 0x21 && c <= 0x7e)) return { requests, error: true, partial: false }
      requests.push({ type: 'get', id, maxSize, cid: cid.toString('latin1'), relay })
    } else {
      return { requests, error: true, partial: false }
    }
  }
  return { requests, error: false, partial: false }
}

export interface ModelResponse { id: number, status: number, payload: Buffer }

/** Complete response frames at the start of `bytes`, and whether bytes of a frame remain. */
export function parseResponses (bytes: Buffer): { responses: ModelResponse[], rest: number } {
  const responses: ModelResponse[] = []
  let at = 0
  while (bytes.length - at >= 4) {
    const length = bytes.readUInt32BE(at)
    if (bytes.length - at - 4 < length) break
    if (length < 5) throw new Error(`response frame of ${length} bytes`)
    responses.push({ id: bytes.readUInt32BE(at + 4), status: bytes[at + 8] as number, payload: bytes.subarray(at + 9, at + 4 + length) })
    at += 4 + length
  }
  return { responses, rest: bytes.length - at }
}

export function get (id: number, cid: string, maxSize: number, cidLength?: number): Buffer {
  const cidBytes = Buffer.from(cid, 'latin1')
  const frame = Buffer.alloc(14 + cidBytes.length)
  frame.writeUInt32BE(10 + cidBytes.length, 0)
  frame[4] = 1
  frame.writeUInt32BE(id, 5)
  frame.writeUInt32BE(maxSize, 9)
  frame[13] = cidLength ?? cidBytes.length
  cidBytes.copy(frame, 14)
  return frame
}

export function cancel (id: number): Buffer {
  const frame = Buffer.alloc(9)
  frame.writeUInt32BE(5, 0)
  frame[4] = 2
  frame.writeUInt32BE(id, 5)
  return frame
}

const u32 = fc.integer({ min: 0, max: 0xffffffff })
/** few ids, so that requests and cancels meet and ids repeat */
const id = fc.oneof(fc.integer({ min: 0, max: 7 }), u32)
const printable = fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map(c => String.fromCharCode(c)), minLength: 1, maxLength: 128 })

/** A frame the specification accepts. */
export function validFrame (cids: string[]): fc.Arbitrary<Buffer> {
  const cid = cids.length > 0 ? fc.oneof(fc.constantFrom(...cids), printable) : printable
  const maxSize = fc.oneof(fc.constant(MAX_CHUNK), fc.integer({ min: 0, max: MAX_CHUNK }), fc.integer({ min: 0, max: 70_000 }))
  return fc.oneof(
    { weight: 3, arbitrary: fc.tuple(id, cid, maxSize).map(([i, c, m]) => get(i, c, m)) },
    { weight: 1, arbitrary: id.map(i => cancel(i)) }
  )
}

/** A frame the specification refuses, one rule broken at a time. */
export function invalidFrame (): fc.Arbitrary<Buffer> {
  const withLength = (body: Buffer, length: number): Buffer => {
    const frame = Buffer.alloc(4 + body.length)
    frame.writeUInt32BE(length, 0)
    body.copy(frame, 4)
    return frame
  }
  return fc.oneof(
    // a length over the bound, up to 2^32 - 1, with a body or none
    fc.tuple(fc.integer({ min: MAX_REQUEST_BODY + 1, max: 0xffffffff }), fc.uint8Array({ maxLength: 16 })).map(([n, b]) => withLength(Buffer.from(b), n)),
    // a length under a header
    fc.tuple(fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 4 })).map(([n, b]) => withLength(Buffer.from(b), n)),
    // an unknown type
    fc.tuple(fc.integer({ min: 0, max: 255 }).filter(t => t !== 1 && t !== 2), u32, fc.uint8Array({ maxLength: 32 })).map(([t, i, rest]) => {
      const body = Buffer.alloc(5 + rest.length)
      body[0] = t
      body.writeUInt32BE(i, 1)
      body.set(rest, 5)
      return withLength(body, body.length)
    }),
    // a CANCEL with trailing bytes
    fc.tuple(u32, fc.uint8Array({ minLength: 1, maxLength: 16 })).map(([i, rest]) => {
      const frame = Buffer.concat([cancel(i), rest])
      frame.writeUInt32BE(frame.length - 4, 0)
      return frame
    }),
    // a GET whose CID length does not match its body
    fc.tuple(u32, printable, fc.integer({ min: 0, max: 255 })).filter(([, c, n]) => n !== c.length).map(([i, c, n]) => get(i, c, 1024, n)),
    // a GET asking for more than the largest chunk
    fc.tuple(u32, printable, fc.integer({ min: MAX_CHUNK + 1, max: 0xffffffff })).map(([i, c, m]) => get(i, c, m)),
    // a GET with a CID of bytes outside printable ASCII
    fc.tuple(u32, fc.uint8Array({ minLength: 1, maxLength: 64 }).filter(b => b.some(c => c < 0x21 || c > 0x7e))).map(([i, b]) => get(i, Buffer.from(b).toString('latin1'), 1024)),
    // a GET too short to hold its fields
    fc.tuple(u32, fc.integer({ min: 0, max: 4 })).map(([i, n]) => {
      const body = Buffer.alloc(5 + n)
      body[0] = 1
      body.writeUInt32BE(i, 1)
      return withLength(body, body.length)
    })
  )
}

type Mutation =
  | { kind: 'flip', at: number, bit: number }
  | { kind: 'set', at: number, value: number }
  | { kind: 'insert', at: number, bytes: Uint8Array }
  | { kind: 'cut', at: number }

function mutate (stream: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(stream)
  for (const m of mutations) {
    if (bytes.length === 0 && m.kind !== 'insert') continue
    const at = m.at % Math.max(1, bytes.length)
    if (m.kind === 'flip') bytes[at] = (bytes[at] as number) ^ (1 << m.bit)
    else if (m.kind === 'set') bytes[at] = m.value
    else if (m.kind === 'insert') bytes = Buffer.concat([bytes.subarray(0, at), m.bytes, bytes.subarray(at)])
    else bytes = bytes.subarray(0, at)
  }
  return bytes
}

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() })
)

/**
 * Request streams: valid frames with broken ones among them, random bytes, and valid streams
 * mutated a few times. `cids` are CIDs the server holds, so that many GETs find something.
 */
export function requestStream (cids: string[]): fc.Arbitrary<Buffer> {
  const frames = fc.array(fc.oneof({ weight: 4, arbitrary: validFrame(cids) }, { weight: 1, arbitrary: invalidFrame() }), { minLength: 1, maxLength: 6 })
  return fc.oneof(
    { weight: 3, arbitrary: frames.map(list => Buffer.concat(list)) },
    { weight: 3, arbitrary: fc.tuple(fc.array(validFrame(cids), { minLength: 1, maxLength: 6 }), fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([list, ms]) => mutate(Buffer.concat(list), ms)) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 64 }).map(b => Buffer.from(b)) }
  )
}

/** Cut points that split `length` bytes into the pieces they arrive in. */
export function splits (length: number, cuts: number[]): Array<[number, number]> {
  const points = [...new Set(cuts.map(c => c % (length + 1)))].sort((a, b) => a - b)
  const pieces: Array<[number, number]> = []
  let from = 0
  for (const p of [...points, length]) {
    if (p > from) pieces.push([from, p])
    from = Math.max(from, p)
  }
  return pieces
}
