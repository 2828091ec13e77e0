/**
 * What every adapter must do when the store lets a model go: readers of the mount get the
 * model's bytes whatever the store does under them. Two mounts of one store: one whose view
 * holds leases on open files (as in the agent), one whose view does not, to see what readers get
 * when a model open in the mount is evicted anyway and added back as new, empty files. Readers
 * are child processes; the page cache is dropped between reads so that bytes come from the
 * adapter, not from memory.
 */

import { execFile, spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { hashChunks, planChunks } from '@swarm/chunker'
import { fetcher } from '@swarm/fetcher'
import { modelFs } from '@swarm/fs'
import { encodeManifest } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { FuseAdapterUnderTest, MountedForTest } from './index.js'
import type { ModelFs } from '@swarm/fs'
import type { ChunkRequest, ChunkSource, Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

const run = promisify(execFile)
const MiB = 1024 * 1024
const PYTHON = '/usr/bin/python3'
/** a reader waits at most this long for any read */
const READ_TIMEOUT_MS = 30_000

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

function bytesFor (seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(length))
}

async function dropCaches (): Promise<void> {
  await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'])
}

/** Python: `read_whole(fd)` drops the file's pages (POSIX_FADV_DONTNEED), reads it whole with pread and returns its SHA-256. */
const READ_WHOLE = `
import hashlib, os, sys
def read_whole(fd):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    h = hashlib.sha256()
    at = 0
    while True:
        b = os.pread(fd, 1 << 20, at)
        if not b:
            break
        h.update(b)
        at += len(b)
    return h.hexdigest()
`

/** Holds a file open: reads its first MiB, says `first`, then reads it whole for every line on stdin; exits at end of input. */
const HOLDER = READ_WHOLE + `
fd = os.open(sys.argv[1], os.O_RDONLY)
os.pread(fd, 1 << 20, 0)
print('first', flush=True)
for line in sys.stdin:
    print(read_whole(fd), flush=True)
os.close(fd)
`

/** Reads a file whole argv[2] times through one descriptor, printing each SHA-256. */
const LOOPER = READ_WHOLE + `
fd = os.open(sys.argv[1], os.O_RDONLY)
for _ in range(int(sys.argv[2])):
    print(read_whole(fd), flush=True)
`

interface Holder {
  next(): Promise<string>
  /** one whole read through the held descriptor: its SHA-256 */
  read(): Promise<string>
  close(): Promise<number | null>
}

function hold (path: string): Holder {
  const child = spawn(PYTHON, ['-c', HOLDER, path], { stdio: ['pipe', 'pipe', 'pipe'] })
  const lines: string[] = []
  let err = ''
  let waiting: (() => void) | undefined
  let buffered = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buffered += d
    const parts = buffered.split('\n')
    buffered = parts.pop() ?? ''
    lines.push(...parts)
    waiting?.()
  })
  child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => { waiting?.(); resolve(code) }))
  const next = async (): Promise<string> => {
    const deadline = Date.now() + READ_TIMEOUT_MS
    while (lines.length === 0) {
      if (child.exitCode != null || Date.now() > deadline) throw new Error(`the reader gave no answer: ${err}`)
      await new Promise<void>(resolve => { waiting = resolve; setTimeout(resolve, 100) })
    }
    return lines.shift() as string
  }
  return {
    next,
    async read () {
      child.stdin.write('read\n')
      return await next()
    },
    async close () {
      child.stdin.end()
      const timer = setTimeout(() => { child.kill('SIGKILL') }, READ_TIMEOUT_MS)
      const code = await exited
      clearTimeout(timer)
      return code
    }
  }
}

