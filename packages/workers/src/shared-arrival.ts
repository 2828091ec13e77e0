/**
 * A chunk arriving in one thread, read block by block from another while it still arrives
 * (cut-through with byte workers).
 *
 * With byte workers a chunk lands in the worker that fetches it, while the GET that relays it
 * onward reaches whichever worker's data server the kernel gave that connection (SO_REUSEPORT),
 * or the main thread's. So the bytes must be readable from any thread while they land, without a
 * message per block and without a copy per thread:
 *
 * - The worker that fetches reads the chunk into memory shared between threads (its buffer pools
 *   allocate from SharedArrayBuffer where cut-through is on: `BufferPool`'s `shared`). At the first
 *   bytes it sends the main thread a `SharedArrival`: the buffer, the chunk's block digests and a
 *   small control array. The main thread registers it (@swarm/fetcher's `ArrivingChunks.adopt`)
 *   and hands it to a data server that asks.
 * - The control array says how many bytes have landed and whether the arrival failed; the fetching
 *   worker stores and notifies, readers wait on it (`Atomics.waitAsync`). No lock: one writer.
 * - A reader copies whole blocks out of the shared buffer and checks the COPY against the block's
 *   digest. The buffer belongs to another thread, which may write into it at any moment (a source
 *   that starts over, a buffer reused after a failure); what was checked is the very bytes handed
 *   out, so no reader ever passes on a byte that does not match the manifest, whatever the other
 *   thread does meanwhile.
 * - Readers are counted in the control array. The fetching worker gives the buffer back to its
 *   pool only once it has closed the arrival to new readers while none was open (one
 *   compare-and-swap from 0 readers to closed), so a relay still reading after the chunk was stored
 *   reads on from the same memory; until then the buffer is merely not reused. A whole chunk
 *   stays open to new readers until the main thread has recorded it (it says so in the control
 *   array), so a relay asked for in between never finds the chunk neither arriving nor stored.
 */
import { createHash } from 'node:crypto'
import { AbortError, BLOCK_DIGEST_BYTES, ChunkArrivalFailedError, digestsCover } from '@swarm/interface'
import type { AbortOptions, ArrivingChunk, BlockDigests } from '@swarm/interface'

/** A chunk arriving in shared memory, as it crosses between threads (structured-cloneable; the memory is shared, not copied). */
export interface SharedArrival {
  cid: string
  size: number
  /** the memory the chunk lands in, from `byteOffset` on */
  memory: SharedArrayBuffer
  byteOffset: number
  /** see the CONTROL_ slots below */
  control: SharedArrayBuffer
  blockSize: number
  /** the SHA-256 of each block, concatenated */
  digests: Uint8Array
}

/** bytes `[0, n)` have landed */
const CONTROL_FILLED = 0
/** ARRIVING, WHOLE or FAILED */
const CONTROL_STATE = 1
/** readers open now; CLOSED once the fetching thread may reuse the memory */
const CONTROL_READERS = 2
/** 1 once the main thread no longer hands the arrival out (the chunk is recorded, or was never registered) */
const CONTROL_SETTLED = 3
const CONTROL_SLOTS = 4

const ARRIVING = 0
const WHOLE = 1
const FAILED = 2
const CLOSED = -1

/** how often a waiting reader looks at its abort signal (Atomics.waitAsync takes none) */
const ABORT_POLL_MS = 250
/**
 * How long a whole arrival stays open to new readers at most, waiting for the main thread to
 * settle it: past this, a main thread that never heard of it (a job given up there as it
 * finished here) does not hold the memory for long.
 */
const SETTLE_WAIT_MS = 5_000

/** The fetching thread's side of one arrival. */
export class SharedArrivalWriter {
  readonly shared: SharedArrival
  private readonly control: Int32Array
  private filled = 0

  /** undefined when `buffer` is not in shared memory, or the digests do not cover `size` bytes */
  static begin (cid: string, size: number, blocks: BlockDigests, buffer: Uint8Array): SharedArrivalWriter | undefined {
    if (!(buffer.buffer instanceof SharedArrayBuffer) || buffer.byteLength < size) return undefined
    if (!digestsCover(blocks, size)) return undefined
    return new SharedArrivalWriter({
      cid,
      size,
      memory: buffer.buffer,
      byteOffset: buffer.byteOffset,
      control: new SharedArrayBuffer(CONTROL_SLOTS * Int32Array.BYTES_PER_ELEMENT),
      blockSize: blocks.blockSize,
      digests: new Uint8Array(blocks.digests)
    })
  }

