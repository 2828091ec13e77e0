// bench/fuse-read, small-files case: a checkpoint of many small files in nested directories
// (BENCH_SMALL_FILES files of 2–64 KiB, default 4000: the shape orbax, zarr and tensorstore
// write) pushed to a file:// origin, read whole (walk, then open/read/close every file in path
// order) through `swarm mount` with each adapter, against the same read of the local copy, all
// in one run:
//   (l) the local copy, page cache dropped first
//   (e) through a mount over an empty store: every file fetched as it is read (or just before)
//   (c) through the same mount once every file is complete, page cache dropped first
// (l) and (c) alternate BENCH_SMALL_ROUNDS times (default 3) and the medians are compared.
// Ratios: (e)/(l) (goal <= 3) and (c)/(l) (goal <= 1.5). Also `swarm pull` of the checkpoint into
// an empty store, the floor for (e): it fetches, verifies and writes the same chunks.
import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { READ_ALL_FILES, writeCheckpoint } from '@swarm/fuse-conformance/checkpoint'
import { checkKernelFuse } from '@swarm/fuse-kernel'
import { cli, fmt, saveResult, swarm } from '../lib/common.mjs'

const run = promisify(execFile)
const PYTHON = '/usr/bin/python3'
const files = Number(process.env.BENCH_SMALL_FILES ?? 4000)
const rounds = Number(process.env.BENCH_SMALL_ROUNDS ?? 3)
/** a reader that takes longer than this is stuck */
const READ_TIMEOUT_MS = 600_000

async function dropCaches () {
  await run('sync')
  await writeFile('/proc/sys/vm/drop_caches', '3')
}

async function readAll (root) {
  const { stdout } = await run(PYTHON, ['-c', READ_ALL_FILES, root], { timeout: READ_TIMEOUT_MS, killSignal: 'SIGKILL' })
  return JSON.parse(stdout)
}

const median = list => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]

export async function smallFilesCase (adapters) {
  const work = await mkdtemp(join(tmpdir(), 'swarm-bench-small-'))
  const env = { SWARM_ORIGIN: `file://${join(work, 'origin')}`, SWARM_LOG_LEVEL: 'warn' }
  const children = new Set()
  const mnt = join(work, 'mnt')
  try {
    const local = join(work, 'checkpoint')
    const written = await writeCheckpoint(local, { files })
    await mkdir(join(work, 'origin'))
    await swarm(['push', local, '--name', 'ckpt:v1', '--data-dir', join(work, 'pusher')], env)
    const pullStarted = performance.now()
    await swarm(['pull', 'ckpt:v1', '--data-dir', join(work, 'pulled'), '--no-agent'], env)
    const pullSeconds = (performance.now() - pullStarted) / 1000
    await rm(join(work, 'pulled'), { recursive: true, force: true })

    const check = (report, what) => {
      if (report.sha256 !== written.sha256 || report.files !== written.files.length) throw new Error(`${what}: read ${report.files} files, not the checkpoint's bytes`)
      return report.seconds
    }
    if (adapters.includes('kernel') && !(await checkKernelFuse()).available) adapters = adapters.filter(a => a !== 'kernel')
    const byAdapter = {}
    for (const adapter of adapters) {
      const child = spawn(process.execPath, [cli, 'mount', mnt, '--data-dir', join(work, `node-${adapter}`), '--adapter', adapter, '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
      children.add(child)
      let out = ''
      child.stdout.setEncoding('utf8').on('data', d => { out += d })
      const exited = new Promise(resolve => child.on('exit', code => { children.delete(child); resolve(code) }))
      while (!out.includes('"ready"')) {
        if (child.exitCode != null) throw new Error(`swarm mount exited: ${out}`)
        await new Promise(resolve => setTimeout(resolve, 50))
      }
      const root = join(mnt, 'ckpt@v1')
      await dropCaches()
      const empty = check(await readAll(root), `${adapter}, empty node`)
      const locals = []
      const completes = []
      for (let round = 0; round < rounds; round++) {
        await dropCaches()
        locals.push(check(await readAll(local), 'local copy'))
        await dropCaches()
        completes.push(check(await readAll(root), `${adapter}, complete`))
      }
      child.kill('SIGTERM')
      await exited
      const stats = out.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l)).find(l => l.event === 'done')
      const localSeconds = median(locals)
      byAdapter[adapter] = {
        localSeconds,
        emptySeconds: empty,
        completeSeconds: median(completes),
        emptyOverLocal: empty / localSeconds,
        completeOverLocal: median(completes) / localSeconds,
        emptyOverPull: empty / pullSeconds,
        passthroughOpens: stats?.fuse?.opensPassthrough,
        opensForwarded: stats?.fuse?.opensForwarded,
        requestTimeouts: stats?.fuse?.requestTimeouts,
        chunksPrefetched: stats?.prefetch?.chunks,
        chunksFetchedForReads: stats?.chunksFetched
      }
    }
    const result = { files: written.files.length, bytes: written.bytes, rounds, pullSeconds, adapters: byAdapter }
    console.log(`fuse-read, small files: ${written.files.length} files, ${fmt(written.bytes / 1024 / 1024, 0)} MiB in nested directories, read whole (walk, then every file in path order)`)
    console.log(`  swarm pull into an empty store from file://: ${fmt(pullSeconds, 2)} s`)
    for (const [adapter, r] of Object.entries(byAdapter)) {
      console.log(`  ${adapter}:`)
      console.log(`    (l) local copy, cold cache:            ${fmt(r.localSeconds, 2)} s (median of ${rounds}, alternating with (c))`)
      console.log(`    (e) mount over an empty store:         ${fmt(r.emptySeconds, 2)} s  (e)/(l) = ${fmt(r.emptyOverLocal, 2)} (goal <= 3); ${fmt(r.emptyOverPull, 2)} × the pull; ${r.chunksPrefetched} chunks prefetched, ${r.chunksFetchedForReads} fetched by reads`)
      console.log(`    (c) mount, complete, cold cache:       ${fmt(r.completeSeconds, 2)} s  (c)/(l) = ${fmt(r.completeOverLocal, 2)} (goal <= 1.5)${r.passthroughOpens != null ? `; ${r.passthroughOpens} passthrough opens, ${r.opensForwarded} opens forwarded, ${r.requestTimeouts} request timeouts` : ''}`)
    }
    console.log(`  results: ${await saveResult('fuse-read-small-files', result)}`)
    return result
  } finally {
    for (const child of children) child.kill('SIGTERM')
    await new Promise(resolve => setTimeout(resolve, 1000))
    await run('umount', ['-l', mnt]).catch(() => {})
    await rm(work, { recursive: true, force: true })
  }
}
