/**
 * Chunks arriving at this node, passed on to peers while they arrive (cut-through).
 *
 * A chunk is the unit of dedup and of the origin's objects, and its CID checks only the whole
 * chunk. Passed on only once whole, every hop between the origin and the last node adds a whole
 * chunk's transfer time, and a node whose peers hold nothing whole that it lacks idles while the
 * origin still sends. A version 3 manifest lists the SHA-256 of each block of each chunk
 * (`ChunkRequest.blocks`), from a source already trusted: the manifest whose CID the user named or
 * the origin's ref resolved. So a node can check a chunk's bytes block by block as they land, and
 * its data server can send the checked ones on at once.
 *
 * - The fetcher registers a chunk here when the first bytes of an attempt on it land
 *   (`OnChunkData`, reported by the sources that read in place: peers, S3 and Azure GETs). One
 *   attempt per chunk is registered; a hedge's second attempt is not.
 * - Blocks are hashed on demand: only when a reader asks for bytes past those checked, so a chunk
 *   no peer asks for costs nothing more than before. A block that fails its digest fails the
 *   arrival (the fetcher's CID check then refuses the chunk and blames its source as before).
 * - Readers get copies. The bytes land in the source's buffer, which goes back to the source's
 *   pool once the chunk is stored; a copy made in the same step as the check can never carry
 *   bytes the buffer got later. The buffer goes back once no reader has it open.
 * - A source that starts over (a retried GET into a new buffer, or `filled` going back) fails the
 *   arrival: what was checked is no longer where it was.
 * - The attempt's end removes the chunk from the registry: stored, it is served from the store;
 *   failed, its readers fail (a data server closes the connection the answer was on, and the
 *   client asks another source).
 */

import { AbortError, ChunkArrivalFailedError, digestsCover } from '@swarm/interface'
import { blockMatches, failSharedArrival, openSharedArrival, settleSharedArrival, sharedArrivalReadable } from '@swarm/workers'
import type { AbortOptions, ArrivingChunk, BlockDigests, ChunkArrivals, CidString } from '@swarm/interface'
import type { SharedArrival } from '@swarm/workers'

/** The fetcher's side of one arrival. */
export interface Arrival {
  /** bytes `[0, filled)` of `buffer` have landed */
  land(buffer: Uint8Array, filled: number): void
  /**
   * The attempt ended: stored whole as `bytes` (the buffer the bytes landed in), to be freed once
   * no reader has it open; or failed (`reason`), failing its readers
   */
  end(outcome: { bytes: Uint8Array, free: () => void } | { reason: string }): void
}

interface Waiter {
  offset: number
  wake(): void
}

/** A registered arrival: one landing on this thread, or in a byte worker's shared memory. */
interface ArrivingEntry {
  readonly readable: boolean
  open(): ArrivingChunk | undefined
  /** the arrival as other threads open it, where it lands in shared memory */
  readonly shared?: SharedArrival
}

/** A chunk landing in a byte worker (see @swarm/workers' shared-arrival.ts): it checks its own blocks, the readers theirs. */
class SharedArrivingChunk implements ArrivingEntry {
  constructor (readonly shared: SharedArrival) {}

  get readable (): boolean {
    return sharedArrivalReadable(this.shared)
  }

  open (): ArrivingChunk | undefined {
    return openSharedArrival(this.shared)
  }
}

class ArrivingChunkState implements ArrivingEntry {
  private buffer: Uint8Array | undefined
  private filled = 0
  /** bytes from the start checked against the block digests: a block boundary, or the size */
  private verified = 0
  private failure: ChunkArrivalFailedError | undefined
  private readers = 0
  private ended = false
  private free: (() => void) | undefined
  private waiters: Waiter[] = []

  constructor (readonly cid: CidString, readonly size: number, private readonly blocks: BlockDigests) {}

  land (buffer: Uint8Array, filled: number): void {
    if (this.failure !== undefined || this.ended) return
    if (this.buffer === undefined) this.buffer = buffer
    else if (buffer !== this.buffer || filled < this.filled) {
      this.fail('its source started over')
      return
    }
    if (filled > this.size) {
      this.fail(`its source sent ${filled} bytes of ${this.size}`)
      return
    }
    this.filled = filled
    if (this.waiters.length > 0) this.advance()
  }

  end (outcome: { bytes: Uint8Array, free: () => void } | { reason: string }): void {
    if (this.ended) return
    this.ended = true
    if ('reason' in outcome) {
      this.fail(outcome.reason)
      return
    }
    // stored whole: every byte is in place, and readers still reading get the rest from here
    if (outcome.bytes !== this.buffer || outcome.bytes.byteLength !== this.size) this.fail('its bytes came back in another buffer')
    else this.filled = this.size
    this.free = outcome.free
    if (this.waiters.length > 0) this.advance()
    this.maybeFree()
  }

  get readable (): boolean {
    return !this.ended && this.failure === undefined
  }

  open (): ArrivingChunk | undefined {
    if (!this.readable) return undefined
    this.readers++
    let closed = false
    return {
      size: this.size,
      read: async (offset, maxLength, take, options) => await this.read(offset, maxLength, take, options),
      close: () => {
        if (closed) return
        closed = true
        this.readers--
        this.maybeFree()
      }
    }
  }

