import { describe, expect, it } from 'vitest'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { base58btc } from 'multiformats/bases/base58'
import { sha512 } from 'multiformats/hashes/sha2'
import { identity } from 'multiformats/hashes/identity'
import { InvalidManifestError, type FileEntry, type Manifest } from '@swarm/interface'
import { cidForBytes } from '@swarm/chunker'
import { decodeManifest, JSON_CODEC, MANIFEST_LIMITS, validateManifest } from '../src/index.js'
import { MiB, sampleManifest, someCid } from './fixtures.js'

/** The error decoding `value` (as JSON bytes) throws; fails the test if it does not throw. */
function rejection (value: unknown): InvalidManifestError {
  const bytes = typeof value === 'string' || value instanceof Uint8Array
    ? (typeof value === 'string' ? new TextEncoder().encode(value) : value)
    : new TextEncoder().encode(JSON.stringify(value))
  try {
    decodeManifest(bytes)
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidManifestError)
    expect((err as InvalidManifestError).code).toBe('ERR_INVALID_MANIFEST')
    return err as InvalidManifestError
  }
  throw new Error('decodeManifest accepted it')
}

/** The sample manifest changed by `change`, as a plain object (it may not fit the type any more). */
function changed (change: (manifest: Manifest & Record<string, unknown>, files: Array<FileEntry & Record<string, unknown>>) => void): unknown {
  const manifest = structuredClone(sampleManifest()) as Manifest & Record<string, unknown>
  change(manifest, manifest.files as Array<FileEntry & Record<string, unknown>>)
  return manifest
}

function expectRejected (value: unknown, message: string): void {
  const error = rejection(value)
  expect(error.message.replace(/ \(and \d+ more problems?\)$/, '')).toBe(`invalid manifest: ${message}`)
}

describe('the sample manifest', () => {
  it('is valid, so each case below fails for its own reason', () => {
    const manifest = sampleManifest()
    expect(validateManifest(manifest)).toEqual(manifest)
    expect(decodeManifest(new TextEncoder().encode(JSON.stringify(manifest)))).toEqual(manifest)
  })
})

