import { open, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError } from '@swarm/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { JOURNAL_SUFFIX, contentKey, createStore } from '../src/index.js'
import type { Store, WritePlan } from '../src/index.js'
import { bytesFor, tempDir, testFile, testModel } from './helpers.js'

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

/** what a worker thread does with a plan: pwrite at every slot through its own descriptor, fdatasync */
async function writeElsewhere (plan: WritePlan, bytes: Uint8Array): Promise<void> {
  for (const slot of plan.slots) {
    const handle = await open(slot.path, 'r+')
    try {
      await handle.write(bytes, 0, bytes.byteLength, slot.offset)
      await handle.datasync()
    } finally {
      await handle.close()
    }
  }
}

async function journalRecords (path: string): Promise<number> {
  return (await stat(path + JOURNAL_SUFFIX)).size / 16
}

describe('write plans', () => {
  const x = bytesFor('x', 700)
  const y = bytesFor('y', 700)
  const model = testModel([testFile('a.bin', [x, y, x]), testFile('b.bin', [y])])

  it('names every slot that needs a chunk and records it as a put would', async () => {
    store = await createStore({ dir })
    await store.addManifest(model.cid, model.manifest)
    const plan = store.planWrite(cidForBytes(x))
    expect(plan.size).toBe(700)
    const aPath = join(dir, 'content', contentKey(model.manifest.files[0]!))
    expect(plan.slots).toEqual([{ path: aPath, offset: 0 }, { path: aPath, offset: 1400 }])
    await writeElsewhere(plan, x)
    // written but not recorded: not present
    expect(store.hasChunk(cidForBytes(x))).toBe(false)
    await expect(store.recordWritten(plan)).resolves.toEqual({ written: true })
    expect(store.hasChunk(cidForBytes(x))).toBe(true)
    expect(Buffer.from(await store.read(model.cid, 'a.bin', 1400, 700)).equals(x)).toBe(true)
    expect(await journalRecords(aPath)).toBe(2)
    // a plan once recorded is spent
    await expect(store.recordWritten(plan)).rejects.toThrow(TypeError)
    // a chunk present needs no slot
    expect(store.planWrite(cidForBytes(x)).slots).toEqual([])
    await expect(store.recordWritten(store.planWrite(cidForBytes(x)))).resolves.toEqual({ written: false })
    expect(await journalRecords(aPath)).toBe(2)
    // and the record survives a reopen, the file sealing once complete
    const yPlan = store.planWrite(cidForBytes(y))
    await writeElsewhere(yPlan, y)
    await store.recordWritten(yPlan)
    expect(store.files(model.cid).map(f => f.complete)).toEqual([true, true])
    await store.close()
    store = await createStore({ dir })
    expect(store.missingChunks(model.cid)).toEqual([])
    expect((await store.verify(model.cid)).bad).toEqual([])
  })

  it('records a slot once when a put and a plan race for it', async () => {
    store = await createStore({ dir })
    await store.addManifest(model.cid, model.manifest)
    const plan = store.planWrite(cidForBytes(y))
    await writeElsewhere(plan, y)
    const [put, recorded] = await Promise.all([store.putChunk(cidForBytes(y), y), store.recordWritten(plan)])
    expect(put.written || recorded.written).toBe(true)
    expect(await journalRecords(join(dir, 'content', contentKey(model.manifest.files[0]!)))).toBe(1)
    expect(await journalRecords(join(dir, 'content', contentKey(model.manifest.files[1]!)))).toBe(1)
  })

  it('refuses the record of content evicted between plan and record', async () => {
    store = await createStore({ dir })
    await store.addManifest(model.cid, model.manifest)
    const plan = store.planWrite(cidForBytes(x))
    await writeElsewhere(plan, x)
    await store.remove(model.cid)
    await expect(store.recordWritten(plan)).resolves.toEqual({ written: false })
    // the same content added again starts empty: nothing of the old plan counts
    await store.addManifest(model.cid, model.manifest)
    expect(store.hasChunk(cidForBytes(x))).toBe(false)
    expect(store.missingChunks(model.cid)).toHaveLength(2)
  })

  it('refuses a chunk no held file needs, and a plan of another store', async () => {
    store = await createStore({ dir })
    await store.addManifest(model.cid, model.manifest)
    expect(() => store!.planWrite(cidForBytes(bytesFor('z', 10)))).toThrow(NotFoundError)
    await expect(store.recordWritten({ cid: cidForBytes(x), size: 700, dir, slots: [] })).rejects.toThrow(TypeError)
  })
})
