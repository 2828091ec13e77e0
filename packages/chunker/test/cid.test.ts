import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import { base58btc } from 'multiformats/bases/base58'
import * as json from 'multiformats/codecs/json'
import { cidForBytes, isChunkCid, parseChunkCid, RAW_CODEC, verifyChunk } from '../src/index.js'
import { seededRandom } from '@swarm/scheduler'
import { randomInt } from './fixtures.js'

/** isChunkCid by its definition: parses as a verifiable CID and is written canonically. */
function slowIsChunkCid (text: string, codec = RAW_CODEC): boolean {
  try {
    return parseChunkCid(text, codec).toString() === text
  } catch {
    return false
  }
}

describe('isChunkCid', () => {
  it('accepts the CIDs cidForBytes makes', () => {
    const next = seededRandom(7)
    for (let i = 0; i < 500; i++) {
      const bytes = new Uint8Array(randomInt(next, 0, 64)).map(() => randomInt(next, 0, 255))
      const cid = cidForBytes(bytes)
      expect(isChunkCid(cid)).toBe(true)
      expect(verifyChunk(cid, bytes)).toBe(true)
    }
  })

  it('agrees with parsing on every one-character change of a CID', () => {
    const cid = cidForBytes(new Uint8Array([9, 9, 9]))
    const alphabet = 'abcdefghijklmnopqrstuvwxyz234567AZ01-'
    let accepted = 0
    for (let position = 0; position < cid.length; position++) {
      for (const character of alphabet) {
        const variant = cid.slice(0, position) + character + cid.slice(position + 1)
        expect(isChunkCid(variant)).toBe(slowIsChunkCid(variant))
        if (isChunkCid(variant)) accepted++
      }
    }
    // changes inside the digest stay valid CIDs; changes to the prefix or padding do not
    expect(accepted).toBeGreaterThan(50 * 32)
    expect(accepted).toBeLessThan(cid.length * alphabet.length)
  })

  it('refuses other spellings, codecs, versions and non-strings', () => {
    const cid = cidForBytes(new Uint8Array([1]))
    expect(isChunkCid(CID.parse(cid).toString(base58btc))).toBe(false)
    expect(isChunkCid(cid.toUpperCase())).toBe(false)
    expect(isChunkCid(cid + 'a')).toBe(false)
    expect(isChunkCid(cid.slice(0, -1))).toBe(false)
    expect(isChunkCid('QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG')).toBe(false)
    expect(isChunkCid(cidForBytes(new Uint8Array([1]), json.code))).toBe(false)
    expect(isChunkCid(cidForBytes(new Uint8Array([1]), json.code), json.code)).toBe(true)
    expect(isChunkCid(42 as unknown as string)).toBe(false)
    expect(isChunkCid('')).toBe(false)
  })
})