  private async read (offset: number, maxLength: number, take: (length: number) => Uint8Array, options: AbortOptions = {}): Promise<Uint8Array> {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.size) throw new RangeError(`offset ${offset} is outside chunk ${this.cid} of ${this.size} bytes`)
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`maxLength must be a positive integer, not ${maxLength}`)
    const signal = options.signal
    while (this.verified <= offset) {
      if (this.failure !== undefined) throw this.failure
      signal?.throwIfAborted()
      this.advance()
      if (this.verified > offset || this.failure !== undefined) continue
      await new Promise<void>((resolve, reject) => {
        const onAbort = (): void => {
          this.waiters = this.waiters.filter(w => w !== waiter)
          reject(signal?.reason ?? new AbortError())
        }
        const waiter: Waiter = {
          offset,
          wake: () => {
            signal?.removeEventListener('abort', onAbort)
            resolve()
          }
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.waiters.push(waiter)
      })
    }
    // a block that failed (even past `offset`) says the source lies: nothing more is handed out
    if (this.failure !== undefined) throw this.failure
    // checked and copied in one step: nothing the buffer gets later reaches the copy
    const end = Math.min(this.verified, offset + maxLength)
    const copy = take(end - offset)
    if (copy.byteLength !== end - offset) throw new RangeError(`take returned ${copy.byteLength} bytes for ${end - offset}`)
    copy.set((this.buffer as Uint8Array).subarray(offset, end))
    return copy
  }

  /** Checks the landed blocks (only while someone waits for them) and wakes those whose bytes are checked. */
  private advance (): void {
    const buffer = this.buffer
    if (buffer === undefined || this.failure !== undefined) {
      this.wakeAll()
      return
    }
    const { blockSize } = this.blocks
    while (this.verified < this.size) {
      const end = Math.min(this.verified + blockSize, this.size)
      if (end > this.filled) break
      const block = this.verified / blockSize
      if (!blockMatches(this.blocks, block, buffer.subarray(this.verified, end))) {
        this.fail(`block ${block} does not match its digest`)
        return
      }
      this.verified = end
    }
    const waiting = this.waiters
    this.waiters = []
    for (const waiter of waiting) {
      if (waiter.offset < this.verified) waiter.wake()
      else this.waiters.push(waiter)
    }
  }

  private fail (reason: string): void {
    if (this.failure !== undefined) return
    this.failure = new ChunkArrivalFailedError(this.cid, reason)
    this.buffer = undefined
    this.wakeAll()
  }

  private wakeAll (): void {
    const waiting = this.waiters
    this.waiters = []
    for (const waiter of waiting) waiter.wake()
  }

  private maybeFree (): void {
    if (this.readers > 0 || this.free === undefined) return
    const free = this.free
    this.free = undefined
    this.buffer = undefined
    free()
  }
}

/**
 * The registry of chunks arriving at this node (see the notes above): the fetcher begins and ends
 * arrivals, a data server opens them.
 */
export class ArrivingChunks implements ChunkArrivals {
  private readonly chunks = new Map<CidString, ArrivingEntry>()

  /**
   * Registers chunk `cid` as arriving, checked against `blocks`; undefined when it is already
   * registered (another attempt is receiving it) or its digests do not cover `size` bytes.
   */
  begin (cid: CidString, size: number, blocks: BlockDigests): Arrival | undefined {
    if (this.chunks.has(cid) || !digestsCover(blocks, size)) return undefined
    const state = new ArrivingChunkState(cid, size, blocks)
    this.chunks.set(cid, state)
    return {
      land: (buffer, filled) => { state.land(buffer, filled) },
      end: outcome => {
        if (this.chunks.get(cid) === state) this.chunks.delete(cid)
        state.end(outcome)
      }
    }
  }

  /**
   * Registers chunk `cid` as arriving in a byte worker's shared memory, until `end` (once the
   * chunk is recorded, or the attempt failed); undefined when it is already registered, and then
   * the worker is told at once that nobody here hands it out. `end(true)`: the attempt failed,
   * and the arrival fails with it unless whole (the worker says so itself, unless it died).
   */
  adopt (cid: CidString, shared: SharedArrival): { end(failed?: boolean): void } | undefined {
    if (this.chunks.has(cid) || shared.cid !== cid) {
      settleSharedArrival(shared)
      return undefined
    }
    const entry = new SharedArrivingChunk(shared)
    this.chunks.set(cid, entry)
    return {
      end: failed => {
        if (this.chunks.get(cid) === entry) this.chunks.delete(cid)
        if (failed === true) failSharedArrival(shared)
        settleSharedArrival(shared)
      }
    }
  }

  open (cid: CidString): ArrivingChunk | undefined {
    return this.chunks.get(cid)?.open()
  }

  /** chunk `cid` as another thread opens it, where it is arriving in shared memory and may be read */
  share (cid: CidString): SharedArrival | undefined {
    const entry = this.chunks.get(cid)
    return entry?.shared !== undefined && entry.readable ? entry.shared : undefined
  }

  /** whether chunk `cid` is arriving and may be read */
  arriving (cid: CidString): boolean {
    return this.chunks.get(cid)?.readable === true
  }

  /** chunks arriving now */
  get size (): number {
    return this.chunks.size
  }
}
