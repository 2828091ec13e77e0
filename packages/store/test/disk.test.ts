/**
 * The store against a real small file system (a tmpfs this test mounts, with `size=`) and a
 * descriptor whose fdatasync fails: a model that cannot fit is refused with figures, a full disk
 * mid-fill is a DiskFullError that records nothing not on disk, and a failed fdatasync retires
 * its descriptor and records none of the chunks written through it.
 */
import { execFileSync } from 'node:child_process'
import { mkdtemp, open, readdir, rm, rmdir, statfs, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DiskFullError } from '@swarm/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ContentSyncError, createStore, verifyModel } from '../src/index.js'
import { JOURNAL_SUFFIX } from '../src/constants.js'
import { bytesFor, chunksOf, tempDir, testFile, testModel } from './helpers.js'
import type { OpenFile, Store } from '../src/index.js'
import type { TestModel } from './helpers.js'

const KiB = 1024
const MiB = 1024 * KiB

function model (seed: string, files: number, chunks: number, size: number): TestModel {
  return testModel(Array.from({ length: files }, (_, f) =>
    testFile(`${seed}-${f}.bin`, Array.from({ length: chunks }, (_, c) => bytesFor(`${seed}/${f}/${c}`, size)))))
}

async function free (dir: string): Promise<number> {
  const fs = await statfs(dir)
  return fs.bavail * fs.bsize
}

describe('a store on a small file system', () => {
  let mountpoint: string
  let dir: string
  const stores: Store[] = []

  beforeEach(async () => {
    mountpoint = await mkdtemp(join(tmpdir(), 'swarm-small-fs-'))
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountpoint])
    dir = join(mountpoint, 'store')
  })

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close()
    execFileSync('umount', [mountpoint])
    await rmdir(mountpoint)
  })

  async function openStore (): Promise<Store> {
    const store = await createStore({ dir, diskMarginBytes: 64 * KiB })
    stores.push(store)
    return store
  }

  it('refuses a model whose missing bytes do not fit, with the figures and the data dir, and adds nothing', async () => {
    const store = await openStore()
    const big = model('big', 1, 3, 1 * MiB)
    const refused = await store.addManifest(big.cid, big.manifest, { ref: 'big:v1' }).catch((err: unknown) => err)
    expect(refused).toBeInstanceOf(DiskFullError)
    const err = refused as DiskFullError
    expect(err.code).toBe('ERR_DISK_FULL')
    expect(err.dir).toBe(dir)
    expect(err.neededBytes).toBe(3 * MiB + 64 * KiB)
    expect(err.freeBytes).toBeGreaterThan(1 * MiB)
    expect(err.freeBytes).toBeLessThanOrEqual(2 * MiB)
    expect(err.message).toContain(dir)
    expect(err.message).toContain('3145728 bytes')
    expect(store.models()).toEqual([])
    expect(await readdir(join(dir, 'manifests'))).toEqual([])
    expect(await readdir(join(dir, 'content'))).toEqual([])

    // a reader that fetches only what it reads may add it anyway
    await store.addManifest(big.cid, big.manifest, { requireSpace: false })
    expect(store.getManifest(big.cid)).toBeDefined()
  })

  it('a full disk while filling is a DiskFullError; what was stored stays recorded and the rest fits once space is freed', async () => {
    const store = await openStore()
    const m = model('fill', 2, 3, 256 * KiB)
    await store.addManifest(m.cid, m.manifest)
    // leave room for about two chunks
    const filler = join(mountpoint, 'filler')
    await writeFile(filler, new Uint8Array(Math.max(0, await free(mountpoint) - 600 * KiB)))

    const stored: string[] = []
    let failure: unknown
    for (const [cid, bytes] of chunksOf(m)) {
      try {
        await store.putChunk(cid, bytes, { source: 'origin' })
        stored.push(cid)
      } catch (err) {
        failure = err
        break
      }
    }
    expect(failure).toBeInstanceOf(DiskFullError)
    expect((failure as Error).message).toContain(`data dir ${dir}`)
    expect(stored.length).toBeGreaterThanOrEqual(1)
    expect(stored.length).toBeLessThan(6)
    const missing = store.missingChunks(m.cid).map(c => c.cid)
    expect(missing).toHaveLength(6 - stored.length)
    for (const cid of stored) expect(missing).not.toContain(cid)

    // the journal agrees after a reopen, and every recorded chunk is really on disk
    await store.close()
    stores.splice(0)
    const reopened = await openStore()
    expect(reopened.missingChunks(m.cid).map(c => c.cid)).toEqual(missing)
    await expect(verifyModel(reopened, m.cid)).resolves.toMatchObject({ bad: [], checkedChunks: stored.length })

    await rm(filler)
    for (const [cid, bytes] of chunksOf(m)) {
      if (missing.includes(cid)) await expect(reopened.putChunk(cid, bytes)).resolves.toEqual({ written: true })
    }
    expect(reopened.missingChunks(m.cid)).toEqual([])
    for (const file of m.files) expect(Buffer.from(await reopened.read(m.cid, file.entry.path, 0, file.entry.size)).equals(file.bytes)).toBe(true)
  })
})

