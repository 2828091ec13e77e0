/**
 * Manifest bytes and CIDs.
 *
 * A manifest's CID is the CIDv1 (json codec 0x0200, sha2-256) of its canonical bytes: JSON with
 * no whitespace, object keys sorted by code point, fields that are undefined left out, and files
 * sorted by path (code point order, which is also UTF-8 byte order, so any language can
 * reproduce it). Chunks and tensors keep their file order, which validation already requires.
 * The same content thus always gets the same CID, whoever wrote it.
 *
 * Decoding is lenient about form and strict about content: bytes that hash to the expected CID
 * are accepted in any key order or spacing, but never before the hash is checked and never
 * without full validation.
 */

import * as json from 'multiformats/codecs/json'
import { InvalidManifestError, type CidString, type Manifest } from '@swarm/interface'
import { cidForBytes, parseChunkCid, verifyChunk } from '@swarm/chunker'
import { MANIFEST_LIMITS } from './constants.js'
import { InvalidManifestCidError, ManifestCidMismatchError } from './errors.js'
import { validateManifest } from './schema.js'

/** The multicodec of manifest CIDs (json, 0x0200). */
export const JSON_CODEC = json.code

export interface EncodedManifest {
  bytes: Uint8Array
  cid: CidString
}

export interface DecodeManifestOptions {
  /** the CID the bytes were fetched under; they must hash to it */
  expectedCid?: CidString
}

/** Orders strings by Unicode code point, i.e. by their UTF-8 bytes. */
export function compareCodePoints (a: string, b: string): number {
  const length = Math.min(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i)
    const y = b.charCodeAt(i)
    if (x === y) continue
    // Code units order code points except where a surrogate (a code point above U+FFFF) meets U+E000–U+FFFF.
    const xSurrogate = x >= 0xd800 && x <= 0xdfff
    const ySurrogate = y >= 0xd800 && y <= 0xdfff
    if (xSurrogate !== ySurrogate) return xSurrogate ? 1 : -1
    return x - y
  }
  return a.length - b.length
}

/** Sorted keys per object shape: manifests repeat a few shapes millions of times. */
const sortedKeysByShape = new Map<string, string[]>()

function sortedKeys (keys: string[]): string[] {
  const shape = keys.join('\u0000')
  let sorted = sortedKeysByShape.get(shape)
  if (sorted === undefined) {
    sorted = [...keys].sort(compareCodePoints)
    if (sortedKeysByShape.size < 1024) sortedKeysByShape.set(shape, sorted)
  }
  return sorted
}

/** Keys that JavaScript objects list first, in numeric order, whatever order they were added in. */
const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/

/**
 * A copy of `value` whose objects hold their keys in canonical order, for the native
 * JSON.stringify to write (several times faster than writing JSON by hand, and far less garbage).
 * Objects list integer-like keys first whatever the insertion order, so those are refused here;
 * no manifest field has such a name.
 */
function canonicalCopy (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(canonicalCopy)
  if (value === null || typeof value !== 'object') return value
  const record = value as Record<string, unknown>
  const copy: Record<string, unknown> = {}
  for (const key of sortedKeys(Object.keys(record))) {
    if (ARRAY_INDEX.test(key)) throw new TypeError(`cannot write key ${JSON.stringify(key)} in canonical order`)
    const item = record[key]
    if (item !== undefined) copy[key] = canonicalCopy(item)
  }
  return copy
}

/** Validates `manifest`, then returns its canonical bytes and their CID. */
export function encodeManifest (manifest: Manifest): EncodedManifest {
  const { bytes, cid } = encodeCanonical(manifest)
  return { bytes, cid }
}

/**
 * Validates `manifest` once and returns its canonical bytes, their CID, and a copy of it that is
 * exactly what those bytes say (the form a store keeps). The copy is parsed from the canonical
 * text this function just wrote from the validated manifest, so it is not validated again: a
 * holder that encoded and then decoded its own bytes paid for the schema twice.
 */
export function canonicalManifest (manifest: Manifest): EncodedManifest & { manifest: Manifest } {
  const { bytes, cid, text } = encodeCanonical(manifest)
  return { bytes, cid, manifest: JSON.parse(text) as Manifest }
}

function encodeCanonical (manifest: Manifest): EncodedManifest & { text: string } {
  const valid = validateManifest(manifest)
  const sorted: Manifest = { ...valid, files: [...valid.files].sort((a, b) => compareCodePoints(a.path, b.path)) }
  const text = JSON.stringify(canonicalCopy(sorted))
  const bytes = new TextEncoder().encode(text)
  if (bytes.length > MANIFEST_LIMITS.maxManifestBytes) {
    throw new InvalidManifestError(`invalid manifest: it encodes to ${bytes.length} bytes; the limit is ${MANIFEST_LIMITS.maxManifestBytes} (256 MiB)`)
  }
  return { bytes, cid: manifestCid(bytes), text }
}

/**
 * Parses and validates manifest bytes. With `expectedCid`, the bytes are checked against it
 * before anything reads them.
 */
export function decodeManifest (bytes: Uint8Array, options: DecodeManifestOptions = {}): Manifest {
  const expectedCid = options.expectedCid === undefined ? undefined : parseManifestCid(options.expectedCid)
  if (bytes.length > MANIFEST_LIMITS.maxManifestBytes) {
    throw new InvalidManifestError(`invalid manifest: ${bytes.length} bytes; the limit is ${MANIFEST_LIMITS.maxManifestBytes} (256 MiB)`)
  }
  if (expectedCid !== undefined && !verifyChunk(expectedCid, bytes, JSON_CODEC)) {
    throw new ManifestCidMismatchError(expectedCid, manifestCid(bytes))
  }
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes)
  } catch {
    throw new InvalidManifestError('invalid manifest: not valid UTF-8')
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new InvalidManifestError(`invalid manifest: not valid JSON (${(err as Error).message})`)
  }
  return validateManifest(value)
}

/** The CID of manifest bytes as they are (CIDv1, json codec, sha2-256). */
export function manifestCid (bytes: Uint8Array): CidString {
  return cidForBytes(bytes, JSON_CODEC)
}

/**
 * Checks that `text` is a manifest CID (CIDv1, json codec, sha2-256) in any multibase and
 * returns it in the canonical base32 form. Throws InvalidManifestCidError otherwise.
 */
export function parseManifestCid (text: string): CidString {
  try {
    return parseChunkCid(text, JSON_CODEC).toString()
  } catch (err) {
    throw new InvalidManifestCidError(`not a manifest CID (CIDv1, json codec, sha2-256): ${(err as Error).message}`)
  }
}

/**
 * Whether `text` is a manifest CID rather than a model name. Check this before `parseRef`:
 * a base32 CID also looks like a valid name.
 */
export function isManifestCid (text: string): boolean {
  if (typeof text !== 'string') return false
  try {
    parseChunkCid(text, JSON_CODEC)
    return true
  } catch {
    return false
  }
}

/** Bytes of all the manifest's files. */
export function totalBytes (manifest: Manifest): number {
  return manifest.files.reduce((sum, file) => sum + file.size, 0)
}
