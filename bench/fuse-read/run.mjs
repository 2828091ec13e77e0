// bench/fuse-read: reading one ≥ 2 GiB safetensors file through the FUSE view, against reading the
// store's own file, and a lazy first read through the view against `swarm pull`, all in one run,
// for each FUSE adapter (kernel: our own server with passthrough; fuse-native: libfuse 2):
//   (e) swarm pull of the model from the local S3 server into an empty store
//   (a) the complete file read straight from that store (page cache dropped first)
//   (b) the same file, first read through the mount (page cache dropped first; (a) and (b) alternate
//       three times and the medians are compared)
//   (c) the same file re-read through the mount (kernel page cache)
//   (d) the same file read through a mount over an empty store: every chunk fetched as it is read
// Reader: dd with 16 MiB blocks. Ratios: (b)/(a), (c)/(a), (d)/(e). CPU per GiB of (a) and (b)
// counts the reader and the serving process together (with passthrough the kernel reads the
// store's file in the reader's own system time). Also FUSE read requests and how long they waited.
// Needs root (drop_caches) and FUSE; run as root on a quiet machine. BENCH_ADAPTERS picks adapters.
// BENCH_FUSE_CASES picks cases (default `small-files,large`): `small-files` is a checkpoint of
// thousands of small files (small-files.mjs), `large` the one large file above.
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { writeSyntheticModel } from '@swarm/agent'
import { checkKernelFuse } from '@swarm/fuse-kernel'
import { checkFuse } from '@swarm/fuse-native'
import { createStore } from '@swarm/store'
import { MB, MiB, cli, fmt, s3Env, s3Server, saveResult, swarm } from '../lib/common.mjs'
import { smallFilesCase } from './small-files.mjs'

const layers = Number(process.env.BENCH_LAYERS ?? 22) // one file of ≈ 2.3 GiB with the shape below
const run = promisify(execFile)

const fuse = await checkFuse()
if (!fuse.available) {
  console.log(`fuse-read: skipped: ${fuse.reason}`)
  process.exit(0)
}
if (process.getuid?.() !== 0) {
  console.log('fuse-read: skipped: needs root to drop the page cache between runs')
  process.exit(0)
}

const cases = (process.env.BENCH_FUSE_CASES ?? 'small-files,large').split(',').filter(Boolean)
if (cases.includes('small-files')) await smallFilesCase((process.env.BENCH_ADAPTERS ?? 'kernel,fuse-native').split(',').filter(Boolean))
if (!cases.includes('large')) process.exit(0)

const s3 = await s3Server()
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-fuse-'))
const prefix = `bench-fuse-read-${Date.now()}`
const env = { ...s3Env(s3), SWARM_ORIGIN: `s3://${s3.bucket}/${prefix}`, SWARM_LOG_LEVEL: 'warn' }

async function dropCaches () {
  await run('sync')
  await writeFile('/proc/sys/vm/drop_caches', '3')
}

/** Reads a file with dd (16 MiB blocks) and returns seconds, bytes and dd's own CPU seconds. */
async function ddRead (path) {
  const started = performance.now()
  const { stderr } = await run('/usr/bin/time', ['-f', 'cpu %U %S', 'dd', `if=${path}`, 'of=/dev/null', 'bs=16M'])
  const seconds = (performance.now() - started) / 1000
  const bytes = Number(/^(\d+) bytes/m.exec(stderr)?.[1] ?? NaN)
  const [, user, system] = /cpu ([\d.]+) ([\d.]+)/.exec(stderr) ?? []
  return { seconds, bytes, MBps: bytes / MB / seconds, cpu: Number(user) + Number(system) }
}

async function cpuSeconds (pid) {
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100 // utime + stime, in clock ticks of 10 ms
}

const children = new Set()

/** `swarm pull` under /usr/bin/time: its `done` line and its CPU seconds. */
async function timedPull (dataDir) {
  const { stdout, stderr } = await run('/usr/bin/time', ['-f', 'cpu %U %S', process.execPath, cli, 'pull', 'bench:v1', '--data-dir', dataDir, '--json'], { env: { ...process.env, ...env }, maxBuffer: 64 * MiB })
  const pull = stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)).find(l => l.event === 'done')
  const [, user, system] = /cpu ([\d.]+) ([\d.]+)/.exec(stderr) ?? []
  return { pull, cpu: Number(user) + Number(system) }
}

