/**
 * Where a file's chunk boundaries go.
 *
 * Without a layout, a file is cut into fixed `chunkSize` pieces from offset 0.
 *
 * A safetensors file is cut so that a tensor keeps its chunks from one version of a model to
 * the next even when a tensor before it was resized and every later offset moved:
 *
 * 1. The header, with any gap before the first tensor, is cut from offset 0 into `chunkSize`
 *    pieces. It changes whenever anything moves, so nothing else rides along with it.
 * 2. Each tensor owns a span from its start to the next tensor's start (the last one to the end
 *    of the file), so padding, gaps and trailing bytes always belong to some chunk.
 * 3. A span of at least `chunkSize * LARGE_TENSOR_FRACTION` bytes is large: it starts its own
 *    chunk and is cut into `chunkSize` pieces measured from its own start, the last one shorter.
 *    Its chunks depend only on its own bytes.
 * 4. Consecutive small spans are packed into shared chunks, and only their names and sizes, never
 *    their offsets, decide where a chunk ends. A small span opens a new chunk when
 *    (a) the chunk before it was the header or a large tensor (large tensors fence groups off), or
 *    (b) adding it would make the open chunk larger than `chunkSize`, or
 *    (c) it is an anchor: the first 32 bits of sha2-256(name), as a fraction of 2^32, fall below
 *      `size / (chunkSize * SMALL_GROUP_MEAN_FRACTION)`.
 *    Rule (c) is content-defined chunking with a tensor as the unit and its name as the
 *    fingerprint: anchors turn up about once per `chunkSize * SMALL_GROUP_MEAN_FRACTION` bytes,
 *    and since a tensor's anchor status depends only on its own name and size, a resized small
 *    tensor reshuffles at most the chunks from the anchor before it to the anchor (or large
 *    tensor) after it. Greedy packing alone (rule b) would let one resize shift every later
 *    boundary in a long run of small tensors.
 *
 * Changing a tensor's bytes therefore changes only the chunk(s) holding it (for a small tensor,
 * shared with the neighbours packed with it); resizing a large tensor changes only its own
 * chunks and the header.
 */

import { createHash } from 'node:crypto'
import type { ChunkRef, TensorInfo } from '@swarm/interface'
import { cidForBytes } from './cid.js'
import { DEFAULT_CHUNK_SIZE, LARGE_TENSOR_FRACTION, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SMALL_GROUP_MEAN_FRACTION } from './constants.js'
import { ChunkOutOfRangeError, InvalidChunkSizeError, InvalidFileSizeError, InvalidLayoutError } from './errors.js'
import { compareTensors, type SafetensorsLayout } from './safetensors.js'

/** One chunk of a plan: a byte range of the file. */
export interface PlannedChunk {
  offset: number
  size: number
}

export interface PlanChunksInit {
  /** bytes in the file */
  size: number
  /** defaults to DEFAULT_CHUNK_SIZE; must lie in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE] */
  chunkSize?: number
  /** a safetensors file's layout, to cut on tensor boundaries */
  layout?: SafetensorsLayout
}

/** Throws InvalidChunkSizeError unless `chunkSize` is an integer in [MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]. */
export function checkChunkSize (chunkSize: number): void {
  if (!Number.isSafeInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new InvalidChunkSizeError(`chunk size must be an integer from ${MIN_CHUNK_SIZE} (1 MiB) to ${MAX_CHUNK_SIZE} (64 MiB) bytes, got ${String(chunkSize)}`)
  }
}

/**
 * Chunk boundaries that tile [0, size) exactly: in order, no gaps, no overlaps, no empty chunk,
 * none larger than `chunkSize`. A zero-byte file has no chunks.
 */
export function planChunks (init: PlanChunksInit): PlannedChunk[] {
  const { size, chunkSize = DEFAULT_CHUNK_SIZE, layout } = init
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new InvalidFileSizeError(`file size must be a non-negative integer, got ${String(size)}`)
  }
  checkChunkSize(chunkSize)

  const chunks: PlannedChunk[] = []
  const cut = (start: number, end: number): void => {
    for (let offset = start; offset < end; offset += chunkSize) {
      chunks.push({ offset, size: Math.min(chunkSize, end - offset) })
    }
  }

  if (layout === undefined) {
    cut(0, size)
    return chunks
  }

  const tensors = checkedTensors(layout, size)
  const first = tensors[0]
  if (first === undefined) {
    cut(0, layout.headerSize)
    cut(layout.headerSize, size)
    return chunks
  }
  cut(0, first.start)

  const largeSpan = chunkSize * LARGE_TENSOR_FRACTION
  const meanGroup = chunkSize * SMALL_GROUP_MEAN_FRACTION
  let group: PlannedChunk | undefined
  const closeGroup = (): void => {
    if (group !== undefined && group.size > 0) chunks.push(group)
    group = undefined
  }

  for (let i = 0; i < tensors.length; i++) {
    const tensor = tensors[i] as TensorInfo
    const spanEnd = tensors[i + 1]?.start ?? size
    const span = spanEnd - tensor.start
    if (span >= largeSpan) {
      closeGroup()
      cut(tensor.start, spanEnd)
      continue
    }
    if (group !== undefined && span > 0 && (group.size + span > chunkSize || isAnchor(tensor.name, span, meanGroup))) {
      closeGroup()
    }
    group ??= { offset: tensor.start, size: 0 }
    group.size += span
  }
  closeGroup()
  return chunks
}

/** Whether a small tensor opens a new chunk regardless of what came before it (rule c above). */
function isAnchor (name: string, span: number, meanGroup: number): boolean {
  const fingerprint = createHash('sha256').update(name).digest().readUInt32BE(0)
  return fingerprint < (span / meanGroup) * 2 ** 32
}

/** The layout's tensors sorted by start, after checking they fit a file of `size` bytes. */
function checkedTensors (layout: SafetensorsLayout, size: number): TensorInfo[] {
  const { headerSize } = layout
  if (!Number.isSafeInteger(headerSize) || headerSize < 0 || headerSize > size) {
    throw new InvalidLayoutError(`layout header size ${String(headerSize)} does not fit a ${size}-byte file`)
  }
  const tensors = [...layout.tensors].sort(compareTensors)
  let previous: TensorInfo | undefined
  for (const tensor of tensors) {
    const { name, start, end } = tensor
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < headerSize || end < start || end > size) {
      throw new InvalidLayoutError(`tensor ${JSON.stringify(name)} [${String(start)}, ${String(end)}) lies outside the data region [${headerSize}, ${size})`)
    }
    if (previous !== undefined && start < previous.end) {
      throw new InvalidLayoutError(`tensors ${JSON.stringify(previous.name)} and ${JSON.stringify(name)} overlap`)
    }
    if (previous === undefined || end >= previous.end) previous = tensor
  }
  return tensors
}

/** The chunk references of in-memory bytes cut by `plan` (for small files and tests). */
export function hashChunks (bytes: Uint8Array, plan: PlannedChunk[]): ChunkRef[] {
  return plan.map(({ offset, size }) => {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size < 0 || offset + size > bytes.length) {
      throw new ChunkOutOfRangeError(`chunk [${String(offset)}, +${String(size)}) lies outside the ${bytes.length} bytes given`)
    }
    return { cid: cidForBytes(bytes.subarray(offset, offset + size)), offset, size }
  })
}
