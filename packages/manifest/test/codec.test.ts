import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import * as json from 'multiformats/codecs/json'
import { base58btc } from 'multiformats/bases/base58'
import { sha256 } from 'multiformats/hashes/sha2'
import { InvalidManifestError, type Manifest } from '@swarm/interface'
import { cidForBytes } from '@swarm/chunker'
import {
  canonicalManifest,
  decodeManifest,
  encodeManifest,
  InvalidManifestCidError,
  isManifestCid,
  JSON_CODEC,
  MANIFEST_LIMITS,
  ManifestCidMismatchError,
  manifestCid,
  parseManifestCid,
  totalBytes
} from '../src/index.js'
import { MiB, sampleManifest } from './fixtures.js'

const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

/** The same object with its keys inserted in reverse order, all the way down. */
function reverseKeys (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).reverse().map(([key, item]) => [key, reverseKeys(item)]))
  }
  return value
}

describe('encodeManifest', () => {
  it('round-trips through decodeManifest, files sorted by path', () => {
    const manifest = sampleManifest()
    const { bytes, cid } = encodeManifest(manifest)
    const decoded = decodeManifest(bytes, { expectedCid: cid })
    const byPath = [...manifest.files].sort((a, b) => a.path < b.path ? -1 : 1)
    expect(decoded).toEqual({ ...manifest, files: byPath })
    expect(encodeManifest(decoded)).toEqual({ bytes, cid })
  })

  it('writes canonical bytes: sorted keys, no whitespace', () => {
    const { bytes } = encodeManifest(sampleManifest())
    const written = text(bytes)
    expect(written).not.toMatch(/\s/)
    const reparsed = JSON.parse(written) as unknown
    const sortedKeysEverywhere = (value: unknown): boolean => {
      if (Array.isArray(value)) return value.every(sortedKeysEverywhere)
      if (value === null || typeof value !== 'object') return true
      const keys = Object.keys(value)
      return keys.every((key, i) => i === 0 || (keys[i - 1] as string) < key) && Object.values(value).every(sortedKeysEverywhere)
    }
    expect(sortedKeysEverywhere(reparsed)).toBe(true)
    expect(written.startsWith('{"chunkSize":1048576,"files":[{"chunks":[')).toBe(true)
    expect(written.endsWith(',"version":1}')).toBe(true)
  })

  it('gives the same bytes and CID whatever the key and file order', () => {
    const manifest = sampleManifest()
    const shuffled = reverseKeys({ ...manifest, files: [...manifest.files].reverse() }) as Manifest
    expect(Object.keys(shuffled)).not.toEqual(Object.keys(manifest))
    const a = encodeManifest(manifest)
    const b = encodeManifest(shuffled)
    expect(text(b.bytes)).toBe(text(a.bytes))
    expect(b.cid).toBe(a.cid)
  })

  it('leaves out undefined fields', () => {
    const manifest = sampleManifest()
    const withUndefined: Manifest = { ...manifest, files: manifest.files.map(file => ({ ...file, tensors: file.tensors ?? undefined })) }
    expect(encodeManifest(withUndefined).cid).toBe(encodeManifest(manifest).cid)
    expect(text(encodeManifest(withUndefined).bytes)).not.toContain('undefined')
  })

  it('sorts paths by code point, the order of their UTF-8 bytes', () => {
    const manifest = sampleManifest()
    const paths = ['z', 'a', 'B', '\u{1F600}.bin', '\uFF21.bin', 'ä']
    const files = paths.map(path => ({ path, size: 0, mode: 0o644, chunks: [] }))
    const decoded = decodeManifest(encodeManifest({ ...manifest, files }).bytes)
    const utf8Order = [...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    expect(decoded.files.map(f => f.path)).toEqual(utf8Order)
  })

  it('derives the CID as CIDv1, json codec, sha2-256 of the bytes', async () => {
    const { bytes, cid } = encodeManifest(sampleManifest())
    const independent = CID.create(1, json.code, await sha256.digest(bytes))
    expect(cid).toBe(independent.toString())
    expect(manifestCid(bytes)).toBe(cid)
    expect(JSON_CODEC).toBe(0x0200)
    expect(isManifestCid(cid)).toBe(true)
  })

  it('validates before encoding', () => {
    const manifest = sampleManifest()
    const bad = { ...manifest, files: [{ ...manifest.files[1]!, path: '/etc/passwd' }] }
    expect(() => encodeManifest(bad)).toThrow(InvalidManifestError)
    expect(() => encodeManifest(bad)).toThrow('files[0].path "/etc/passwd": must be relative, not start with "/"')
  })
})

describe('canonicalManifest', () => {
  it('gives encodeManifest\'s bytes and CID, and the copy decoding them gives, in key order too', () => {
    const manifest = reverseKeys(sampleManifest()) as Manifest
    const { bytes, cid, manifest: copy } = canonicalManifest(manifest)
    expect({ bytes, cid }).toEqual(encodeManifest(manifest))
    const decoded = decodeManifest(bytes, { expectedCid: cid })
    expect(copy).toEqual(decoded)
    expect(JSON.stringify(copy)).toBe(text(bytes))
    expect(copy).not.toBe(manifest)
  })

  it('validates as encodeManifest does', () => {
    const manifest = sampleManifest()
    const bad = { ...manifest, files: [{ ...manifest.files[0]!, size: -1 }] }
    expect(() => canonicalManifest(bad)).toThrow(InvalidManifestError)
  })
})

describe('decodeManifest', () => {
  it('checks the CID before it parses anything', () => {
    const garbage = new TextEncoder().encode('not json at all')
    const { cid } = encodeManifest(sampleManifest())
    expect(() => decodeManifest(garbage, { expectedCid: cid })).toThrow(ManifestCidMismatchError)
    expect(() => decodeManifest(garbage)).toThrow(InvalidManifestError)
  })

  it('names both CIDs when bytes were tampered with', () => {
    const { bytes, cid } = encodeManifest(sampleManifest())
    const tampered = new TextEncoder().encode(text(bytes).replace('"mode":420', '"mode":511'))
    let error: unknown
    try {
      decodeManifest(tampered, { expectedCid: cid })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ManifestCidMismatchError)
    const mismatch = error as ManifestCidMismatchError
    expect(mismatch.code).toBe('ERR_MANIFEST_CID_MISMATCH')
    expect(mismatch.expectedCid).toBe(cid)
    expect(mismatch.actualCid).toBe(manifestCid(tampered))
    expect(mismatch.message).toBe(`manifest bytes hash to ${manifestCid(tampered)}, not to the expected ${cid}`)
  })

  it('refuses an expected CID that cannot name a manifest', () => {
    const { bytes } = encodeManifest(sampleManifest())
    const rawCid = cidForBytes(bytes)
    expect(() => decodeManifest(bytes, { expectedCid: rawCid })).toThrow(InvalidManifestCidError)
    expect(() => decodeManifest(bytes, { expectedCid: rawCid })).toThrow(/codec 0x55, expected 0x200/)
    expect(() => decodeManifest(bytes, { expectedCid: 'latest' })).toThrow(InvalidManifestCidError)
  })

  it('accepts valid manifests in other spellings when their bytes match the CID', () => {
    const manifest = sampleManifest()
    const pretty = new TextEncoder().encode(JSON.stringify(manifest, null, 2))
    const decoded = decodeManifest(pretty, { expectedCid: manifestCid(pretty) })
    expect(decoded).toEqual(manifest)
    expect(manifestCid(pretty)).not.toBe(encodeManifest(manifest).cid)
  })

  it('accepts the expected CID in another multibase', () => {
    const { bytes, cid } = encodeManifest(sampleManifest())
    const base58 = CID.parse(cid).toString(base58btc)
    expect(base58).not.toBe(cid)
    expect(decodeManifest(bytes, { expectedCid: base58 })).toEqual(decodeManifest(bytes))
    expect(parseManifestCid(base58)).toBe(cid)
  })

  it('refuses bytes over the size limit before hashing them', () => {
    const huge = new Uint8Array(MANIFEST_LIMITS.maxManifestBytes + 1)
    expect(() => decodeManifest(huge, { expectedCid: encodeManifest(sampleManifest()).cid })).toThrow(`invalid manifest: ${MANIFEST_LIMITS.maxManifestBytes + 1} bytes; the limit is ${MANIFEST_LIMITS.maxManifestBytes} (256 MiB)`)
  })
})

describe('helpers', () => {
  it('totalBytes sums file sizes', () => {
    const manifest = sampleManifest()
    expect(totalBytes(manifest)).toBe(2 * MiB + 300 + 120 + 3000 + 0)
    expect(totalBytes({ ...manifest, files: [] })).toBe(0)
  })

  it('isManifestCid tells manifest CIDs from names and chunk CIDs', () => {
    const { cid } = encodeManifest(sampleManifest())
    expect(isManifestCid(cid)).toBe(true)
    expect(isManifestCid(cidForBytes(new Uint8Array([1])))).toBe(false)
    expect(isManifestCid('meta/llama-3-70b')).toBe(false)
    expect(isManifestCid('llama')).toBe(false)
    expect(isManifestCid('')).toBe(false)
    expect(isManifestCid('QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG')).toBe(false)
  })
})

describe('metadata (version 2)', () => {
  it('round-trips, is part of the CID, and leaves a manifest without metadata at version 1 with its CID', () => {
    const plain = sampleManifest()
    const withMetadata: Manifest = { ...sampleManifest(), version: 2, metadata: { 'huggingface.revision': 'a'.repeat(40), 'huggingface.repo': 'org/name' } }
    const a = encodeManifest(plain)
    const b = encodeManifest(withMetadata)
    expect(b.cid).not.toBe(a.cid)
    const decoded = decodeManifest(b.bytes, { expectedCid: b.cid })
    expect(decoded.version).toBe(2)
    expect(decoded.metadata).toEqual(withMetadata.metadata)
    expect(decoded.files).toEqual(decodeManifest(a.bytes).files)
    // keys in canonical order, whatever order they were given in
    const text = new TextDecoder().decode(b.bytes)
    expect(text.indexOf('huggingface.repo')).toBeLessThan(text.indexOf('huggingface.revision'))
    expect(text).toContain('"version":2')
    expect(new TextDecoder().decode(a.bytes)).not.toContain('metadata')
    expect(encodeManifest({ ...withMetadata, metadata: { 'huggingface.repo': 'org/name', 'huggingface.revision': 'a'.repeat(40) } }).cid).toBe(b.cid)
  })
})
