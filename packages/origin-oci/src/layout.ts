/**
 * Where a model's files sit in an artifact's layers, and the chunk manifest derived from them.
 *
 * A layer is one of:
 * - a raw file (ModelPack `….raw`, or any layer with no archive suffix: `application/octet-stream`
 *   and the like) whose path is in `org.cncf.model.filepath` (`org.cnai.model.filepath`, or
 *   `org.opencontainers.image.title`): the file is the whole blob;
 * - an uncompressed tar (ModelPack `….tar`, as `modctl` writes by default): each regular file in
 *   it is a byte range of the blob, found by reading the tar headers with ranged GETs (ustar, pax
 *   and GNU long names).
 * Compressed layers (`+gzip`, `+zstd`) cannot be read by range and are refused, as are links
 * and device files inside a tar, and two layers for one path.
 *
 * Deriving reads each layer once, start to end, and hashes it twice over at the same time: the
 * whole blob against its digest (a tampered layer is refused before any manifest is built from
 * it), and each chunk of the plan `swarm push` would make (tensor-aligned for safetensors, the
 * same target size). Every node that derives a model's manifest with the same chunk size gets the
 * same bytes and so the same CID. The file mode is ModelPack's file metadata where present, the
 * tar header's in a tar, else 0644.
 */

import { createHash } from 'node:crypto'
import { parseSafetensorsHeader, planChunks, safetensorsHeaderLength } from '@swarm/chunker'
import { DigestMismatchError } from '@swarm/interface'
import { compareCodePoints, encodeManifest, pathProblem } from '@swarm/manifest'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import pLimit from 'p-limit'
import { DERIVE_CONCURRENCY, FILE_METADATA_ANNOTATIONS, FILEPATH_ANNOTATIONS, MODELPACK_PREFIXES } from './constants.js'
import { UnsupportedArtifactError } from './errors.js'
import type { Descriptor } from './client.js'
import type { ChunkRef, FileEntry, Manifest, TensorInfo } from '@swarm/interface'
import type { PlannedChunk } from '@swarm/chunker'

/** Reads a byte range of a layer blob. */
export type ReadRange = (layer: Descriptor, offset: number, length: number) => Promise<Uint8Array>
/** Streams a whole layer blob; `onStart` is called again if a retry starts it over. */
export type StreamLayer = (layer: Descriptor, onStart: () => void, onData: (bytes: Buffer) => void) => Promise<void>

export interface LayerFile {
  path: string
  size: number
  mode: number
  layer: Descriptor
  /** where the file's bytes start in the layer blob */
  dataOffset: number
}

export interface LayerLayout {
  descriptor: Descriptor
  kind: 'raw' | 'tar'
  files: LayerFile[]
}

const TAR_BLOCK = 512
const DEFAULT_MODE = 0o644

function filePathOf (layer: Descriptor): string | undefined {
  for (const key of FILEPATH_ANNOTATIONS) {
    const value = layer.annotations?.[key]
    if (value !== undefined && value !== '') return value
  }
  return undefined
}

function metadataMode (layer: Descriptor): number | undefined {
  for (const key of FILE_METADATA_ANNOTATIONS) {
    const text = layer.annotations?.[key]
    if (text === undefined) continue
    try {
      const mode = (JSON.parse(text) as { mode?: unknown }).mode
      if (typeof mode === 'number' && Number.isInteger(mode) && mode >= 0) return mode & 0o777
    } catch {}
  }
  return undefined
}

/** `./a/b` → `a/b`; refused when it could name anything outside the model. */
function cleanPath (path: string, where: string): string {
  const clean = path.replace(/^(?:\.\/)+/, '').replace(/\/+$/, '')
  const problem = pathProblem(clean)
  if (problem !== undefined) throw new UnsupportedArtifactError(`${where}: file path ${JSON.stringify(path)}: ${problem}`)
  return clean
}

function classify (layer: Descriptor, index: number): 'raw' | 'tar' {
  const type = layer.mediaType
  const where = `layer ${index} (${type}, ${layer.digest})`
  if (/\+(gzip|zstd)$|\.gzip$|\.zstd$/.test(type)) throw new UnsupportedArtifactError(`${where} is compressed; Swarm reads layers by byte range and needs them uncompressed (.raw or .tar)`)
  const modelpack = MODELPACK_PREFIXES.some(prefix => type.startsWith(prefix))
  if (modelpack && type.endsWith('.tar')) return 'tar'
  if (filePathOf(layer) === undefined) throw new UnsupportedArtifactError(`${where} names no file (annotations ${FILEPATH_ANNOTATIONS.join(', ')}); it is not a model file layer`)
  return 'raw'
}