describe('a failed fdatasync', () => {
  let dir: string
  let cleanup: () => Promise<void>
  let store: Store | undefined

  beforeEach(async () => {
    ({ path: dir, cleanup } = await tempDir())
  })

  afterEach(async () => {
    await store?.close()
    store = undefined
    await cleanup()
  })

  /**
   * Real descriptors of the files `which` picks, whose fdatasync fails the way the kernel reports
   * lost pages (EIO) while `failing` counts down; `opens` lists the writable opens of those files.
   */
  function failingSyncs (which: (path: string) => boolean): { openFile: OpenFile, opens: string[], failing: number } {
    const faults = { opens: [] as string[], failing: 0, openFile: undefined as unknown as OpenFile }
    faults.openFile = async (path, mode) => {
      const handle = await open(path, mode)
      if (!which(path)) return handle
      if (mode === 'r+') faults.opens.push(path)
      const datasync = handle.datasync.bind(handle)
      handle.datasync = async () => {
        if (faults.failing > 0) {
          faults.failing--
          throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' })
        }
        await datasync()
      }
      return handle
    }
    return faults
  }

  it('fails its batch, reopens the descriptor, and records none of the chunks written through it', async () => {
    // content files only: the journals' descriptors come from the same pool
    const faults = failingSyncs(path => !path.endsWith(JOURNAL_SUFFIX))
    const writableOpens = faults.opens
    store = await createStore({ dir, openFile: faults.openFile })
    const m = model('sync', 1, 4, 1000)
    await store.addManifest(m.cid, m.manifest)
    const [a, b, c, d] = [...chunksOf(m)] as Array<[string, Uint8Array]>

    faults.failing = 1
    // both are written through the same descriptor; only the first batch's fdatasync reports the failure
    const [first, second] = await Promise.allSettled([store.putChunk(a![0], a![1]), store.putChunk(b![0], b![1])])
    expect(first.status).toBe('rejected')
    expect(second.status).toBe('rejected')
    expect((first as PromiseRejectedResult).reason).toBeInstanceOf(ContentSyncError)
    expect((second as PromiseRejectedResult).reason).toBeInstanceOf(ContentSyncError)
    expect(store.hasChunk(a![0])).toBe(false)
    expect(store.hasChunk(b![0])).toBe(false)
    expect(store.missingChunks(m.cid)).toHaveLength(4)
    expect(writableOpens).toHaveLength(1)

    // the next write goes through a fresh descriptor and is recorded
    await expect(store.putChunk(c![0], c![1])).resolves.toEqual({ written: true })
    expect(writableOpens).toHaveLength(2)
    expect(writableOpens[1]).toBe(writableOpens[0])
    expect(store.missingChunks(m.cid).map(x => x.cid).sort()).toEqual([a![0], b![0], d![0]].sort())

    // re-fetched, they land; the journal says so after a reopen
    for (const [cid, bytes] of [a!, b!, d!]) await store.putChunk(cid, bytes)
    await store.close()
    store = await createStore({ dir })
    expect(store.missingChunks(m.cid)).toEqual([])
    await expect(verifyModel(store, m.cid)).resolves.toMatchObject({ bad: [], checkedChunks: 4 })
  })

  it('of the journal fails that commit, and the next append opens the journal afresh; between commits its descriptor stays open', async () => {
    const faults = failingSyncs(path => path.endsWith(JOURNAL_SUFFIX))
    const journalOpens = faults.opens
    store = await createStore({ dir, openFile: faults.openFile })
    const m = model('journal', 1, 6, 1000)
    await store.addManifest(m.cid, m.manifest)
    const chunks = [...chunksOf(m)] as Array<[string, Uint8Array]>

    // one commit after another: one descriptor for all of them
    for (const [cid, bytes] of chunks.slice(0, 3)) await store.putChunk(cid, bytes)
    expect(journalOpens).toHaveLength(1)

    faults.failing = 1
    await expect(store.putChunk(chunks[3]![0], chunks[3]![1])).rejects.toThrow(/fdatasync|EIO/)
    expect(store.hasChunk(chunks[3]![0])).toBe(false)
    for (const [cid, bytes] of chunks.slice(3)) await store.putChunk(cid, bytes)
    expect(journalOpens).toHaveLength(2)
    expect(journalOpens[1]).toBe(journalOpens[0])
    expect(store.missingChunks(m.cid)).toEqual([])

    // the failed append left nothing the reopened store would misread
    await store.close()
    store = await createStore({ dir })
    expect(store.missingChunks(m.cid)).toEqual([])
    await expect(verifyModel(store, m.cid)).resolves.toMatchObject({ bad: [], checkedChunks: 6 })
  })
})
