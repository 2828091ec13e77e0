import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ORIGIN_PACKAGES, createByteWorkers } from '@swarm/agent'
import { cidForBytes } from '@swarm/chunker'
import { defaultConfig } from '@swarm/config'
import { UnexpectedPeerError, dataServer, keyIdentity } from '@swarm/exchange'
import type { PeerIdentity } from '@swarm/exchange'
import { silentLogger } from '@swarm/interface'
import { loadOrCreateKey } from '@swarm/p2p'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encodeManifest } from '@swarm/manifest'
import { fileOrigin } from '@swarm/origin-file'
import { azureOrigin } from '@swarm/origin-azure'
import { ociOrigin } from '@swarm/origin-oci'
import { decodeManifest } from '@swarm/manifest'
import { s3Origin } from '@swarm/origin-s3'
import { createStore } from '@swarm/store'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { startAzurite } from '../../../test/helpers/azurite.mjs'
import { publishModctlArtifact } from '../../../test/fixtures/modctl-artifact.js'
import { startRegistry } from '../../../test/helpers/oci-registry.js'
import { deletePrefix, s3Client, s3Settings, uniquePrefix } from '../../../test/helpers/s3.js'
import type { ByteWorkers } from '@swarm/agent'
import type { Origin } from '@swarm/interface'
import type { Store } from '@swarm/store'
import type { ChunkWorkerReport } from '@swarm/workers'

const CHUNK = 256 * 1024

/** A chunk of random bytes at `origin`, and a one-file model of it in `store`. */
async function oneChunkModel (origin: Origin, store: Store): Promise<{ cid: string, bytes: Buffer }> {
  const bytes = randomBytes(CHUNK)
  const cid = cidForBytes(bytes)
  await origin.putChunk(cid, bytes)
  const manifest = { version: 1, chunkSize: CHUNK, files: [{ path: 'weights.bin', size: CHUNK, mode: 0o644, chunks: [{ cid, offset: 0, size: CHUNK }] }] }
  await store.addManifest(encodeManifest(manifest).cid, manifest)
  return { cid, bytes }
}

/** Chunk `cid` fetched from the origin by a worker, written where the store planned it and recorded: what the store reads back. */
async function fetchedByWorker (workers: ByteWorkers, store: Store, cid: string, size: number): Promise<Buffer> {
  const plan = store.planWrite(cid)
  await workers.chunks.fetchChunk({ cid, size, source: { kind: 'origin' }, sourceName: 'origin', slots: plan.slots, dataDir: plan.dir })
  await store.recordWritten(plan)
  return Buffer.from(await store.readChunk(cid))
}