  private constructor (shared: SharedArrival) {
    this.shared = shared
    this.control = new Int32Array(shared.control)
  }

  /** bytes `[0, filled)` of `buffer` have landed; another buffer, or fewer bytes, fails the arrival */
  land (buffer: Uint8Array, filled: number): void {
    if (Atomics.load(this.control, CONTROL_STATE) !== ARRIVING) return
    if (buffer.buffer !== this.shared.memory || buffer.byteOffset !== this.shared.byteOffset || filled < this.filled || filled > this.shared.size) {
      this.fail()
      return
    }
    const { blockSize, size } = this.shared
    // readers take whole blocks: they are woken when one is complete, not at every read of the socket
    const completed = Math.floor(filled / blockSize) > Math.floor(this.filled / blockSize) || filled === size
    this.filled = filled
    Atomics.store(this.control, CONTROL_FILLED, filled)
    if (completed) Atomics.notify(this.control, CONTROL_FILLED)
  }

  /** every byte is in place and checked against the CID */
  whole (): void {
    if (Atomics.compareExchange(this.control, CONTROL_STATE, ARRIVING, WHOLE) !== ARRIVING) return
    Atomics.store(this.control, CONTROL_FILLED, this.shared.size)
    Atomics.notify(this.control, CONTROL_FILLED)
  }

  /** the arrival failed: readers stop, and get nothing more */
  fail (): void {
    failSharedArrival(this.shared)
  }

  /**
   * Closes the arrival to new readers; resolves once no reader has it open, when the memory may
   * be used again. A whole chunk stays open until the main thread has settled it (recorded it
   * in the store, see `settleSharedArrival`), so a relay asked for in between finds it arriving
   * rather than neither arriving nor stored. A reader that never closes (its thread died) keeps
   * it unresolved: the memory is then merely not reused.
   */
  async close (): Promise<void> {
    this.fail()
    if (Atomics.load(this.control, CONTROL_STATE) === WHOLE && Atomics.load(this.control, CONTROL_SETTLED) === 0) {
      const wait = Atomics.waitAsync(this.control, CONTROL_SETTLED, 0, SETTLE_WAIT_MS)
      if (wait.async) await wait.value
    }
    for (;;) {
      const readers = Atomics.compareExchange(this.control, CONTROL_READERS, 0, CLOSED)
      if (readers === 0 || readers === CLOSED) return
      const wait = Atomics.waitAsync(this.control, CONTROL_READERS, readers)
      if (wait.async) await wait.value
    }
  }
}

/**
 * Fails an arrival from another thread than the one receiving it: the main thread does so when
 * the worker that received it died (it can no longer say so itself). An arrival already whole
 * stays readable.
 */
export function failSharedArrival (shared: SharedArrival): void {
  const control = new Int32Array(shared.control)
  if (Atomics.compareExchange(control, CONTROL_STATE, ARRIVING, FAILED) === ARRIVING) Atomics.notify(control, CONTROL_FILLED)
}

/**
 * The main thread no longer hands the arrival out: the chunk is recorded (its store serves it),
 * or the arrival was never registered or has ended. The receiving worker may then close it.
 */
export function settleSharedArrival (shared: SharedArrival): void {
  const control = new Int32Array(shared.control)
  Atomics.store(control, CONTROL_SETTLED, 1)
  Atomics.notify(control, CONTROL_SETTLED)
}

/** whether `bytes`, block `block` of a chunk, match its digest in `blocks` */
export function blockMatches (blocks: BlockDigests, block: number, bytes: Uint8Array): boolean {
  const digest = createHash('sha256').update(bytes).digest()
  return digest.equals(blocks.digests.subarray(block * BLOCK_DIGEST_BYTES, (block + 1) * BLOCK_DIGEST_BYTES))
}

/** A reader of an arrival, in any thread; undefined when it is closed or failed. */
export function openSharedArrival (shared: SharedArrival): ArrivingChunk | undefined {
  const control = new Int32Array(shared.control)
  for (;;) {
    const readers = Atomics.load(control, CONTROL_READERS)
    if (readers === CLOSED) return undefined
    if (Atomics.compareExchange(control, CONTROL_READERS, readers, readers + 1) === readers) break
  }
  const reader = new SharedArrivalReader(shared, control)
  if (Atomics.load(control, CONTROL_STATE) === FAILED) {
    reader.close()
    return undefined
  }
  return reader
}

