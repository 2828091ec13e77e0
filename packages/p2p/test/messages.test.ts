import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidChunkIndexError } from '@swarm/interface'
import { describe, expect, it } from 'vitest'
import {
  CANONICAL_CID_MEMO_ENTRIES,
  ControlMessageTooLargeError,
  countBits,
  createBitfield,
  decodeMessage,
  encodeMessage,
  FrameDecoder,
  hasBit,
  InvalidBootstrapAddressError,
  InvalidControlMessageError,
  MAX_CHUNK_COUNT,
  MAX_HAVE_INDICES_PER_MESSAGE,
  MAX_JOIN_FETCHERS,
  MAX_MESSAGE_BYTES,
  parseBootstrapEntry,
  setBit
} from '../src/index.js'
import { canonicalCid } from '../src/messages.js'
import type { ControlMessage } from '../src/index.js'

// peer ids as a join names origin fetchers
const fetchers = [{ peerId: '12D3KooWQqFbrQJST86WmwixXzyXBVS3MZVz5pYWC1emCcZ4d5cf', hops: 0 }, { peerId: '12D3KooWCWfHEQGfAW2tSr21vvfx2A3FyPpd68ZDLG6mMP4GcX66', hops: 3 }]

const manifest = CID.createV1(0x55, await sha256.digest(new TextEncoder().encode('manifest'))).toString()