export function fuseEvictionTests (name: string, adapter: FuseAdapterUnderTest): void {
  describe(`FUSE eviction: ${name}`, () => {
    let dir: string
    let store: Store
    let cid: string
    let manifest: Manifest
    const files: Record<string, Buffer> = {}
    const chunks = new Map<string, Uint8Array>()
    const mounts: Array<{ view: ModelFs, mount: MountedForTest, mountpoint: string }> = []
    /** whether the store's evictions reach the views and mounts (as the agent wires them) */
    let tell = true

    const inMount = (which: number, file: string): string => join(mounts[which]?.mountpoint as string, 'by-cid', cid, file)
    const sum = async (path: string): Promise<string> => (await run('sha256sum', [path], { timeout: READ_TIMEOUT_MS })).stdout.split(' ')[0] as string

    /**
     * Waits for the leases of files closed earlier to be let go: the kernel adapter keeps a model
     * held for a grace (2 s) after its last open file closes, so a walk over its files is not a
     * lease per file.
     */
    async function unleased (): Promise<void> {
      const deadline = Date.now() + 10_000
      while (store.holders(cid).length > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
      expect(store.holders(cid)).toEqual([])
    }

    async function complete (): Promise<void> {
      await store.addManifest(cid, manifest)
      for (const [chunk, bytes] of chunks) await store.putChunk(chunk, bytes)
    }

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `swarm-fuse-evict-${name}-`))
      store = await createStore({
        dir: join(dir, 'store'),
        onEvict: manifestCid => {
          if (!tell) return
          for (const { view, mount } of mounts) {
            view.evicted(manifestCid)
            mount.evicted?.(manifestCid)
          }
        }
      })
      files['weights.bin'] = bytesFor('evicted weights', 5 * MiB + 7)
      files['small/config.json'] = bytesFor('config', 3000)
      manifest = { version: 1, chunkSize: MiB, files: [] }
      for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => a < b ? -1 : 1)) {
        const refs = hashChunks(bytes, planChunks({ size: bytes.length, chunkSize: MiB }))
        for (const ref of refs) chunks.set(ref.cid, bytes.subarray(ref.offset, ref.offset + ref.size))
        manifest.files.push({ path, size: bytes.length, mode: 0o644, chunks: refs })
      }
      cid = encodeManifest(manifest).cid
      const source: ChunkSource = {
        name: 'origin',
        kind: 'origin',
        async fetch ({ cid }: ChunkRequest) {
          const bytes = chunks.get(cid)
          if (bytes == null) throw new Error(`origin does not have ${cid}`)
          return bytes
        }
      }
      await complete()
      for (const leaseOpenFiles of [false, true]) {
        const view = modelFs({ store, fetcher: fetcher({ store, sources: [source] }), readTimeoutMs: 10_000, leaseOpenFiles })
        const mountpoint = join(dir, `mnt-${String(leaseOpenFiles)}`)
        mounts.push({ view, mountpoint, mount: await adapter.mountFs({ fs: view, mountpoint }) })
      }
    })

    afterAll(async () => {
      for (const { mount, view } of mounts) {
        await mount.unmount().catch(() => {})
        await view.close()
      }
      await store?.close()
      await rm(dir, { recursive: true, force: true })
    })

    for (const told of [true, false]) {
      it(`a model evicted while open (no lease) and added back as empty files: old and new descriptors read its bytes, page cache dropped (${told ? 'the mount is told' : 'nobody tells the mount'})`, async () => {
        tell = told
        await complete()
        const file = inMount(0, 'weights.bin')
        const expected = sha256(files['weights.bin'] as Buffer)
        const holder = hold(file)
        try {
          expect(await holder.next()).toBe('first')
          // the holder reads through the mount whose view takes no lease
          await unleased()
          await store.remove(cid)
          // added back: the same content paths now name new, sparse files
          await store.addManifest(cid, manifest)
          expect(store.files(cid).every(f => !f.complete)).toBe(true)
          await dropCaches()
          for (let round = 0; round < 2; round++) {
            // the descriptor opened before, and one opened after, each read with its pages dropped
            const again = hold(file)
            try {
              expect(await again.next()).toBe('first')
              await dropCaches()
              expect(await holder.read(), `old descriptor, round ${round}`).toBe(expected)
              await dropCaches()
              expect(await again.read(), `new descriptor, round ${round}`).toBe(expected)
            } finally {
              expect(await again.close()).toBe(0)
            }
            await dropCaches()
            expect(await sum(file)).toBe(expected)
            expect(await sum(inMount(0, 'small/config.json'))).toBe(sha256(files['small/config.json'] as Buffer))
          }
        } finally {
          expect(await holder.close()).toBe(0)
        }
        // closed and opened afresh, with the page cache dropped: still the model's bytes
        await dropCaches()
        expect(await sum(file)).toBe(expected)
        await dropCaches()
        expect(await sum(inMount(1, 'weights.bin'))).toBe(expected)
        tell = true
      }, 120_000)
    }

    it('gc during reads: an open file\'s lease keeps its model, and every read succeeds', async () => {
      await complete()
      // the lease seen below is the reader's, not one left by an earlier test
      await unleased()
      const file = inMount(1, 'weights.bin')
      const expected = sha256(files['weights.bin'] as Buffer)
      const rounds = 6
      const reader = spawn(PYTHON, ['-c', LOOPER, file, String(rounds)], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      reader.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
      reader.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
      // 'close', not 'exit': a process can exit before its stdout has all been read here
      const exited = new Promise<number | null>(resolve => reader.on('close', resolve))
      const killer = setTimeout(() => { reader.kill('SIGKILL') }, READ_TIMEOUT_MS * 2)
      try {
        // the adapter takes the lease as the file opens (the kernel adapter hears of it just after)
        const deadline = Date.now() + READ_TIMEOUT_MS
        while (!store.holders(cid).some(h => h.startsWith('mount:')) && reader.exitCode == null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
        expect(store.holders(cid)).toContain(`mount:/by-cid/${cid}/weights.bin`)
        let leased = 0
        // until the last round is printed: after it the reader closes its descriptor, the lease
        // goes with it, and the model may be evicted before this process has seen the reader exit
        const printed = (): number => out.split('\n').filter(line => line !== '').length
        while (reader.exitCode == null && printed() < rounds) {
          const report = await store.gc({ budgetBytes: 0 })
          if (report.skipped.some(s => s.manifestCid === cid && s.reason === 'leased')) leased++
          expect(report.evicted.map(e => e.manifestCid)).not.toContain(cid)
          await dropCaches()
        }
        expect(await exited, err).toBe(0)
        expect(leased).toBeGreaterThan(0)
      } finally {
        clearTimeout(killer)
      }
      expect(out.trim().split('\n')).toEqual(Array.from({ length: rounds }, () => expected))
      expect(store.getManifest(cid)).toBeDefined()
      // once nothing holds it open, the lease is gone (within the grace) and gc may take it
      await unleased()
      const report = await store.gc({ budgetBytes: 0 })
      expect(report.evicted.map(e => e.manifestCid)).toContain(cid)
    }, 120_000)
  })
}
