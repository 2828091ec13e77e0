/**
 * Verification: re-hashing what the store holds. verify() re-hashes present chunks from disk; a
 * chunk that no longer matches is marked missing in memory at once and a "dropped" record is
 * journaled, so the next pull fetches it again. fillFromLocal re-hashes each chunk it copies
 * from another content file the same way (readVerified).
 */
import { chmod } from 'node:fs/promises'
import { verifyChunk } from '@swarm/chunker'
import { forEachLimit, throwIfAborted } from './async-util.js'
import type { CommitLog } from './commit.js'
import { LOCAL_COPY_CONCURRENCY, PARTIAL_FILE_MODE } from './constants.js'
import { clearPresent, slotChunk } from './content.js'
import type { Content, Slot } from './content.js'
import type { FdPool } from './fd-pool.js'
import type { Model } from './model.js'
import type { Store } from './types.js'
import type { AbortOptions, ChunkRef, CidString, Logger } from '@swarm/interface'

export interface VerifyOptions extends AbortOptions {
  /** called after each chunk is re-hashed */
  onProgress?(progress: { checkedBytes: number, totalBytes: number }): void
}

export interface BadChunk {
  /** path of the file in the model */
  path: string
  cid: CidString
  offset: number
  size: number
}

export interface VerifyReport {
  manifestCid: CidString
  /** present chunks re-hashed (shared content once) */
  checkedChunks: number
  checkedBytes: number
  /** chunks whose bytes no longer match their CID; they are now recorded as missing */
  bad: BadChunk[]
  /** unique chunk CIDs of the model not present after the check, bad ones included */
  missingChunks: number
}

/** Re-hashes every present chunk of a held model from disk; see {@link Store.verify}. */
export async function verifyModel (store: Store, manifestCid: CidString, options?: VerifyOptions): Promise<VerifyReport> {
  return await store.verify(manifestCid, options)
}

/** what re-hashing needs of the store */
export interface VerifyStore {
  readonly log: Logger
  readonly pool: FdPool
  readonly commits: CommitLog
  /** a slot of `cid` whose chunk is present, if any */
  presentSlot(cid: CidString): Slot | undefined
}

/** re-hashes the model's present chunks; the report's `missingChunks` is the caller's to count once this settles */
export async function verifyPresent (store: VerifyStore, model: Model, options: VerifyOptions): Promise<Omit<VerifyReport, 'missingChunks'>> {
  const work: Array<{ path: string, content: Content, index: number, chunk: ChunkRef }> = []
  const seen = new Set<Content>()
  for (const { entry, content } of model.files) {
    if (seen.has(content)) continue
    seen.add(content)
    content.chunks.forEach((chunk, index) => {
      if (content.present[index] === 1) work.push({ path: entry.path, content, index, chunk })
    })
  }
  const total = work.reduce((sum, item) => sum + item.chunk.size, 0)
  const bad: BadChunk[] = []
  let checkedChunks = 0
  let checkedBytes = 0
  await forEachLimit(work, LOCAL_COPY_CONCURRENCY, async ({ path, content, index, chunk }) => {
    throwIfAborted(options.signal)
    if (content.removed || content.present[index] !== 1) return
    const bytes = await store.pool.read(content.dataPath, chunk.offset, chunk.size)
    if (!verifyChunk(chunk.cid, bytes)) {
      bad.push({ path, cid: chunk.cid, offset: chunk.offset, size: chunk.size })
      await markMissing(store.commits, content, index)
    }
    checkedChunks++
    checkedBytes += chunk.size
    options.onProgress?.({ checkedBytes, totalBytes: total })
  })
  if (bad.length > 0) store.log.warn({ manifestCid: model.manifestCid, bad: bad.length }, 'chunks failed verification and are missing again')
  bad.sort((a, b) => a.path.localeCompare(b.path) || a.offset - b.offset)
  return { manifestCid: model.manifestCid, checkedChunks, checkedBytes, bad }
}

/** bytes of `cid` from a present slot that still hashes right; slots that do not are marked missing */
export async function readVerified (store: VerifyStore, cid: CidString): Promise<Uint8Array | undefined> {
  for (let slot = store.presentSlot(cid); slot !== undefined; slot = store.presentSlot(cid)) {
    const chunk = slotChunk(slot)
    const bytes = await store.pool.read(slot.content.dataPath, chunk.offset, chunk.size)
    if (verifyChunk(cid, bytes)) return bytes
    store.log.warn({ cid, key: slot.content.key, offset: chunk.offset }, 'local chunk no longer matches its CID; marking it missing')
    await markMissing(store.commits, slot.content, slot.index)
  }
  return undefined
}

/** forgets a present chunk at once and journals that; the next pull fetches it again */
async function markMissing (commits: CommitLog, content: Content, index: number): Promise<void> {
  if (content.present[index] !== 1 || content.removed) return
  if (content.sealed) {
    // writable again before anyone may try to fill the slot
    await chmod(content.dataPath, PARTIAL_FILE_MODE)
    content.sealed = false
  }
  if (content.present[index] !== 1) return
  clearPresent(content, index)
  await commits.commit({ kind: 'dropped', content, index })
}
