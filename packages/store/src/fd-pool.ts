/**
 * Open descriptors for content files, shared by concurrent reads and writes and closed when
 * idle beyond a cap, or idle for long (`closeIdle`: a reader that is not told when the store
 * deletes a file, a byte worker serving peers, lets go of it that way). A lease keeps its descriptor open; a forgotten path (deleted, switched from
 * writable to read-only, or whose fdatasync failed so its descriptor can no longer be trusted) is
 * closed as soon as its last lease ends, and the next acquire opens it afresh.
 */
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'

export type OpenMode = 'r' | 'r+'

/** Opens a content file; the store's tests pass one that injects faults at the descriptor. */
export type OpenFile = (path: string, mode: OpenMode) => Promise<FileHandle>

export interface FileLease {
  readonly handle: FileHandle
  release(): void
}

interface Entry {
  readonly path: string
  readonly opening: Promise<FileHandle>
  handle?: FileHandle
  leases: number
  lastUsed: number
  closed: boolean
}

export class FdPool {
  private readonly entries = new Map<string, Entry>()
  private readonly closing = new Set<Promise<void>>()

  constructor (private readonly maxOpen: number, private readonly openFile: OpenFile = open) {}

  async acquire (path: string, mode: OpenMode): Promise<FileLease> {
    const key = `${mode}:${path}`
    let entry = this.entries.get(key)
    if (entry === undefined) {
      const opening = this.openFile(path, mode)
      const created: Entry = { path, opening, leases: 0, lastUsed: Date.now(), closed: false }
      opening.then(handle => { created.handle = handle }, () => {
        if (this.entries.get(key) === created) this.entries.delete(key)
      })
      this.entries.set(key, created)
      entry = created
    }
    const leased = entry
    leased.leases++
    let handle: FileHandle
    try {
      handle = await leased.opening
    } catch (err) {
      leased.leases--
      throw err
    }
    this.trim()
    let released = false
    return {
      handle,
      release: () => {
        if (released) return
        released = true
        leased.leases--
        leased.lastUsed = Date.now()
        if (leased.leases === 0 && this.entries.get(key) !== leased) this.closeEntry(leased)
        else this.trim()
      }
    }
  }

  /**
   * `length` bytes of `path` from `offset`, read through a lease on its descriptor, into a buffer
   * of `allocate`'s (or a new one); a file that ends before them is an error.
   */
  async read (path: string, offset: number, length: number, allocate?: (size: number) => Uint8Array): Promise<Uint8Array> {
    const lease = await this.acquire(path, 'r')
    try {
      let out: Uint8Array
      if (allocate === undefined) {
        out = Buffer.allocUnsafe(length)
      } else {
        out = allocate(length)
        if (out.byteLength < length) throw new RangeError(`allocate gave ${out.byteLength} bytes for a chunk of ${length}`)
        if (out.byteLength > length) out = out.subarray(0, length)
      }
      for (let done = 0; done < length;) {
        const { bytesRead } = await lease.handle.read(out, done, length - done, offset + done)
        if (bytesRead === 0) throw new Error(`content file ${path} ends before byte ${offset + length}`)
        done += bytesRead
      }
      return out
    } finally {
      lease.release()
    }
  }

  /** Stops handing out descriptors of `path`; open ones close once no lease holds them. */
  forget (path: string, mode?: OpenMode): void {
    for (const m of mode === undefined ? ['r', 'r+'] as const : [mode]) {
      const key = `${m}:${path}`
      const entry = this.entries.get(key)
      if (entry === undefined) continue
      this.entries.delete(key)
      if (entry.leases === 0) this.closeEntry(entry)
    }
  }

  /** Closes the descriptors no lease holds that were last used `idleMs` ago or longer; the next acquire opens afresh. */
  closeIdle (idleMs: number): void {
    const before = Date.now() - idleMs
    for (const [key, entry] of this.entries) {
      if (entry.leases > 0 || entry.handle === undefined || entry.lastUsed > before) continue
      this.entries.delete(key)
      this.closeEntry(entry)
    }
  }

  /** descriptors open or opening now */
  get size (): number {
    return this.entries.size
  }

  /** Closes every descriptor; callers make sure no lease is outstanding. */
  async closeAll (): Promise<void> {
    for (const entry of this.entries.values()) this.closeEntry(entry)
    this.entries.clear()
    await Promise.all(this.closing)
  }

  private trim (): void {
    if (this.entries.size <= this.maxOpen) return
    const idle = [...this.entries.entries()]
      .filter(([, entry]) => entry.leases === 0 && entry.handle !== undefined)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed)
    for (const [key, entry] of idle) {
      if (this.entries.size <= this.maxOpen) break
      this.entries.delete(key)
      this.closeEntry(entry)
    }
  }

  private closeEntry (entry: Entry): void {
    if (entry.closed) return
    entry.closed = true
    const done = entry.opening.then(handle => handle.close(), () => {}).catch(() => {})
    this.closing.add(done)
    void done.finally(() => this.closing.delete(done))
  }
}
