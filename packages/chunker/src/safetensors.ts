/**
 * Reading and writing safetensors headers, without touching files.
 *
 * A safetensors file is an 8-byte little-endian length N, then N bytes of UTF-8 JSON mapping
 * tensor names to `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the first
 * byte after the header, end exclusive) plus an optional `__metadata__` map of strings, then the
 * tensor data. The header comes from files users hand us, so every field is checked with zod
 * before it shapes a chunk plan, and each fault is reported with the tensor it concerns.
 *
 * The parser is more lenient than the reference loader in one way: it accepts gaps between
 * tensors and trailing bytes (the planner still covers them); it is as strict about everything
 * that would make offsets lie (overlaps, offsets past the data, sizes that disagree with the
 * dtype and shape).
 */

import { z } from 'zod'
import type { TensorInfo } from '@swarm/interface'
import { MAX_SAFETENSORS_HEADER } from './constants.js'
import { IncompleteHeaderError, InvalidFileSizeError, InvalidSafetensorsError } from './errors.js'

/** Where a safetensors file's header ends and where each tensor's bytes lie (absolute offsets). */
export interface SafetensorsLayout {
  /** bytes of the length prefix plus the JSON header: tensor data starts here */
  headerSize: number
  /** sorted by `start` */
  tensors: TensorInfo[]
}

/** A tensor to lay out in a new safetensors file. */
export interface TensorSpec {
  name: string
  dtype: string
  shape: number[]
}

/** The encoded header of a safetensors file whose tensor data has yet to be written. */
export interface EncodedSafetensorsHeader {
  /** the length prefix and the padded JSON: the first `header.length` bytes of the file */
  header: Uint8Array
  /** where each tensor's bytes go, absolute, in the order given */
  tensors: TensorInfo[]
  /** total bytes of the file */
  size: number
}

/** Bytes per element of the dtypes whose sizes the format fixes. */
export const SAFETENSORS_DTYPE_SIZES: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8
})

const METADATA_KEY = '__metadata__'
const LENGTH_PREFIX_BYTES = 8

const tensorEntrySchema = z.object({
  dtype: z.string().min(1, 'dtype must be a non-empty string'),
  shape: z.array(z.int().min(0, 'shape dimensions must be non-negative integers')),
  data_offsets: z.tuple([
    z.int().min(0, 'data_offsets must be non-negative integers'),
    z.int().min(0, 'data_offsets must be non-negative integers')
  ])
})

const metadataSchema = z.record(z.string(), z.string({ error: '__metadata__ values must be strings' }), {
  error: '__metadata__ must be an object of strings'
})

function firstIssue (error: z.ZodError): string {
  const issue = error.issues[0]
  if (issue == null) return 'invalid'
  const where = issue.path.length > 0 ? `${issue.path.map(String).join('.')}: ` : ''
  return `${where}${issue.message}`
}

function checkFileSize (fileSize: number): void {
  if (!Number.isSafeInteger(fileSize) || fileSize < 0) {
    throw new InvalidFileSizeError(`file size must be a non-negative integer, got ${String(fileSize)}`)
  }
}

/**
 * Total bytes of a safetensors header (the 8-byte prefix plus N), read from the file's first
 * 8 bytes, so a caller can read exactly the header and nothing more. With `fileSize`, a length
 * running past the end of the file is refused here already.
 */
export function safetensorsHeaderLength (first8: Uint8Array, fileSize?: number): number {
  if (fileSize !== undefined) {
    checkFileSize(fileSize)
    if (fileSize < LENGTH_PREFIX_BYTES) {
      throw new InvalidSafetensorsError(`file is ${fileSize} bytes, too short for a safetensors header (at least ${LENGTH_PREFIX_BYTES})`)
    }
  }
  if (first8.length < LENGTH_PREFIX_BYTES) {
    throw new IncompleteHeaderError(`need the first ${LENGTH_PREFIX_BYTES} bytes to read the header length, got ${first8.length}`)
  }
  const n = new DataView(first8.buffer, first8.byteOffset, LENGTH_PREFIX_BYTES).getBigUint64(0, true)
  if (n > BigInt(MAX_SAFETENSORS_HEADER)) {
    throw new InvalidSafetensorsError(`header length ${n} exceeds the limit of ${MAX_SAFETENSORS_HEADER} bytes (100 MiB)`)
  }
  const headerSize = LENGTH_PREFIX_BYTES + Number(n)
  if (fileSize !== undefined && headerSize > fileSize) {
    throw new InvalidSafetensorsError(`header length ${n} runs past the end of the ${fileSize}-byte file`)
  }
  return headerSize
}

