/**
 * Content files: one plain file per distinct file content, created sparse at full size and
 * filled in place, with its presence journal beside it (see store.ts for the layout and
 * journal.ts for the records). This module opens and creates them, replaying the journal into
 * the in-memory presence map, and holds the helpers on that map and the index of the files by key
 * and of their slots by chunk CID; the commit loop that makes writes durable and records them is
 * commit.ts, the model bookkeeping store.ts.
 */
import { createHash } from 'node:crypto'
import { chmod, open, readFile, stat, statfs, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { DiskFullError } from '@swarm/interface'
import { COMPLETE_FILE_MODE, JOURNAL_SUFFIX, PARTIAL_FILE_MODE } from './constants.js'
import { isMissing, unlinkIfPresent } from './fs-util.js'
import { cidTag, decodeJournal } from './journal.js'
import type { ChunkRef, CidString, FileEntry, Logger } from '@swarm/interface'
import type { FileHandle } from 'node:fs/promises'

export interface Content {
  readonly key: string
  readonly dataPath: string
  readonly journalPath: string
  readonly size: number
  readonly chunks: readonly ChunkRef[]
  /** 1 where a chunk is recorded present */
  readonly present: Uint8Array
  /** slots being written, settled once their record is durable (or the write failed) */
  readonly pending: Map<number, Promise<void>>
  presentCount: number
  presentBytes: number
  /** bytes of intact journal records; the next record goes here */
  journalSize: number
  /** whether the file is chmod 0444 */
  sealed: boolean
  /** manifest CIDs whose files use this content */
  readonly users: Set<CidString>
  removed: boolean
}

export interface Slot {
  content: Content
  index: number
}

/** The store's content files in memory: each by key, and per chunk CID the slots that hold or need it. */
export class ContentIndex {
  readonly contents = new Map<string, Content>()
  readonly slotsByCid = new Map<CidString, Slot[]>()

  register (content: Content): Content {
    this.contents.set(content.key, content)
    content.chunks.forEach((chunk, index) => {
      const slots = this.slotsByCid.get(chunk.cid)
      if (slots === undefined) this.slotsByCid.set(chunk.cid, [{ content, index }])
      else slots.push({ content, index })
    })
    return content
  }

  unregister (content: Content): void {
    content.removed = true
    this.contents.delete(content.key)
    for (const chunk of new Set(content.chunks.map(c => c.cid))) {
      const slots = this.slotsByCid.get(chunk)?.filter(slot => slot.content !== content)
      if (slots === undefined || slots.length === 0) this.slotsByCid.delete(chunk)
      else this.slotsByCid.set(chunk, slots)
    }
  }

  /** a slot of `cid` whose chunk is present, if any */
  presentSlot (cid: CidString): Slot | undefined {
    return this.slotsByCid.get(cid)?.find(slot => slot.content.present[slot.index] === 1)
  }
}

/** an existing content file with its journal replayed, or a fresh one when the file is missing or the wrong size */
export async function openContentFile (contentDir: string, key: string, entry: FileEntry, log: Logger): Promise<Content> {
  const dataPath = join(contentDir, key)
  const journalPath = dataPath + JOURNAL_SUFFIX
  const info = await stat(dataPath).catch(err => { if (isMissing(err)) return undefined; throw err })
  if (info === undefined || !info.isFile() || info.size !== entry.size) {
    if (info !== undefined) log.warn({ key, size: info.size, expected: entry.size }, 'content file has the wrong size; starting it over')
    return await createContentFile(contentDir, key, entry)
  }
  let journal: Uint8Array
  try {
    journal = await readFile(journalPath)
  } catch (err) {
    if (!isMissing(err)) throw err
    journal = new Uint8Array(0)
    await writeFile(journalPath, journal)
  }
  const { records, validLength } = decodeJournal(journal)
  if (validLength !== journal.byteLength) {
    log.warn({ key, torn: journal.byteLength - validLength }, 'ignoring a torn journal tail')
    await truncate(journalPath, validLength)
  }
  const content = makeContent(key, dataPath, journalPath, entry)
  content.journalSize = validLength
  let mismatched = 0
  for (const record of records) {
    const chunk = content.chunks[record.index]
    if (chunk === undefined || cidTag(chunk.cid) !== record.cidTag) {
      mismatched++
      continue
    }
    if (record.kind === 'present') setPresent(content, record.index)
    else clearPresent(content, record.index)
  }
  if (mismatched > 0) log.warn({ key, mismatched }, 'ignoring journal records that do not match the chunk list')
  const complete = isComplete(content)
  await chmod(dataPath, complete ? COMPLETE_FILE_MODE : PARTIAL_FILE_MODE)
  content.sealed = complete
  return content
}

/** a new, empty (sparse) content file with an empty journal; anything at those paths is replaced */
export async function createContentFile (contentDir: string, key: string, entry: FileEntry): Promise<Content> {
  const dataPath = join(contentDir, key)
  const journalPath = dataPath + JOURNAL_SUFFIX
  // the journal goes first: a journal must never outlive, and so describe, an older data file
  await unlinkIfPresent(journalPath)
  await unlinkIfPresent(dataPath)
  const handle = await open(dataPath, 'wx', PARTIAL_FILE_MODE)
  try {
    await handle.truncate(entry.size)
  } finally {
    await handle.close()
  }
  await writeFile(journalPath, new Uint8Array(0), { flag: 'wx' })
  const content = makeContent(key, dataPath, journalPath, entry)
  if (isComplete(content)) {
    await chmod(dataPath, COMPLETE_FILE_MODE)
    content.sealed = true
  }
  return content
}

/**
 * An error of the store's own disk, as what it is: ENOSPC and EDQUOT become DiskFullError (so a
 * pull ends with it rather than blaming its sources); anything else is returned as is.
 */
export async function diskError (dir: string, err: unknown, doing: string): Promise<unknown> {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return err
  const freeBytes = await statfs(dir).then(fs => fs.bavail * fs.bsize, () => undefined)
  return new DiskFullError(dir, undefined, freeBytes,
    `disk full: ${code === 'EDQUOT' ? 'the disk quota is exhausted' : 'no space left'} on the file system of the data dir ${dir}${freeBytes !== undefined ? ` (${formatBytes(freeBytes)} free)` : ''} while ${doing}; chunks not stored are not recorded and will be fetched again once there is room`,
    { cause: err })
}

export function makeContent (key: string, dataPath: string, journalPath: string, entry: FileEntry): Content {
  return {
    key,
    dataPath,
    journalPath,
    size: entry.size,
    chunks: entry.chunks.map(chunk => ({ cid: chunk.cid, offset: chunk.offset, size: chunk.size })),
    present: new Uint8Array(entry.chunks.length),
    pending: new Map(),
    presentCount: 0,
    presentBytes: 0,
    journalSize: 0,
    sealed: false,
    users: new Set(),
    removed: false
  }
}

export function formatBytes (bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / (1024 * 1024)).toFixed(1)} MiB (${bytes} bytes)` : `${bytes} bytes`
}

export function setPresent (content: Content, index: number): void {
  if (content.present[index] === 1) return
  content.present[index] = 1
  content.presentCount++
  content.presentBytes += content.chunks[index]?.size ?? 0
}

export function clearPresent (content: Content, index: number): void {
  if (content.present[index] !== 1) return
  content.present[index] = 0
  content.presentCount--
  content.presentBytes -= content.chunks[index]?.size ?? 0
}

export function isComplete (content: Content): boolean {
  return content.presentCount === content.chunks.length
}

export function slotChunk (slot: { content: Content, index: number }): ChunkRef {
  const chunk = slot.content.chunks[slot.index]
  if (chunk === undefined) throw new RangeError(`no chunk ${slot.index} in ${slot.content.key}`)
  return chunk
}

/** SHA-256 over the size and the chunk list: equal keys mean equal bytes at equal offsets */
export function contentKey (entry: FileEntry): string {
  const hash = createHash('sha256').update(`swarm-content-v1\n${entry.size}\n`)
  for (const chunk of entry.chunks) hash.update(`${chunk.offset} ${chunk.size} ${chunk.cid}\n`)
  return hash.digest('hex')
}

/** index of the chunk holding byte `offset` (chunks tile the file in order) */
export function firstChunkAt (chunks: readonly ChunkRef[], offset: number): number {
  let lo = 0
  let hi = chunks.length - 1
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1
    if ((chunks[mid]?.offset ?? 0) <= offset) lo = mid
    else hi = mid - 1
  }
  return lo
}

export async function writeFully (handle: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0
  while (done < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, done, bytes.byteLength - done, position + done)
    done += bytesWritten
  }
}