/** What the pool's one worker says it loaded. */
async function loadedBy (workers: ByteWorkers): Promise<string[]> {
  return (((await workers.pool.threadReports())[0]!.info as ChunkWorkerReport).sources as { loaded: string[] }).loaded
}

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
    const store = await createStore({ dir: join(dir, 'store') })
    try {
      const { cid, bytes } = await oneChunkModel(origin, store)
      await origin.close()
      const base = defaultConfig({})
      const config = { ...base, origin: url, agent: { ...base.agent, workers: 1 } }
      workers = createByteWorkers(config, undefined, silentLogger)
      expect(workers).toBeDefined()
      expect((await fetchedByWorker(workers!, store, cid, CHUNK)).equals(bytes)).toBe(true)

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

  it('read an S3 origin through the light reader the main thread describes, with the credentials it resolved', async () => {
    const s3 = s3Settings()
    const prefix = uniquePrefix('byte-worker-reader')
    const url = `s3://${s3.bucket}/${prefix}`
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    const held: Origin[] = []
    const store = await createStore({ dir: join(dir, 'store') })
    try {
      const base = defaultConfig({})
      const settings = { endpoint: s3.endpoint, region: s3.region, forcePathStyle: true }
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const origin = s3Origin({ url, endpoint: s3.endpoint, region: s3.region, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, objectGets })
        held.push(origin)
        const { cid, bytes } = await oneChunkModel(origin, store)
        // with a reader on offer the configuration names no credentials: only the main thread's
        // origin holds them; without one the worker opens the adapter from the configuration
        const s3Config = objectGets === 'presigned' ? settings : { ...settings, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }
        const config = { ...base, origin: url, s3: s3Config, agent: { ...base.agent, workers: 1 } }
        workers = createByteWorkers(config, undefined, silentLogger, { origin })
        expect((await fetchedByWorker(workers!, store, cid, CHUNK)).equals(bytes)).toBe(true)
        const loaded = await loadedBy(workers!)
        if (objectGets === 'presigned') {
          expect(loaded).toContain('@swarm/origin-s3/reader')
          expect(loaded).not.toContain(ORIGIN_PACKAGES.s3)
        } else {
          expect(loaded).toContain(ORIGIN_PACKAGES.s3)
        }
        await workers!.close()
        workers = undefined
      }
    } finally {
      await store.close()
      await Promise.all(held.map(async o => { await o.close() }))
      await deletePrefix(s3Client(s3), s3.bucket, prefix)
    }
  })

  it('read an Azure origin through the light reader, with the SAS the main thread derives from its shared key', async () => {
    const azurite = await startAzurite()
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    const store = await createStore({ dir: join(dir, 'store') })
    const url = `az://${azurite.account}/models/byte-worker`
    const origin = azureOrigin({ url, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    try {
      const { ContainerClient, StorageSharedKeyCredential } = await import('@azure/storage-blob')
      await new ContainerClient(`${azurite.endpoint}/models`, new StorageSharedKeyCredential(azurite.account, azurite.accountKey)).create()
      const { cid, bytes } = await oneChunkModel(origin, store)
      const base = defaultConfig({})
      // the configuration names no key: only the main thread's origin holds it
      const config = { ...base, origin: url, azure: { endpoint: azurite.endpoint }, agent: { ...base.agent, workers: 1 } }
      workers = createByteWorkers(config, undefined, silentLogger, { origin })
      expect((await fetchedByWorker(workers!, store, cid, CHUNK)).equals(bytes)).toBe(true)
      const loaded = await loadedBy(workers!)
      expect(loaded).toContain('@swarm/origin-azure/reader')
      expect(loaded).not.toContain(ORIGIN_PACKAGES.azure)
    } finally {
      await store.close()
      await origin.close()
      await azurite.stop()
    }
  })

  it('read the layer ranges of an OCI model the main thread resolved, asking it where each chunk lies', async () => {
    const registry = await startRegistry()
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    await mkdir(join(dir, 'model'))
    const chunkSize = 1024 * 1024
    const weights = randomBytes(2 * chunkSize + 77)
    await writeFile(join(dir, 'model', 'w.bin'), weights)
    await publishModctlArtifact(registry.endpoint, 'workers/model', 'v1', join(dir, 'model'), ['w.bin'])
    const url = `oci://${registry.host}/workers`
    const origin = ociOrigin({ url, chunkSize })
    const store = await createStore({ dir: join(dir, 'store') })
    try {
      const manifestCid = await origin.resolveRef({ name: 'model', tag: 'v1' })
      const manifest = decodeManifest(await origin.getManifest(manifestCid), { expectedCid: manifestCid })
      await store.addManifest(manifestCid, manifest)
      const base = defaultConfig({})
      workers = createByteWorkers({ ...base, origin: url, chunkSize, agent: { ...base.agent, workers: 1 } }, undefined, silentLogger, { origin })
      const file = manifest.files.find(f => f.path === 'w.bin')!
      for (const chunk of file.chunks) {
        expect((await fetchedByWorker(workers!, store, chunk.cid, chunk.size)).equals(weights.subarray(chunk.offset, chunk.offset + chunk.size))).toBe(true)
      }
      expect(await loadedBy(workers!)).toContain(ORIGIN_PACKAGES.oci)
    } finally {
      await store.close()
      await origin.close()
      await registry.stop()
    }
  })

  it('load their peer client and origin adapter as soon as the pool starts, before any job', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    await mkdir(join(dir, 'origin'))
    const base = defaultConfig({})
    const config = { ...base, origin: pathToFileURL(join(dir, 'origin')).href, agent: { ...base.agent, workers: 2 } }
    workers = createByteWorkers(config, keyIdentity(await loadOrCreateKey(join(dir, 'node.key'))), silentLogger)
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

  it('fetch from a peer as their node, with the certificate and the checks of the main thread, which checks each certificate once for all its workers', async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-byte-worker-'))
    const base = defaultConfig({})
    const config = { ...base, agent: { ...base.agent, workers: 1 } }
    const nodeKey = await loadOrCreateKey(join(dir, 'node.key'))
    const node = keyIdentity(nodeKey)
    let checksOnMain = 0
    const counting: PeerIdentity = {
      certificate: async () => await node.certificate(),
      verifyCertificate: async (raw, validity) => { checksOnMain++; return await node.verifyCertificate(raw, validity) }
    }
    workers = createByteWorkers(config, counting, silentLogger)
    const store = await createStore({ dir: join(dir, 'store') })
    // the peer: a data server on this thread that admits this node's peer id alone
    const peerKey = await loadOrCreateKey(join(dir, 'peer.key'))
    const bytes = randomBytes(CHUNK)
    const cid = cidForBytes(bytes)
    const manifest = { version: 1, chunkSize: CHUNK, files: [{ path: 'weights.bin', size: CHUNK, mode: 0o644, chunks: [{ cid, offset: 0, size: CHUNK }] }] }
    await store.addManifest(encodeManifest(manifest).cid, manifest)
    const server = dataServer({ privateKey: peerKey, isAdmitted: peer => peer === peerIdFromPrivateKey(nodeKey).toString(), content: { read: async asked => asked === cid ? bytes : undefined } })
    const { port } = await server.start()
    try {
      const peer = { kind: 'peer' as const, peerId: peerIdFromPrivateKey(peerKey).toString(), host: '127.0.0.1', port }
      const plan = store.planWrite(cid)
      await workers!.chunks.fetchChunk({ cid, size: CHUNK, source: peer, sourceName: 'peer', slots: plan.slots, dataDir: plan.dir })
      await store.recordWritten(plan)
      expect(Buffer.from(await store.readChunk(cid)).equals(bytes)).toBe(true)
      // the server admitted the node's peer id (the worker presented the main thread's certificate), and the worker had the server's checked there
      expect(server.stats.requests).toBe(1)
      expect(checksOnMain).toBe(1)
      // a new worker meets the same certificate: the main thread knows it and does not check it again
      await workers!.close()
      workers = createByteWorkers(config, counting, silentLogger)
      const second = store.planWrite(cid)
      await workers!.chunks.fetchChunk({ cid, size: CHUNK, source: peer, sourceName: 'peer', slots: second.slots, dataDir: second.dir })
      expect(server.stats.requests).toBe(2)
      expect(checksOnMain).toBe(1)
      // a peer dialled under another's id: the certificate names the server, so the worker refuses it
      const other = peerIdFromPrivateKey(await loadOrCreateKey(join(dir, 'other.key'))).toString()
      const again = store.planWrite(cid)
      await expect(workers!.chunks.fetchChunk({ cid, size: CHUNK, source: { ...peer, peerId: other }, sourceName: 'peer', slots: again.slots, dataDir: again.dir }))
        .rejects.toMatchObject({ code: new UnexpectedPeerError(other).code })
      expect(server.stats.requests).toBe(2)
    } finally {
      await server.stop()
      await store.close()
    }
  })
})
