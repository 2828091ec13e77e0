import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { verifyChunk } from '@swarm/chunker'
import { afterEach, beforeEach, expect, it } from 'vitest'
import { createStore } from '../src/index.js'
import { bytesFor, tempDir, testFile, testModel } from './helpers.js'

const builtStore = fileURLToPath(new URL('../dist/index.js', import.meta.url))
const writer = fileURLToPath(new URL('./fixtures/crash-writer.mjs', import.meta.url))

let dir: string
let cleanup: () => Promise<void>

beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir())
})

afterEach(async () => {
  await cleanup()
})

/** runs the writer until it has reported `killAfter` puts, then SIGKILLs it; returns the CIDs it reported */
async function runAndKill (jobPath: string, killAfter: number): Promise<{ reported: string[], finished: boolean }> {
  const child = spawn(process.execPath, [writer, builtStore, jobPath], { stdio: ['ignore', 'pipe', 'pipe'] })
  const reported: string[] = []
  let finished = false
  let stderr = ''
  let buffered = ''
  child.stderr.on('data', (data: Buffer) => { stderr += data.toString() })
  child.stdout.on('data', (data: Buffer) => {
    buffered += data.toString()
    const lines = buffered.split('\n')
    buffered = lines.pop() ?? ''
    for (const line of lines) {
      if (line.startsWith('ok ')) reported.push(line.slice(3))
      if (line === 'done') finished = true
    }
    if (reported.length >= killAfter) child.kill('SIGKILL')
  })
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>(resolve => child.on('exit', (c, s) => resolve([c, s])))
  if (signal !== 'SIGKILL' && code !== 0) throw new Error(`writer failed (${code}): ${stderr}`)
  return { reported, finished }
}

it('never records a chunk with wrong bytes when the writer is killed mid-put', async () => {
  if (!existsSync(builtStore)) throw new Error(`${builtStore} is missing: build first with npx tsc -b packages/store`)
  const model = testModel([
    testFile('a.bin', Array.from({ length: 150 }, (_, i) => bytesFor(`crash/a/${i}`, 16 * 1024))),
    testFile('b.bin', Array.from({ length: 150 }, (_, i) => bytesFor(`crash/b/${i}`, 16 * 1024)))
  ])
  const dataPath = join(dir, 'chunks.bin')
  const chunks: Array<{ cid: string, offset: number, size: number }> = []
  const blobs: Uint8Array[] = []
  let offset = 0
  for (const file of model.files) {
    file.entry.chunks.forEach((ref, i) => {
      const bytes = file.chunks[i] as Uint8Array
      chunks.push({ cid: ref.cid, offset, size: bytes.byteLength })
      blobs.push(bytes)
      offset += bytes.byteLength
    })
  }
  await writeFile(dataPath, Buffer.concat(blobs))
  const storeDir = join(dir, 'store')
  const setup = await createStore({ dir: storeDir })
  await setup.addManifest(model.cid, model.manifest)
  await setup.close()
  const jobPath = join(dir, 'job.json')
  await writeFile(jobPath, JSON.stringify({ dir: storeDir, manifestCid: model.cid, dataPath, chunks }))

  const reported = new Set<string>()
  for (const killAfter of [20, 45, 70]) {
    const run = await runAndKill(jobPath, killAfter)
    expect(run.finished).toBe(false)
    for (const cid of run.reported) reported.add(cid)

    // the killed writer left its lock behind; a new opener takes it over
    const store = await createStore({ dir: storeDir })
    try {
      const missing = new Set(store.missingChunks(model.cid).map(c => c.cid))
      // everything a put reported as done survived the kill
      for (const cid of reported) expect(missing.has(cid)).toBe(false)
      // and every chunk recorded present holds exactly its bytes
      let present = 0
      for (const { cid } of chunks) {
        if (missing.has(cid)) continue
        present++
        expect(verifyChunk(cid, await store.readChunk(cid))).toBe(true)
      }
      expect(present).toBeGreaterThanOrEqual(reported.size)
      expect(present).toBeLessThan(chunks.length)
    } finally {
      await store.close()
    }
  }
})