/** whether an arrival may still be read: neither failed nor closed */
export function sharedArrivalReadable (shared: SharedArrival): boolean {
  const control = new Int32Array(shared.control)
  return Atomics.load(control, CONTROL_STATE) !== FAILED && Atomics.load(control, CONTROL_READERS) !== CLOSED
}

class SharedArrivalReader implements ArrivingChunk {
  readonly size: number
  private readonly bytes: Uint8Array
  private closed = false
  /** the last blocks this reader copied and checked, when a read took only part of them */
  private checked: { start: number, bytes: Uint8Array } | undefined

  constructor (private readonly shared: SharedArrival, private readonly control: Int32Array) {
    this.size = shared.size
    this.bytes = new Uint8Array(shared.memory, shared.byteOffset, shared.size)
  }

  async read (offset: number, maxLength: number, take: (length: number) => Uint8Array, options: AbortOptions = {}): Promise<Uint8Array> {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.size) throw new RangeError(`offset ${offset} is outside chunk ${this.shared.cid} of ${this.size} bytes`)
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`maxLength must be a positive integer, not ${maxLength}`)
    if (this.closed) throw new ChunkArrivalFailedError(this.shared.cid, 'its reader was closed')
    const cached = this.checked
    if (cached !== undefined && offset >= cached.start && offset < cached.start + cached.bytes.byteLength) {
      return this.handOut(cached.bytes.subarray(offset - cached.start, Math.min(cached.bytes.byteLength, offset - cached.start + maxLength)), take)
    }
    const { blockSize } = this.shared
    const ready = await this.landedPast(offset, options.signal)
    const start = offset - offset % blockSize
    // whole blocks only: up to `maxLength` past `offset`, and at least the block holding `offset`
    let end = Math.min(ready, offset + maxLength)
    if (end < this.size) end = Math.max(end - end % blockSize, Math.min(start + blockSize, this.size))
    if (offset === start && end - start <= maxLength) {
      // the usual case (reads from block boundaries, a block or more at a time): copied once, into the piece
      const piece = take(end - start)
      if (piece.byteLength !== end - start) throw new RangeError(`take returned ${piece.byteLength} bytes for ${end - start}`)
      piece.set(this.bytes.subarray(start, end))
      this.check(piece, start)
      return piece
    }
    const copy = this.bytes.slice(start, end)
    this.check(copy, start)
    this.checked = { start, bytes: copy }
    return this.handOut(copy.subarray(offset - start, Math.min(copy.byteLength, offset - start + maxLength)), take)
  }

  close (): void {
    if (this.closed) return
    this.closed = true
    this.checked = undefined
    Atomics.sub(this.control, CONTROL_READERS, 1)
    Atomics.notify(this.control, CONTROL_READERS)
  }

  /** waits until bytes past `offset` have landed in whole blocks (or the chunk is whole); the end of those bytes */
  private async landedPast (offset: number, signal?: AbortSignal): Promise<number> {
    const { blockSize } = this.shared
    for (;;) {
      if (Atomics.load(this.control, CONTROL_STATE) === FAILED) throw new ChunkArrivalFailedError(this.shared.cid, 'its source failed or was given up')
      const filled = Atomics.load(this.control, CONTROL_FILLED)
      const ready = filled >= this.size ? this.size : filled - filled % blockSize
      if (ready > offset) return ready
      if (signal?.aborted === true) throw signal.reason ?? new AbortError()
      const wait = Atomics.waitAsync(this.control, CONTROL_FILLED, filled, ABORT_POLL_MS)
      if (wait.async) await wait.value
    }
  }

  /** checks `copy`, the blocks from `start` on, against their digests; a mismatch fails this reader */
  private check (copy: Uint8Array, start: number): void {
    const { blockSize } = this.shared
    for (let at = 0; at < copy.byteLength; at += blockSize) {
      const block = (start + at) / blockSize
      if (!blockMatches(this.shared, block, copy.subarray(at, Math.min(at + blockSize, copy.byteLength)))) {
        this.close()
        throw new ChunkArrivalFailedError(this.shared.cid, `block ${block} does not match its digest`)
      }
    }
  }

  private handOut (bytes: Uint8Array, take: (length: number) => Uint8Array): Uint8Array {
    const piece = take(bytes.byteLength)
    if (piece.byteLength !== bytes.byteLength) throw new RangeError(`take returned ${piece.byteLength} bytes for ${bytes.byteLength}`)
    piece.set(bytes)
    return piece
  }
}