/**
 * Parses the header of a safetensors file of `fileSize` bytes from a prefix of it holding at
 * least `safetensorsHeaderLength(first8)` bytes. Tensors come back with absolute offsets,
 * sorted by start.
 */
export function parseSafetensorsHeader (prefix: Uint8Array, fileSize: number): SafetensorsLayout {
  const headerSize = safetensorsHeaderLength(prefix, fileSize)
  if (prefix.length < headerSize) {
    throw new IncompleteHeaderError(`the header needs ${headerSize} bytes (8 + ${headerSize - LENGTH_PREFIX_BYTES}), but only ${prefix.length} were given`)
  }
  const dataSize = fileSize - headerSize

  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(LENGTH_PREFIX_BYTES, headerSize))
  } catch {
    throw new InvalidSafetensorsError('header is not valid UTF-8')
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new InvalidSafetensorsError(`header is not valid JSON: ${(err as Error).message}`)
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new InvalidSafetensorsError(`header must be a JSON object, got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json}`)
  }

  const tensors: TensorInfo[] = []
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      const metadata = metadataSchema.safeParse(value)
      if (!metadata.success) throw new InvalidSafetensorsError(`header ${firstIssue(metadata.error)}`)
      continue
    }
    const parsed = tensorEntrySchema.safeParse(value)
    if (!parsed.success) throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: ${firstIssue(parsed.error)}`)
    const { dtype, shape, data_offsets: [begin, end] } = parsed.data
    if (end < begin) {
      throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: data_offsets [${begin}, ${end}] end before they begin`)
    }
    if (end > dataSize) {
      throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: data_offsets [${begin}, ${end}] reach past the data region, which holds ${dataSize} bytes`)
    }
    const elementSize = SAFETENSORS_DTYPE_SIZES[dtype]
    if (elementSize !== undefined) {
      const expected = shape.reduce((product, dim) => product * BigInt(dim), BigInt(elementSize))
      if (expected !== BigInt(end - begin)) {
        throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: ${dtype} ${JSON.stringify(shape)} needs ${expected} bytes, but data_offsets [${begin}, ${end}] span ${end - begin}`)
      }
    }
    tensors.push({ name, dtype, shape, start: headerSize + begin, end: headerSize + end })
  }

  tensors.sort(compareTensors)
  let previous: TensorInfo | undefined
  for (const tensor of tensors) {
    if (previous !== undefined && tensor.start < previous.end) {
      throw new InvalidSafetensorsError(`tensors ${JSON.stringify(previous.name)} [${previous.start - headerSize}, ${previous.end - headerSize}) and ${JSON.stringify(tensor.name)} [${tensor.start - headerSize}, ${tensor.end - headerSize}) overlap`)
    }
    if (previous === undefined || tensor.end >= previous.end) previous = tensor
  }
  return { headerSize, tensors }
}

/** By start, then end, then name: a total order, so equal layouts plan equal chunks. */
export function compareTensors (a: TensorInfo, b: TensorInfo): number {
  if (a.start !== b.start) return a.start - b.start
  if (a.end !== b.end) return a.end - b.end
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0
}

/**
 * Encodes the header of a safetensors file holding `tensors` in the order given, tightly
 * packed, as the reference writer does: compact JSON with `__metadata__` first, padded with
 * spaces to a multiple of 8 bytes so the data that follows stays aligned.
 */
