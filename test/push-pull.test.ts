/**
 * The foundation end to end: the real CLI against the real S3 server (Ceph RGW on loopback),
 * with real files. Origin-side counts come from the server (object listings) or from a real
 * counting proxy in front of it.
 */

import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { collect, spawnSwarm, swarm } from './helpers/cli.js'
import { hashes, SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { originProxy } from './helpers/proxy.js'
import { cliEnv, deletePrefix, listKeys, s3Client, s3Settings, uniquePrefix } from './helpers/s3.js'
import type { S3Client } from '@aws-sdk/client-s3'
import type { S3Settings } from './helpers/s3.js'

const CHUNK = '1MiB'

describe('push and pull through a real S3 server', () => {
  let s3: S3Settings
  let client: S3Client
  let work: string
  const prefixes: string[] = []

  beforeAll(async () => {
    s3 = s3Settings()
    client = s3Client(s3)
    work = await mkdtemp(join(tmpdir(), 'swarm-e2e-'))
  })

  afterAll(async () => {
    for (const prefix of prefixes) await deletePrefix(client, s3.bucket, prefix)
    client.destroy()
    await rm(work, { recursive: true, force: true })
  })

  function prefix (name: string): string {
    const p = uniquePrefix(name)
    prefixes.push(p)
    return p
  }

  it('pull returns every file byte for byte (safetensors shards, config and tokenizer files)', async () => {
    const p = prefix('roundtrip')
    const env = cliEnv(s3, p)
    const model = await writeSyntheticModel(join(work, 'rt-model'), { ...SMALL_SHAPE, shards: 2 })
    expect(model.files.filter(f => f.endsWith('.safetensors'))).toHaveLength(2)
    expect(model.files).toContain('tokenizer.json')

    const push = await swarm(['push', model.dir, '--name', 'tiny-llama:v1', '--chunk-size', CHUNK, '--json', '--data-dir', join(work, 'rt-a')], env)
    expect(push.code, push.stderr).toBe(0)
    expect(push.done?.manifestCid).toMatch(/^bagaaiera/)

    const to = join(work, 'rt-out')
    const pull = await swarm(['pull', 'tiny-llama:v1', '--no-agent', '--to', to, '--json', '--data-dir', join(work, 'rt-b')], env)
    expect(pull.code, pull.stderr).toBe(0)
    expect(pull.done?.manifestCid).toBe(push.done?.manifestCid)
    expect(pull.done?.doneBytes).toBe(pull.done?.totalBytes)
    expect(Number((pull.done?.bytesBySource as { origin: number }).origin)).toBeGreaterThan(model.totalBytes / 2)
    expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))

    // the pulled copy is not the store's file: editing it cannot corrupt what peers are served
    await rm(join(to, 'config.json'))
    const verify = await swarm(['verify', 'tiny-llama:v1', '--json', '--data-dir', join(work, 'rt-b')], env)
    expect(verify.code, verify.stderr).toBe(0)
    expect(verify.done?.bad).toEqual([])

    const ls = await swarm(['ls', '--json', '--data-dir', join(work, 'rt-b')], env)
    expect(ls.code).toBe(0)
    expect(ls.done?.remote).toEqual([{ ref: 'tiny-llama:v1', cid: push.done?.manifestCid }])
    expect((ls.done?.local as Array<{ refs: string[] }>)[0]?.refs).toEqual(['tiny-llama:v1'])
  }, 180_000)

  it('a re-push uploads nothing; a new version uploads only the changed tensors and the header', async () => {
    const p = prefix('dedupe')
    const env = cliEnv(s3, p)
    const base = await writeSyntheticModel(join(work, 'dd-v1'), { ...SMALL_SHAPE })
    const first = await swarm(['push', base.dir, '--name', 'dd:v1', '--chunk-size', CHUNK, '--json'], env)
    expect(first.code, first.stderr).toBe(0)
    const keysAfterFirst = new Set(await listKeys(client, s3.bucket, `${p}/chunks/`))
    const chunksAfterFirst = keysAfterFirst.size
    expect(chunksAfterFirst).toBe(first.done?.uploadedChunks)

    const again = await swarm(['push', base.dir, '--name', 'dd:v1', '--chunk-size', CHUNK, '--json'], env)
    expect(again.code).toBe(0)
    expect(again.done?.uploadedChunks).toBe(0)
    expect((await listKeys(client, s3.bucket, `${p}/chunks/`)).length).toBe(chunksAfterFirst)

    // v2: two tensors with new values, one resized (every later offset shifts)
    const changed = { 'model.layers.0.self_attn.q_proj.weight': 'v2', 'model.layers.1.mlp.up_proj.weight': 'v2' }
    const reshaped = { 'model.layers.0.mlp.gate_proj.weight': [1600, 512] }
    const next = await writeSyntheticModel(join(work, 'dd-v2'), { ...SMALL_SHAPE, changed, reshaped })
    const second = await swarm(['push', next.dir, '--name', 'dd:v2', '--chunk-size', CHUNK, '--json'], env)
    expect(second.code, second.stderr).toBe(0)
    const added = (await listKeys(client, s3.bucket, `${p}/chunks/`)).filter(k => !keysAfterFirst.has(k)).map(k => k.slice(k.lastIndexOf('/') + 1))
    expect(added.length).toBe(second.done?.uploadedChunks)
    expect(added.length).toBeGreaterThan(0)

    // which chunks had to be new: those overlapping the header or a changed tensor, from the v2 manifest
    const manifestBody = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${p}/manifests/${String(second.done?.manifestCid)}` }))
    const manifest = JSON.parse(await manifestBody.Body!.transformToString()) as { files: Array<{ path: string, chunks: Array<{ cid: string, offset: number, size: number }>, tensors?: Array<{ name: string, start: number, end: number }> }> }
    const weights = manifest.files.find(f => f.path === 'model.safetensors')!
    const touched = weights.tensors!.filter(t => t.name in changed || t.name in reshaped)
    const headerEnd = weights.tensors![0]!.start
    const mayChange = new Set(weights.chunks.filter(c =>
      c.offset < headerEnd || touched.some(t => c.offset < t.end && t.start < c.offset + c.size)).map(c => c.cid))
    // every uploaded chunk holds the header or a changed tensor (a resized tensor's unchanged prefix may still dedupe)
    for (const cid of added) expect(mayChange.has(cid), cid).toBe(true)
    // and every other chunk of v2 was already at the origin from v1, although its offset moved
    for (const chunk of weights.chunks) {
      if (!mayChange.has(chunk.cid)) expect(keysAfterFirst.has(`${p}/chunks/${chunk.cid}`), `offset ${chunk.offset}`).toBe(true)
    }
    expect(weights.chunks.some(c => !mayChange.has(c.cid) && c.offset > weights.tensors!.find(t => t.name in reshaped)!.end)).toBe(true)
    expect(added.length).toBeLessThan(weights.chunks.length / 2)
  }, 180_000)

  it('a pull killed with SIGKILL resumes: the rerun fetches only the missing chunks and ends byte-identical', async () => {
    const p = prefix('resume')
    const proxy = await originProxy(s3.endpoint)
    try {
      const env = cliEnv(s3, p, proxy.endpoint)
      const model = await writeSyntheticModel(join(work, 'rs-model'), { ...SMALL_SHAPE, layers: 4 })
      const push = await swarm(['push', model.dir, '--name', 'rs', '--chunk-size', CHUNK, '--json'], env)
      expect(push.code, push.stderr).toBe(0)
      const total = Number(push.done?.uploadedChunks)
      proxy.reset()

      const dataDir = join(work, 'rs-node')
      const child = spawnSwarm(['pull', 'rs', '--no-agent', '--concurrency', '2', '--json', '--data-dir', dataDir], env)
      const half = Math.floor(total / 2)
      proxy.onChunkGet = count => { if (count >= half) child.kill('SIGKILL') }
      const killed = await collect(child)
      proxy.onChunkGet = undefined
      expect(killed.code).not.toBe(0)

      const ls = await swarm(['ls', '--local', '--json', '--data-dir', dataDir], env)
      const held = (ls.done?.local as Array<{ presentBytes: number, totalBytes: number }>)[0]!
      expect(held.presentBytes).toBeGreaterThan(0)
      expect(held.presentBytes).toBeLessThan(held.totalBytes)

      proxy.reset()
      const rerun = await swarm(['pull', 'rs', '--no-agent', '--to', join(work, 'rs-out'), '--json', '--data-dir', dataDir], env)
      expect(rerun.code, rerun.stderr).toBe(0)
      const fetched = proxy.gets.chunks ?? 0
      expect(fetched).toBeLessThan(total)
      expect(fetched * 1024 * 1024).toBeGreaterThanOrEqual(held.totalBytes - held.presentBytes - 1024 * 1024 * 2)
      expect(Number((rerun.done?.bytesBySource as { origin: number }).origin)).toBe(held.totalBytes - held.presentBytes)
      expect(await hashes(join(work, 'rs-out'), model.files)).toEqual(await hashes(model.dir, model.files))
    } finally {
      await proxy.stop()
    }
  }, 180_000)

  it('a chunk corrupted at the origin is detected, named, and never written', async () => {
    const p = prefix('corrupt')
    const env = cliEnv(s3, p)
    const model = await writeSyntheticModel(join(work, 'cr-model'), { ...SMALL_SHAPE })
    const push = await swarm(['push', model.dir, '--name', 'cr', '--chunk-size', CHUNK, '--json'], env)
    expect(push.code).toBe(0)
    const manifestBody = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${p}/manifests/${String(push.done?.manifestCid)}` }))
    const manifest = JSON.parse(await manifestBody.Body!.transformToString()) as { files: Array<{ path: string, chunks: Array<{ cid: string, offset: number, size: number }> }> }
    const weights = manifest.files.find(f => f.path === 'model.safetensors')!
    const victim = weights.chunks[3]!
    const original = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${p}/chunks/${victim.cid}` }))
    const bytes = Buffer.from(await original.Body!.transformToByteArray())
    bytes[100] = (bytes[100] ?? 0) ^ 0x55
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${p}/chunks/${victim.cid}`, Body: bytes }))

    const dataDir = join(work, 'cr-node')
    const to = join(work, 'cr-out')
    const pull = await swarm(['pull', 'cr', '--no-agent', '--to', to, '--json', '--data-dir', dataDir], env)
    expect(pull.code).toBe(4)
    expect(pull.stderr).toContain(victim.cid)
    expect(pull.stderr).toContain(`model.safetensors at offset ${victim.offset}`)
    expect(pull.stderr).toMatch(/failed verification/)
    await expect(stat(to)).rejects.toThrow(/ENOENT/)

    // whatever the store recorded verifies, and the bad chunk is not among it
    const status = await swarm(['verify', 'cr', '--json', '--data-dir', dataDir], env)
    expect(status.done?.bad).toEqual([])
    expect(Number(status.done?.missingChunks)).toBeGreaterThanOrEqual(1)
    // once the origin holds the right bytes again, the same store completes byte-identical
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${p}/chunks/${victim.cid}`, Body: await (async () => { bytes[100] = (bytes[100] ?? 0) ^ 0x55; return bytes })() }))
    const repaired = await swarm(['pull', 'cr', '--no-agent', '--to', to, '--json', '--data-dir', dataDir], env)
    expect(repaired.code, repaired.stderr).toBe(0)
    expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))
  }, 180_000)

  it('origin gone mid-pull: a clear error, nothing corrupt, and a rerun completes once it is back', async () => {
    const p = prefix('outage')
    const proxy = await originProxy(s3.endpoint)
    try {
      const env = cliEnv(s3, p, proxy.endpoint)
      const model = await writeSyntheticModel(join(work, 'og-model'), { ...SMALL_SHAPE, layers: 4 })
      const push = await swarm(['push', model.dir, '--name', 'og', '--chunk-size', CHUNK, '--json'], env)
      expect(push.code).toBe(0)
      proxy.reset()
      const dataDir = join(work, 'og-node')
      let stopping: Promise<void> | undefined
      proxy.onChunkGet = count => { if (count === 8) stopping = proxy.stop() }
      const failed = await swarm(['pull', 'og', '--no-agent', '--concurrency', '2', '--json', '--data-dir', dataDir], env)
      proxy.onChunkGet = undefined
      await stopping
      expect(failed.code).toBe(5)
      expect(failed.stderr).toMatch(/origin|unavailable|ECONNREFUSED|could not be fetched/i)

      const verify = await swarm(['verify', 'og', '--json', '--data-dir', dataDir], env)
      expect(verify.code, verify.stderr).toBe(0)
      expect(verify.done?.bad).toEqual([])
      expect(Number(verify.done?.missingChunks)).toBeGreaterThan(0)

      await proxy.restart()
      const to = join(work, 'og-out')
      const rerun = await swarm(['pull', 'og', '--no-agent', '--to', to, '--json', '--data-dir', dataDir], env)
      expect(rerun.code, rerun.stderr).toBe(0)
      expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))
    } finally {
      await proxy.stop().catch(() => {})
    }
  }, 180_000)

  it('an unknown name, a bad name and a bad manifest at the origin each get a clear error and exit code', async () => {
    const p = prefix('errors')
    const env = cliEnv(s3, p)
    const unknown = await swarm(['pull', 'no-such-model:v9', '--no-agent', '--data-dir', join(work, 'er-node')], env)
    expect(unknown.code).toBe(3)
    expect(unknown.stderr).toMatch(/no-such-model:v9/)
    expect(unknown.stderr).toMatch(/not found|no such/i)

    const badName = await swarm(['pull', 'Bad Name!', '--no-agent', '--data-dir', join(work, 'er-node')], env)
    expect(badName.code).toBe(2)
    expect(badName.stderr).toMatch(/name/i)

    // a ref pointing at a manifest whose bytes do not hash to its CID
    const model = await writeSyntheticModel(join(work, 'er-model'), { ...SMALL_SHAPE, layers: 1 })
    const push = await swarm(['push', model.dir, '--name', 'er', '--chunk-size', CHUNK, '--json'], env)
    expect(push.code).toBe(0)
    const key = `${p}/manifests/${String(push.done?.manifestCid)}`
    const body = await (await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }))).Body!.transformToString()
    await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body.replace('"config.json"', '"../config.json"') }))
    const tampered = await swarm(['pull', 'er', '--no-agent', '--data-dir', join(work, 'er-node2')], env)
    expect(tampered.code).toBe(4)
    expect(tampered.stderr).toMatch(/hash|CID|mismatch/i)
    const ls = await swarm(['ls', '--local', '--json', '--data-dir', join(work, 'er-node2')], env)
    expect(ls.done?.local).toEqual([])
  }, 180_000)
})
