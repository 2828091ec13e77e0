/**
 * A checkpoint of 4,000 small files in nested directories (the shape orbax, zarr and
 * tensorstore write), pushed to a file:// origin and read whole through `swarm mount` with each
 * FUSE adapter: on an empty node (every file fetched as it is read, or just before), then again
 * once complete. Every round must give every byte, and no reader may hang: each round runs
 * under a timeout, and the mount answers a request it cannot serve within its deadline with EIO
 * rather than leaving a reader in uninterruptible sleep.
 */

import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { READ_ALL_FILES, writeCheckpoint } from '@swarm/fuse-conformance/checkpoint'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnSwarm, swarm } from './helpers/cli.js'
import type { WrittenCheckpoint } from '@swarm/fuse-conformance/checkpoint'
import type { ChildProcess } from 'node:child_process'

const run = promisify(execFile)
const PYTHON = '/usr/bin/python3'
/** a whole round of reads; far above what one takes, far below forever */
const ROUND_TIMEOUT_MS = 60_000

interface ReadReport { files: number, bytes: number, seconds: number, sha256: string, slowest: number }

async function readAll (root: string): Promise<ReadReport> {
  const { stdout } = await run(PYTHON, ['-c', READ_ALL_FILES, root], { timeout: ROUND_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 1 << 20 })
  return JSON.parse(stdout) as ReadReport
}

async function mountedAt (mountpoint: string): Promise<boolean> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some(line => line.split(' ')[4] === mountpoint)
}

let work: string
let checkpoint: WrittenCheckpoint
let env: Record<string, string>

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'swarm-fuse-small-'))
  checkpoint = await writeCheckpoint(join(work, 'checkpoint'), { files: 4000 })
  await mkdir(join(work, 'origin'))
  env = {
    SWARM_ORIGIN: `file://${join(work, 'origin')}`,
    // a read waits at most 5 s for its chunks, so the mount's own deadline for a request is 20 s
    SWARM_MOUNT_READ_TIMEOUT_MS: '5000'
  }
  const push = await swarm(['push', join(work, 'checkpoint'), '--name', 'ckpt:v1', '--data-dir', join(work, 'pusher'), '--json'], env)
  expect(push.code, push.stderr).toBe(0)
}, 120_000)

afterAll(async () => {
  await rm(work, { recursive: true, force: true })
})

describe.each(['kernel', 'fuse-native'])('a 4,000-file checkpoint through the mount (%s adapter)', (adapter) => {
  let child: ChildProcess | undefined
  let mountpoint: string

  afterAll(async () => {
    if (child != null && child.exitCode == null) {
      const exited = new Promise(resolve => child?.on('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
    await run('umount', ['-l', mountpoint]).catch(() => {})
  })

  it('reads byte-identical on an empty node and then complete, round after round, and no reader hangs', async () => {
    mountpoint = join(work, `mnt-${adapter}`)
    child = spawnSwarm(['mount', mountpoint, '--data-dir', join(work, `node-${adapter}`), '--adapter', adapter, '--json'], env)
    let out = ''
    let err = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => { out += d })
    child.stderr?.setEncoding('utf8').on('data', (d: string) => { err += d })
    const deadline = Date.now() + 30_000
    while (!out.includes('"ready"') && child.exitCode == null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 50))
    expect(out, err).toContain('"ready"')
    expect(await mountedAt(mountpoint)).toBe(true)
    const root = join(mountpoint, 'ckpt@v1')
    const rounds: ReadReport[] = []
    for (let round = 0; round < 3; round++) {
      // the last round with the page cache dropped: bytes from the store's files again
      if (round === 2) await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'])
      const report = await readAll(root)
      rounds.push(report)
      expect(report.files, `round ${round}`).toBe(checkpoint.files.length)
      expect(report.bytes, `round ${round}`).toBe(checkpoint.bytes)
      expect(report.sha256, `round ${round}`).toBe(checkpoint.sha256)
    }
    process.stderr.write(`${adapter}: 4,001 files, ${(checkpoint.bytes / 1024 / 1024).toFixed(0)} MiB: ${rounds.map(r => `${r.seconds.toFixed(2)} s (slowest file ${r.slowest.toFixed(2)} s)`).join(', ')}\n`)
    expect(err).not.toMatch(/"level":50/)
  }, 240_000)
})
