// bench/fuse-read: reading one ≥ 2 GiB safetensors file through the FUSE view, against reading the
// store's own file, and a lazy first read through the view against `swarm pull`, all in one run,
// for each FUSE adapter (kernel: our own server with passthrough; fuse-native: libfuse 2):
//   (e) swarm pull of the model from the local S3 server into an empty store
//   (a) the complete file read straight from that store (page cache dropped first)
//   (b) the same file, first read through the mount (page cache dropped first; (a) and (b) alternate
//       three times and the medians are compared)
//   (c) the same file re-read through the mount (kernel page cache)
//   (d) the same file read through a mount over an empty store: every chunk fetched as it is read;
//       (d) and a fresh (e) alternate BENCH_LAZY_ROUNDS times (default 3) and the medians are compared,
//       each started on as many pages just freed as (d) fills (BENCH_WARM_PAGES=0: not)
//   (f) kernel adapter: the complete file read through the server's threads (passthrough off),
//       replies spliced from the store's file against copied through the server, alternating
// Reader: dd with 16 MiB blocks. Ratios: (b)/(a), (c)/(a), (d)/(e). CPU per GiB of (a) and (b)
// counts the reader and the serving process together (with passthrough the kernel reads the
// store's file in the reader's own system time). Also FUSE read requests and how long they waited.
// Needs root (drop_caches) and FUSE; run as root on a quiet machine. BENCH_ADAPTERS picks adapters.
// BENCH_FUSE_CASES picks cases (default `small-files,large`): `small-files` is a checkpoint of
// thousands of small files (small-files.mjs), `large` the one large file above. BENCH_FUSE_PARTS=lazy
// measures only (e) and (d) (and (a) once), for a quick look at the lazy read; =served only (f). BENCH_LAZY_BASELINE_CLI
// names another build's cli.js whose lazy read runs in each round too, just before this build's.
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
import { MB, MiB, cli, fmt, procThreads, s3Env, s3Server, saveResult, swarm, warmPageCache } from '../lib/common.mjs'
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
async function startMount (dataDir, mountpoint, adapter, swarmCli = cli, extraEnv = {}) {
  const child = spawn(process.execPath, [swarmCli, 'mount', mountpoint, '--data-dir', dataDir, '--adapter', adapter, '--json'], { env: { ...process.env, ...env, ...extraEnv }, stdio: ['ignore', 'pipe', 'inherit'] })
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
  const lazyOnly = process.env.BENCH_FUSE_PARTS === 'lazy'
  const servedOnly = process.env.BENCH_FUSE_PARTS === 'served'
  const lazyRounds = Number(process.env.BENCH_LAZY_ROUNDS ?? 3)
  const baselineClis = (process.env.BENCH_LAZY_BASELINE_CLI ?? '').split(',').filter(Boolean)
  // (d) fills the page cache twice (the store's file and the mount's own pages), (e) once: both
  // start on as many pages just freed (see warmPageCache), so neither pays this VM's first touch
  // of memory its host took back; BENCH_WARM_PAGES=0 measures them on whatever pages they get
  const lazyWarmBytes = process.env.BENCH_WARM_PAGES === '0' ? 0 : 2 * fileBytes
  for (const adapter of adapters) {
    if (servedOnly) {
      if (adapter === 'kernel') byAdapter[adapter] = { served: await servedReads() }
      continue
    }
    const r = byAdapter[adapter] = lazyOnly ? {} : await completeReads(adapter)
    if (adapter === 'kernel' && !lazyOnly) r.served = await servedReads()
    // (e) and (d) alternate, each from an empty store: a pull and a lazy read take seconds, and a
    // shared machine's load moves in that time
    const pulls = []
    const lazies = []
    const baselines = []
    for (let round = 0; round < lazyRounds; round++) {
      const again = join(work, `pull-${adapter}-${round}`)
      await warmPageCache(lazyWarmBytes)
      const { pull: p, cpu } = await timedPull(again)
      await rm(again, { recursive: true, force: true })
      pulls.push({ MBps: p.bytesBySource.origin / MB / (p.durationMs / 1000), cpu })
      for (const [i, other] of baselineClis.entries()) (baselines[i] ??= []).push(await lazyRead(adapter, `${round}-baseline-${i}`, other))
      lazies.push(await lazyRead(adapter, round))
    }
    const med = list => [...list].sort((x, y) => x.MBps - y.MBps)[Math.floor(list.length / 2)]
    const mean = (list, key) => list.reduce((sum, x) => sum + x[key], 0) / list.length
    const lazy = med(lazies)
    const pullHere = med(pulls).MBps
    Object.assign(r, {
      pullMBps: pullHere,
      pullCpuSecondsPerGiB: mean(pulls, 'cpu') / GiB,
      pullRounds: pulls.map(x => x.MBps),
      lazyMBps: lazy.MBps,
      lazyRounds: lazies.map(x => x.MBps),
      lazyOverPull: lazy.MBps / pullHere,
      baselines: baselines.map((list, i) => ({ cli: baselineClis[i], lazyMBps: med(list).MBps, lazyRounds: list.map(x => x.MBps), lazyCpuSecondsPerGiB: mean(list, 'cpu') / GiB })),
      lazy: {
        cpuSecondsPerGiB: mean(lazies, 'cpu') / GiB,
        requests: lazy.stats?.fuse != null ? lazy.stats.fuse.reads : lazy.stats?.reads,
        requestsForwarded: lazy.stats?.fuse?.readsForwarded,
        // answered from the store's file by splicing it to the kernel (kernel adapter)
        requestsSpliced: lazy.stats?.fuse?.readsSpliced,
        readsThatWaited: lazy.stats?.readsWaited,
        waitSeconds: lazy.stats != null ? lazy.stats.waitMs / 1000 : undefined,
        chunksFetchedForReads: lazy.stats?.chunksFetched,
        chunksPrefetched: lazy.stats?.prefetch?.chunks,
        readsFromMemory: lazy.stats?.readsFromMemory,
        // CPU-s/GiB by thread name in the median round (the FUSE server's threads, Node's main thread, libuv's pool)
        threadsCpuSecondsPerGiB: Object.fromEntries(Object.entries(lazy.threads).map(([name, seconds]) => [name, Number((seconds / GiB).toFixed(2))]))
      }
    })
  }

  /** CPU seconds each thread name spent between two looks at a process's threads. */
  function byThreadName (before, after) {
    const spent = {}
    const was = new Map((before ?? []).map(t => [t.tid, t.userSeconds + t.systemSeconds]))
    for (const t of after ?? []) spent[t.name] = (spent[t.name] ?? 0) + t.userSeconds + t.systemSeconds - (was.get(t.tid) ?? 0)
    return spent
  }

  /** (d): the file read through a mount over an empty store, with the server's CPU time and its counts. */
  async function lazyRead (adapter, round, swarmCli = cli) {
    const dir = join(work, `empty-${adapter}-${round}`)
    const lazyMount = await startMount(dir, mnt, adapter, swarmCli)
    await run('stat', ['-L', viewPath])
    await new Promise(resolve => setTimeout(resolve, 3000))
    await warmPageCache(lazyWarmBytes)
    const cpuBefore = await cpuSeconds(lazyMount.pid)
    const threadsBefore = await procThreads(lazyMount.pid)
    const read = await ddRead(viewPath)
    const cpu = await cpuSeconds(lazyMount.pid) - cpuBefore
    const threads = byThreadName(threadsBefore, await procThreads(lazyMount.pid))
    const stats = await lazyMount.stop()
    await rm(dir, { recursive: true, force: true })
    return { MBps: read.MBps, cpu, stats, threads }
  }

  /**
   * (f) kernel adapter: the complete file read through the server's threads (passthrough off), its
   * replies spliced from the store's file and copied (pread + writev), alternating three rounds.
   * The store's file stays in the page cache and each read starts on warmed pages, so what
   * differs is the server's copies.
   */
  async function servedReads () {
    const rounds = { copied: [], spliced: [] }
    for (let round = 0; round < 3; round++) {
      for (const [way, splice] of [['copied', '0'], ['spliced', '1']]) {
        const served = await startMount(full, mnt, 'kernel', cli, { SWARM_MOUNT_PASSTHROUGH: '0', SWARM_MOUNT_SPLICE: splice })
        await run('stat', ['-L', viewPath])
        await ddRead(stored.path)
        await warmPageCache(fileBytes)
        const cpuBefore = await cpuSeconds(served.pid)
        const read = await ddRead(viewPath)
        const cpu = await cpuSeconds(served.pid) - cpuBefore
        const stats = await served.stop()
        if (read.bytes !== fileBytes) throw new Error(`(f) read ${read.bytes} of ${fileBytes} bytes`)
        rounds[way].push({ MBps: read.MBps, cpu, readerCpu: read.cpu, reads: stats?.fuse?.reads, spliced: stats?.fuse?.readsSpliced })
      }
    }
    const summary = list => {
      const sorted = [...list].sort((x, y) => x.MBps - y.MBps)
      return { MBps: sorted[1].MBps, rounds: list.map(x => x.MBps), serverCpuSecondsPerGiB: list.reduce((sum, x) => sum + x.cpu, 0) / list.length / GiB, readerCpuSecondsPerGiB: list.reduce((sum, x) => sum + x.readerCpu, 0) / list.length / GiB, reads: list[0].reads, spliced: list[0].spliced }
    }
    return { copied: summary(rounds.copied), spliced: summary(rounds.spliced) }
  }

  /** (a), (b) and (c) for one adapter, over the pulled store. */
  async function completeReads (adapter) {
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
    // requests that reached the server: the kernel adapter counts them itself; fuse-native's are the view's reads
    const firstRequests = completeStats?.fuse != null ? completeStats.fuse.reads : completeStats?.reads
    return {
      directMBps: directHere.MBps,
      mountFirstMBps: first.MBps,
      mountRereadMBps: again.MBps,
      firstOverDirect: first.MBps / directHere.MBps,
      rereadOverDirect: again.MBps / directHere.MBps,
      mountFirst: {
        cpuSecondsPerGiB: (cpuFirst + first.cpu) / GiB,
        serverCpuSecondsPerGiB: cpuFirst / GiB,
        cpuOverDirect: (cpuFirst + first.cpu) / directHere.cpu,
        requests: firstRequests != null ? Math.round(firstRequests / 3) : undefined, // per first read (three rounds; the re-read is served by the page cache)
        passthroughOpens: completeStats?.fuse?.opensPassthrough
      },
      mountReread: { cpuSecondsPerGiB: (cpuAgain + again.cpu) / GiB }
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
    if (r.mountFirst != null) {
      console.log(`    (a) store file, direct, cold cache: ${fmt(r.directMBps)} MB/s (median of 3, alternating with (b))`)
      console.log(`    (b) mount, first read, cold cache:  ${fmt(r.mountFirstMBps)} MB/s  (b)/(a) = ${fmt(r.firstOverDirect, 2)} (goal >= 0.9); ${fmt(r.mountFirst.cpuSecondsPerGiB, 2)} CPU-s/GiB reader + server = ${fmt(r.mountFirst.cpuOverDirect, 2)} × (a) (goal <= 1.5), ${fmt(r.mountFirst.serverCpuSecondsPerGiB, 2)} in the server; ${r.mountFirst.requests} read requests reached it${r.mountFirst.passthroughOpens != null ? `, ${r.mountFirst.passthroughOpens} passthrough opens` : ''}`)
      console.log(`    (c) mount, re-read (page cache):    ${fmt(r.mountRereadMBps)} MB/s  (c)/(a) = ${fmt(r.rereadOverDirect, 2)}; ${fmt(r.mountReread.cpuSecondsPerGiB, 2)} CPU-s/GiB`)
    }
    if (r.served != null) {
      for (const way of ['copied', 'spliced']) {
        const w = r.served[way]
        console.log(`    (f) read by the server's threads, ${way === 'spliced' ? 'spliced from the store\'s file' : 'copied (pread + writev)'}: ${fmt(w.MBps)} MB/s (median of 3: ${w.rounds.map(x => fmt(x, 0)).join(', ')}); ${fmt(w.serverCpuSecondsPerGiB, 2)} CPU-s/GiB in the server, ${fmt(w.readerCpuSecondsPerGiB, 2)} in the reader; ${w.reads} read requests, ${w.spliced} spliced`)
      }
      console.log(`        spliced / copied: rate ${fmt(r.served.spliced.MBps / r.served.copied.MBps, 2)} ×, server CPU ${fmt(r.served.spliced.serverCpuSecondsPerGiB / r.served.copied.serverCpuSecondsPerGiB, 2)} ×`)
    }
    if (r.pullMBps == null) continue
    console.log(`    (e) swarm pull from S3, alternating with (d): ${fmt(r.pullMBps)} MB/s (median of ${r.pullRounds.length}: ${r.pullRounds.map(x => fmt(x, 0)).join(', ')}); ${fmt(r.pullCpuSecondsPerGiB, 2)} CPU-s/GiB`)
    console.log(`    (d) mount, lazy first read from S3: ${fmt(r.lazyMBps)} MB/s (median of ${r.lazyRounds.length}: ${r.lazyRounds.map(x => fmt(x, 0)).join(', ')})  (d)/(e) = ${fmt(r.lazyOverPull, 2)} (goal >= 0.9); ${fmt(r.lazy.cpuSecondsPerGiB, 2)} CPU-s/GiB in the server; ${r.lazy.requests} requests${r.lazy.requestsForwarded != null ? ` (${r.lazy.requestsForwarded} forwarded to the view${r.lazy.requestsSpliced != null ? `, ${r.lazy.requestsSpliced} spliced from the store's file` : ''})` : ''}, ${r.lazy.readsThatWaited} waited ${fmt(r.lazy.waitSeconds ?? 0, 1)} s in all; ${r.lazy.chunksFetchedForReads} chunks fetched by reads, ${r.lazy.chunksPrefetched} prefetched${r.lazy.readsFromMemory != null ? `, ${r.lazy.readsFromMemory} reads served from verified bytes in memory` : ''}`)
    for (const b of r.baselines) console.log(`    (d) with ${b.cli}, same rounds: ${fmt(b.lazyMBps)} MB/s (${b.lazyRounds.map(x => fmt(x, 0)).join(', ')})  (d)/(this) = ${fmt(r.lazyMBps / b.lazyMBps, 2)}, (this)/(e) = ${fmt(b.lazyMBps / r.pullMBps, 2)}; ${fmt(b.lazyCpuSecondsPerGiB, 2)} CPU-s/GiB`)
    console.log(`      server CPU-s/GiB by thread: ${Object.entries(r.lazy.threadsCpuSecondsPerGiB).filter(([, v]) => v >= 0.01).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ')}`)
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
