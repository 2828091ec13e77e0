// bench/fuzz-data: the data-plane fuzz test (packages/exchange/test/fuzz-data.test.ts) with many
// more streams than CI runs: generated and mutated request frames from an authenticated peer,
// while an honest peer fetches and checks every byte. Prints the streams run, the failures found
// (with the seed that replays one: SWARM_FUZZ_SEED=<seed> npx vitest run <test>) and the rate.
// BENCH_FUZZ_RUNS sets the streams per batch (default 20000), BENCH_FUZZ_BATCHES the batches, each
// with its own seed (default 1).
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fmt, root, saveResult } from '../lib/common.mjs'

const runs = Number(process.env.BENCH_FUZZ_RUNS ?? 20000)
const batches = Number(process.env.BENCH_FUZZ_BATCHES ?? 1)
const work = await mkdtemp(join(tmpdir(), 'swarm-bench-fuzz-'))
const totals = { cases: 0, failures: 0, seconds: 0, protocolErrors: 0, honestFetches: 0, honestFailures: 0 }
const failures = []

try {
  for (let batch = 0; batch < batches; batch++) {
    const seed = Math.floor(Math.random() * 2 ** 31)
    const report = join(work, `batch-${batch}.json`)
    const child = spawn(process.execPath, [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'packages/exchange/test/fuzz-data.test.ts'], {
      cwd: root,
      env: { ...process.env, SWARM_FUZZ_RUNS: String(runs), SWARM_FUZZ_SEED: String(seed), SWARM_FUZZ_REPORT: report },
      stdio: ['ignore', 'ignore', 'inherit']
    })
    const code = await new Promise(resolve => child.on('close', c => resolve(c ?? 1)))
    const summary = JSON.parse(await readFile(report, 'utf8').catch(() => 'null'))
    if (summary == null) throw new Error(`the fuzz run with seed ${seed} exited with ${code} and wrote no summary`)
    totals.cases += summary.cases
    totals.failures += summary.failed + (summary.honestFailures > 0 ? 1 : 0)
    totals.seconds += summary.seconds
    totals.protocolErrors += summary.protocolErrors
    totals.honestFetches += summary.honestFetches
    totals.honestFailures += summary.honestFailures
    if (summary.failed > 0 || summary.honestFailures > 0) failures.push({ seed, failedSeed: summary.failedSeed, error: summary.error, counterexample: summary.counterexample })
    console.log(`batch ${batch + 1}/${batches} (seed ${seed}): ${summary.cases} streams, ${summary.failed} failed, ${summary.protocolErrors} connections closed for breaking the protocol, ${summary.honestFetches} honest fetches (${summary.honestFailures} failed) in ${fmt(summary.seconds)} s`)
  }
  console.log(`fuzz-data: ${totals.cases} streams run, ${totals.failures} failures found, ${fmt(totals.cases / totals.seconds)} streams/s; honest peer: ${totals.honestFetches} fetches, ${totals.honestFailures} failed`)
  for (const failure of failures) console.log(`  failure: seed ${failure.seed}: ${failure.error} — counterexample ${JSON.stringify(failure.counterexample)}`)
  console.log(`results: ${await saveResult('fuzz-data', { ...totals, failures })}`)
  if (totals.failures > 0) process.exitCode = 1
} finally {
  await rm(work, { recursive: true, force: true })
}