/** Where every file of the artifact is, in path order. */
export async function layoutOf (layers: Descriptor[], readRange: ReadRange): Promise<LayerLayout[]> {
  const limit = pLimit(DERIVE_CONCURRENCY)
  const out = await Promise.all(layers.map(async (layer, index) => await limit(async (): Promise<LayerLayout> => {
    const kind = classify(layer, index)
    if (kind === 'raw') {
      const path = cleanPath(filePathOf(layer) as string, `layer ${index}`)
      return { descriptor: layer, kind, files: [{ path, size: layer.size, mode: metadataMode(layer) ?? DEFAULT_MODE, layer, dataOffset: 0 }] }
    }
    return { descriptor: layer, kind, files: await tarFiles(layer, index, readRange) }
  })))
  const seen = new Map<string, string>()
  for (const file of out.flatMap(l => l.files)) {
    const other = seen.get(file.path)
    if (other !== undefined) throw new UnsupportedArtifactError(`two layers hold ${file.path} (${other} and ${file.layer.digest})`)
    seen.set(file.path, file.layer.digest)
  }
  return out
}

function octal (bytes: Uint8Array, start: number, length: number): number {
  const field = bytes.subarray(start, start + length)
  // GNU base-256 for sizes past 8 GiB: the high bit of the first byte set
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = (field[0] ?? 0) & 0x7f
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0)
    return value
  }
  const text = new TextDecoder().decode(field).replace(/\0.*$/s, '').trim()
  return text === '' ? 0 : Number.parseInt(text, 8)
}

function text (bytes: Uint8Array, start: number, length: number): string {
  return new TextDecoder().decode(bytes.subarray(start, start + length)).replace(/\0.*$/s, '')
}

/** pax records: `<length> <key>=<value>\n` */
function paxRecords (bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {}
  const body = new TextDecoder().decode(bytes)
  let at = 0
  while (at < body.length) {
    const space = body.indexOf(' ', at)
    const length = Number(body.slice(at, space))
    if (space === -1 || !Number.isInteger(length) || length <= 0) break
    const record = body.slice(space + 1, at + length - 1)
    const equals = record.indexOf('=')
    if (equals > 0) out[record.slice(0, equals)] = record.slice(equals + 1)
    at += length
  }
  return out
}

/** The regular files of a tar layer, by walking its headers with ranged reads. */
async function tarFiles (layer: Descriptor, index: number, readRange: ReadRange): Promise<LayerFile[]> {
  const where = `layer ${index} (tar, ${layer.digest})`
  const files: LayerFile[] = []
  let at = 0
  let pending: { path?: string, size?: number } = {}
  while (at + TAR_BLOCK <= layer.size) {
    const block = await readRange(layer, at, TAR_BLOCK)
    if (block.every(b => b === 0)) break
    const typeflag = String.fromCharCode(block[156] ?? 0)
    let size = octal(block, 124, 12)
    if (pending.size !== undefined) size = pending.size
    const dataOffset = at + TAR_BLOCK
    if (dataOffset + size > layer.size) throw new UnsupportedArtifactError(`${where}: an entry runs past the end of the layer`)
    const next = dataOffset + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK
    if (typeflag === 'x' || typeflag === 'L') {
      const data = await readRange(layer, dataOffset, size)
      if (typeflag === 'L') pending = { ...pending, path: text(data, 0, data.byteLength) }
      else {
        const records = paxRecords(data)
        pending = {
          ...pending,
          ...(records.path !== undefined ? { path: records.path } : {}),
          ...(records.size !== undefined ? { size: Number(records.size) } : {})
        }
      }
      at = next
      continue
    }
    const prefix = text(block, 345, 155)
    const name = pending.path ?? (prefix !== '' && text(block, 257, 6) === 'ustar' ? `${prefix}/${text(block, 0, 100)}` : text(block, 0, 100))
    pending = {}
    if (typeflag === '0' || typeflag === '\0' || typeflag === '7') {
      files.push({ path: cleanPath(name, where), size, mode: octal(block, 100, 8) & 0o777, layer, dataOffset })
    } else if (typeflag !== '5' && typeflag !== 'g') {
      throw new UnsupportedArtifactError(`${where}: ${JSON.stringify(name)} is a link or special file (type ${JSON.stringify(typeflag)}); Swarm carries regular files only`)
    }
    at = next
  }
  if (files.length === 0) throw new UnsupportedArtifactError(`${where} holds no regular file`)
  return files
}

