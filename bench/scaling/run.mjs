// bench/scaling: does the byte path scale with threads? `swarm pull --no-agent --workers 1` against
// `--workers 2` (and `--workers 0`, the in-thread path, for reference) of the same synthetic
// model from a file:// origin whose files are in the page cache (read once before the first
// run), each into an empty store. The origin costs next to nothing, so what is measured is the
// pull's own work: SHA-256, store writes and fdatasyncs, and the bookkeeping around them.
//
// Runs alternate (1, 2, 0, 1, 2, 0, …) so a noisy neighbour hurts every count alike; the median
// of each is reported: MB/s, CPU-s per GB (GNU time over the pull: every thread of it), per
// thread (main vs workers, as the pull reports them, else read from /proc), and the pull's peak
// RSS (the largest of its runs). Goals: 2 workers ≥ 1.6 × 1 worker, peak RSS ≤ 300 MB at every
// count. On a build without `--workers` the one row is the default pull and the ratio is n/a.
//
// BENCH_LAYERS (default 4, ≈ 640 MiB), BENCH_ROUNDS (default 3), SCALING_WORKERS (default 1,2,0).
import { mkdir, mkdtemp, open, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { writeSyntheticModel } from '@swarm/agent'
import { MB, MiB, alternateAll, fmt, fmtBreakdown, fmtOr, median, pullMeasured, saveResult, swarm, swarmTakes } from '../lib/common.mjs'

const INFLIGHT = 16
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3)
const layers = Number(process.env.BENCH_LAYERS ?? 4)
const counts = (process.env.SCALING_WORKERS ?? '1,2,0').split(',').map(s => Number(s.trim()))
if (counts.some(n => !Number.isInteger(n) || n < 0)) throw new Error(`SCALING_WORKERS=${process.env.SCALING_WORKERS}: expected worker counts like 1,2,0`)
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error(`BENCH_ROUNDS=${process.env.BENCH_ROUNDS}: expected 1 or more`)

/** Reads every file under `dir` once, so the pulls find it in the page cache. */
async function warm (dir) {
  let bytes = 0
  const piece = Buffer.allocUnsafe(16 * MiB)
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const handle = await open(join(entry.parentPath, entry.name), 'r')
    try {
      for (let n; (n = (await handle.read(piece, 0, piece.length, null)).bytesRead) > 0;) bytes += n
    } finally {
      await handle.close()
    }
  }
  return bytes
}

const work = await mkdtemp(join(tmpdir(), 'swarm-bench-scaling-'))
try {
  const originDir = join(work, 'origin')
  await mkdir(originDir)
  const env = { SWARM_LOG_LEVEL: 'warn', SWARM_ORIGIN: pathToFileURL(originDir).href }
  const model = await writeSyntheticModel(join(work, 'model'), { layers, hidden: 2048, intermediate: 5632, vocab: 32000, shards: 4 })
  await swarm(['push', model.dir, '--name', 'bench:v1', '--data-dir', join(work, 'pusher')], env)
  await rm(model.dir, { recursive: true, force: true })
  const cached = await warm(originDir)
  process.stderr.write(`model: ${fmt(model.totalBytes / MiB, 0)} MiB; origin ${fmt(cached / MiB, 0)} MiB read into the page cache\n`)

  const takesWorkers = await swarmTakes('pull', '--workers')
  // without --workers every count would be the same pull: run it once per round, as "default"
  const rowsRun = takesWorkers ? counts : ['default']
  // keys that are not array indices, so the rows run and print in the order given
  const key = n => (n === 'default' ? 'default' : `workers-${n}`)
  const runners = Object.fromEntries(rowsRun.map(n => [key(n), async round =>
    await pullMeasured('bench:v1', join(work, `store-${n}-${round}`), env, { inflight: INFLIGHT, workers: n === 'default' ? undefined : n, takesWorkers })]))
  // each run writes into pages just freed, whatever ran before it (see warmPageCache)
  const runs = await alternateAll(ROUNDS, runners, { warmBytes: model.totalBytes })

  const rows = {}
  for (const [n, list] of Object.entries(runs)) {
    const rates = list.map(r => r.bytes / MB / r.seconds)
    const cpu = list.map(r => r.cpuSeconds / (r.bytes / 1e9))
    const mid = list[rates.indexOf(median(rates))] ?? list.slice().sort((a, b) => a.bytes / a.seconds - b.bytes / b.seconds)[list.length >> 1]
    const GB = mid.bytes / 1e9
    rows[n] = {
      MBps: median(rates),
      cpuSecondsPerGB: median(cpu),
      // per thread, of the run with the median rate
      perThread: mid.perThread == null ? null : Object.fromEntries(Object.entries(mid.perThread).map(([k, v]) => [k, typeof v === 'number' && k !== 'workerCount' ? v / GB : v])),
      perThreadText: fmtBreakdown(mid.perThread, GB),
      peakRssMB: Math.max(...list.map(r => r.peakRssBytes)) / MB,
      rounds: rates
    }
  }
  const ratio = rows['workers-1'] != null && rows['workers-2'] != null ? rows['workers-2'].MBps / rows['workers-1'].MBps : null
  const maxRss = Math.max(...Object.values(rows).map(r => r.peakRssMB))
  const result = {
    modelBytes: model.totalBytes,
    inflight: INFLIGHT,
    rounds: ROUNDS,
    takesWorkers,
    rows: Object.fromEntries(Object.entries(rows).map(([n, { perThreadText: _, ...r }]) => [n, r])),
    ratio2to1: ratio,
    peakRssMB: maxRss
  }
  const label = k => (k === 'default' ? 'default (this build has no --workers)' : k === 'workers-0' ? '--workers 0 (in-thread)' : `--${k.replace('-', ' ')}`)
  console.log(`scaling: swarm pull --no-agent of ${fmt(model.totalBytes / MiB, 0)} MiB from a page-cached file:// origin, ${INFLIGHT} in flight, median of ${ROUNDS}`)
  for (const [n, r] of Object.entries(rows)) {
    console.log(`  ${label(n).padEnd(38)} ${fmt(r.MBps).padStart(7)} MB/s  ${fmt(r.cpuSecondsPerGB, 2).padStart(5)} CPU-s/GB (${r.perThreadText})  peak RSS ${fmt(r.peakRssMB, 0)} MB`)
  }
  console.log(`  ratio 2 workers / 1 worker: ${fmtOr(ratio, 2)} (goal >= 1.6)`)
  console.log(`  largest peak RSS: ${fmt(maxRss, 0)} MB (goal <= 300 at every count)`)
  console.log(`  results: ${await saveResult('scaling', result)}`)
} finally {
  await rm(work, { recursive: true, force: true })
}
