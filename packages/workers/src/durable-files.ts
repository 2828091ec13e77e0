/**
 * A worker's content-file writes, made durable with as few fdatasyncs as the rule allows.
 *
 * The rule: a chunk job answers only once its bytes are verified and durable, which is once an
 * fdatasync *started after its pwrites ended*, on the descriptor they went through, has
 * succeeded. One sync per chunk honours it but costs a sync per 4 MiB; here the chunks written to
 * one file share a descriptor and a group commit: a chunk whose writes are done joins the next
 * sync of that descriptor, which starts `windowMs` after the first chunk joined it, or as soon as
 * the sync before it ends; chunks that finish while a sync runs wait for the next one. With many
 * chunks in flight to one file, one sync covers several.
 *
 * A failed sync fails every chunk it covered. The kernel may have dropped the dirty pages and
 * reports that only once per descriptor, so the descriptor is retired, as the store does with its
 * own: whatever else was written through it fails too, even if a later sync would succeed, and
 * the next chunk for that file opens a fresh one. The worker records nothing either way (only the
 * main thread records), so a failed chunk is simply fetched again.
 *
 * A descriptor stays open while chunks use it and closes with its last one: nothing is held
 * between pulls, and the store may seal (chmod) or delete a file without a worker keeping it.
 */
import { open } from 'node:fs/promises'
import { SYNC_WINDOW_MS } from './constants.js'
import { SyncFailedError } from './errors.js'
import type { FileHandle } from 'node:fs/promises'

/** Opens a content file for writing; tests pass one that injects faults at the descriptor. */
export type OpenFile = (path: string) => Promise<FileHandle>

export interface DurableFilesInit {
  /** how long the first chunk waiting for a sync waits for others to join it (default SYNC_WINDOW_MS) */
  windowMs?: number
  openFile?: OpenFile
}

/** Counters a worker reports: how many syncs its chunks needed. */
export interface DurableFilesStats {
  /** fdatasyncs run */
  syncs: number
  /** chunk writes (one per file a chunk went to) those syncs covered, failed ones included */
  writes: number
  /** descriptors retired after a failed sync */
  retired: number
}

interface Waiter {
  resolve(): void
  reject(err: Error): void
}

interface Descriptor {
  readonly path: string
  readonly opening: Promise<FileHandle>
  /** chunks holding it: writing, or waiting for a sync */
  users: number
  /** writes done, waiting for the next sync */
  pending: Waiter[]
  timer?: NodeJS.Timeout
  syncing: boolean
  /** a sync through it failed: nothing written through it is durable */
  retired?: Error
}

export class DurableFiles {
  private readonly open = new Map<string, Descriptor>()
  private readonly windowMs: number
  private readonly openFile: OpenFile
  readonly stats: DurableFilesStats = { syncs: 0, writes: 0, retired: 0 }

  constructor (init: DurableFilesInit = {}) {
    this.windowMs = init.windowMs ?? SYNC_WINDOW_MS
    this.openFile = init.openFile ?? (async path => await open(path, 'r+'))
  }

  /** pwrites `bytes` at every offset of `path` and resolves once a sync has covered them */
  async write (path: string, offsets: readonly number[], bytes: Uint8Array): Promise<void> {
    const descriptor = this.acquire(path)
    try {
      const handle = await descriptor.opening
      for (const offset of offsets) {
        let done = 0
        while (done < bytes.byteLength) {
          const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, offset + done)
          done += bytesWritten
        }
      }
      await this.synced(descriptor)
    } finally {
      this.release(descriptor)
    }
  }

  private acquire (path: string): Descriptor {
    let descriptor = this.open.get(path)
    if (descriptor === undefined) {
      const opening = this.openFile(path)
      const created: Descriptor = { path, opening, users: 0, pending: [], syncing: false }
      // a file that failed to open is tried afresh by the next chunk
      opening.catch(() => { if (this.open.get(path) === created) this.open.delete(path) })
      this.open.set(path, created)
      descriptor = created
    }
    descriptor.users++
    return descriptor
  }

  private release (descriptor: Descriptor): void {
    if (--descriptor.users > 0) return
    if (this.open.get(descriptor.path) === descriptor) this.open.delete(descriptor.path)
    descriptor.opening.then(async handle => { await handle.close() }).catch(() => {})
  }

  private async synced (descriptor: Descriptor): Promise<void> {
    if (descriptor.retired !== undefined) throw descriptor.retired
    await new Promise<void>((resolve, reject) => {
      descriptor.pending.push({ resolve, reject })
      this.schedule(descriptor)
    })
  }

  private schedule (descriptor: Descriptor): void {
    if (descriptor.syncing || descriptor.timer !== undefined || descriptor.pending.length === 0) return
    descriptor.timer = setTimeout(() => {
      descriptor.timer = undefined
      void this.sync(descriptor)
    }, this.windowMs)
  }

  private async sync (descriptor: Descriptor): Promise<void> {
    const batch = descriptor.pending
    descriptor.pending = []
    descriptor.syncing = true
    this.stats.syncs++
    this.stats.writes += batch.length
    try {
      if (descriptor.retired !== undefined) throw descriptor.retired
      await (await descriptor.opening).datasync()
      for (const waiter of batch) waiter.resolve()
    } catch (err) {
      if (descriptor.retired === undefined) {
        descriptor.retired = new SyncFailedError(descriptor.path, { cause: err })
        this.stats.retired++
        if (this.open.get(descriptor.path) === descriptor) this.open.delete(descriptor.path)
      }
      // ENOSPC and EDQUOT keep their code, so they are reported as a full disk
      const failure = isDiskFull(err) ? err as Error : descriptor.retired
      for (const waiter of batch) waiter.reject(failure)
      // written through it too: never durable now
      for (const waiter of descriptor.pending.splice(0)) waiter.reject(descriptor.retired)
    } finally {
      descriptor.syncing = false
      this.schedule(descriptor)
    }
  }
}

function isDiskFull (err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  return code === 'ENOSPC' || code === 'EDQUOT'
}
