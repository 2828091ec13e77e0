/**
 * The commit loop: what makes written chunks durable and recorded (see "Why a recorded chunk is
 * never wrong" in store.ts). A commit takes everything queued since the previous one, fdatasyncs
 * the touched content files, appends one journal record per slot and fdatasyncs the journal; only
 * then are the slots marked present and the waiters resolved. A slot already recorded is never
 * recorded again, whoever asks (a put, a write done elsewhere and handed in with recordWritten).
 */
import { chmod } from 'node:fs/promises'
import { DiskFullError } from '@swarm/interface'
import { COMPLETE_FILE_MODE } from './constants.js'
import { isComplete, setPresent, slotChunk, writeFully } from './content.js'
import { ContentSyncError } from './errors.js'
import { encodeRecords } from './journal.js'
import type { Content } from './content.js'
import type { FdPool, FileLease } from './fd-pool.js'
import type { JournalRecordKind } from './journal.js'
import type { Logger } from '@swarm/interface'
import type { FileHandle } from 'node:fs/promises'

export interface CommitItem {
  kind: JournalRecordKind
  content: Content
  index: number
  /** the writable descriptor the bytes went through, released after the data fsync */
  lease?: FileLease
  resolve(): void
  reject(err: unknown): void
}

export interface CommitLogInit {
  pool: FdPool
  log: Logger
  /** runs `fn` alone among the store's structural changes and commits */
  exclusive<T>(fn: () => Promise<T>): Promise<T>
  /** an error of the store's disk as what it is (DiskFullError for ENOSPC, EDQUOT) */
  diskError(err: unknown, doing: string): Promise<unknown>
}

export class CommitLog {
  private readonly pool: FdPool
  private readonly log: Logger
  /** descriptors whose fdatasync failed: nothing written through them is recorded any more */
  private readonly poisoned = new WeakSet<FileHandle>()
  private commitQueue: CommitItem[] = []
  private committing: Promise<void> | undefined

  constructor (private readonly init: CommitLogInit) {
    this.pool = init.pool
    this.log = init.log
  }

  /** settles once no commit is running */
  async idle (): Promise<void> {
    await this.committing
  }

  async commit (item: Omit<CommitItem, 'resolve' | 'reject'>): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.commitQueue.push({ ...item, resolve, reject })
      this.committing ??= this.runCommits()
    })
  }

  private async runCommits (): Promise<void> {
    try {
      while (this.commitQueue.length > 0) {
        const batch = this.commitQueue
        this.commitQueue = []
        await this.init.exclusive(async () => { await this.commitBatch(batch) })
      }
    } finally {
      this.committing = undefined
    }
  }

  /** data fsync, then journal append + fsync, per content file, all files at once */
  private async commitBatch (batch: CommitItem[]): Promise<void> {
    const byContent = new Map<Content, CommitItem[]>()
    for (const item of batch) {
      if (item.content.removed) {
        item.lease?.release()
        item.resolve()
        continue
      }
      const items = byContent.get(item.content)
      if (items === undefined) byContent.set(item.content, [item])
      else items.push(item)
    }
    await Promise.all([...byContent].map(async ([content, all]) => {
      // bytes that went through a descriptor whose fdatasync already failed may be lost even if
      // a later fdatasync on it succeeds: never record them
      const items: CommitItem[] = []
      const recording = new Set<number>()
      for (const item of all) {
        if (item.kind === 'present') {
          // recorded already (by an earlier batch or earlier in this one): never twice
          if (item.content.present[item.index] === 1 || recording.has(item.index)) {
            item.lease?.release()
            item.resolve()
            continue
          }
          recording.add(item.index)
        }
        if (item.lease === undefined || !this.poisoned.has(item.lease.handle)) {
          items.push(item)
          continue
        }
        item.lease.release()
        item.reject(new ContentSyncError(content.dataPath, { cause: new Error('an earlier fdatasync of the descriptor it was written through failed') }))
      }
      if (items.length === 0) return
      try {
        const handles = new Set<FileHandle>()
        for (const item of items) if (item.lease !== undefined) handles.add(item.lease.handle)
        for (const handle of handles) await this.syncData(content, handle)
        const records = encodeRecords(items.map(item => ({ kind: item.kind, index: item.index, cid: slotChunk(item).cid })))
        try {
          await this.appendJournal(content, records)
        } catch (err) {
          throw await this.init.diskError(err, `recording chunks of ${content.dataPath}`)
        }
      } catch (err) {
        this.log.error({ err, key: content.key }, 'commit failed')
        for (const item of items) item.reject(err)
        return
      } finally {
        for (const item of items) item.lease?.release()
      }
      for (const item of items) if (item.kind === 'present') setPresent(content, item.index)
      for (const item of items) item.resolve()
      if (isComplete(content) && !content.sealed) await this.seal(content)
    }))
  }

  /**
   * fdatasync of a content file's descriptor. When it fails the kernel may have dropped the dirty
   * pages and reports that only once per descriptor, so the descriptor is retired: the pool opens
   * a fresh one for the next write, and whatever else was written through this one is refused.
   */
  private async syncData (content: Content, handle: FileHandle): Promise<void> {
    try {
      await handle.datasync()
    } catch (err) {
      this.poisoned.add(handle)
      this.pool.forget(content.dataPath, 'r+')
      this.log.warn({ key: content.key, err: (err as Error).message }, 'fdatasync failed; reopening the content file')
      const disk = await this.init.diskError(err, `syncing ${content.dataPath}`)
      throw disk instanceof DiskFullError ? disk : new ContentSyncError(content.dataPath, { cause: err })
    }
  }

  /** The journal's descriptor stays open in the pool between commits: no open and close per commit. */
  private async appendJournal (content: Content, records: Uint8Array): Promise<void> {
    const lease = await this.pool.acquire(content.journalPath, 'r+')
    try {
      // written at the end of the intact records, so a failed append is overwritten by the next
      await writeFully(lease.handle, records, content.journalSize)
      await lease.handle.datasync()
    } catch (err) {
      // as with the data: after a failed sync this descriptor cannot be trusted, the next append opens afresh
      this.pool.forget(content.journalPath, 'r+')
      throw err
    } finally {
      lease.release()
    }
    content.journalSize += records.byteLength
  }

  /** a complete file becomes read-only: from here on it may be handed out as is */
  private async seal (content: Content): Promise<void> {
    try {
      await chmod(content.dataPath, COMPLETE_FILE_MODE)
      content.sealed = true
      this.pool.forget(content.dataPath, 'r+')
      this.pool.forget(content.journalPath, 'r+')
      this.log.debug({ key: content.key, bytes: content.size }, 'content complete')
    } catch (err) {
      this.log.warn({ err, key: content.key }, 'could not make a complete content file read-only')
    }
  }
}
