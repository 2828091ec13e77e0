// bench/origin-pull: `swarm pull` of a ~2 GiB synthetic model from the local S3 server into an
// empty store, against the fastest plain client: parallel GETs of the very same chunk objects
// through presigned URLs with undici, bytes discarded, same server, same run. Runs alternate
// (plain, swarm, plain, swarm, …) so a noisy neighbour hurts both alike; the best of each is
// reported. Also: the pull's peak RSS and SHA-256 hashing MB/s on one core.
// `--origin oci` (or BENCH_ORIGIN=oci) runs the same comparison against a local OCI registry (oci.mjs).
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { Agent, request } from 'undici'
import { writeSyntheticModel } from '@swarm/agent'
import { alternate, fmt, MB, MiB, pullOnce, s3Env, s3Server, saveResult, swarm } from '../lib/common.mjs'

const originFlag = process.argv.indexOf('--origin')
const originKind = originFlag !== -1 ? process.argv[originFlag + 1] : (process.env.BENCH_ORIGIN ?? 's3')
if (originKind !== 's3' && originKind !== 'oci') throw new Error(`--origin: expected s3 or oci, got ${originKind}`)
if (originKind === 'oci') {
  await import('./oci.mjs')
  process.exit(0)
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const INFLIGHT = 16
const layers = Number(process.env.BENCH_LAYERS ?? 22) // ≈ 2 GiB with the shape below

const s3 = await s3Server()
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-origin-'))
const prefix = `bench-origin-pull-${Date.now()}`
const env = { ...s3Env(s3), SWARM_ORIGIN: `s3://${s3.bucket}/${prefix}`, SWARM_LOG_LEVEL: 'warn' }

try {
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 4 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1', '--data-dir', join(work, 'pusher')], env)
  process.stderr.write(`model: ${fmt(model.totalBytes / MiB, 0)} MiB, ${pushed.uploadedChunks} chunks\n`)

  // the chunk objects the pull will fetch, from the manifest the pull resolves
  const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
  const manifestBody = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/manifests/${pushed.manifestCid}` }))
  const manifest = JSON.parse(await manifestBody.Body.transformToString())
  const cids = [...new Set(manifest.files.flatMap(f => f.chunks.map(c => c.cid)))]
  const totalBytes = manifest.files.reduce((sum, f) => sum + f.size, 0)

  const agent = new Agent({ connections: INFLIGHT, pipelining: 1, keepAliveTimeout: 30_000 })
  async function plainClient () {
    const urls = await Promise.all(cids.map(cid => getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/chunks/${cid}` }), { expiresIn: 3600 })))
    let next = 0
    let bytes = 0
    const started = performance.now()
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (next < urls.length) {
        const url = urls[next++]
        const res = await request(url, { dispatcher: agent })
        if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`)
        for await (const piece of res.body) bytes += piece.length
      }
    }))
    return { seconds: (performance.now() - started) / 1000, bytes }
  }

  const swarmPull = async round => await pullOnce('bench:v1', join(work, `node-${round}`), env, INFLIGHT)

  const { plain, pulls } = await alternate(ROUNDS, plainClient, swarmPull)
  await agent.close()

  // hashing on one core, the way the store verifies: 4 MiB pieces through OpenSSL
  const piece = Buffer.alloc(4 * MiB, 7)
  const hashStarted = performance.now()
  const hashBytes = 1024 * MiB
  for (let done = 0; done < hashBytes; done += piece.length) createHash('sha256').update(piece).digest()
  const hashMBps = hashBytes / MB / ((performance.now() - hashStarted) / 1000)

  const best = runs => runs.reduce((a, b) => (a.bytes / a.seconds >= b.bytes / b.seconds ? a : b))
  const p = best(plain)
  const s = best(pulls)
  const plainMBps = p.bytes / MB / p.seconds
  const swarmMBps = s.bytes / MB / s.seconds
  const result = {
    modelBytes: totalBytes,
    chunks: cids.length,
    inflight: INFLIGHT,
    plainClientMBps: plainMBps,
    swarmPullMBps: swarmMBps,
    ratio: swarmMBps / plainMBps,
    pullPeakRssMB: Math.max(...pulls.map(r => r.peakRssBytes)) / MB,
    sha256MBpsPerCore: hashMBps,
    rounds: { plain: plain.map(r => r.bytes / MB / r.seconds), swarm: pulls.map(r => r.bytes / MB / r.seconds) }
  }
  console.log(`origin-pull: ${fmt(totalBytes / MiB, 0)} MiB in ${cids.length} chunks, ${INFLIGHT} in flight, best of ${ROUNDS}`)
  console.log(`  plain client (undici, presigned GETs): ${fmt(plainMBps)} MB/s`)
  console.log(`  swarm pull (verify + store + fsync):   ${fmt(swarmMBps)} MB/s`)
  console.log(`  ratio swarm/plain: ${fmt(result.ratio, 2)} (goal >= 0.9)`)
  console.log(`  swarm pull peak RSS: ${fmt(result.pullPeakRssMB, 0)} MB (goal <= 300)`)
  console.log(`  sha2-256: ${fmt(hashMBps, 0)} MB/s per core`)
  console.log(`  results: ${await saveResult('origin-pull', result)}`)
} finally {
  await rm(work, { recursive: true, force: true })
}