function body (value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

function bodies (message: Uint8Array): Uint8Array[] {
  const frame = new Uint8Array(4 + message.length)
  new DataView(frame.buffer).setUint32(0, message.length)
  frame.set(message, 4)
  return new FrameDecoder().push(frame)
}

describe('bitfields', () => {
  it('puts chunk 0 in the top bit of byte 0', () => {
    const bitfield = createBitfield(10)
    expect(bitfield.length).toBe(2)
    setBit(bitfield, 0)
    setBit(bitfield, 9)
    expect([...bitfield]).toEqual([0x80, 0x40])
    expect(hasBit(bitfield, 0)).toBe(true)
    expect(hasBit(bitfield, 1)).toBe(false)
    expect(hasBit(bitfield, 9)).toBe(true)
    expect(countBits(bitfield)).toBe(2)
    expect(() => { setBit(bitfield, 16) }).toThrow(InvalidChunkIndexError)
  })
})

describe('control messages', () => {
  it('round-trip through frames, also when the bytes arrive split anywhere', () => {
    const bitfield = createBitfield(20)
    setBit(bitfield, 3)
    setBit(bitfield, 19)
    const messages: ControlMessage[] = [
      { type: 'hello', version: 1, dataAddress: { port: 7000 } },
      { type: 'join', manifest, chunkCount: 20, pulling: true, bitfield },
      { type: 'join', manifest, chunkCount: 20, pulling: true, bitfield, fetchers },
      { type: 'have', manifest, indices: [1, 2, 5] },
      { type: 'address', dataAddress: { host: '10.0.0.7', port: 7001 } },
      { type: 'leave', manifest }
    ]
    const stream = Buffer.concat(messages.map(encodeMessage))
    for (const step of [1, 3, 7, stream.length]) {
      const decoder = new FrameDecoder()
      const decoded: Array<ControlMessage | undefined> = []
      for (let offset = 0; offset < stream.length; offset += step) {
        // a list of two pieces, as a Uint8ArrayList would yield them
        const piece = stream.subarray(offset, offset + step)
        const half = Math.floor(piece.length / 2)
        decoded.push(...decoder.push([piece.subarray(0, half), piece.subarray(half)]).map(decodeMessage))
      }
      expect(decoded).toEqual(messages)
      expect(decoder.pendingBytes).toBe(0)
    }
  })

  it('rejects an oversized length prefix before reading the body', () => {
    const header = new Uint8Array(4)
    new DataView(header.buffer).setUint32(0, MAX_MESSAGE_BYTES + 1)
    expect(() => new FrameDecoder().push(header)).toThrow(ControlMessageTooLargeError)
  })

  it('skips well-formed messages of unknown types', () => {
    expect(decodeMessage(body({ type: 'want', manifest }))).toBeUndefined()
  })

  it.each([
    ['bytes that are not JSON', new TextEncoder().encode('{not json')],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0x7d])],
    ['a JSON array', body([1, 2])],
    ['a message without a type', body({ manifest })],
    ['a join whose manifest is not a CID', body({ type: 'join', manifest: 'nope', chunkCount: 8, pulling: false, bitfield: 'AA==' })],
    ['a join whose bitfield is too short', body({ type: 'join', manifest, chunkCount: 9, pulling: false, bitfield: 'AA==' })],
    ['a join with bits past the last chunk', body({ type: 'join', manifest, chunkCount: 4, pulling: false, bitfield: 'AQ==' })],
    ['a join whose bitfield is not base64', body({ type: 'join', manifest, chunkCount: 8, pulling: false, bitfield: '*' })],
    ['a have with a negative index', body({ type: 'have', manifest, indices: [-1] })],
    ['a have with a fractional index', body({ type: 'have', manifest, indices: [1.5] })],
    ['a join whose bitfield has a character that is not base64 inside', body({ type: 'join', manifest, chunkCount: 16, pulling: false, bitfield: 'A*A=' })],
    ['a have with an index past the largest manifest', body({ type: 'have', manifest, indices: [MAX_CHUNK_COUNT] })],
    ['a have with an index that is a string', body({ type: 'have', manifest, indices: ['1'] })],
    ['a have with more indices than one message carries', body({ type: 'have', manifest, indices: Array.from({ length: MAX_HAVE_INDICES_PER_MESSAGE + 1 }, (_, i) => i) })],
    ['a join with more chunks than a manifest may have', body({ type: 'join', manifest, chunkCount: MAX_CHUNK_COUNT + 1, pulling: false, bitfield: '' })],
    ['a join naming a fetcher that is not a peer id', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: [fetchers[0], { peerId: 'QmNotAPeer', hops: 1 }] })],
    ['a join naming a fetcher by a bare id', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: [fetchers[0]!.peerId] })],
    ['a join naming a fetcher without hops', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: [{ peerId: fetchers[0]!.peerId }] })],
    ['a join naming a fetcher at negative hops', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: [{ peerId: fetchers[0]!.peerId, hops: -1 }] })],
    ['a join naming a fetcher with fields it does not know', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: [{ ...fetchers[0], rank: 1 }] })],
    ['a join naming more fetchers than one carries', body({ type: 'join', manifest, chunkCount: 8, pulling: true, bitfield: 'AA==', fetchers: Array.from({ length: MAX_JOIN_FETCHERS + 1 }, () => fetchers[0]) })],
    ['a hello with port 0', body({ type: 'hello', version: 1, dataAddress: { port: 0 } })],
    ['a hello with a host that is no host name', body({ type: 'hello', version: 1, dataAddress: { host: 'a b', port: 1 } })]
  ])('rejects %s', (_name, bytes) => {
    expect(() => decodeMessage(bytes)).toThrow(InvalidControlMessageError)
  })

  it('takes the largest join and have a peer may send, and says which rejections are about the bitfield', () => {
    const bitfield = new Uint8Array(MAX_CHUNK_COUNT / 8).fill(0xa5)
    const join = decodeMessage(encodeMessage({ type: 'join', manifest, chunkCount: MAX_CHUNK_COUNT, pulling: true, bitfield }).subarray(4))
    expect(join).toMatchObject({ type: 'join', chunkCount: MAX_CHUNK_COUNT })
    expect((join as { bitfield: Uint8Array }).bitfield).toEqual(bitfield)
    const indices = Array.from({ length: MAX_HAVE_INDICES_PER_MESSAGE }, (_, i) => MAX_CHUNK_COUNT - 1 - i)
    expect(decodeMessage(encodeMessage({ type: 'have', manifest, indices }).subarray(4))).toEqual({ type: 'have', manifest, indices })
    const reasonOf = (value: unknown): string | undefined => {
      try {
        decodeMessage(body(value))
      } catch (err) {
        return (err as InvalidControlMessageError).reason
      }
      return undefined
    }
    expect(reasonOf({ type: 'join', manifest, chunkCount: 9, pulling: false, bitfield: 'AA==' })).toBe('bitfield')
    expect(reasonOf({ type: 'join', manifest, chunkCount: 4, pulling: false, bitfield: 'AQ==' })).toBe('bitfield')
    expect(reasonOf({ type: 'join', manifest: 'nope', chunkCount: 8, pulling: false, bitfield: 'AA==' })).toBe('malformed')
    expect(reasonOf({ type: 'have', manifest, indices: [-1] })).toBe('malformed')
  })

  it('refuses to encode a message over the limit', () => {
    const indices = Array.from({ length: 2_000_000 }, (_, i) => 10_000_000 + i)
    expect(() => encodeMessage({ type: 'have', manifest, indices })).toThrow(ControlMessageTooLargeError)
  })

  it('canonicalises manifest CIDs to base32', () => {
    const inBase36 = CID.parse(manifest).toString(base36)
    expect(inBase36).not.toBe(manifest)
    const [frame] = bodies(body({ type: 'leave', manifest: inBase36 }))
    expect(decodeMessage(frame as Uint8Array)).toEqual({ type: 'leave', manifest })
  })

  it('gives the same canonical CIDs and refusals from its memo, also once the memo has started over', async () => {
    const inBase36 = CID.parse(manifest).toString(base36)
    const others = await Promise.all(Array.from({ length: CANONICAL_CID_MEMO_ENTRIES + 10 }, async (_, i) => CID.createV1(0x55, await sha256.digest(new TextEncoder().encode(`other ${i}`)))))
    for (let round = 0; round < 2; round++) {
      expect(canonicalCid(inBase36)).toBe(manifest)
      expect(canonicalCid(manifest)).toBe(manifest)
      expect(canonicalCid('not a cid')).toBeUndefined()
      expect(canonicalCid('')).toBeUndefined()
      // more strings than the memo holds: it starts over, the answers stay
      for (const cid of others) expect(canonicalCid(cid.toString(base36))).toBe(cid.toString())
    }
    const [frame] = bodies(body({ type: 'leave', manifest: 'not a cid' }))
    expect(() => decodeMessage(frame as Uint8Array)).toThrow(InvalidControlMessageError)
  })
})

describe('bootstrap entries', () => {
  it('parses multiaddrs and dns entries', () => {
    expect(parseBootstrapEntry('dns:swarm.default.svc:4001')).toMatchObject({ kind: 'dns', name: 'swarm.default.svc', port: 4001 })
    const withPeer = parseBootstrapEntry('/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWLJtG8fd2hkQzTn96MrLvThmnNQjTUFZwGEsLRz5EmSzc')
    expect(withPeer).toMatchObject({ kind: 'multiaddr', peerId: '12D3KooWLJtG8fd2hkQzTn96MrLvThmnNQjTUFZwGEsLRz5EmSzc' })
    expect(parseBootstrapEntry('/ip4/10.0.0.1/tcp/4001')).not.toHaveProperty('peerId')
  })

  it.each(['dns:name', 'dns::4001', 'dns:name:0', 'dns:name:65536', 'dns:name:40a1', 'name:4001', '/ip4/300.0.0.1/tcp/1', '/nope/1'])('rejects %s', (entry) => {
    expect(() => parseBootstrapEntry(entry)).toThrow(InvalidBootstrapAddressError)
  })
})