/** `swarm mount` over `dataDir`; resolves once mounted. */
async function startMount (dataDir, mountpoint, adapter) {
  const child = spawn(process.execPath, [cli, 'mount', mountpoint, '--data-dir', dataDir, '--adapter', adapter, '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  children.add(child)
  let out = ''
  child.stdout.setEncoding('utf8').on('data', d => { out += d })
  const exited = new Promise(resolve => child.on('exit', code => { children.delete(child); resolve(code) }))
  await new Promise((resolve, reject) => {
    const timer = setInterval(() => { if (out.includes('"ready"')) { clearInterval(timer); resolve() } }, 50)
    exited.then(code => { clearInterval(timer); reject(new Error(`swarm mount exited with ${code}: ${out}`)) })
  })
  return {
    pid: child.pid,
    async stop () {
      child.kill('SIGTERM')
      await exited
      return out.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)).find(l => l.event === 'done')
    }
  }
}

try {
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 1 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1', '--data-dir', join(work, 'pusher')], env)
  await rm(model.dir, { recursive: true, force: true })
  const fileName = 'model.safetensors'

  // (e) swarm pull into an empty store, with its CPU time
  const full = join(work, 'full')
  const { pull, cpu: pullCpu } = await timedPull(full)
  const pullMBps = pull.bytesBySource.origin / MB / (pull.durationMs / 1000)

  const store = await createStore({ dir: full })
  const stored = store.files(pushed.manifestCid).find(f => f.entry.path === fileName)
  await store.close()
  const fileBytes = stored.entry.size

  // (a) the store's file, directly
  await dropCaches()
  const direct = await ddRead(stored.path)

  const GiB = fileBytes / 1024 / MiB
  const adapters = (process.env.BENCH_ADAPTERS ?? 'kernel,fuse-native').split(',').filter(Boolean)
  if (adapters.includes('kernel') && !(await checkKernelFuse()).available) adapters.splice(adapters.indexOf('kernel'), 1)
  const mnt = join(work, 'mnt')
  const viewPath = join(mnt, 'bench@v1', fileName)
  const byAdapter = {}
  for (const adapter of adapters) {
    // (a) and (b) alternate, cold each time, three rounds: a cold read of the store's file varies
    // from run to run on a shared disk, and the first read of a mount is as short as that
    const complete = await startMount(full, mnt, adapter)
    await run('stat', ['-L', viewPath])
    await new Promise(resolve => setTimeout(resolve, 3000)) // the server's start-up work is over
    const directs = []
    const firsts = []
    let cpuFirst = 0
    for (let round = 0; round < 3; round++) {
      await dropCaches()
      directs.push(await ddRead(stored.path))
      await dropCaches()
      const cpuBefore = await cpuSeconds(complete.pid)
      firsts.push(await ddRead(viewPath))
      cpuFirst += await cpuSeconds(complete.pid) - cpuBefore
    }
    const median = list => [...list].sort((x, y) => x.MBps - y.MBps)[1]
    const directHere = { MBps: median(directs).MBps, cpu: directs.reduce((sum, r) => sum + r.cpu, 0) / 3 }
    const first = { MBps: median(firsts).MBps, cpu: firsts.reduce((sum, r) => sum + r.cpu, 0) / 3 }
    cpuFirst /= 3
    const cpuBeforeAgain = await cpuSeconds(complete.pid)
    const again = await ddRead(viewPath)
    const cpuAgain = await cpuSeconds(complete.pid) - cpuBeforeAgain
    const completeStats = await complete.stop()

    // (d) through a mount over an empty store
    const lazyMount = await startMount(join(work, `empty-${adapter}`), mnt, adapter)
    await run('stat', ['-L', viewPath])
    await new Promise(resolve => setTimeout(resolve, 3000))
    const lazyCpuBefore = await cpuSeconds(lazyMount.pid)
    const lazy = await ddRead(viewPath)
    const cpuLazy = await cpuSeconds(lazyMount.pid) - lazyCpuBefore
    const lazyStats = await lazyMount.stop()
    await rm(join(work, `empty-${adapter}`), { recursive: true, force: true })

    // requests that reached the server: the kernel adapter counts them itself; fuse-native's are the view's reads
    const firstRequests = completeStats?.fuse != null ? completeStats.fuse.reads : completeStats?.reads
    byAdapter[adapter] = {
      directMBps: directHere.MBps,
      mountFirstMBps: first.MBps,
      mountRereadMBps: again.MBps,
      lazyMBps: lazy.MBps,
      firstOverDirect: first.MBps / directHere.MBps,
      rereadOverDirect: again.MBps / directHere.MBps,
      lazyOverPull: lazy.MBps / pullMBps,
      mountFirst: {
        cpuSecondsPerGiB: (cpuFirst + first.cpu) / GiB,
        serverCpuSecondsPerGiB: cpuFirst / GiB,
        cpuOverDirect: (cpuFirst + first.cpu) / directHere.cpu,
        requests: firstRequests != null ? Math.round(firstRequests / 3) : undefined, // per first read (three rounds; the re-read is served by the page cache)
        passthroughOpens: completeStats?.fuse?.opensPassthrough
      },
      mountReread: { cpuSecondsPerGiB: (cpuAgain + again.cpu) / GiB },
      lazy: {
        cpuSecondsPerGiB: cpuLazy / GiB,
        requests: lazyStats?.fuse != null ? lazyStats.fuse.reads : lazyStats?.reads,
        requestsForwarded: lazyStats?.fuse?.readsForwarded,
        readsThatWaited: lazyStats?.readsWaited,
        waitSeconds: lazyStats != null ? lazyStats.waitMs / 1000 : undefined,
        chunksFetchedForReads: lazyStats?.chunksFetched,
        chunksPrefetched: lazyStats?.prefetch?.chunks
      }
    }
  }

  const result = {
    fileBytes,
    chunks: stored.entry.chunks.length,
    reader: 'dd bs=16M',
    directMBps: direct.MBps,
    direct: { cpuSecondsPerGiB: direct.cpu / GiB },
    pullMBps,
    pull: { cpuSecondsPerGiB: pullCpu / GiB },
    adapters: byAdapter
  }
  console.log(`fuse-read: ${fmt(fileBytes / MiB, 0)} MiB safetensors file, ${result.chunks} chunks, read with dd bs=16M`)
  console.log(`  (a) store file, direct, cold cache:   ${fmt(direct.MBps)} MB/s; ${fmt(result.direct.cpuSecondsPerGiB, 2)} CPU-s/GiB`)
  console.log(`  (e) swarm pull from S3:               ${fmt(pullMBps)} MB/s; ${fmt(result.pull.cpuSecondsPerGiB, 2)} CPU-s/GiB`)
  for (const [adapter, r] of Object.entries(byAdapter)) {
    console.log(`  ${adapter}:`)
    console.log(`    (a) store file, direct, cold cache: ${fmt(r.directMBps)} MB/s (median of 3, alternating with (b))`)
    console.log(`    (b) mount, first read, cold cache:  ${fmt(r.mountFirstMBps)} MB/s  (b)/(a) = ${fmt(r.firstOverDirect, 2)} (goal >= 0.9); ${fmt(r.mountFirst.cpuSecondsPerGiB, 2)} CPU-s/GiB reader + server = ${fmt(r.mountFirst.cpuOverDirect, 2)} × (a) (goal <= 1.5), ${fmt(r.mountFirst.serverCpuSecondsPerGiB, 2)} in the server; ${r.mountFirst.requests} read requests reached it${r.mountFirst.passthroughOpens != null ? `, ${r.mountFirst.passthroughOpens} passthrough opens` : ''}`)
    console.log(`    (c) mount, re-read (page cache):    ${fmt(r.mountRereadMBps)} MB/s  (c)/(a) = ${fmt(r.rereadOverDirect, 2)}; ${fmt(r.mountReread.cpuSecondsPerGiB, 2)} CPU-s/GiB`)
    console.log(`    (d) mount, lazy first read from S3: ${fmt(r.lazyMBps)} MB/s  (d)/(e) = ${fmt(r.lazyOverPull, 2)} (goal >= 0.8); ${fmt(r.lazy.cpuSecondsPerGiB, 2)} CPU-s/GiB in the server; ${r.lazy.requests} requests${r.lazy.requestsForwarded != null ? ` (${r.lazy.requestsForwarded} forwarded to the view)` : ''}, ${r.lazy.readsThatWaited} waited ${fmt(r.lazy.waitSeconds ?? 0, 1)} s in all; ${r.lazy.chunksFetchedForReads} chunks fetched by reads, ${r.lazy.chunksPrefetched} prefetched`)
  }
  console.log(`  results: ${await saveResult('fuse-read', result)}`)
} finally {
  for (const child of children) child.kill('SIGTERM')
  await new Promise(resolve => setTimeout(resolve, 1000))
  await run('umount', ['-l', join(work, 'mnt')]).catch(() => {})
  await rm(work, { recursive: true, force: true })
  await deletePrefix().catch(err => { process.stderr.write(`could not delete s3://${s3.bucket}/${prefix}: ${err.message}\n`) })
}

async function deletePrefix () {
  const client = new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
  try {
    let token
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/`, ContinuationToken: token }))
      const keys = (page.Contents ?? []).map(o => ({ Key: o.Key }))
      if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: keys } }))
      token = page.NextContinuationToken
    } while (token != null)
  } finally {
    client.destroy()
  }
}