export function encodeSafetensorsHeader (tensors: TensorSpec[], metadata?: Record<string, string>): EncodedSafetensorsHeader {
  const entries: string[] = []
  if (metadata !== undefined) {
    const parsed = metadataSchema.safeParse(metadata)
    if (!parsed.success) throw new InvalidSafetensorsError(firstIssue(parsed.error))
    entries.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`)
  }

  const names = new Set<string>()
  const placed: Array<{ spec: TensorSpec, begin: number, end: number }> = []
  let offset = 0
  for (const spec of tensors) {
    const { name, dtype, shape } = spec
    if (typeof name !== 'string' || name.length === 0) throw new InvalidSafetensorsError('tensor names must be non-empty strings')
    if (name === METADATA_KEY) throw new InvalidSafetensorsError(`a tensor cannot be named ${METADATA_KEY}`)
    if (names.has(name)) throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)} appears twice`)
    names.add(name)
    const elementSize = SAFETENSORS_DTYPE_SIZES[dtype]
    if (elementSize === undefined) {
      throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_SIZES).join(', ')})`)
    }
    if (!Array.isArray(shape) || !shape.every(dim => Number.isSafeInteger(dim) && dim >= 0)) {
      throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: shape ${JSON.stringify(shape)} must be a list of non-negative integers`)
    }
    const bytes = shape.reduce((product, dim) => product * dim, elementSize)
    const end = offset + bytes
    if (!Number.isSafeInteger(end)) throw new InvalidSafetensorsError(`tensor ${JSON.stringify(name)}: the file would exceed ${Number.MAX_SAFE_INTEGER} bytes`)
    placed.push({ spec, begin: offset, end })
    offset = end
  }
  for (const { spec, begin, end } of placed) {
    entries.push(`${JSON.stringify(spec.name)}:${JSON.stringify({ dtype: spec.dtype, shape: spec.shape, data_offsets: [begin, end] })}`)
  }

  const json = new TextEncoder().encode(`{${entries.join(',')}}`)
  const padded = Math.ceil(json.length / 8) * 8
  if (padded > MAX_SAFETENSORS_HEADER) {
    throw new InvalidSafetensorsError(`header would be ${padded} bytes, over the limit of ${MAX_SAFETENSORS_HEADER} bytes (100 MiB)`)
  }
  const headerSize = LENGTH_PREFIX_BYTES + padded
  const header = new Uint8Array(headerSize).fill(0x20)
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true)
  header.set(json, LENGTH_PREFIX_BYTES)

  return {
    header,
    tensors: placed.map(({ spec, begin, end }) => ({ name: spec.name, dtype: spec.dtype, shape: [...spec.shape], start: headerSize + begin, end: headerSize + end })),
    size: headerSize + offset
  }
}

export interface LlamaShape {
  layers: number
  hidden: number
  intermediate: number
  vocab: number
  /** width of the key and value projections (grouped-query attention); defaults to `hidden` */
  kvHidden?: number
  /** defaults to BF16 */
  dtype?: string
}

/**
 * The tensors of a Llama-style decoder with the Hugging Face names, in the order they are laid
 * out here: embeddings, each layer, the final norm, the output head.
 */
export function llamaShapedTensors (init: LlamaShape): TensorSpec[] {
  const { layers, hidden, intermediate, vocab, kvHidden = init.hidden, dtype = 'BF16' } = init
  for (const [key, value] of Object.entries({ layers, hidden, intermediate, vocab, kvHidden })) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new InvalidSafetensorsError(`llama shape: ${key} must be a positive integer, got ${String(value)}`)
    }
  }
  const tensors: TensorSpec[] = [{ name: 'model.embed_tokens.weight', dtype, shape: [vocab, hidden] }]
  for (let layer = 0; layer < layers; layer++) {
    const prefix = `model.layers.${layer}`
    tensors.push(
      { name: `${prefix}.input_layernorm.weight`, dtype, shape: [hidden] },
      { name: `${prefix}.self_attn.q_proj.weight`, dtype, shape: [hidden, hidden] },
      { name: `${prefix}.self_attn.k_proj.weight`, dtype, shape: [kvHidden, hidden] },
      { name: `${prefix}.self_attn.v_proj.weight`, dtype, shape: [kvHidden, hidden] },
      { name: `${prefix}.self_attn.o_proj.weight`, dtype, shape: [hidden, hidden] },
      { name: `${prefix}.post_attention_layernorm.weight`, dtype, shape: [hidden] },
      { name: `${prefix}.mlp.gate_proj.weight`, dtype, shape: [intermediate, hidden] },
      { name: `${prefix}.mlp.up_proj.weight`, dtype, shape: [intermediate, hidden] },
      { name: `${prefix}.mlp.down_proj.weight`, dtype, shape: [hidden, intermediate] }
    )
  }
  tensors.push(
    { name: 'model.norm.weight', dtype, shape: [hidden] },
    { name: 'lm_head.weight', dtype, shape: [vocab, hidden] }
  )
  return tensors
}
