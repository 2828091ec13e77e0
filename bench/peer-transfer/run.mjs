// bench/peer-transfer: one agent serves a ~1 GiB model to another over loopback, against two
// baselines moving the same bytes in the same run:
//
// - raw TCP: the same store files, read in 4 MiB pieces, written whole; nothing checked or stored;
// - the "necessary work" (necessary-work.mjs, two child processes): TLS 1.3 with Node's default
//   cipher, the receiver SHA-256-hashes every chunk and pwrites it with fdatasync into a file,
//   the connections spread over as many worker threads on each side as Swarm uses, nothing but
//   length-prefixed chunks on the wire: what Swarm's data plane must do with nothing else.
//
// For each: MB/s and CPU-seconds per GB (sender, receiver, both), and peak RSS. Swarm's figure
// includes everything a pull does: control messages over libp2p, TLS 1.3 on the data plane,
// SHA-256 of every chunk, the store's writes and fdatasyncs; per thread, the receiving agent's
// main thread per GB moved (as the agent reports it in `swarm status --json` or /metrics, else
// read from /proc). Agents run with `--workers N` when this build takes it (N = BENCH_WORKERS,
// default the machine's available parallelism). With BENCH_PROFILE=1 the agents run with
// --cpu-prof and the top self-time functions of each agent while the pull ran are printed, main
// thread and workers apart; BENCH_KEEP_PROFILE=<dir> keeps the profiles there.
// BENCH_WARMUP=1 has the receiving agent first pull another, smaller model from the same sender
// (unmeasured but for its main thread's CPU, printed apart), as an agent that has pulled before:
// its code compiled and its connections to the sender open. Without it the figures are a fresh
// agent's first pull, which also pays for those once.
import { execFile, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { writeSyntheticModel } from '@swarm/agent'
import { parseChunkCid } from '@swarm/chunker'
import { uniqueChunks } from '@swarm/interface'
import { MB, MiB, agentThreadBreakdown, breakdownDelta, cpuSeconds, fmt, fmtBreakdown, fmtOr, measured, peakRssOf, procThreads, rssOf, saveResult, threadBreakdown, startAgent, swarm, swarmTakes, warmPageCache } from '../lib/common.mjs'

const layers = Number(process.env.BENCH_LAYERS ?? 8) // ≈ 1 GiB with the shape below
const WORKERS = Number(process.env.BENCH_WORKERS ?? availableParallelism())
if (!Number.isInteger(WORKERS) || WORKERS < 1) throw new Error(`BENCH_WORKERS=${process.env.BENCH_WORKERS}: expected a whole number of threads, 1 or more`)
// the data client's pool to one peer (DEFAULT_CONNECTIONS_PER_PEER in @swarm/exchange), or one per thread when there are more threads
const CONNECTIONS = Math.max(4, WORKERS)
const WARMUP = process.env.BENCH_WARMUP === '1'
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-peer-'))
const agents = []
let pullWindow

/** a breakdown's CPU seconds per GB moved */
function perGB (breakdown, gb) {
  if (breakdown == null) return null
  const per = v => (v == null ? null : v / gb)
  return { ...breakdown, main: per(breakdown.main), workers: per(breakdown.workers), libuv: per(breakdown.libuv), runtime: per(breakdown.runtime) }
}

/** Raw TCP baseline in two child processes, so each end's CPU is its own. */
async function rawTcp (files, totalBytes) {
  const serverCode = `
    const net = require('node:net'); const fs = require('node:fs')
    const files = ${JSON.stringify(files)}
    const server = net.createServer(async socket => {
      const piece = Buffer.allocUnsafe(4 * 1024 * 1024)
      for (const f of files) {
        const fd = fs.openSync(f, 'r'); const size = fs.fstatSync(fd).size
        for (let off = 0; off < size; off += piece.length) {
          const n = fs.readSync(fd, piece, 0, Math.min(piece.length, size - off), off)
          if (!socket.write(Buffer.from(piece.subarray(0, n)))) await new Promise(r => socket.once('drain', r))
        }
        fs.closeSync(fd)
      }
      socket.end()
    })
    server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'))
    process.on('SIGTERM', () => { const u = process.cpuUsage(); process.stdout.write(JSON.stringify({ ...u, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + '\\n'); process.exit(0) })`
  const server = spawn(process.execPath, ['-e', serverCode], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  server.stdout.setEncoding('utf8').on('data', d => { out += d })
  while (!out.includes('\n')) await new Promise(r => setTimeout(r, 20))
  const port = Number(out.split('\n')[0])
  const clientCode = `
    const net = require('node:net'); let bytes = 0; const started = performance.now()
    const s = net.connect(${port}, '127.0.0.1'); s.on('data', d => { bytes += d.length })
    s.on('end', () => { const u = process.cpuUsage(); process.stdout.write(JSON.stringify({ bytes, seconds: (performance.now() - started) / 1000, cpu: (u.user + u.system) / 1e6, maxRssBytes: process.resourceUsage().maxRSS * 1024 }) + '\\n') })`
  const client = spawn(process.execPath, ['-e', clientCode], { stdio: ['ignore', 'pipe', 'inherit'] })
  let clientOut = ''
  client.stdout.setEncoding('utf8').on('data', d => { clientOut += d })
  await new Promise(r => client.on('close', r))
  const result = JSON.parse(clientOut)
  server.kill('SIGTERM')
  await new Promise(r => server.on('close', r))
  const serverCpu = JSON.parse(out.split('\n')[1])
  if (result.bytes !== totalBytes) throw new Error(`raw TCP moved ${result.bytes} of ${totalBytes} bytes`)
  return { seconds: result.seconds, cpu: result.cpu + (serverCpu.user + serverCpu.system) / 1e6, senderPeakRssBytes: serverCpu.maxRssBytes, receiverPeakRssBytes: result.maxRssBytes }
}

/** The necessary-work baseline: a sender and a receiver process, each under GNU time (for peak RSS). */
async function necessaryWork (manifest, sourceDir) {
  const dir = join(work, 'necessary')
  await mkdir(dir)
  const cert = join(dir, 'cert.pem')
  const key = join(dir, 'key.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=swarm-bench', '-addext', 'subjectAltName=DNS:swarm-bench', '-keyout', key, '-out', cert])
  const plan = {
    threads: WORKERS,
    connections: CONNECTIONS,
    cert,
    key,
    files: manifest.files.map((f, i) => ({ source: join(sourceDir, f.path), target: join(dir, `out-${i}`), size: f.size })),
    chunks: manifest.files.flatMap((f, file) => f.chunks.map(c => ({ file, offset: c.offset, size: c.size, sha256: Buffer.from(parseChunkCid(c.cid).multihash.digest).toString('hex') })))
  }
  const script = new URL('./necessary-work.mjs', import.meta.url).pathname
  const senderPlan = join(dir, 'sender.json')
  await writeFile(senderPlan, JSON.stringify(plan))
  let listening
  const ports = new Promise(resolve => { listening = resolve })
  const sending = measured(process.execPath, [script, 'sender', senderPlan], {
    onStdout: out => { const first = out.split('\n')[0]; if (out.includes('\n')) listening(JSON.parse(first).ports) }
  })
  const receiverPlan = join(dir, 'receiver.json')
  // the sender's exit only matters while it has not listened yet
  const exitedEarly = sending.then(r => { throw new Error(`the sender exited with ${r.code} before listening`) })
  exitedEarly.catch(() => {})
  await writeFile(receiverPlan, JSON.stringify({ ...plan, ports: await Promise.race([ports, exitedEarly]) }))
  const received = await measured(process.execPath, [script, 'receiver', receiverPlan])
  const sent = await sending
  if (received.code !== 0 || sent.code !== 0) throw new Error(`necessary work: receiver exited with ${received.code}, sender with ${sent.code}`)
  const out = JSON.parse(received.stdout.trim().split('\n').pop())
  const senderOut = JSON.parse(sent.stdout.trim().split('\n').pop())
  await rm(dir, { recursive: true, force: true })
  const cpuOf = list => list.reduce((sum, t) => sum + t.userSeconds + t.systemSeconds, 0)
  return {
    seconds: out.seconds,
    bytes: out.bytes,
    cipher: out.cipher,
    senderCpu: senderOut.cpuSeconds,
    receiverCpu: out.cpuSeconds,
    receiverMainCpu: cpuOf(out.threads.filter(t => t.name === 'main')),
    receiverWorkersCpu: cpuOf(out.threads.filter(t => t.name !== 'main')),
    senderMainCpu: cpuOf(senderOut.threads.filter(t => t.name === 'main')),
    senderPeakRssBytes: sent.maxRssBytes,
    receiverPeakRssBytes: received.maxRssBytes
  }
}

/**
 * The receiver's first pull, of a small model of other bytes from the same sender: what the
 * measured pull no longer pays for (compiling the pull's code, the data connections).
 */
async function warmUp (env, originDir, seeder, leecher) {
  const model = await writeSyntheticModel(join(work, 'warm-up'), { layers: 2, hidden: 1024, intermediate: 2816, vocab: 4096, shards: 2, seed: 'peer-transfer warm-up' })
  const pushed = await swarm(['push', model.dir, '--name', 'bench-warm-up:v1'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })
  await swarm(['pull', 'bench-warm-up:v1'], seeder.env)
  const before = await agentThreadBreakdown(leecher)
  const done = await swarm(['pull', '--cid', pushed.manifestCid], leecher.env)
  if (done.bytesBySource.peer !== model.totalBytes) throw new Error(`warm-up: expected every byte from the peer, got ${JSON.stringify(done.bytesBySource)}`)
  const threads = breakdownDelta(before, await agentThreadBreakdown(leecher))
  await rm(model.dir, { recursive: true, force: true })
  const manifest = JSON.parse(await readFile(join(originDir, 'manifests', pushed.manifestCid), 'utf8'))
  return { bytes: model.totalBytes, seconds: done.durationMs / 1000, receiverMainThreadCpuSeconds: threads?.main ?? null, chunks: new Set(uniqueChunks(manifest).map(c => c.cid)) }
}

try {
  const originDir = join(work, 'origin')
  await mkdir(originDir)
  const env = { SWARM_ORIGIN: pathToFileURL(originDir).href }
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 2 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })

  const takesWorkers = await swarmTakes('agent', '--workers')
  const workerArgs = takesWorkers ? ['--workers', String(WORKERS)] : []
  const profileDir = join(work, 'profile')
  const profiling = process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const seeder = await startAgent({ dataDir: join(work, 'seeder'), env, nodeOptions: profiling, args: workerArgs })
  agents.push(seeder)
  await swarm(['pull', 'bench:v1'], seeder.env)
  const leecher = await startAgent({
    dataDir: join(work, 'leecher'),
    // the receiver may only use the peer (the origin is a directory that does not exist), so it pulls by CID
    env: { SWARM_ORIGIN: pathToFileURL(join(work, 'no-origin')).href },
    bootstrap: seeder.multiaddrs,
    nodeOptions: profiling,
    args: workerArgs
  })
  agents.push(leecher)
  await new Promise(r => setTimeout(r, 1000))
  // the receiving agent before it has moved a byte: what its threads and loaded code cost alone
  const leecherIdleRss = await rssOf(leecher.pid)

  const storeFiles = (await readdir(join(seeder.dataDir, 'content'))).filter(f => !f.endsWith('.have')).map(f => join(seeder.dataDir, 'content', f))
  const totalBytes = model.totalBytes
  // after the store's files are listed: the raw TCP baseline sends the measured model's alone
  const warmup = WARMUP ? await warmUp(env, originDir, seeder, leecher) : undefined

  const raw = await rawTcp(storeFiles, totalBytes)
  const manifest = JSON.parse(await readFile(join(originDir, 'manifests', pushed.manifestCid), 'utf8'))
  // the receivers that write start on pages just freed, whatever ran before them (see warmPageCache)
  await warmPageCache(totalBytes)
  const necessary = await necessaryWork(manifest, model.dir)
  if (necessary.bytes !== totalBytes) throw new Error(`the necessary-work receiver moved ${necessary.bytes} of ${totalBytes} bytes`)

  await warmPageCache(totalBytes)
  const before = [await cpuSeconds(seeder.pid), await cpuSeconds(leecher.pid)]
  const threadsBefore = await agentThreadBreakdown(leecher)
  const osThreads = async agent => threadBreakdown(await procThreads(agent.pid))
  const osBefore = [await osThreads(seeder), await osThreads(leecher)]
  // the pull's window on the monotonic clock the agents' CPU profiles are stamped with (µs)
  const windowStart = process.hrtime.bigint() / 1000n
  const done = await swarm(['pull', '--cid', pushed.manifestCid], leecher.env)
  const windowEnd = process.hrtime.bigint() / 1000n
  pullWindow = { start: Number(windowStart), end: Number(windowEnd), sender: seeder.pid, receiver: leecher.pid }
  const after = [await cpuSeconds(seeder.pid), await cpuSeconds(leecher.pid)]
  const receiverThreads = breakdownDelta(threadsBefore, await agentThreadBreakdown(leecher))
  // every OS thread of both agents from /proc: the libuv pool (file writes, syncs) and V8's own threads (GC) too
  const [senderOsThreads, receiverOsThreads] = [breakdownDelta(osBefore[0], await osThreads(seeder)), breakdownDelta(osBefore[1], await osThreads(leecher))]
  const [seederCpu, leecherCpu] = [after[0] - before[0], after[1] - before[1]]
  // after a warm-up the store already holds the chunks both models share (the tokenizer's small files), fetched by nobody
  const held = uniqueChunks(manifest).filter(c => warmup?.chunks.has(c.cid) === true).reduce((sum, c) => sum + c.size, 0)
  if (done.bytesBySource.peer !== totalBytes - held || done.bytesBySource.origin !== 0) throw new Error(`expected every byte but the ${held} already held from the peer, got ${JSON.stringify(done.bytesBySource)}`)
  const swarmSeconds = done.durationMs / 1000
  const swarmCpu = seederCpu + leecherCpu
  const [seederRss, leecherRss] = [await peakRssOf(seeder.pid), await peakRssOf(leecher.pid)]

  const GB = totalBytes / 1e9
  const result = {
    bytes: totalBytes,
    workers: WORKERS,
    connections: CONNECTIONS,
    agentsTakeWorkers: takesWorkers,
    warmup: warmup != null ? { bytes: warmup.bytes, seconds: warmup.seconds, receiverMainThreadCpuSeconds: warmup.receiverMainThreadCpuSeconds, sharedBytes: held } : null,
    // the measured pull on the monotonic clock (µs), and the agents' pids: to line up a profile (perf -k CLOCK_MONOTONIC)
    pullWindow,
    rawTcp: { MBps: totalBytes / MB / raw.seconds, cpuSecondsPerGB: raw.cpu / GB, senderPeakRssMB: raw.senderPeakRssBytes / MB, receiverPeakRssMB: raw.receiverPeakRssBytes / MB },
    necessaryWork: {
      MBps: totalBytes / MB / necessary.seconds,
      cipher: necessary.cipher,
      cpuSecondsPerGB: (necessary.senderCpu + necessary.receiverCpu) / GB,
      senderCpuSecondsPerGB: necessary.senderCpu / GB,
      receiverCpuSecondsPerGB: necessary.receiverCpu / GB,
      receiverMainThreadCpuSecondsPerGB: necessary.receiverMainCpu / GB,
      receiverWorkersCpuSecondsPerGB: necessary.receiverWorkersCpu / GB,
      senderPeakRssMB: necessary.senderPeakRssBytes / MB,
      receiverPeakRssMB: necessary.receiverPeakRssBytes / MB
    },
    swarm: {
      MBps: totalBytes / MB / swarmSeconds,
      cpuSecondsPerGB: swarmCpu / GB,
      senderCpuSecondsPerGB: seederCpu / GB,
      receiverCpuSecondsPerGB: leecherCpu / GB,
      receiverMainThreadCpuSecondsPerGB: receiverThreads?.main == null ? null : receiverThreads.main / GB,
      senderOsThreads: perGB(senderOsThreads, GB),
      receiverOsThreads: perGB(receiverOsThreads, GB),
      receiverThreads: perGB(receiverThreads, GB),
      // whole life of each agent: the sender's includes its own pull from the origin
      senderPeakRssMB: seederRss == null ? null : seederRss / MB,
      receiverPeakRssMB: leecherRss == null ? null : leecherRss / MB,
      receiverIdleRssMB: leecherIdleRss == null ? null : leecherIdleRss / MB,
      // requests the receiver made, hedges and retries included: the per-chunk work its main thread did
      peerRequests: done.peerRequests ?? null,
      chunks: done.progress?.totalChunks ?? null
    }
  }
  result.cpuRatio = result.swarm.cpuSecondsPerGB / result.rawTcp.cpuSecondsPerGB
  result.rateRatio = result.swarm.MBps / result.rawTcp.MBps
  result.rateRatioToNecessaryWork = result.swarm.MBps / result.necessaryWork.MBps
  result.cpuRatioToNecessaryWork = result.swarm.cpuSecondsPerGB / result.necessaryWork.cpuSecondsPerGB
  const nw = result.necessaryWork
  console.log(`peer-transfer: ${fmt(totalBytes / MiB, 0)} MiB from one agent to another over loopback; ${WORKERS} threads, ${CONNECTIONS} connections for the necessary work`)
  console.log(`  raw TCP:        ${fmt(result.rawTcp.MBps).padStart(7)} MB/s, ${fmt(result.rawTcp.cpuSecondsPerGB, 2)} CPU-s/GB (both ends); peak RSS sender ${fmt(result.rawTcp.senderPeakRssMB, 0)} MB, receiver ${fmt(result.rawTcp.receiverPeakRssMB, 0)} MB`)
  console.log(`  necessary work: ${fmt(nw.MBps).padStart(7)} MB/s, ${fmt(nw.cpuSecondsPerGB, 2)} CPU-s/GB (${nw.cipher}, SHA-256, pwrite, fdatasync; sender ${fmt(nw.senderCpuSecondsPerGB, 2)}, receiver ${fmt(nw.receiverCpuSecondsPerGB, 2)}: main ${fmt(nw.receiverMainThreadCpuSecondsPerGB, 2)}, workers ${fmt(nw.receiverWorkersCpuSecondsPerGB, 2)}); peak RSS sender ${fmt(nw.senderPeakRssMB, 0)} MB, receiver ${fmt(nw.receiverPeakRssMB, 0)} MB`)
  console.log(`  swarm:          ${fmt(result.swarm.MBps).padStart(7)} MB/s, ${fmt(result.swarm.cpuSecondsPerGB, 2)} CPU-s/GB (both agents: TLS, SHA-256, store writes, fsync; sender ${fmt(result.swarm.senderCpuSecondsPerGB, 2)}, receiver ${fmt(result.swarm.receiverCpuSecondsPerGB, 2)})${takesWorkers ? `, --workers ${WORKERS}` : ' (this build has no --workers)'}`)
  console.log(`                  ${fmtOr(result.swarm.peerRequests, 0)} peer requests for ${fmtOr(result.swarm.chunks, 0)} chunks`)
  console.log(warmup != null
    ? `                  the receiving agent's second pull: its first (${fmt(warmup.bytes / MiB, 0)} MiB, unmeasured) took ${fmt(warmup.seconds, 2)} s and ${fmtOr(warmup.receiverMainThreadCpuSeconds, 2)} CPU-s of its main thread`
    : '                  the receiving agent\'s first pull (BENCH_WARMUP=1 measures a second one)')
  console.log(`                  receiving agent per thread: ${fmtBreakdown(receiverThreads, GB)}; peak RSS sender ${fmtOr(result.swarm.senderPeakRssMB, 0)} MB, receiver ${fmtOr(result.swarm.receiverPeakRssMB, 0)} MB (whole life; goal <= 300); receiver idle before the pull ${fmtOr(result.swarm.receiverIdleRssMB, 0)} MB`)
  console.log(`                  every thread (from /proc), sender: ${fmtBreakdown(senderOsThreads, GB)}`)
  console.log(`                  every thread (from /proc), receiver: ${fmtBreakdown(receiverOsThreads, GB)}`)
  console.log(`  ratio to raw TCP:        CPU/GB ${fmt(result.cpuRatio, 2)}× (goal <= 2), rate ${fmt(result.rateRatio, 2)}×`)
  console.log(`  ratio to necessary work: rate ${fmt(result.rateRatioToNecessaryWork, 2)}× (goal >= 0.9), CPU/GB ${fmt(result.cpuRatioToNecessaryWork, 2)}× (goal <= 1.2)`)
  console.log(`  receiving agent's main thread: ${fmtOr(result.swarm.receiverMainThreadCpuSecondsPerGB, 2)} CPU-s/GB (goal <= 0.2)`)

  for (const a of agents.splice(0)) await a.stop()
  if (process.env.BENCH_PROFILE === '1') {
    // one profile per thread: CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread
    const files = (await readdir(profileDir)).filter(f => f.endsWith('.cpuprofile')).map(f => ({ f, pid: Number(f.split('.')[3]), tid: Number(f.split('.')[4]) }))
    result.profile = {}
    for (const [role, pid] of [['sender', seeder.pid], ['receiver', leecher.pid]]) {
      for (const [threads, pick] of [['main', t => t.tid === 0], ['workers', t => t.tid !== 0]]) {
        const self = new Map()
        for (const { f } of files.filter(t => t.pid === pid && pick(t))) {
          const profile = JSON.parse(await readFile(join(profileDir, f), 'utf8'))
          const dt = profile.timeDeltas
          const byId = new Map(profile.nodes.map(n => [n.id, n]))
          let at = BigInt(profile.startTime)
          profile.samples.forEach((id, i) => {
            at += BigInt(dt[i] ?? 0)
            // only what the agents did while the pull ran: their start and the seeder's own pull are not the transfer's
            if (at < windowStart || at > windowEnd) return
            const n = byId.get(id)
            const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}`
            self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0))
          })
        }
        if (self.size === 0) continue
        const busy = [...self.entries()].filter(([name]) => !name.startsWith('(idle)'))
        const total = busy.reduce((a, [, us]) => a + us, 0)
        const key = `${role}-${threads}`
        result.profile[key] = busy.sort((a, b) => b[1] - a[1]).slice(0, 16).map(([name, us]) => ({ name, share: us / total, seconds: us / 1e6 }))
        console.log(`  ${role} agent, ${threads === 'main' ? 'main thread' : 'worker threads'}: ${fmt(total / 1e6, 2)} CPU-s busy during the pull; top self time:`)
        for (const { name, share, seconds } of result.profile[key]) console.log(`    ${fmt(share * 100, 1).padStart(5)}%  ${fmt(seconds, 2)} s  ${name}`)
      }
    }
  }
  console.log(`  results: ${await saveResult('peer-transfer', result)}`)
} finally {
  for (const a of agents) await a.stop().catch(() => {})
  if (process.env.BENCH_KEEP_PROFILE != null && existsSync(join(work, 'profile'))) {
    await cp(join(work, 'profile'), process.env.BENCH_KEEP_PROFILE, { recursive: true })
    // the pull's window on the profiles' clock (µs), and which process was which
    await writeFile(join(process.env.BENCH_KEEP_PROFILE, 'window.json'), JSON.stringify(pullWindow))
  }
  await rm(work, { recursive: true, force: true })
}
