// bench/fuzz-fuse: the kernel FUSE adapter's request parser under libFuzzer (coverage-guided,
// with AddressSanitizer and UndefinedBehaviorSanitizer) for BENCH_FUZZ_SECONDS (default 60),
// starting from the committed seed corpus (packages/fuse-kernel/native/test/corpus; new inputs
// go to a scratch copy, not the repository). Prints executions, executions per second,
// coverage, and crashes; a crash's input is kept in bench/results/fuzz-fuse/ and the run exits 1.
// Needs Debian's clang (apt-get install clang).
import { execFile, spawn } from 'node:child_process'
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { fmt, root, saveResult } from '../lib/common.mjs'

const run = promisify(execFile)
const seconds = Number(process.env.BENCH_FUZZ_SECONDS ?? 60)
const native = join(root, 'packages', 'fuse-kernel', 'native')

try {
  await run('clang', ['--version'])
} catch {
  console.log('fuzz-fuse: skipped: clang is not installed (Debian: apt-get install clang)')
  process.exit(0)
}

const work = await mkdtemp(join(tmpdir(), 'swarm-fuzz-fuse-'))
const artifacts = join(root, 'bench', 'results', 'fuzz-fuse')
try {
  const binary = join(work, 'fuzz')
  await run('clang', ['-g', '-O1', '-fsanitize=fuzzer,address,undefined', '-fno-sanitize-recover=undefined', join(native, 'test', 'fuzz.c'), ...['server.c', 'nodes.c', 'requests.c', 'splice.c'].map(file => join(native, file)), '-o', binary, '-lpthread'])
  const corpus = join(work, 'corpus')
  await cp(join(native, 'test', 'corpus'), corpus, { recursive: true })
  await mkdir(artifacts, { recursive: true })
  const started = performance.now()
  const child = spawn(binary, [`-max_total_time=${seconds}`, `-artifact_prefix=${artifacts}/`, '-print_final_stats=1', corpus], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr.setEncoding('utf8').on('data', d => { log += d })
  const code = await new Promise(resolve => child.on('exit', c => resolve(c)))
  const elapsed = (performance.now() - started) / 1000
  const execs = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(log)?.[1] ?? /Done (\d+) runs/.exec(log)?.[1] ?? 0)
  const coverage = [...log.matchAll(/cov: (\d+) ft: (\d+)/g)].pop()
  const crashes = (await readdir(artifacts)).filter(f => /^(crash|leak|timeout|oom)-/.test(f))
  const result = { seconds: elapsed, execs, execsPerSecond: execs / elapsed, coverage: Number(coverage?.[1] ?? 0), features: Number(coverage?.[2] ?? 0), corpus: (await readdir(corpus)).length, crashes: crashes.length, exitCode: code }
  console.log(`fuzz-fuse: ${execs} executions in ${fmt(elapsed)} s (${fmt(result.execsPerSecond, 0)}/s), coverage ${result.coverage} edges, ${result.features} features, corpus ${result.corpus} inputs; crashes: ${crashes.length}${crashes.length > 0 ? ` (${crashes.map(c => join(artifacts, c)).join(', ')})` : ''}`)
  if (code !== 0 && crashes.length === 0) console.log(log.slice(-4000))
  console.log(`  results: ${await saveResult('fuzz-fuse', result)}`)
  if (crashes.length > 0 || code !== 0) process.exitCode = 1
} finally {
  await rm(work, { recursive: true, force: true })
}
