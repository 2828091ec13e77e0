import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ORIGIN_PACKAGES, createByteWorkers } from '@swarm/agent'
import { cidForBytes } from '@swarm/chunker'
import { defaultConfig } from '@swarm/config'
import { silentLogger } from '@swarm/interface'
import { loadOrCreateKey } from '@swarm/p2p'
import { encodeManifest } from '@swarm/manifest'
import { fileOrigin } from '@swarm/origin-file'
import { createStore } from '@swarm/store'
import { afterEach, describe, expect, it, vi } from 'vitest'
import type { ByteWorkers } from '@swarm/agent'
import type { ChunkWorkerReport } from '@swarm/workers'

const CHUNK = 256 * 1024

describe('byte workers', () => {
  let dir: string | undefined
  let workers: ByteWorkers | undefined
  afterEach(async () => {
    await workers?.close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  it('load the one origin adapter their spec names, and no peer stack for origin jobs', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    await mkdir(join(dir, 'origin'))
    const url = pathToFileURL(join(dir, 'origin')).href
    const origin = fileOrigin({ url })
    const bytes = randomBytes(CHUNK)
    const cid = cidForBytes(bytes)
    await origin.putChunk(cid, bytes)
    await origin.close()
    const manifest = { version: 1, chunkSize: CHUNK, files: [{ path: 'weights.bin', size: CHUNK, mode: 0o644, chunks: [{ cid, offset: 0, size: CHUNK }] }] }
    const store = await createStore({ dir: join(dir, 'store') })
    try {
      await store.addManifest(encodeManifest(manifest).cid, manifest)
      const base = defaultConfig({})
      const config = { ...base, origin: url, agent: { ...base.agent, workers: 1 } }
      workers = createByteWorkers(config, undefined, silentLogger)
      expect(workers).toBeDefined()
      const plan = store.planWrite(cid)
      await workers!.chunks.fetchChunk({ cid, size: CHUNK, source: { kind: 'origin' }, sourceName: 'origin', slots: plan.slots, dataDir: plan.dir })
      await store.recordWritten(plan)
      expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)

      const reports = await workers!.pool.threadReports()
      expect(reports.map(r => r.name)).toEqual(['worker-0'])
      const { loaded } = (reports[0]!.info as ChunkWorkerReport).sources as { loaded: string[] }
      expect(loaded).toContain(ORIGIN_PACKAGES.file)
      for (const other of Object.values(ORIGIN_PACKAGES).filter(p => p !== ORIGIN_PACKAGES.file)) expect(loaded).not.toContain(other)
      expect(loaded).not.toContain('@swarm/exchange')
    } finally {
      await store.close()
    }
  })

  it('load their peer client and origin adapter as soon as the pool starts, before any job', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    await mkdir(join(dir, 'origin'))
    const base = defaultConfig({})
    const config = { ...base, origin: pathToFileURL(join(dir, 'origin')).href, agent: { ...base.agent, workers: 2 } }
    workers = createByteWorkers(config, await loadOrCreateKey(join(dir, 'node.key')), silentLogger)
    workers!.pool.start()
    await vi.waitFor(async () => {
      const reports = await workers!.pool.threadReports()
      expect(reports).toHaveLength(2)
      for (const report of reports) {
        const { loaded } = (report.info as ChunkWorkerReport).sources as { loaded: string[] }
        expect(loaded).toEqual(expect.arrayContaining(['@swarm/exchange', ORIGIN_PACKAGES.file]))
      }
    }, { timeout: 15_000, interval: 50 })
    expect(workers!.pool.stats.jobsDone + workers!.pool.stats.jobsFailed).toBe(0)
  })
})
