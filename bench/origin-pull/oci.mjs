// bench/origin-pull --origin oci: `swarm pull` of a synthetic model from a local OCI registry
// (Debian's docker-registry, scripts/oci-registry.sh) into an empty store, against a plain client:
// parallel ranged GETs with undici of the very same byte ranges of the same layer blobs, bytes
// discarded, same registry, same run. The model is published with `swarm push --origin oci://…`
// (a ModelPack artifact, one raw layer per file, and its chunk manifest as a referrer), so the
// pulls read the published manifest and fetch each chunk as a ranged GET of its layer. Runs
// alternate (plain, swarm, …); the best of each is reported. BENCH_WORKERS=N pulls with
// `--workers N` (default: the build's default for this machine, in-thread below 4 cores).
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { writeSyntheticModel } from '@swarm/agent'
import { alternate, fmt, fmtBreakdown, MB, MiB, pullMeasured, root, saveResult, swarm } from '../lib/common.mjs'

const WORKERS = process.env.BENCH_WORKERS

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2)
const INFLIGHT = 16
const layers = Number(process.env.BENCH_LAYERS ?? 22) // ≈ 2 GiB with the shape below

const registry = spawn(join(root, 'scripts', 'oci-registry.sh'), [], { stdio: ['ignore', 'pipe', 'inherit'] })
const line = await new Promise((resolve, reject) => {
  let out = ''
  registry.stdout.setEncoding('utf8').on('data', d => { out += d; if (out.includes('\n')) resolve(out.split('\n')[0]) })
  registry.on('exit', code => reject(new Error(`scripts/oci-registry.sh exited with ${code}`)))
})
const endpoint = /endpoint=(\S+)/.exec(line)[1]
const host = new URL(endpoint).host
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-oci-'))
const env = { SWARM_ORIGIN: `oci://${host}/bench`, SWARM_LOG_LEVEL: 'warn' }

try {
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 4 })
  const pushed = await swarm(['push', model.dir, '--name', 'model:v1', '--data-dir', join(work, 'pusher')], env)
  process.stderr.write(`model: ${fmt(model.totalBytes / MiB, 0)} MiB pushed to ${env.SWARM_ORIGIN}\n`)

  // the byte ranges the pull will fetch: the chunk manifest (the referrer swarm push published) over the layers
  const accept = { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' }
  const json = async path => await (await fetch(`${endpoint}${path}`, { headers: accept })).json()
  const oci = await (await fetch(`${endpoint}/v2/bench/model/manifests/v1`, { headers: accept })).json()
  const digest = await fetch(`${endpoint}/v2/bench/model/manifests/v1`, { method: 'HEAD', headers: accept }).then(r => r.headers.get('docker-content-digest'))
  const referrer = (await json(`/v2/bench/model/manifests/${digest.replace(':', '-')}`)).manifests[0]
  const chunkLayer = (await json(`/v2/bench/model/manifests/${referrer.digest}`)).layers[0]
  const manifest = await json(`/v2/bench/model/blobs/${chunkLayer.digest}`)
  if (referrer.annotations['io.swarm.manifest.cid'] !== pushed.manifestCid) throw new Error('the published chunk manifest is not the pushed one')
  const layerOf = new Map(oci.layers.map(l => [l.annotations['org.cncf.model.filepath'], l.digest]))
  const seen = new Set()
  const ranges = []
  for (const file of manifest.files) {
    for (const chunk of file.chunks) {
      if (seen.has(chunk.cid)) continue
      seen.add(chunk.cid)
      ranges.push({ path: `/v2/bench/model/blobs/${layerOf.get(file.path)}`, start: chunk.offset, end: chunk.offset + chunk.size - 1 })
    }
  }
  const totalBytes = manifest.files.reduce((sum, f) => sum + f.size, 0)

  const agent = new Agent({ connections: INFLIGHT, pipelining: 1, keepAliveTimeout: 30_000 })
  async function plainClient () {
    let next = 0
    let bytes = 0
    const started = performance.now()
    await Promise.all(Array.from({ length: INFLIGHT }, async () => {
      while (next < ranges.length) {
        const range = ranges[next++]
        const res = await request(`${endpoint}${range.path}`, { dispatcher: agent, headers: { range: `bytes=${range.start}-${range.end}` } })
        if (res.statusCode !== 206) throw new Error(`GET ${range.path}: ${res.statusCode}`)
        for await (const piece of res.body) bytes += piece.length
      }
    }))
    return { seconds: (performance.now() - started) / 1000, bytes }
  }

  async function swarmPull (round) {
    const result = await pullMeasured('model:v1', join(work, `node-${round}`), env, { inflight: INFLIGHT, workers: WORKERS, takesWorkers: WORKERS !== undefined })
    if (result.manifestCid !== pushed.manifestCid) throw new Error('the pull resolved another manifest')
    return result
  }

  const { plain, pulls } = await alternate(ROUNDS, plainClient, swarmPull, { warmBytes: totalBytes })
  await agent.close()

  const best = runs => runs.reduce((a, b) => (a.bytes / a.seconds >= b.bytes / b.seconds ? a : b))
  const plainMBps = best(plain).bytes / MB / best(plain).seconds
  const swarmMBps = best(pulls).bytes / MB / best(pulls).seconds
  const result = {
    origin: 'oci',
    registry: 'docker-registry (CNCF distribution 2.8), filesystem storage',
    modelBytes: totalBytes,
    chunks: ranges.length,
    inflight: INFLIGHT,
    plainClientMBps: plainMBps,
    swarmPullMBps: swarmMBps,
    ratio: swarmMBps / plainMBps,
    pullPeakRssMB: Math.max(...pulls.map(r => r.peakRssBytes)) / MB,
    swarmCpuSecondsPerGB: best(pulls).cpuSeconds / (best(pulls).bytes / 1e9),
    swarmThreads: best(pulls).perThread,
    rounds: { plain: plain.map(r => r.bytes / MB / r.seconds), swarm: pulls.map(r => r.bytes / MB / r.seconds) }
  }
  console.log(`origin-pull --origin oci: ${fmt(totalBytes / MiB, 0)} MiB in ${ranges.length} chunks (ranged layer GETs), ${INFLIGHT} in flight, ${WORKERS !== undefined ? `--workers ${WORKERS}` : 'the default byte path'}, best of ${ROUNDS}`)
  console.log(`  plain client (undici, ranged GETs):    ${fmt(plainMBps)} MB/s`)
  console.log(`  swarm pull (verify + store + fsync):   ${fmt(swarmMBps)} MB/s, ${fmt(result.swarmCpuSecondsPerGB, 2)} CPU-s/GB; ${fmtBreakdown(best(pulls).perThread, best(pulls).bytes / 1e9)}`)
  console.log(`  ratio swarm/plain: ${fmt(result.ratio, 2)}`)
  console.log(`  swarm pull peak RSS: ${fmt(result.pullPeakRssMB, 0)} MB`)
  console.log(`  results: ${await saveResult('origin-pull-oci', result)}`)
} finally {
  registry.kill('SIGTERM')
  await new Promise(resolve => registry.once('exit', resolve))
  await rm(work, { recursive: true, force: true })
}
