/**
 * The prefetcher: which chunks to bring into the store before a reader asks for them.
 *
 * Reads through the view arrive as the kernel cuts them (128 KiB with libfuse 2), far smaller
 * than a chunk (1–64 MiB), so a reader that waited for each chunk only when it got there would
 * stall once per chunk on a network round trip and a chunk's transfer. The prefetcher keeps
 * chunks in flight ahead of the reader instead. It only decides and queues; the bytes go through
 * the same fetcher as a pull (peers first, origin after, one fetch per CID however many ask, and
 * verified by the store before anything can be read), and a read that needs a chunk now fetches
 * it itself, without queueing behind prefetches or pulls.
 *
 * ## Per open file: one stream
 *
 * Like Mountpoint-S3's prefetcher, every open file handle has its own stream, which watches where
 * reads land:
 *
 * - **Sequential** (a read starting at most `SEQUENTIAL_FORWARD_SLACK` past the furthest point
 *   read so far, or up to `SEQUENTIAL_BACK_SLACK` before it: the kernel keeps many read-ahead
 *   requests in flight and they arrive slightly out of order): the stream keeps the chunks of `[end of read, end + window)` queued.
 *   The window starts at `initialReadAhead` and doubles each time the reader consumes half of it,
 *   up to `maxReadAhead` (256 MiB by default), so a reader that streams a whole file soon has many
 *   chunks in flight, while one that reads a few bytes costs little.
 * - **A jump** (any other read) drops what the stream had queued and not started (chunks in
 *   flight finish: their bytes are mostly transferred and will be kept), and the window starts
 *   small again from the new position.
 * - **Scattered reads**: after `randomReadsForWholeFile` jumps the stream stops guessing and
 *   queues every missing chunk of the file, starting where the reader is and wrapping around.
 *   This is what a loader that maps the file and faults pages in an order of its own (safetensors
 *   with mmap, tensors by name rather than by offset) needs: fetching 128 KiB at a time at each
 *   fault would cost a round trip per fault. Later jumps only move the queue's start to the new
 *   position.
 *
 * ## Loaders: the tensor table
 *
 * For a `.safetensors` file the manifest carries the tensor table, so the stream knows what a
 * loader will do: on open it queues the header, then the first tensors in file order (one initial
 * window of them); and a read that lands inside a tensor will read the whole tensor, so the
 * stream queues the rest of that tensor at once (up to `maxReadAhead`) besides its window, rather
 * than discovering it 128 KiB at a time. A reader that only wants the last tensor therefore
 * fetches the header, that tensor and at most one window: nothing else of the file.
 *
 * ## Sharing the network
 *
 * At most `concurrency` prefetches run at once across all streams, taken round-robin from the
 * streams that have something queued, each stream in its own order, so one file in whole-file
 * mode does not starve a sequential reader of another. A chunk already present is skipped when
 * its turn comes. Closing a handle drops its queue.
 *
 * A prefetch holds its place until the store has the chunk: written, synced and journalled, which
 * on a busy disk takes longer than the download (measured on a lazy read of a 1.3 GiB file: median
 * 174 ms against 100 ms), so only about 6 of 16 requests were on the network at a time. Giving the
 * place up once the bytes were verified kept 14 of 16 busy, but held up to a read-ahead of chunk
 * buffers in memory beyond what the origin pools, and the garbage collection that cost made the
 * lazy read slower on a loaded 2-core machine (median 57 against 100-112 MB/s, 9.6 against 8.0
 * CPU-s/GiB), so it is not done. Readers still get landing chunks from memory (open-files.ts).
 */

import { chunkAt, silentLogger } from '@swarm/interface'
import {
  DEFAULT_INITIAL_READ_AHEAD,
  DEFAULT_MAX_READ_AHEAD,
  DEFAULT_PREFETCH_CONCURRENCY,
  DEFAULT_RANDOM_READS_FOR_WHOLE_FILE,
  SEQUENTIAL_BACK_SLACK,
  SEQUENTIAL_FORWARD_SLACK
} from './constants.js'
import type { AbortOptions, ChunkRef, Logger, TensorInfo } from '@swarm/interface'

