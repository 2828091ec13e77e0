// bench/peer-transfer: one agent serves a ~1 GiB model to another over loopback, against raw TCP
// moving the same bytes (the same store file, read in 4 MiB pieces, written whole) in the same run.
// For both: MB/s and CPU-seconds per GB, counting both ends. Swarm's figure includes everything a
// pull does: control messages over libp2p, TLS 1.3 on the data plane, SHA-256 of every chunk,
// the store's writes and fdatasyncs. With BENCH_PROFILE=1 the receiving agent runs with
// --cpu-prof and the top self-time functions are printed.
import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { writeSyntheticModel } from '@swarm/agent'
import { MB, MiB, cpuSeconds, fmt, saveResult, startAgent, swarm } from '../lib/common.mjs'

const layers = Number(process.env.BENCH_LAYERS ?? 8) // ≈ 1 GiB with the shape below
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-peer-'))
const agents = []

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
    process.on('SIGTERM', () => { const u = process.cpuUsage(); process.stdout.write(JSON.stringify(u) + '\\n'); process.exit(0) })`
  const server = spawn(process.execPath, ['-e', serverCode], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  server.stdout.setEncoding('utf8').on('data', d => { out += d })
  while (!out.includes('\n')) await new Promise(r => setTimeout(r, 20))
  const port = Number(out.split('\n')[0])
  const clientCode = `
    const net = require('node:net'); let bytes = 0; const started = performance.now()
    const s = net.connect(${port}, '127.0.0.1'); s.on('data', d => { bytes += d.length })
    s.on('end', () => { const u = process.cpuUsage(); process.stdout.write(JSON.stringify({ bytes, seconds: (performance.now() - started) / 1000, cpu: (u.user + u.system) / 1e6 }) + '\\n') })`
  const client = spawn(process.execPath, ['-e', clientCode], { stdio: ['ignore', 'pipe', 'inherit'] })
  let clientOut = ''
  client.stdout.setEncoding('utf8').on('data', d => { clientOut += d })
  await new Promise(r => client.on('close', r))
  const result = JSON.parse(clientOut)
  server.kill('SIGTERM')
  await new Promise(r => server.on('close', r))
  const serverCpu = JSON.parse(out.split('\n')[1])
  if (result.bytes !== totalBytes) throw new Error(`raw TCP moved ${result.bytes} of ${totalBytes} bytes`)
  return { seconds: result.seconds, cpu: result.cpu + (serverCpu.user + serverCpu.system) / 1e6 }
}

try {
  const originDir = join(work, 'origin')
  await mkdir(originDir)
  const env = { SWARM_ORIGIN: pathToFileURL(originDir).href }
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 2 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })

  const profileDir = join(work, 'profile')
  const profiling = process.env.BENCH_PROFILE === '1' ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []
  const seeder = await startAgent({ dataDir: join(work, 'seeder'), env, nodeOptions: profiling })
  agents.push(seeder)
  await swarm(['pull', 'bench:v1'], seeder.env)
  const leecher = await startAgent({
    dataDir: join(work, 'leecher'),
    // the receiver may only use the peer (the origin is a directory that does not exist), so it pulls by CID
    env: { SWARM_ORIGIN: pathToFileURL(join(work, 'no-origin')).href },
    bootstrap: seeder.multiaddrs,
    nodeOptions: profiling
  })
  agents.push(leecher)
  await new Promise(r => setTimeout(r, 1000))

  const storeFiles = (await readdir(join(seeder.dataDir, 'content'))).filter(f => !f.endsWith('.have')).map(f => join(seeder.dataDir, 'content', f))
  const totalBytes = model.totalBytes

  const raw = await rawTcp(storeFiles, totalBytes)

  const before = [await cpuSeconds(seeder.pid), await cpuSeconds(leecher.pid)]
  const done = await swarm(['pull', '--cid', pushed.manifestCid], leecher.env)
  const after = [await cpuSeconds(seeder.pid), await cpuSeconds(leecher.pid)]
  const [seederCpu, leecherCpu] = [after[0] - before[0], after[1] - before[1]]
  if (done.bytesBySource.peer !== totalBytes) throw new Error(`expected every byte from the peer, got ${JSON.stringify(done.bytesBySource)}`)
  const swarmSeconds = done.durationMs / 1000
  const swarmCpu = seederCpu + leecherCpu

  const GB = totalBytes / 1e9
  const result = {
    bytes: totalBytes,
    rawTcp: { MBps: totalBytes / MB / raw.seconds, cpuSecondsPerGB: raw.cpu / GB },
    swarm: { MBps: totalBytes / MB / swarmSeconds, cpuSecondsPerGB: swarmCpu / GB, senderCpuSecondsPerGB: seederCpu / GB, receiverCpuSecondsPerGB: leecherCpu / GB },
  }
  result.cpuRatio = result.swarm.cpuSecondsPerGB / result.rawTcp.cpuSecondsPerGB
  result.rateRatio = result.swarm.MBps / result.rawTcp.MBps
  console.log(`peer-transfer: ${fmt(totalBytes / MiB, 0)} MiB from one agent to another over loopback`)
  console.log(`  raw TCP:  ${fmt(result.rawTcp.MBps)} MB/s, ${fmt(result.rawTcp.cpuSecondsPerGB, 2)} CPU-s/GB (both ends)`)
  console.log(`  swarm:    ${fmt(result.swarm.MBps)} MB/s, ${fmt(result.swarm.cpuSecondsPerGB, 2)} CPU-s/GB (both agents: TLS, SHA-256, store writes, fsync; sender ${fmt(result.swarm.senderCpuSecondsPerGB, 2)}, receiver ${fmt(result.swarm.receiverCpuSecondsPerGB, 2)})`)
  console.log(`  ratio:    CPU/GB ${fmt(result.cpuRatio, 2)}× raw TCP (goal <= 2), rate ${fmt(result.rateRatio, 2)}× raw TCP`)

  for (const a of agents.splice(0)) await a.stop()
  if (process.env.BENCH_PROFILE === '1') {
    const files = (await readdir(profileDir)).filter(f => f.endsWith('.cpuprofile')).sort()
    result.profile = {}
    for (const [role, file] of [['sender', files[0]], ['receiver', files[1]]]) {
    const profile = JSON.parse(await readFile(join(profileDir, file), 'utf8'))
    const self = new Map()
    const dt = profile.timeDeltas
    const byId = new Map(profile.nodes.map(n => [n.id, n]))
    profile.samples.forEach((id, i) => {
      const n = byId.get(id)
      const key = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').slice(-2).join('/')}`
      self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0))
    })
    const total = [...self.values()].reduce((a, b) => a + b, 0)
    result.profile[role] = [...self.entries()].filter(([name]) => !name.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 12).map(([name, us]) => ({ name, share: us / total }))
    console.log(`  ${role} agent, top self time (share of its whole run, idle excluded):`)
    for (const { name, share } of result.profile[role]) console.log(`    ${fmt(share * 100, 1)}%  ${name}`)
    }
  }
  console.log(`  results: ${await saveResult('peer-transfer', result)}`)
} finally {
  for (const a of agents) await a.stop().catch(() => {})
  await rm(work, { recursive: true, force: true })
}
