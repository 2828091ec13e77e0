// bench/origin-pull: `swarm pull` of a ~2 GiB synthetic model from a local origin server into an
// empty store, against the fastest plain client: parallel GETs of the very same chunk objects
// through undici, bytes discarded, same server, same run. Runs alternate (plain, swarm, plain,
// swarm, …) so a noisy neighbour hurts both alike; the best of each is reported. Also: the pull's
// peak RSS and SHA-256 hashing MB/s on one core.
//
//   --origin s3      (default) the local Ceph RGW; the plain client GETs presigned URLs
//   --origin azure   Azurite on 127.0.0.1 (test/helpers/azurite.mjs); the plain client GETs blob URLs with a SAS
//   --origin oci     a local OCI registry (oci.mjs): the plain client GETs blob ranges
//   --origin http    nginx on 127.0.0.1 (test/helpers/nginx.mjs) serving a directory `swarm push` wrote
//                    through the file origin; the plain client GETs the same files
// (or BENCH_ORIGIN). BENCH_ROUNDS (default 2) and BENCH_LAYERS (default 22, ≈ 2 GiB) size it.
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { ContainerClient, ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential } from '@azure/storage-blob'
import { Agent, request } from 'undici'
import { writeSyntheticModel } from '@swarm/agent'
import { startAzurite } from '../../test/helpers/azurite.mjs'
import { startNginx } from '../../test/helpers/nginx.mjs'
import { alternate, fmt, MB, MiB, pullOnce, s3Env, s3Server, saveResult, swarm } from '../lib/common.mjs'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const INFLIGHT = 16
const layers = Number(process.env.BENCH_LAYERS ?? 22) // ≈ 2 GiB with the shape below
const { values: args } = parseArgs({ options: { origin: { type: 'string', default: process.env.BENCH_ORIGIN ?? 's3' } } })
if (!['s3', 'azure', 'http', 'oci'].includes(args.origin)) throw new Error(`--origin ${args.origin}: expected s3, azure, http or oci`)
if (args.origin === 'oci') {
  await import('./oci.mjs')
  process.exit(0)
}

/**
 * One origin server: the env `swarm push` and `swarm pull` run with, the manifest as pushed, the
 * URLs a plain client GETs for chunks, and how to stop it.
 */
async function s3Backend (prefix) {
  const s3 = await s3Server()
  const env = { ...s3Env(s3), SWARM_ORIGIN: `s3://${s3.bucket}/${prefix}` }
  const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
  return {
    label: 'undici, presigned GETs',
    pushEnv: env,
    pullEnv: env,
    async manifest (cid) {
      const body = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/manifests/${cid}` }))
      return JSON.parse(await body.Body.transformToString())
    },
    async chunkUrls (cids) {
      return await Promise.all(cids.map(cid => getSignedUrl(client, new GetObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/chunks/${cid}` }), { expiresIn: 3600 })))
    },
    async stop () { client.destroy() }
  }
}

async function azureBackend (prefix) {
  const azurite = await startAzurite()
  const key = new StorageSharedKeyCredential(azurite.account, azurite.accountKey)
  const container = new ContainerClient(`${azurite.endpoint}/bench`, key)
  await container.create()
  const env = { SWARM_ORIGIN: `az://${azurite.account}/bench/${prefix}`, SWARM_AZURE_ENDPOINT: azurite.endpoint, AZURE_STORAGE_KEY: azurite.accountKey }
  return {
    label: 'undici, blob GETs with a SAS',
    pushEnv: env,
    pullEnv: env,
    async manifest (cid) {
      return JSON.parse((await container.getBlobClient(`${prefix}/manifests/${cid}`).downloadToBuffer()).toString('utf8'))
    },
    async chunkUrls (cids) {
      const sas = generateBlobSASQueryParameters({ containerName: 'bench', permissions: ContainerSASPermissions.parse('r'), expiresOn: new Date(Date.now() + 3600_000) }, key).toString()
      return cids.map(cid => `${azurite.endpoint}/bench/${prefix}/chunks/${cid}?${sas}`)
    },
    stop: azurite.stop
  }
}

async function httpBackend (prefix) {
  const nginx = await startNginx()
  const dir = join(nginx.root, prefix)
  await mkdir(dir)
  return {
    label: 'undici, plain GETs',
    pushEnv: { SWARM_ORIGIN: `file://${dir}` },
    pullEnv: { SWARM_ORIGIN: `${nginx.url}/${prefix}` },
    async manifest (cid) { return JSON.parse(await readFile(join(dir, 'manifests', cid), 'utf8')) },
    async chunkUrls (cids) { return cids.map(cid => `${nginx.url}/${prefix}/chunks/${cid}`) },
    stop: nginx.stop
  }
}

const work = await mkdtemp(join(tmpdir(), 'swarm-bench-origin-'))
const prefix = `bench-origin-pull-${Date.now()}`
const backend = await { s3: s3Backend, azure: azureBackend, http: httpBackend }[args.origin](prefix)
const env = { SWARM_LOG_LEVEL: 'warn' }

try {
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 4 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1', '--data-dir', join(work, 'pusher')], { ...env, ...backend.pushEnv })
  process.stderr.write(`model: ${fmt(model.totalBytes / MiB, 0)} MiB, ${pushed.uploadedChunks} chunks, origin ${args.origin}\n`)

  // the chunk objects the pull will fetch, from the manifest the pull resolves
  const manifest = await backend.manifest(pushed.manifestCid)
  const cids = [...new Set(manifest.files.flatMap(f => f.chunks.map(c => c.cid)))]
  const totalBytes = manifest.files.reduce((sum, f) => sum + f.size, 0)

  const agent = new Agent({ connections: INFLIGHT, pipelining: 1, keepAliveTimeout: 30_000 })
  async function plainClient () {
    const urls = await backend.chunkUrls(cids)
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

  const swarmPull = async round => await pullOnce('bench:v1', join(work, `node-${round}`), { ...env, ...backend.pullEnv }, INFLIGHT)

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
    origin: args.origin,
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
  console.log(`origin-pull (${args.origin}): ${fmt(totalBytes / MiB, 0)} MiB in ${cids.length} chunks, ${INFLIGHT} in flight, best of ${ROUNDS}`)
  console.log(`  plain client (${backend.label}): ${fmt(plainMBps)} MB/s`)
  console.log(`  swarm pull (verify + store + fsync):   ${fmt(swarmMBps)} MB/s`)
  console.log(`  ratio swarm/plain: ${fmt(result.ratio, 2)} (goal >= 0.9)`)
  console.log(`  swarm pull peak RSS: ${fmt(result.pullPeakRssMB, 0)} MB (goal <= 300)`)
  console.log(`  sha2-256: ${fmt(hashMBps, 0)} MB/s per core`)
  console.log(`  results: ${await saveResult(args.origin === 's3' ? 'origin-pull' : `origin-pull-${args.origin}`, result)}`)
} finally {
  await backend.stop()
  await rm(work, { recursive: true, force: true })
}
