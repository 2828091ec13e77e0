// bench/scheduler: what the chunk scheduler costs the main thread over one pull, as the model
// grows. One node pulls every chunk from a seeder that holds them all (the origin configured too,
// as in an agent), each request answered in order on a virtual clock: the scheduler's own work
// and nothing else. A scheduler whose per-chunk cost stays flat as the chunk count grows is
// linear over a pull; the last line gives the largest count's µs per chunk over the smallest's.
//
// SCHEDULER_CHUNKS (default 1000,4000,16000,35000: 4 MiB chunks of 4 GB to 140 GB), BENCH_ROUNDS (3; the median is shown).
import { chunkScheduler, createBitfield, seededRandom, setBit } from '@swarm/scheduler'
import { fmt, median, saveResult } from '../lib/common.mjs'

const counts = (process.env.SCHEDULER_CHUNKS ?? '1000,4000,16000,35000').split(',').map(Number)
const rounds = Number(process.env.BENCH_ROUNDS ?? 3)
if (counts.some(n => !Number.isInteger(n) || n < 1)) throw new Error(`SCHEDULER_CHUNKS=${process.env.SCHEDULER_CHUNKS}: expected chunk counts like 1000,4000`)

/** One pull of `n` chunks from one seeder; the scheduler's CPU time and how many ticks it took. */
function pull (n) {
  const chunks = Array.from({ length: n }, (_, i) => ({ cid: `chunk-${i}`, size: 4 * 1024 * 1024 }))
  const scheduler = chunkScheduler({ selfId: 'self', chunks, random: seededRandom(1) })
  let now = 0
  const all = createBitfield(n)
  for (let i = 0; i < n; i++) setBit(all, i)
  const before = process.cpuUsage()
  scheduler.peerJoined('seeder', now, { puller: false })
  scheduler.peerHas('seeder', all, now)
  const inflight = [...scheduler.tick(now).start]
  let ticks = 1
  while (!scheduler.done) {
    const request = inflight.shift()
    now += request === undefined ? 10 : 1
    if (request !== undefined) scheduler.chunkArrived(request.chunk, now, request.id)
    inflight.push(...scheduler.tick(now).start)
    ticks++
  }
  const cpu = process.cpuUsage(before)
  return { seconds: (cpu.user + cpu.system) / 1e6, ticks }
}

const rows = []
for (const n of counts) {
  const runs = Array.from({ length: rounds }, () => pull(n))
  const seconds = median(runs.map(r => r.seconds))
  rows.push({ chunks: n, seconds, microsecondsPerChunk: seconds / n * 1e6, ticks: runs[0].ticks })
}
console.log(`scheduler: one pull from a seeder holding every chunk, scheduler CPU only (median of ${rounds})`)
for (const r of rows) console.log(`  ${String(r.chunks).padStart(7)} chunks (${fmt(r.chunks * 4 / 1024, 1).padStart(6)} GiB): ${fmt(r.seconds * 1000, 0).padStart(6)} ms, ${fmt(r.microsecondsPerChunk, 1).padStart(6)} µs per chunk, ${r.ticks} ticks`)
const growth = rows.at(-1).microsecondsPerChunk / rows[0].microsecondsPerChunk
console.log(`  µs per chunk at ${rows.at(-1).chunks} chunks / at ${rows[0].chunks}: ${fmt(growth, 2)} (1 = linear over the pull; ${fmt(rows.at(-1).chunks / rows[0].chunks, 0)} = growing with the square of the chunks)`)
console.log(`  results: ${await saveResult('scheduler', { rounds, rows, growth })}`)
