// bench/origin-pull: `swarm pull` of a ~2 GiB synthetic model from a local origin server into an
// empty store, against three baselines on the same server, same model, same run:
//
// - the fastest plain client: parallel GETs of the very same chunk objects through undici, bytes
//   discarded (an upper bound on what the server and loopback give);
// - the "necessary work" client (necessary-work.mjs, a child process): the same GETs plus SHA-256
//   of every chunk and positional writes into files created at full size, fdatasync'd, spread
//   over as many worker threads as Swarm uses: what Swarm's byte path must do with nothing else;
// - rclone (S3 only): `rclone copy` of the same objects with the same concurrency (16 transfers,
//   one stream per object as each chunk is one GET) into a directory on the same disk, then
//   `sync -d` of every file it wrote; configured through RCLONE_CONFIG_* env, no config file.
//
// Runs alternate (plain, necessary work, rclone, swarm, plain, …) so a noisy neighbour hurts all
// alike; the best of each is reported. For every row: MB/s, CPU-s per GB (GNU time over the
// child, so children's rusage; per thread where known: Swarm's main vs worker threads as it
// reports them, else read from /proc), peak RSS. Also SHA-256 hashing MB/s on one core. CPU is
// each process's whole life, start-up included, for Swarm and both baselines alike; on a small
// model (BENCH_LAYERS=1 or 2) start-up is a visible share of it, at the default 2 GiB a small one.
//
// Swarm is run with `--workers N` when this build takes it (N = BENCH_WORKERS, default the
// machine's available parallelism); the necessary-work client uses N threads either way.
//
//   --origin s3      (default) the local Ceph RGW; the plain client GETs presigned URLs
//   --origin azure   Azurite on 127.0.0.1 (test/helpers/azurite.mjs); the plain client GETs blob URLs with a SAS
//   --origin oci     a local OCI registry (oci.mjs): the plain client GETs blob ranges
//   --origin http    nginx on 127.0.0.1 (test/helpers/nginx.mjs) serving a directory `swarm push` wrote
//                    through the file origin; the plain client GETs the same files
// (or BENCH_ORIGIN). BENCH_ROUNDS (default 2) and BENCH_LAYERS (default 22, ≈ 2 GiB) size it.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { ContainerClient, ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential } from '@azure/storage-blob'
import { Agent, request } from 'undici'
import { writeSyntheticModel } from '@swarm/agent'
import { parseChunkCid } from '@swarm/chunker'
import { startAzurite } from '../../test/helpers/azurite.mjs'
import { startNginx } from '../../test/helpers/nginx.mjs'
import { alternateAll, fmt, fmtBreakdown, fmtOr, MB, MiB, measured, pullMeasured, s3Env, s3Server, saveResult, swarm, swarmTakes } from '../lib/common.mjs'

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const INFLIGHT = Number(process.env.BENCH_INFLIGHT ?? 16)
const layers = Number(process.env.BENCH_LAYERS ?? 22) // ≈ 2 GiB with the shape below
const WORKERS = Number(process.env.BENCH_WORKERS ?? availableParallelism())
if (!Number.isInteger(WORKERS) || WORKERS < 1) throw new Error(`BENCH_WORKERS=${process.env.BENCH_WORKERS}: expected a whole number of threads, 1 or more`)
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
    // an rclone remote named BENCH, from env alone
    rclone: {
      source: `BENCH:${s3.bucket}/${prefix}/chunks`,
      env: {
        RCLONE_CONFIG_BENCH_TYPE: 's3',
        RCLONE_CONFIG_BENCH_PROVIDER: 'Ceph',
        RCLONE_CONFIG_BENCH_ENV_AUTH: 'false',
        RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: s3.accessKeyId,
        RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: s3.secretAccessKey,
        RCLONE_CONFIG_BENCH_REGION: s3.region,
        RCLONE_CONFIG_BENCH_ENDPOINT: s3.endpoint,
        RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
        // the endpoint is plain HTTP; rclone's AWS SDK refuses to start at all with a CA bundle
        // set for other clients ("unsupported transport")
        AWS_CA_BUNDLE: undefined
      }
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
  const chunkSizes = new Map(manifest.files.flatMap(f => f.chunks.map(c => [c.cid, c.size])))
  const uniqueBytes = [...chunkSizes.values()].reduce((a, b) => a + b, 0)
  const maxChunk = Math.max(...chunkSizes.values())

  const agent = new Agent({ connections: INFLIGHT, pipelining: 1, keepAliveTimeout: 30_000 })
  async function plainClient () {
    const urls = await backend.chunkUrls(cids)
    let next = 0
    let bytes = 0
    const cpuBefore = process.cpuUsage()
    const started = performance.now()
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (next < urls.length) {
        const url = urls[next++]
        const res = await request(url, { dispatcher: agent })
        if (res.statusCode !== 200) throw new Error(`GET ${url}: ${res.statusCode}`)
        for await (const piece of res.body) bytes += piece.length
      }
    }))
    const cpu = process.cpuUsage(cpuBefore)
    // in this process: its CPU is the bench's own thread, its RSS the bench's, so none is given
    return { seconds: (performance.now() - started) / 1000, bytes, cpuSeconds: (cpu.user + cpu.system) / 1e6, peakRssBytes: null, perThread: null }
  }

  // every slot of every chunk, so a chunk that fills several is fetched once and written to each
  const slots = new Map(cids.map(cid => [cid, []]))
  manifest.files.forEach((f, file) => { for (const c of f.chunks) slots.get(c.cid).push({ file, offset: c.offset }) })
  async function necessaryWork (round) {
    const dir = join(work, `necessary-${round}`)
    await mkdir(dir)
    const urls = await backend.chunkUrls(cids)
    const plan = {
      threads: WORKERS,
      inflight: INFLIGHT,
      files: manifest.files.map((f, i) => ({ path: join(dir, String(i)), size: f.size })),
      chunks: cids.map((cid, i) => ({ url: urls[i], size: chunkSizes.get(cid), sha256: Buffer.from(parseChunkCid(cid).multihash.digest).toString('hex'), slots: slots.get(cid) }))
    }
    const planFile = join(work, 'necessary-plan.json')
    await writeFile(planFile, JSON.stringify(plan))
    const run = await measured(process.execPath, [new URL('./necessary-work.mjs', import.meta.url).pathname, planFile])
    await rm(dir, { recursive: true, force: true })
    if (run.code !== 0) throw new Error(`necessary-work client exited with ${run.code}`)
    const out = JSON.parse(run.stdout.trim().split('\n').pop())
    const cpuOf = list => list.reduce((sum, t) => sum + t.userSeconds + t.systemSeconds, 0)
    const workers = out.threads.filter(t => t.name !== 'main')
    const main = cpuOf(out.threads.filter(t => t.name === 'main'))
    return {
      seconds: out.seconds,
      bytes: out.bytes,
      cpuSeconds: run.cpuSeconds,
      peakRssBytes: run.maxRssBytes,
      // what neither thread ran itself: libuv's pool (the writes, the fdatasyncs), V8's helpers
      perThread: { source: 'reported', main, workers: cpuOf(workers), workerCount: workers.length, other: run.cpuSeconds - main - cpuOf(workers) }
    }
  }

  if (backend.rclone != null) {
    await promisify(execFile)('rclone', ['version']).catch(() => { throw new Error('the S3 bench compares with rclone: install it (Debian package rclone; scripts/setup.sh test does)') })
  }
  async function rclone (round) {
    const dir = join(work, `rclone-${round}`)
    const copy = await measured('rclone', [
      'copy', backend.rclone.source, dir, '--config', '',
      '--transfers', String(INFLIGHT),
      // every chunk object is one GET in Swarm, so one stream per object here too
      '--multi-thread-streams', '1', '--multi-thread-cutoff', `${maxChunk + 1}B`,
      '--no-check-dest'
    ], { env: backend.rclone.env })
    if (copy.code !== 0) throw new Error(`rclone copy exited with ${copy.code}`)
    const files = (await readdir(dir)).map(f => join(dir, f))
    const sync = await measured('sync', ['-d', ...files])
    if (sync.code !== 0) throw new Error(`sync -d exited with ${sync.code}`)
    let bytes = 0
    for (const f of files) bytes += (await stat(f)).size
    await rm(dir, { recursive: true, force: true })
    if (bytes !== uniqueBytes) throw new Error(`rclone copied ${bytes} of ${uniqueBytes} bytes`)
    return { seconds: copy.wallSeconds + sync.wallSeconds, bytes, cpuSeconds: copy.cpuSeconds + sync.cpuSeconds, peakRssBytes: copy.maxRssBytes, perThread: null }
  }

  const takesWorkers = await swarmTakes('pull', '--workers')
  const swarmPull = async round => await pullMeasured('bench:v1', join(work, `node-${round}`), { ...env, ...backend.pullEnv }, { inflight: INFLIGHT, workers: WORKERS, takesWorkers })

  const runners = { plain: plainClient, necessary: necessaryWork, ...(backend.rclone != null ? { rclone } : {}), swarm: swarmPull }
  // each run writes into pages just freed, whatever ran before it (see warmPageCache)
  const runs = await alternateAll(ROUNDS, runners, { warmBytes: uniqueBytes })
  await agent.close()

  // hashing on one core, the way the store verifies: 4 MiB pieces through OpenSSL
  const piece = Buffer.alloc(4 * MiB, 7)
  const hashStarted = performance.now()
  const hashBytes = 1024 * MiB
  for (let done = 0; done < hashBytes; done += piece.length) createHash('sha256').update(piece).digest()
  const hashMBps = hashBytes / MB / ((performance.now() - hashStarted) / 1000)

  const best = list => list.reduce((a, b) => (a.bytes / a.seconds >= b.bytes / b.seconds ? a : b))
  const row = list => {
    const b = best(list)
    const GB = b.bytes / 1e9
    return {
      MBps: b.bytes / MB / b.seconds,
      cpuSecondsPerGB: b.cpuSeconds / GB,
      perThreadCpuSecondsPerGB: b.perThread == null ? null : Object.fromEntries(Object.entries(b.perThread).map(([k, v]) => [k, typeof v === 'number' && k !== 'workerCount' ? v / GB : v])),
      peakRssMB: b.peakRssBytes == null ? null : Math.max(...list.map(r => r.peakRssBytes)) / MB,
      rounds: list.map(r => r.bytes / MB / r.seconds),
      best: b
    }
  }
  const rows = Object.fromEntries(Object.entries(runs).map(([name, list]) => [name, row(list)]))
  const ratio = (a, b) => (a == null || b == null ? null : a / b)
  const result = {
    origin: args.origin,
    modelBytes: totalBytes,
    chunks: cids.length,
    inflight: INFLIGHT,
    workers: WORKERS,
    swarmTakesWorkers: takesWorkers,
    plainClientMBps: rows.plain.MBps,
    swarmPullMBps: rows.swarm.MBps,
    ratio: rows.swarm.MBps / rows.plain.MBps,
    ratioToNecessaryWork: rows.swarm.MBps / rows.necessary.MBps,
    cpuRatioToNecessaryWork: rows.swarm.cpuSecondsPerGB / rows.necessary.cpuSecondsPerGB,
    ratioToRclone: ratio(rows.swarm.MBps, rows.rclone?.MBps),
    cpuRatioToRclone: ratio(rows.swarm.cpuSecondsPerGB, rows.rclone?.cpuSecondsPerGB),
    pullPeakRssMB: rows.swarm.peakRssMB,
    sha256MBpsPerCore: hashMBps,
    rows: Object.fromEntries(Object.entries(rows).map(([name, { best: _, ...r }]) => [name, r]))
  }

  const line = (label, r, note = '') => {
    const GB = r.best.bytes / 1e9
    const perThread = r.best.perThread == null
      ? ''
      : r.best.perThread.other != null
        ? `; main ${fmt(r.best.perThread.main / GB, 2)}, workers ${fmt(r.best.perThread.workers / GB, 2)} (${r.best.perThread.workerCount}), libuv pool + runtime ${fmt(r.best.perThread.other / GB, 2)}`
        : `; ${fmtBreakdown(r.best.perThread, GB)}`
    console.log(`  ${label.padEnd(62)} ${fmt(r.MBps).padStart(7)} MB/s  ${fmt(r.cpuSecondsPerGB, 2).padStart(5)} CPU-s/GB${perThread}  peak RSS ${fmtOr(r.peakRssMB, 0)} MB${note}`)
  }
  console.log(`origin-pull (${args.origin}): ${fmt(totalBytes / MiB, 0)} MiB in ${cids.length} chunks, ${INFLIGHT} in flight, ${WORKERS} threads, best of ${ROUNDS}`)
  line(`plain client (${backend.label})`, rows.plain, ' (bench process)')
  line(`necessary work (GET, SHA-256, pwrite, fdatasync; ${WORKERS} threads)`, rows.necessary)
  if (rows.rclone != null) line(`rclone copy + sync (${INFLIGHT} transfers)`, rows.rclone)
  line(`swarm pull --no-agent${takesWorkers ? ` --workers ${WORKERS}` : ' (this build has no --workers)'}`, rows.swarm)
  console.log(`  swarm/plain:          rate ${fmt(result.ratio, 2)}`)
  console.log(`  swarm/necessary work: rate ${fmt(result.ratioToNecessaryWork, 2)} (goal >= 0.9), CPU/GB ${fmt(result.cpuRatioToNecessaryWork, 2)}`)
  console.log(`  swarm/rclone:         rate ${fmtOr(result.ratioToRclone, 2)} (goal >= 1.0), CPU/GB ${fmtOr(result.cpuRatioToRclone, 2)}`)
  console.log(`  swarm pull peak RSS: ${fmt(result.pullPeakRssMB, 0)} MB (goal <= 300)`)
  console.log(`  sha2-256: ${fmt(hashMBps, 0)} MB/s per core`)
  console.log(`  results: ${await saveResult(args.origin === 's3' ? 'origin-pull' : `origin-pull-${args.origin}`, result)}`)
} finally {
  await backend.stop()
  await rm(work, { recursive: true, force: true })
}
