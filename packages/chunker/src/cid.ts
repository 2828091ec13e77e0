import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import type { CidString } from '@swarm/interface'

/** sha2-256 through OpenSSL: several times faster than hashing in JS, and it releases no intermediate copies. */
function sha256Digest (bytes: Uint8Array): Uint8Array {
  return createHash('sha256').update(bytes).digest()
}

/** The CIDv1 (raw codec, sha2-256) of a chunk's bytes, as a base32 string. */
export function cidForBytes (bytes: Uint8Array, codec: number = raw.code): CidString {
  return CID.createV1(codec, Digest.create(sha256.code, sha256Digest(bytes))).toString()
}

/**
 * Parses a chunk CID and checks it is one Swarm can verify (CIDv1, sha2-256).
 * Throws on anything else, so a peer cannot make us "verify" against a weaker hash.
 */
export function parseChunkCid (cid: CidString, codec: number = raw.code): CID {
  let parsed: CID
  try {
    parsed = CID.parse(cid)
  } catch (err) {
    throw new TypeError(`invalid CID ${JSON.stringify(cid)}: ${(err as Error).message}`)
  }
  if (parsed.version !== 1) throw new TypeError(`invalid CID ${cid}: version ${parsed.version}, expected 1`)
  if (parsed.code !== codec) throw new TypeError(`invalid CID ${cid}: codec 0x${parsed.code.toString(16)}, expected 0x${codec.toString(16)}`)
  if (parsed.multihash.code !== sha256.code) throw new TypeError(`invalid CID ${cid}: hash 0x${parsed.multihash.code.toString(16)}, expected sha2-256`)
  return parsed
}

/** True when `bytes` hash to `cid`. A CID Swarm cannot verify is never matched. */
export function verifyChunk (cid: CidString, bytes: Uint8Array, codec: number = raw.code): boolean {
  let parsed: CID
  try {
    parsed = parseChunkCid(cid, codec)
  } catch {
    return false
  }
  const expected = parsed.multihash.digest
  const actual = sha256Digest(bytes)
  if (expected.length !== actual.length) return false
  for (let i = 0; i < actual.length; i++) {
    if (expected[i] !== actual[i]) return false
  }
  return true
}

export const RAW_CODEC = raw.code

/**
 * The canonical base32 form of every CIDv1 raw/sha2-256: `b`, the 4 prefix bytes (`afkrei` plus
 * 2 bits of the next character), the 32-byte digest, and 2 zero padding bits in the last character.
 */
const CANONICAL_RAW_SHA256_CID = /^bafkrei[a-h][a-z2-7]{50}[aeimquy4]$/

/**
 * True when `cid` is a chunk CID Swarm can verify, in its canonical base32 form (the form
 * manifests and stores use). Canonical raw CIDs are recognised without decoding them, which
 * matters when a manifest lists millions.
 */
export function isChunkCid (cid: CidString, codec: number = raw.code): boolean {
  if (typeof cid !== 'string') return false
  if (codec === raw.code && CANONICAL_RAW_SHA256_CID.test(cid)) return true
  try {
    return parseChunkCid(cid, codec).toString() === cid
  } catch {
    return false
  }
}