describe('decodeManifest rejects', () => {
  it('bytes that are not JSON', () => {
    expect(rejection('{"version":1,').message).toMatch(/^invalid manifest: not valid JSON \(.+\)$/)
  })

  it('bytes that are not UTF-8', () => {
    expectRejected(new Uint8Array([0x7b, 0xff, 0x7d]), 'not valid UTF-8')
  })

  it('JSON that is not an object', () => {
    expectRejected('[1]', 'must be a JSON object, got an array')
    expectRejected('null', 'must be a JSON object, got null')
    expectRejected('"manifest"', 'must be a JSON object, got string')
  })

  it('unsupported or missing versions, naming the supported ones', () => {
    expectRejected(changed(m => { (m as Record<string, unknown>).version = 4 }), 'version 4 is not supported (supported: 1, 2, 3)')
    expectRejected(changed(m => { (m as Record<string, unknown>).version = '1' }), 'version "1" is not supported (supported: 1, 2, 3)')
    expectRejected(changed(m => { delete (m as Partial<Manifest>).version }), 'no version field (supported: 1, 2, 3)')
  })

  it('metadata outside version 2, version 2 without metadata, and metadata that is not short named strings', () => {
    expectRejected(changed(m => { m.metadata = { 'huggingface.revision': 'abc' } }), 'metadata: needs version 2; version 1 manifests carry none')
    expectRejected(changed(m => { m.version = 2 }), 'version 2: 2 carries metadata; a manifest without any is version 1')
    expectRejected(changed(m => { m.version = 2; m.metadata = {} }), 'version 2: 2 carries metadata; a manifest without any is version 1')
    expectRejected(changed(m => { m.version = 2; m.metadata = { Revision: 'abc' } }), 'metadata.Revision: keys are lowercase dotted names such as huggingface.revision')
    expectRejected(changed(m => { m.version = 2; m.metadata = { '0': 'abc' } }), 'metadata.0: keys are lowercase dotted names such as huggingface.revision')
    expectRejected(changed(m => { m.version = 2; (m as Record<string, unknown>).metadata = { 'huggingface.revision': 7 } }), 'metadata.huggingface.revision 7: must be a string')
    expectRejected(changed(m => { m.version = 2; m.metadata = { a: 'x'.repeat(1025) } }), `metadata.a "${'x'.repeat(1025)}": values are at most 1024 characters`)
    expectRejected(changed(m => { m.version = 2; m.metadata = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }), 'metadata: holds more than 64 entries')
  })

  it('absolute paths', () => {
    expectRejected(changed((_, f) => { f[1]!.path = '/config.json' }), 'files[1].path "/config.json": must be relative, not start with "/"')
  })

  it('".." segments', () => {
    expectRejected(changed((_, f) => { f[1]!.path = '../x' }), 'files[1].path "../x": must not contain ".."')
    expectRejected(changed((_, f) => { f[2]!.path = 'tokenizer/../../etc/passwd' }), 'files[2].path "tokenizer/../../etc/passwd": must not contain ".."')
    expectRejected(changed((_, f) => { f[1]!.path = '..' }), 'files[1].path "..": must not contain ".."')
  })

  it('"." segments', () => {
    expectRejected(changed((_, f) => { f[1]!.path = './config.json' }), 'files[1].path "./config.json": must not contain "." segments')
    expectRejected(changed((_, f) => { f[1]!.path = 'a/.' }), 'files[1].path "a/.": must not contain "." segments')
  })

  it('empty paths and empty segments', () => {
    expectRejected(changed((_, f) => { f[1]!.path = '' }), 'files[1].path "": must not be empty')
    expectRejected(changed((_, f) => { f[1]!.path = 'a//b' }), 'files[1].path "a//b": must not contain empty segments (a doubled or trailing "/")')
    expectRejected(changed((_, f) => { f[1]!.path = 'dir/' }), 'files[1].path "dir/": must not contain empty segments (a doubled or trailing "/")')
  })

  it('duplicate paths', () => {
    expectRejected(changed((_, f) => { f[3]!.path = 'config.json' }), 'files[3].path "config.json": duplicates files[1].path')
  })

  it('a path that is both a file and a directory', () => {
    expectRejected(changed((_, f) => { f[3]!.path = 'tokenizer' }), 'files[3].path "tokenizer": is both a file and a directory (files[2].path "tokenizer/vocab.txt" lies inside it)')
    expectRejected(changed((_, f) => { f[3]!.path = 'config.json/deeper/x' }), 'files[1].path "config.json": is both a file and a directory (files[3].path "config.json/deeper/x" lies inside it)')
  })

  it('paths that collide where names are compared without case or Unicode normalization', () => {
    expectRejected(changed((_, f) => { f[3]!.path = 'Config.JSON' }), 'files[3].path "Config.JSON": collides with files[1].path "config.json" where names are compared without case or Unicode normalization (NFC)')
    const nfc = 'caf\u00e9.bin'
    const nfd = 'cafe\u0301.bin'
    expectRejected(changed((_, f) => { f[1]!.path = nfc; f[3]!.path = nfd }), `files[3].path ${JSON.stringify(nfd)}: collides with files[1].path ${JSON.stringify(nfc)} where names are compared without case or Unicode normalization (NFC)`)
    expectRejected(changed((_, f) => { f[3]!.path = 'Tokenizer' }), 'files[3].path "Tokenizer": is both a file and a directory (files[2].path "tokenizer/vocab.txt" lies inside it)')
  })

  it('keeps paths that only look alike', () => {
    const manifest = changed((_, f) => { f[3]!.path = 'config.json.bak' })
    expect(() => decodeManifest(new TextEncoder().encode(JSON.stringify(manifest)))).not.toThrow()
  })

  it('NUL bytes in a path', () => {
    expectRejected(changed((_, f) => { f[1]!.path = 'con\0fig.json' }), 'files[1].path "con\\u0000fig.json": must not contain a NUL byte')
  })

  it('backslashes in a path', () => {
    expectRejected(changed((_, f) => { f[1]!.path = 'dir\\config.json' }), 'files[1].path "dir\\\\config.json": must not contain a backslash; directories are separated by "/"')
    expectRejected(changed((_, f) => { f[1]!.path = '..\\..\\x' }), 'files[1].path "..\\\\..\\\\x": must not contain a backslash; directories are separated by "/"')
  })

  it('paths that are not valid Unicode or too long', () => {
    expectRejected(changed((_, f) => { f[1]!.path = 'a\uD800b' }), 'files[1].path "a\\ud800b": must be valid Unicode (it holds a lone surrogate)')
    const long = Array.from({ length: 21 }, () => 'x'.repeat(200)).join('/')
    expectRejected(changed((_, f) => { f[1]!.path = long }), `files[1].path ${JSON.stringify(long)}: is 4220 bytes long; the limit is 4096`)
    const segment = 'é'.repeat(128)
    expectRejected(changed((_, f) => { f[1]!.path = segment }), `files[1].path ${JSON.stringify(segment)}: has a 256-byte segment; the limit is 255`)
  })

  it('paths that are not strings or missing fields', () => {
    expectRejected(changed((_, f) => { (f[1] as Record<string, unknown>).path = 7 }), 'files[1].path 7: must be a string')
    expectRejected(changed((_, f) => { delete (f[1] as Partial<FileEntry>).mode }), 'files[1].mode: is required')
    expectRejected(changed((m) => { (m as Record<string, unknown>).files = {} }), 'files: must be an array')
    expectRejected(changed((m) => { (m.files as unknown[])[2] = 'x' }), 'files[2] "x": must be an object')
  })

  it('unknown fields', () => {
    expectRejected(changed((_, f) => { f[1]!.owner = 'root' }), 'files[1]: unknown field "owner"')
    expectRejected(changed((m) => { m.name = 'llama'; m.tag = 'latest' }), 'unknown fields "name", "tag"')
  })

  it('chunks that leave a gap', () => {
    expectRejected(changed((_, f) => { f[0]!.chunks[1]!.offset += 1; f[0]!.chunks[1]!.size -= 1 }), `files[0].chunks[1].offset ${MiB + 1}: leaves a gap after the previous chunk, which ends at ${MiB}`)
  })

  it('chunks that overlap', () => {
    expectRejected(changed((_, f) => { f[0]!.chunks[2]!.offset -= 1; f[0]!.chunks[2]!.size += 1 }), `files[0].chunks[2].offset ${2 * MiB - 1}: overlaps the previous chunk, which ends at ${2 * MiB}`)
  })

  it('chunks that do not start at 0', () => {
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.offset = 1 }), 'files[1].chunks[0].offset 1: the first chunk must start at 0')
  })

  it('chunks that do not end at the file size', () => {
    expectRejected(changed((_, f) => { f[1]!.size = 200 }), 'files[1].chunks: end at 120, short of the file\'s 200 bytes')
    expectRejected(changed((_, f) => { f[1]!.size = 100 }), 'files[1].chunks[0]: [0, 120) runs past the end of the 100-byte file')
    expectRejected(changed((_, f) => { f[2]!.chunks = [] }), 'files[2].chunks: are missing: the file has 3000 bytes')
    expectRejected(changed((_, f) => { f[3]!.chunks = [{ cid: someCid, offset: 0, size: 3 }] }), 'files[3].chunks[0]: [0, 3) runs past the end of the 0-byte file')
  })

  it('zero-size chunks', () => {
    expectRejected(changed((_, f) => { f[1]!.chunks.push({ cid: someCid, offset: 120, size: 0 }) }), 'files[1].chunks[1].size 0: chunks must not be empty')
  })

  it('chunks over the size limit or the manifest\'s chunk size', () => {
    const overLimit = MANIFEST_LIMITS.maxChunkSize + 1
    expectRejected(changed((m, f) => {
      m.chunkSize = MANIFEST_LIMITS.maxChunkSize
      f[1]!.size = overLimit
      f[1]!.chunks = [{ cid: someCid, offset: 0, size: overLimit }]
    }), `files[1].chunks[0].size ${overLimit}: exceeds the chunk size limit of 67108864 bytes (64 MiB)`)
    expectRejected(changed((_, f) => {
      f[1]!.size = MiB + 1
      f[1]!.chunks = [{ cid: someCid, offset: 0, size: MiB + 1 }]
    }), `files[1].chunks[0].size ${MiB + 1}: exceeds the manifest's chunkSize ${MiB}`)
    expectRejected(changed((m) => { m.chunkSize = overLimit }), `chunkSize ${overLimit}: exceeds the chunk size limit of 67108864 bytes (64 MiB)`)
    expectRejected(changed((m) => { m.chunkSize = 0 }), 'chunkSize 0: must be at least 1')
  })

  it('files over the size limit', () => {
    expectRejected(changed((_, f) => { f[3]!.size = 2 ** 50 + 1 }), `files[3].size ${2 ** 50 + 1}: exceeds the file size limit of 2^50 bytes`)
    expectRejected(changed((_, f) => { f[3]!.size = 2 ** 60 }), `files[3].size ${2 ** 60}: exceeds the file size limit of 2^50 bytes`)
  })

  it('too many files', () => {
    const files = Array.from({ length: MANIFEST_LIMITS.maxFiles + 1 }, (_, i) => ({ path: `f${i}`, size: 0, mode: 0o644, chunks: [] }))
    expectRejected({ version: 1, chunkSize: MiB, files }, 'files: holds 100001 files; the limit is 100000')
    expect(() => validateManifest({ version: 1, chunkSize: MiB, files: files.slice(1) })).not.toThrow()
  })

  it('bad CID strings', async () => {
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = 'not-a-cid' }), 'files[1].chunks[0].cid: invalid CID "not-a-cid": To parse non base32, base36 or base58btc encoded CID multibase decoder must be provided')
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' }), 'files[1].chunks[0].cid: invalid CID QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG: version 0, expected 1')
    const jsonCid = cidForBytes(new Uint8Array([1]), JSON_CODEC)
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = jsonCid }), `files[1].chunks[0].cid: invalid CID ${jsonCid}: codec 0x200, expected 0x55`)
    const weakCid = CID.createV1(raw.code, identity.digest(new Uint8Array([1, 2]))).toString()
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = weakCid }), `files[1].chunks[0].cid: invalid CID ${weakCid}: hash 0x0, expected sha2-256`)
    const sha512Cid = CID.createV1(raw.code, await sha512.digest(new Uint8Array([1]))).toString()
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = sha512Cid }), `files[1].chunks[0].cid: invalid CID ${sha512Cid}: hash 0x13, expected sha2-256`)
    expectRejected(changed((_, f) => { (f[1]!.chunks[0] as unknown as Record<string, unknown>).cid = 5 }), 'files[1].chunks[0].cid 5: must be a string')
    const canonical = sampleManifest().files[1]!.chunks[0]!.cid
    const base58 = CID.parse(canonical).toString(base58btc)
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.cid = base58 }), `files[1].chunks[0].cid: invalid CID ${base58}: write it in its canonical base32 form, ${canonical}`)
  })

  it('tensors outside the file', () => {
    expectRejected(changed((_, f) => { f[0]!.tensors![1]!.end = f[0]!.size + 1 }), `files[0].tensors[1].end ${2 * MiB + 301}: lies outside the ${2 * MiB + 300}-byte file`)
    expectRejected(changed((_, f) => { f[3]!.tensors = [{ name: 'x', dtype: 'U8', shape: [1], start: 0, end: 1 }] }), 'files[3].tensors[0].end 1: lies outside the 0-byte file')
  })

  it('tensors that end before they start, overlap, or repeat a name', () => {
    expectRejected(changed((_, f) => { f[0]!.tensors![0]!.end = 10 }), 'files[0].tensors[0].end 10: is before the tensor\'s start 16')
    expectRejected(changed((_, f) => { f[0]!.tensors![1]!.start = 30 }), 'files[0].tensors[1].start 30: overlaps or precedes tensors[0], which ends at 32; tensors must be in file order')
    expectRejected(changed((_, f) => { f[0]!.tensors![1]!.name = 'w' }), 'files[0].tensors[1].name "w": duplicates tensors[0].name')
    expectRejected(changed((_, f) => { f[0]!.tensors![1]!.shape = [-3] }), 'files[0].tensors[1].shape[0] -3: must not be negative')
  })

  it('negative sizes and offsets', () => {
    expectRejected(changed((_, f) => { f[1]!.size = -1 }), 'files[1].size -1: must not be negative')
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.offset = -5 }), 'files[1].chunks[0].offset -5: must not be negative')
    expectRejected(changed((_, f) => { f[0]!.tensors![0]!.start = -16 }), 'files[0].tensors[0].start -16: must not be negative')
  })

  it('non-integer sizes and offsets', () => {
    expectRejected(changed((_, f) => { f[1]!.size = 120.5 }), 'files[1].size 120.5: must be an integer')
    expectRejected(changed((_, f) => { f[1]!.chunks[0]!.size = 119.5 }), 'files[1].chunks[0].size 119.5: must be an integer')
    expectRejected(changed((_, f) => { f[0]!.chunks[1]!.offset = MiB + 0.25 }), `files[0].chunks[1].offset ${MiB + 0.25}: must be an integer`)
    expectRejected(changed((_, f) => { f[0]!.tensors![0]!.end = 31.5 }), 'files[0].tensors[0].end 31.5: must be an integer')
    expectRejected(changed((_, f) => { (f[1] as Record<string, unknown>).size = '120' }), 'files[1].size "120": must be a number')
  })

  it('modes outside 0..0o7777', () => {
    expectRejected(changed((_, f) => { f[1]!.mode = 0o10000 }), 'files[1].mode 4096: must be permission bits, 0 to 0o7777')
    expectRejected(changed((_, f) => { f[1]!.mode = -1 }), 'files[1].mode -1: must not be negative')
    expectRejected(changed((_, f) => { f[1]!.mode = 0.5 }), 'files[1].mode 0.5: must be an integer')
    expect(() => validateManifest(changed((_, f) => { f[1]!.mode = 0o7777 }))).not.toThrow()
    expect(() => validateManifest(changed((_, f) => { f[1]!.mode = 0 }))).not.toThrow()
  })

  it('reports how many other problems there are', () => {
    const error = rejection(changed((_, f) => { f[1]!.path = '/a'; f[2]!.mode = -1; f[3]!.size = -1 }))
    expect(error.message).toBe('invalid manifest: files[2].mode -1: must not be negative (and 1 more problem)')
  })
})

describe('validateManifest', () => {
  it('rejects objects built in memory with NaN or Infinity', () => {
    expect(() => validateManifest(changed((_, f) => { f[1]!.size = Number.NaN }))).toThrow('invalid manifest: files[1].size NaN: must be a number')
    expect(() => validateManifest(changed((_, f) => { f[1]!.size = Number.POSITIVE_INFINITY }))).toThrow(/invalid manifest: files\[1\]\.size Infinity: /)
  })

  it('accepts an empty model', () => {
    expect(validateManifest({ version: 1, chunkSize: MiB, files: [] })).toEqual({ version: 1, chunkSize: MiB, files: [] })
  })
})
