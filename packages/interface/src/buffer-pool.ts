/**
 * Payload buffers that are used again instead of left to the garbage collector.
 *
 * V8 counts the memory behind every ArrayBuffer as external memory, and each 64 MiB of it
 * allocated since the last full collection starts another full mark-compact of the whole heap.
 * Moving 4 MiB chunks at hundreds of MB/s, a fresh buffer per chunk meant several full
 * collections per second, which cost more CPU than TLS and hashing together. So the data plane
 * (peer data plane and origin alike) lends buffers from here and takes them back when their
 * bytes are no longer needed (`ChunkSource.release`, `Origin.release`).
 *
 * A lent buffer is a fresh view object; only that view can give it back, once. A second give,
 * or a give of anything else, is ignored, so a buffer can never be lent to two holders at once.
 * Free buffers are kept up to `maxFreeBytes` and all dropped after `idleMs` without a take, so
 * an idle node holds none.
 *
 * A pool may allocate from SharedArrayBuffer (`shared`), so that another thread can read a
 * buffer's bytes while they land (cut-through with byte workers, see @swarm/workers'
 * shared-arrival.ts); a byte worker makes that the default of its thread's pools
 * (`shareBufferPoolMemory`), since the pools are its clients' own.
 */

/** smaller buffers are cheap to allocate and not pooled */
export const BUFFER_POOL_MIN_SIZE = 64 * 1024
/** capacities are rounded up to this, so chunks of nearby sizes share buffers */
export const BUFFER_POOL_SIZE_STEP = 64 * 1024
/** free bytes kept for reuse at most, by default */
export const BUFFER_POOL_MAX_FREE_BYTES = 64 * 1024 * 1024
/** free buffers are dropped after this long without a take, by default */
export const BUFFER_POOL_IDLE_MS = 10_000

export interface BufferPoolInit {
  /** free bytes kept for reuse at most */
  maxFreeBytes?: number
  /** free buffers are dropped after this long without a take */
  idleMs?: number
  /** allocate from SharedArrayBuffer (default: as `shareBufferPoolMemory` last set in this thread, else false) */
  shared?: boolean
}

let sharedByDefault = false

/** Whether pools made from now on in this thread allocate from SharedArrayBuffer unless told otherwise. */
export function shareBufferPoolMemory (shared: boolean): void {
  sharedByDefault = shared
}

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>()
  /** lent views, each to the whole buffer it was cut from */
  private readonly lent = new WeakMap<Uint8Array, Buffer>()
  private freeBytes = 0
  private lastTake = 0
  private idleTimer: NodeJS.Timeout | undefined
  private readonly maxFreeBytes: number
  private readonly idleMs: number
  /** whether buffers are allocated from SharedArrayBuffer */
  readonly shared: boolean

  constructor (init: BufferPoolInit = {}) {
    this.maxFreeBytes = init.maxFreeBytes ?? BUFFER_POOL_MAX_FREE_BYTES
    this.idleMs = init.idleMs ?? BUFFER_POOL_IDLE_MS
    this.shared = init.shared ?? sharedByDefault
  }

  /** Bytes held for reuse now. */
  get retainedBytes (): number {
    return this.freeBytes
  }

  /** A buffer of exactly `size` bytes with unspecified contents; give it back with {@link give}. */
  take (size: number): Buffer {
    if (size < BUFFER_POOL_MIN_SIZE) return Buffer.allocUnsafe(size)
    this.lastTake = performance.now()
    const capacity = Math.ceil(size / BUFFER_POOL_SIZE_STEP) * BUFFER_POOL_SIZE_STEP
    const list = this.free.get(capacity)
    let whole = list?.pop()
    if (whole === undefined) {
      whole = this.shared ? Buffer.from(new SharedArrayBuffer(capacity)) : Buffer.allocUnsafeSlow(capacity)
    } else {
      this.freeBytes -= capacity
      if (list?.length === 0) this.free.delete(capacity)
    }
    const view = whole.subarray(0, size)
    this.lent.set(view, whole)
    return view
  }

  /** Takes back a buffer {@link take} returned; its holder must not touch it afterwards. */
  give (view: Uint8Array): void {
    const whole = this.lent.get(view)
    if (whole === undefined) return
    this.lent.delete(view)
    const capacity = whole.byteLength
    if (capacity > this.maxFreeBytes) return
    // room for it: the least useful free buffers (other sizes) go first
    for (const [size, list] of this.free) {
      if (this.freeBytes + capacity <= this.maxFreeBytes) break
      if (size === capacity) continue
      while (list.length > 0 && this.freeBytes + capacity > this.maxFreeBytes) {
        list.pop()
        this.freeBytes -= size
      }
      if (list.length === 0) this.free.delete(size)
    }
    if (this.freeBytes + capacity > this.maxFreeBytes) return
    const list = this.free.get(capacity)
    if (list === undefined) this.free.set(capacity, [whole])
    else list.push(whole)
    this.freeBytes += capacity
    this.armIdleTimer()
  }

  /** Drops every free buffer. */
  clear (): void {
    this.free.clear()
    this.freeBytes = 0
    clearTimeout(this.idleTimer)
    this.idleTimer = undefined
  }

  private armIdleTimer (): void {
    if (this.idleTimer !== undefined) return
    const check = (): void => {
      this.idleTimer = undefined
      if (this.freeBytes === 0) return
      const idleFor = performance.now() - this.lastTake
      if (idleFor >= this.idleMs) this.clear()
      else this.idleTimer = setTimeout(check, this.idleMs - idleFor).unref()
    }
    this.idleTimer = setTimeout(check, this.idleMs).unref()
  }
}
