// one-off: receiver's per-thread CPU per GB for a peer pull, with SWARM_WORKERS as given
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { writeSyntheticModel } from '@swarm/agent'
import { MB, cpuSeconds, startAgent, swarm } from './lib/common.mjs'

const layers = Number(process.env.BENCH_LAYERS ?? 8)
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-threads-'))
const agents = []
try {
  const originDir = join(work, 'origin')
  await mkdir(originDir)
  const env = { SWARM_ORIGIN: pathToFileURL(originDir).href }
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 2 })
  const pushed = await swarm(['push', model.dir, '--name', 'bench:v1'], { ...env, SWARM_DATA_DIR: join(work, 'pusher') })
  const seeder = await startAgent({ dataDir: join(work, 'seeder'), env })
  agents.push(seeder)
  await swarm(['pull', 'bench:v1'], seeder.env)
  for (const workers of (process.env.RUNS ?? '0,2').split(',')) {
    const leecher = await startAgent({ dataDir: join(work, `leecher-${workers}`), env: { SWARM_ORIGIN: pathToFileURL(join(work, 'no-origin')).href, SWARM_WORKERS: workers }, bootstrap: seeder.multiaddrs })
    agents.push(leecher)
    await new Promise(r => setTimeout(r, 1000))
    const t0 = (await swarm(['status', '--json'], leecher.env)).threads
    const c0 = await cpuSeconds(leecher.pid)
    const done = await swarm(['pull', '--cid', pushed.manifestCid], leecher.env)
    const c1 = await cpuSeconds(leecher.pid)
    const t1 = (await swarm(['status', '--json'], leecher.env)).threads
    const GB = model.totalBytes / 1e9
    const per = t1.map(t => { const b = t0.find(x => x.name === t.name); return `${t.name} ${((t.userSeconds + t.systemSeconds - b.userSeconds - b.systemSeconds) / GB).toFixed(2)}` })
    console.log(`workers=${workers}: ${(model.totalBytes / MB / (done.durationMs / 1000)).toFixed(1)} MB/s, receiver ${((c1 - c0) / GB).toFixed(2)} CPU-s/GB; per thread CPU-s/GB: ${per.join(', ')}`)
    await leecher.stop()
    agents.pop()
  }
} finally {
  for (const a of agents) await a.stop().catch(() => {})
  await rm(work, { recursive: true, force: true })
}
