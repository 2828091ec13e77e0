/**
 * The frame decoders against any byte sequence, split anywhere: a valid frame or a ProtocolError,
 * never another exception, never a payload buffer beyond the limit, and exactly what the
 * reference reading of the specification (./frames.ts) makes of the same bytes.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_REQUEST_BODY_LENGTH, ProtocolError } from '../src/index.js'
import {
  FrameDecoder, FrameReader, HEADER_BYTES, RequestType, decodeRequest, encodeCancel, encodeGet
} from '../src/protocol.js'
import { parseRequests, requestStream, splits } from './frames.js'
import type { ModelRequest } from './frames.js'
import type { Request } from '../src/protocol.js'

const RUNS = Number(process.env.SWARM_FUZZ_DECODER_RUNS ?? 3000)

/** What the server's decoder makes of a stream fed in the given pieces. */
function decodeAsServer (bytes: Buffer, cuts: number[]): { requests: Request[], error: unknown } {
  const requests: Request[] = []
  const decoder = new FrameDecoder<Buffer>({
    maxBodyLength: MAX_REQUEST_BODY_LENGTH,
    onHeader: (header, payloadLength) => {
      // the length is checked before a payload buffer exists
      if (payloadLength > MAX_REQUEST_BODY_LENGTH - HEADER_BYTES) throw new Error(`onHeader saw a payload of ${payloadLength} bytes`)
      return Buffer.from(header)
    },
    onFrame: (header, rest) => { requests.push(decodeRequest(header, rest)) }
  })
  try {
    for (const [from, to] of splits(bytes.length, cuts)) decoder.push(bytes.subarray(from, to))
    return { requests, error: undefined }
  } catch (err) {
    return { requests, error: err }
  }
}

function asModel (request: Request): ModelRequest {
  return request.type === RequestType.GET
    ? { type: 'get', id: request.id, maxSize: request.maxSize, cid: request.cid, relay: request.relay }
    : { type: 'cancel', id: request.id }
}

const cids = ['bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku', 'bagaaierasords4njcts6vs7qvdjfcvgnume4hqohf65zsfguprqphs3icwea']

describe('request decoder', () => {
  it('turns any bytes, split anywhere, into the frames the specification reads or a ProtocolError', () => {
    fc.assert(fc.property(
      fc.oneof(requestStream(cids), fc.uint8Array({ maxLength: 2048 }).map(b => Buffer.from(b))),
      fc.array(fc.nat(), { maxLength: 8 }),
      (bytes, cuts) => {
        const { requests, error } = decodeAsServer(bytes, cuts)
        const model = parseRequests(bytes)
        if (error !== undefined && !(error instanceof ProtocolError)) throw error
        expect(error !== undefined).toBe(model.error)
        expect(requests.map(asModel)).toEqual(model.requests)
      }
    ), { numRuns: RUNS })
  })

  it('reads the same frames however the stream is split', () => {
    fc.assert(fc.property(requestStream(cids), fc.array(fc.nat(), { maxLength: 8 }), (bytes, cuts) => {
      const whole = decodeAsServer(bytes, [])
      const split = decodeAsServer(bytes, cuts)
      expect(split.requests).toEqual(whole.requests)
      expect(split.error?.constructor).toBe(whole.error?.constructor)
    }), { numRuns: RUNS })
  })

  it('decodes every request the encoder writes to what was encoded', () => {
    const request = fc.oneof(
      fc.record({ type: fc.constant(RequestType.GET), id: fc.nat({ max: 0xffffffff }), maxSize: fc.integer({ min: 0, max: 64 * 1024 * 1024 }), cid: fc.constantFrom(...cids), relay: fc.boolean() }),
      fc.record({ type: fc.constant(RequestType.CANCEL), id: fc.nat({ max: 0xffffffff }) })
    )
    fc.assert(fc.property(fc.array(request, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 8 }), (list, cuts) => {
      const bytes = Buffer.concat(list.map(r => r.type === RequestType.GET ? encodeGet(r.id, r.cid, r.maxSize, r.relay) : encodeCancel(r.id)))
      const { requests, error } = decodeAsServer(bytes, cuts)
      expect(error).toBeUndefined()
      expect(requests).toEqual(list)
    }), { numRuns: RUNS })
  })
})

describe('response reader', () => {
  it('reads any bytes, in any pieces, into bounded payload buffers or fails with a ProtocolError', () => {
    const limit = 4096
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 16 }), (input, sizes) => {
      const bytes = Buffer.from(input)
      const frames: Array<{ id: number, payload: Buffer }> = []
      const reader = new FrameReader<number>({
        maxBodyLength: limit,
        onHeader: (header, payloadLength) => {
          if (payloadLength > limit - HEADER_BYTES) throw new Error(`onHeader saw a payload of ${payloadLength} bytes`)
          // as the client does: a status it does not know breaks the protocol
          if ((header[4] as number) > 4) throw new ProtocolError(`unknown status ${String(header[4])}`)
          return header.readUInt32BE(0)
        },
        allocate: payloadLength => {
          if (payloadLength > limit - HEADER_BYTES) throw new Error(`allocate asked for ${payloadLength} bytes`)
          return Buffer.alloc(payloadLength)
        },
        onFrame: (id, payload) => { frames.push({ id, payload: Buffer.from(payload) }) }
      })
      let at = 0
      let error: unknown
      for (let i = 0; at < bytes.length && error === undefined; i++) {
        const target = reader.buffer()
        expect(target.length).toBeGreaterThan(0)
        const n = Math.min(target.length, sizes[i % sizes.length] as number, bytes.length - at)
        bytes.copy(target, 0, at, at + n)
        at += n
        try {
          reader.received(n)
        } catch (err) {
          error = err
        }
      }
      if (error !== undefined && !(error instanceof ProtocolError)) throw error
      // whatever was read as frames is the stream's own prefix, frame by frame
      let offset = 0
      for (const frame of frames) {
        const length = bytes.readUInt32BE(offset)
        expect(frame.id).toBe(bytes.readUInt32BE(offset + 4))
        expect(Buffer.compare(frame.payload, bytes.subarray(offset + 9, offset + 4 + length))).toBe(0)
        offset += 4 + length
      }
      // and what is left is the start of a frame, or the frame that broke a rule
      const rest = bytes.subarray(offset)
      const broken = rest.length >= 9 && (rest.readUInt32BE(0) > limit || rest.readUInt32BE(0) < HEADER_BYTES || (rest[8] as number) > 4)
      expect(error !== undefined).toBe(broken)
      if (!broken && rest.length >= 9) expect(rest.length).toBeLessThan(4 + rest.readUInt32BE(0))
    }), { numRuns: RUNS })
  })
})
