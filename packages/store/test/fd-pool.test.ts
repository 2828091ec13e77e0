/** The store's descriptor pool on real files: reads through leases, and descriptors closed once idle. */
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { FdPool } from '../src/fd-pool.js'

describe('FdPool', () => {
  let dir: string
  let path: string
  const bytes = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251))
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fd-pool-'))
    path = join(dir, 'content')
    await writeFile(path, bytes)
  })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('reads a range into the buffer allocate gives, and refuses a range past the end', async () => {
    const pool = new FdPool(4)
    const into = Buffer.alloc(200)
    const got = await pool.read(path, 100, 100, size => into.subarray(0, size + 50))
    expect(got.buffer).toBe(into.buffer)
    expect(Buffer.compare(Buffer.from(got), bytes.subarray(100, 200))).toBe(0)
    await expect(pool.read(path, 4000, 200)).rejects.toThrow(/ends before byte 4200/)
    await pool.closeAll()
  })

  it('closes descriptors idle for long, never one a lease holds, and opens afresh after', async () => {
    const pool = new FdPool(4)
    await pool.read(path, 0, 16)
    const held = await pool.acquire(path, 'r+')
    expect(pool.size).toBe(2)
    pool.closeIdle(0)
    // the read-only one was idle; the writable one is leased
    expect(pool.size).toBe(1)
    expect((await held.handle.read(Buffer.alloc(8), 0, 8, 0)).bytesRead).toBe(8)
    held.release()
    pool.closeIdle(60_000)
    expect(pool.size).toBe(1)
    pool.closeIdle(0)
    expect(pool.size).toBe(0)
    // a file deleted while nothing held it open is gone for the next read
    await unlink(path)
    await expect(pool.read(path, 0, 16)).rejects.toMatchObject({ code: 'ENOENT' })
    await pool.closeAll()
  })
})