/** What the prefetcher needs to know of a file. */
export interface PrefetchFile {
  /** for logs */
  readonly path: string
  readonly size: number
  /** in file order, tiling [0, size) */
  readonly chunks: readonly ChunkRef[]
  /** present for safetensors files, in file order */
  readonly tensors?: readonly TensorInfo[]
}

export interface ReadAheadOptions {
  /** read-ahead a sequential reader starts with (default 8 MiB, or the maximum when that is less) */
  initialBytes?: number
  /** the most it grows to (default 256 MiB) */
  maxBytes?: number
  /** prefetches in flight at once across all files (default 16) */
  concurrency?: number
  /** scattered reads of one open file after which the whole file is prefetched (default 4) */
  randomReadsForWholeFile?: number
}

export interface PrefetcherInit extends ReadAheadOptions {
  /** brings a chunk of `file` into the store */
  fetch(file: PrefetchFile, chunk: ChunkRef, options: AbortOptions): Promise<void>
  /** whether a chunk is already present */
  has(cid: string): boolean
  logger?: Logger
}

export interface PrefetchStats {
  /** prefetches that completed */
  chunks: number
  bytes: number
  /** prefetches that failed (the read that needs the chunk reports why) */
  failed: number
  /** streams that switched to whole-file prefetch */
  wholeFile: number
  inflight: number
}

export type StreamMode = 'sequential' | 'whole-file'

/** One open file's view of the reader: call `read` for every read, `close` on release. */
export interface PrefetchStream {
  readonly mode: StreamMode
  /** current read-ahead in bytes */
  readonly window: number
  /** chunk indices queued and not yet started, in the order they will start */
  queued(): number[]
  read(offset: number, length: number): void
  close(): void
}

/** The tensor holding byte `offset`, if any. */
function tensorAt (tensors: readonly TensorInfo[], offset: number): TensorInfo | undefined {
  let lo = 0
  let hi = tensors.length - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const tensor = tensors[mid] as TensorInfo
    if (offset < tensor.start) hi = mid - 1
    else if (offset >= tensor.end) lo = mid + 1
    else return tensor
  }
  return undefined
}