/** The chunk plan of one file, as `swarm push` makes it: tensor-aligned for safetensors. */
async function planFile (file: LayerFile, chunkSize: number, readRange: ReadRange): Promise<{ plan: PlannedChunk[], tensors?: TensorInfo[] }> {
  if (file.path.endsWith('.safetensors') && file.size >= 8) {
    const first8 = await readRange(file.layer, file.dataOffset, 8)
    try {
      const headerLength = safetensorsHeaderLength(first8)
      const prefix = await readRange(file.layer, file.dataOffset, headerLength)
      const layout = parseSafetensorsHeader(prefix, file.size)
      return { plan: planChunks({ size: file.size, chunkSize, layout }), tensors: layout.tensors }
    } catch (err) {
      throw new UnsupportedArtifactError(`${file.path} (layer ${file.layer.digest}): ${(err as Error).message}`)
    }
  }
  return { plan: planChunks({ size: file.size, chunkSize }) }
}

interface PlannedRange { start: number, end: number, fileIndex: number, chunk: PlannedChunk }

/**
 * The chunk manifest of an artifact: every layer streamed once, checked against its digest, and
 * cut as `swarm push` would cut its files.
 */
export async function deriveManifest (layouts: LayerLayout[], chunkSize: number, readRange: ReadRange, streamLayer: StreamLayer): Promise<{ manifest: Manifest, bytes: Uint8Array, cid: string }> {
  const limit = pLimit(DERIVE_CONCURRENCY)
  const entries = await Promise.all(layouts.map(async layout => await limit(async () => {
    const plans = await Promise.all(layout.files.map(async file => await planFile(file, chunkSize, readRange)))
    const ranges: PlannedRange[] = layout.files.flatMap((file, fileIndex) => (plans[fileIndex]?.plan ?? []).map(chunk => ({ start: file.dataOffset + chunk.offset, end: file.dataOffset + chunk.offset + chunk.size, fileIndex, chunk })))
    ranges.sort((a, b) => a.start - b.start)
    const cids = new Map<PlannedRange, string>()
    let whole = createHash('sha256')
    let at = 0
    let current = 0
    let hasher = createHash('sha256')
    await streamLayer(layout.descriptor, () => {
      whole = createHash('sha256')
      at = 0
      current = 0
      hasher = createHash('sha256')
      cids.clear()
    }, bytes => {
      whole.update(bytes)
      let from = 0
      while (from < bytes.byteLength) {
        const range = ranges[current]
        if (range === undefined) break
        const position = at + from
        if (position < range.start) {
          from = Math.min(bytes.byteLength, range.start - at)
          continue
        }
        const to = Math.min(bytes.byteLength, range.end - at)
        hasher.update(bytes.subarray(from, to))
        from = to
        if (at + to === range.end) {
          cids.set(range, CID.createV1(raw.code, Digest.create(sha256.code, hasher.digest())).toString())
          hasher = createHash('sha256')
          current++
        }
      }
      at += bytes.byteLength
    })
    const digest = `sha256:${whole.digest('hex')}`
    if (at !== layout.descriptor.size || digest !== layout.descriptor.digest) {
      throw new DigestMismatchError(layout.descriptor.digest, digest, `layer ${layout.descriptor.digest} (${layout.files.map(f => f.path).join(', ')}) does not match its digest: the registry sent ${at} bytes hashing to ${digest}`)
    }
    return layout.files.map((file, fileIndex): FileEntry => {
      const chunks: ChunkRef[] = ranges.filter(r => r.fileIndex === fileIndex).map(r => ({ cid: cids.get(r) as string, offset: r.chunk.offset, size: r.chunk.size }))
      const tensors = plans[fileIndex]?.tensors
      return { path: file.path, size: file.size, mode: file.mode, chunks, ...(tensors !== undefined ? { tensors } : {}) }
    })
  })))
  const files = entries.flat().sort((a, b) => compareCodePoints(a.path, b.path))
  const manifest: Manifest = { version: 1, chunkSize, files }
  const { bytes, cid } = encodeManifest(manifest)
  return { manifest, bytes, cid }
}

/**
 * Whether a chunk manifest someone published fits the artifact: the same paths with the same
 * sizes. Its chunks are still verified against their CIDs, and its files against the layers.
 */
export function fitProblem (manifest: Manifest, layouts: LayerLayout[]): string | undefined {
  const files = new Map(layouts.flatMap(l => l.files).map(f => [f.path, f]))
  if (files.size !== manifest.files.length) return `it lists ${manifest.files.length} files, the artifact holds ${files.size}`
  for (const entry of manifest.files) {
    const file = files.get(entry.path)
    if (file === undefined) return `it lists ${entry.path}, which no layer holds`
    if (file.size !== entry.size) return `it gives ${entry.path} ${entry.size} bytes, its layer ${file.size}`
  }
  return undefined
}