function positive (name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`)
  return value
}

class Stream implements PrefetchStream {
  mode: StreamMode = 'sequential'
  window: number
  /** chunk indices to start, in order */
  private queue: number[] = []
  private readonly queuedSet = new Set<number>()
  /** chunks up to this byte offset have been queued (or were present) */
  private scheduledEnd = 0
  /** where the previous read ended */
  private nextOffset = 0
  /** bytes read sequentially since the window last grew */
  private consumed = 0
  private jumps = 0
  /** bytes read sequentially since the last jump: a long sequential run forgives earlier jumps */
  private run = 0
  closed = false

  constructor (readonly file: PrefetchFile, private readonly owner: Prefetcher) {
    this.window = owner.initialBytes
  }

  queued (): number[] {
    return [...this.queue]
  }

  /** the next chunk to start, or undefined when nothing is queued */
  take (): number | undefined {
    const index = this.queue.shift()
    if (index !== undefined) this.queuedSet.delete(index)
    return index
  }

  get hasQueued (): boolean {
    return this.queue.length > 0
  }

  /** Every missing chunk, in file order; later reads change nothing. */
  queueAll (): void {
    this.mode = 'whole-file'
    for (let i = 0; i < this.file.chunks.length; i++) this.enqueue(i)
    this.scheduledEnd = this.file.size
    this.owner.pump()
  }

  /** On open: a safetensors file's header, then its first tensors in file order. */
  primeForLoader (): void {
    const first = this.file.tensors?.[0]
    if (first === undefined) return
    this.schedule(0, Math.min(this.file.size, first.start + this.window))
  }

  read (offset: number, length: number): void {
    if (this.closed || this.file.chunks.length === 0) return
    const end = Math.min(this.file.size, offset + length)
    const sequential = offset >= this.nextOffset - SEQUENTIAL_BACK_SLACK && offset <= this.nextOffset + SEQUENTIAL_FORWARD_SLACK
    if (this.mode === 'whole-file') {
      if (!sequential) this.rotateTo(chunkAt(this.file.chunks, offset))
      this.nextOffset = end
      return
    }
    if (sequential) {
      const advanced = Math.max(0, end - this.nextOffset)
      this.consumed += advanced
      this.run += advanced
      if (this.run >= this.owner.maxBytes) this.jumps = 0
      if (this.consumed >= this.window / 2 && this.window < this.owner.maxBytes) {
        this.window = Math.min(this.owner.maxBytes, this.window * 2)
        this.consumed = 0
      }
      this.nextOffset = Math.max(this.nextOffset, end)
    } else {
      this.jumps++
      this.run = 0
      this.clearQueue()
      if (this.jumps >= this.owner.randomReadsForWholeFile) {
        this.wholeFile(offset)
        this.nextOffset = end
        return
      }
      this.window = this.owner.initialBytes
      this.consumed = 0
      this.scheduledEnd = offset
      this.nextOffset = end
    }
    let target = end + this.window
    const tensor = this.file.tensors != null ? tensorAt(this.file.tensors, offset) : undefined
    // a loader that reads into a tensor reads all of it
    if (tensor !== undefined) target = Math.max(target, Math.min(tensor.end, offset + this.owner.maxBytes))
    // the read's own chunks are fetched by the read itself
    const last = this.file.chunks[chunkAt(this.file.chunks, Math.max(offset, end - 1))] as ChunkRef
    this.schedule(Math.max(this.scheduledEnd, last.offset + last.size), Math.min(this.file.size, target))
  }

  close (): void {
    this.closed = true
    this.clearQueue()
    this.owner.forget(this)
  }

  private schedule (from: number, to: number): void {
    if (to <= from) return
    const { chunks } = this.file
    for (let index = chunkAt(chunks, from); index < chunks.length; index++) {
      const chunk = chunks[index] as ChunkRef
      if (chunk.offset >= to) break
      this.enqueue(index)
    }
    this.scheduledEnd = Math.max(this.scheduledEnd, to)
    this.owner.pump()
  }

  private enqueue (index: number): void {
    const chunk = this.file.chunks[index] as ChunkRef
    if (this.queuedSet.has(index) || this.owner.has(chunk.cid)) return
    this.queuedSet.add(index)
    this.queue.push(index)
  }

  private wholeFile (offset: number): void {
    this.mode = 'whole-file'
    this.owner.countWholeFile(this.file)
    const { chunks } = this.file
    const start = chunkAt(chunks, offset)
    for (let i = 0; i < chunks.length; i++) this.enqueue((start + i) % chunks.length)
    this.scheduledEnd = this.file.size
    this.owner.pump()
  }

  /** whole-file mode: what lies at and after the reader's new position goes first */
  private rotateTo (index: number): void {
    const sorted = [...this.queue].sort((a, b) => a - b)
    const at = Math.max(0, sorted.findIndex(i => i >= index))
    this.queue = [...sorted.slice(at), ...sorted.slice(0, at)]
  }

  private clearQueue (): void {
    this.queue = []
    this.queuedSet.clear()
  }
}

/** Schedules prefetches for every open file; see the module comment for the policy. */
export class Prefetcher {
  readonly initialBytes: number
  readonly maxBytes: number
  readonly concurrency: number
  readonly randomReadsForWholeFile: number
  private readonly streams: Stream[] = []
  /** round-robin position in `streams` */
  private turn = 0
  private readonly inflight = new Map<string, AbortController>()
  private readonly log: Logger
  private closed = false
  private readonly counters = { chunks: 0, bytes: 0, failed: 0, wholeFile: 0 }

  constructor (private readonly init: PrefetcherInit) {
    this.maxBytes = positive('maximum read-ahead', init.maxBytes ?? DEFAULT_MAX_READ_AHEAD)
    // a maximum below the default start is a start too
    this.initialBytes = positive('initial read-ahead', init.initialBytes ?? Math.min(DEFAULT_INITIAL_READ_AHEAD, this.maxBytes))
    if (this.maxBytes < this.initialBytes) throw new RangeError(`maximum read-ahead (${this.maxBytes}) is below the initial read-ahead (${this.initialBytes})`)
    this.concurrency = positive('prefetch concurrency', init.concurrency ?? DEFAULT_PREFETCH_CONCURRENCY)
    this.randomReadsForWholeFile = positive('random reads for whole-file prefetch', init.randomReadsForWholeFile ?? DEFAULT_RANDOM_READS_FOR_WHOLE_FILE)
    this.log = (init.logger ?? silentLogger).child({ component: 'prefetcher' })
  }

  /** A stream for a newly opened file; a safetensors file's header and first tensors are queued at once. */
  open (file: PrefetchFile): PrefetchStream {
    return this.add(file, stream => { stream.primeForLoader() })
  }

  stats (): PrefetchStats {
    return { ...this.counters, inflight: this.inflight.size }
  }

  /**
   * A stream that queues every chunk of `file` at once, in order: for a batch that is known to be
   * wanted whole (a checkpoint's small files, which a loader reads one after another).
   */
  openWhole (file: PrefetchFile): PrefetchStream {
    return this.add(file, stream => { stream.queueAll() })
  }

  private add (file: PrefetchFile, start: (stream: Stream) => void): Stream {
    const stream = new Stream(file, this)
    if (this.closed) {
      stream.closed = true
      return stream
    }
    this.streams.push(stream)
    start(stream)
    return stream
  }

  /** Drops every queue and aborts prefetches in flight. */
  close (): void {
    this.closed = true
    for (const stream of [...this.streams]) stream.close()
    for (const controller of this.inflight.values()) controller.abort()
    this.inflight.clear()
  }

  has (cid: string): boolean {
    return this.init.has(cid) || this.inflight.has(cid)
  }

  forget (stream: Stream): void {
    const at = this.streams.indexOf(stream)
    if (at !== -1) this.streams.splice(at, 1)
  }

  countWholeFile (file: PrefetchFile): void {
    this.counters.wholeFile++
    this.log.debug({ path: file.path, chunks: file.chunks.length }, 'scattered reads: prefetching the whole file')
  }

  /** Starts queued prefetches while there is room. */
  pump (): void {
    while (!this.closed && this.inflight.size < this.concurrency) {
      const next = this.next()
      if (next === undefined) return
      this.start(next.stream, next.chunk)
    }
  }

  private next (): { stream: Stream, chunk: ChunkRef } | undefined {
    for (let tried = 0; tried < this.streams.length; tried++) {
      this.turn = (this.turn + 1) % this.streams.length
      const stream = this.streams[this.turn] as Stream
      for (let index = stream.take(); index !== undefined; index = stream.take()) {
        const chunk = stream.file.chunks[index] as ChunkRef
        if (!this.has(chunk.cid)) return { stream, chunk }
      }
    }
    return undefined
  }

  private start (stream: Stream, chunk: ChunkRef): void {
    const controller = new AbortController()
    this.inflight.set(chunk.cid, controller)
    this.init.fetch(stream.file, chunk, { signal: controller.signal }).then(() => {
      this.counters.chunks++
      this.counters.bytes += chunk.size
    }, (err: Error) => {
      if (controller.signal.aborted) return
      this.counters.failed++
      this.log.debug({ path: stream.file.path, cid: chunk.cid, err: err.message }, 'prefetch failed')
    }).finally(() => {
      if (this.inflight.get(chunk.cid) === controller) this.inflight.delete(chunk.cid)
      this.pump()
    })
  }
}
