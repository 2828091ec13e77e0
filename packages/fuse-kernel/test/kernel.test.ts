// Real mounts served by this process's addon threads: needs root (CAP_SYS_ADMIN) and /dev/fuse.
// Every read through a mount happens in a child process, so this process never blocks on its own
// mount while the view's JavaScript side must answer.
import { execFile } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { hashChunks, planChunks } from '@swarm/chunker'
import { fetcher } from '@swarm/fetcher'
import { modelFs } from '@swarm/fs'
import { fuseConformanceTests, fuseEvictionTests } from '@swarm/fuse-conformance'
import { encodeManifest } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_MAX_READ, KernelFuseUnavailableError, checkKernelFuse, mountFs } from '../src/index.js'
import type { Mount } from '../src/index.js'
import type { ModelFs } from '@swarm/fs'
import type { ChunkRequest, ChunkSource, Logger, Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

const run = promisify(execFile)
const MiB = 1024 * 1024
const PYTHON = '/usr/bin/python3'
const NATIVE = fileURLToPath(new URL('../native', import.meta.url))
/** the server without the addon, as the C tests build it */
const SERVER_SOURCES = ['server.c', 'nodes.c', 'requests.c', 'splice.c'].map(file => join(NATIVE, file))

function bytesFor (seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(length))
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** A logger that keeps what was logged at warn, for checking what the adapter said. */
function capturingLogger (warnings: string[]): Logger {
  const noop = (): void => {}
  const logger: Logger = {
    trace: noop,
    debug: noop,
    info: noop,
    warn: (a: object | string, b?: string) => { warnings.push(typeof a === 'string' ? a : b ?? '') },
    error: noop,
    child: () => logger
  }
  return logger
}

async function dropCaches (): Promise<void> {
  await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'])
}

fuseConformanceTests('kernel', { mountFs })
fuseEvictionTests('kernel', { mountFs })

describe('the kernel adapter', () => {
  let dir: string
  let store: Store
  let view: ModelFs
  let cid: string
  const files: Record<string, Buffer> = {}
  const chunks = new Map<string, Uint8Array>()
  let originGets = 0

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fuse-kernel-'))
    store = await createStore({ dir: join(dir, 'store') })
    files['complete.bin'] = bytesFor('complete', 24 * MiB + 5)
    files['lazy.bin'] = bytesFor('lazy', 12 * MiB + 9)
    files['late-deadline.bin'] = bytesFor('deadline', 13 * MiB)
    const manifest: Manifest = { version: 1, chunkSize: 2 * MiB, files: [] }
    for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => a < b ? -1 : 1)) {
      const refs = hashChunks(bytes, planChunks({ size: bytes.length, chunkSize: 2 * MiB }))
      for (const ref of refs) chunks.set(ref.cid, bytes.subarray(ref.offset, ref.offset + ref.size))
      manifest.files.push({ path, size: bytes.length, mode: 0o644, chunks: refs })
    }
    cid = encodeManifest(manifest).cid
    await store.addManifest(cid, manifest, { ref: 'demo/model:v1' })
    for (const ref of manifest.files.find(f => f.path === 'complete.bin')?.chunks ?? []) await store.putChunk(ref.cid, chunks.get(ref.cid) as Uint8Array)
    const source: ChunkSource = {
      name: 'origin',
      kind: 'origin',
      async fetch ({ cid }: ChunkRequest) {
        originGets++
        const bytes = chunks.get(cid)
        if (bytes == null) throw new Error(`origin does not have ${cid}`)
        return bytes
      }
    }
    // as `swarm mount` wires it: reads may take a chunk's verified bytes before the store has written them
    view = modelFs({ store, fetcher: fetcher({ store, sources: [source], landing: (cid, bytes) => view?.landing(cid, bytes) }) })
  })

  afterAll(async () => {
    await view?.close()
    await store?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('is available here', async () => {
    expect(await checkKernelFuse()).toEqual({ available: true })
  })

  describe('with passthrough', () => {
    let mount: Mount
    let mountpoint: string

    beforeAll(async () => {
      mountpoint = join(dir, 'mnt')
      mount = await mountFs({ fs: view, mountpoint })
    })

    afterAll(async () => { await mount?.unmount() })

    it('a complete file is read by the kernel from the store\'s file: no read request reaches the server', async () => {
      const file = join(mountpoint, 'by-cid', cid, 'complete.bin')
      await run('stat', [file])
      await dropCaches()
      const before = mount.stats()
      expect(before.passthrough).toBe(true)
      const { stdout } = await run('sha256sum', [file])
      const mapped = await run(PYTHON, ['-c', 'import hashlib,mmap,sys\nf=open(sys.argv[1],"rb")\nm=mmap.mmap(f.fileno(),0,flags=mmap.MAP_SHARED,prot=mmap.PROT_READ)\nprint(hashlib.sha256(m[:]).hexdigest())', file])
      const after = mount.stats()
      expect(stdout.split(' ')[0]).toBe(sha256(files['complete.bin'] as Buffer))
      expect(mapped.stdout.trim()).toBe(sha256(files['complete.bin'] as Buffer))
      expect(after.reads - before.reads).toBe(0)
      expect(after.opensPassthrough - before.opensPassthrough).toBe(2)
      expect(after.opensForwarded - before.opensForwarded).toBe(0)
    })

    it('a file not yet local: reads of missing chunks go to the view, which fetches them; once complete, the next open is passthrough', async () => {
      const file = join(mountpoint, 'by-cid', cid, 'lazy.bin')
      const gets = originGets
      const before = mount.stats()
      const first = await run('sha256sum', [file])
      expect(first.stdout.split(' ')[0]).toBe(sha256(files['lazy.bin'] as Buffer))
      const during = mount.stats()
      expect(during.opensForwarded - before.opensForwarded).toBe(1)
      expect(during.readsForwarded - before.readsForwarded).toBeGreaterThan(0)
      // each of its chunks came from the origin once, and nothing else did
      expect(originGets - gets).toBe(Math.ceil((files['lazy.bin'] as Buffer).length / (2 * MiB)))
      // the server learns the file is complete when the last reader lets go
      const deadline = Date.now() + 5_000
      let second = await run('sha256sum', [file])
      while (mount.stats().opensPassthrough === during.opensPassthrough && Date.now() < deadline) {
        await new Promise(resolve => setTimeout(resolve, 100))
        second = await run('sha256sum', [file])
      }
      await dropCaches()
      const cold = mount.stats()
      second = await run('sha256sum', [file])
      const after = mount.stats()
      expect(second.stdout.split(' ')[0]).toBe(sha256(files['lazy.bin'] as Buffer))
      expect(after.opensPassthrough - cold.opensPassthrough).toBe(1)
      expect(after.reads - cold.reads).toBe(0)
    })
  })

  it('passthrough refused (CAP_SYS_ADMIN dropped after mounting): complete files are read by the server, correctly, and the log says so once', async () => {
    const warnings: string[] = []
    const mountpoint = join(dir, 'mnt-refused')
    const mount = await mountFs({ fs: view, mountpoint, dropSysAdmin: true, logger: capturingLogger(warnings) })
    try {
      const file = join(mountpoint, 'by-cid', cid, 'complete.bin')
      for (let i = 0; i < 2; i++) {
        await dropCaches()
        const { stdout } = await run('sha256sum', [file])
        expect(stdout.split(' ')[0]).toBe(sha256(files['complete.bin'] as Buffer))
      }
      const stats = mount.stats()
      expect(stats.passthrough).toBe(false)
      expect(stats.opensPassthrough).toBe(0)
      expect(stats.opensLocal).toBe(2)
      expect(stats.readsForwarded).toBe(0)
      expect(stats.bytesReadLocally).toBeGreaterThanOrEqual(2 * (files['complete.bin'] as Buffer).length)
      expect(warnings.filter(w => /refused passthrough/.test(w))).toHaveLength(1)
      // a read that starts and ends inside pages: the reply is exactly the range asked for
      await dropCaches()
      const middle = await run(PYTHON, ['-c', 'import os,sys,hashlib\nfd=os.open(sys.argv[1],os.O_RDONLY)\nprint(hashlib.sha256(os.pread(fd,300001,12345)).hexdigest())', file])
      expect(middle.stdout.trim()).toBe(sha256((files['complete.bin'] as Buffer).subarray(12345, 12345 + 300001)))
      // every read answered from the store's file was spliced to the kernel, none copied through the server
      const after = mount.stats()
      expect(after.spliceReads).toBe(true)
      expect(after.readsSpliced).toBeGreaterThan(stats.readsSpliced)
      expect(after.readsSpliced).toBe(after.reads)
    } finally {
      await mount.unmount()
    }
  })

  it('a reply too large for the splice pipe (an unaligned direct read of the largest size) is copied instead, with the right bytes, and splicing stays on', async () => {
    const mountpoint = join(dir, 'mnt-unaligned')
    const mount = await mountFs({ fs: view, mountpoint, dropSysAdmin: true })
    try {
      const file = join(mountpoint, 'by-cid', cid, 'complete.bin')
      // O_DIRECT reads reach the server at the reader's own offset: 2,000 bytes into a page, a
      // reply of DEFAULT_MAX_READ bytes spans one page more than the pipe holds beside its header
      const offset = 2000
      const { stdout } = await run(PYTHON, ['-c', 'import os,sys,hashlib\nfd=os.open(sys.argv[1],os.O_RDONLY|os.O_DIRECT)\nprint(hashlib.sha256(os.pread(fd,int(sys.argv[2]),int(sys.argv[3]))).hexdigest())', file, String(DEFAULT_MAX_READ), String(offset)])
      expect(stdout.trim()).toBe(sha256((files['complete.bin'] as Buffer).subarray(offset, offset + DEFAULT_MAX_READ)))
      const stats = mount.stats()
      expect(stats.reads - stats.readsSpliced).toBeGreaterThanOrEqual(1)
      expect(stats.spliceReads).toBe(true)
    } finally {
      await mount.unmount()
    }
  })

  it('without splicing (splice: false), reads from the store\'s file are copied through the server, with the same bytes', async () => {
    const mountpoint = join(dir, 'mnt-copied')
    const mount = await mountFs({ fs: view, mountpoint, dropSysAdmin: true, splice: false })
    try {
      const file = join(mountpoint, 'by-cid', cid, 'complete.bin')
      await dropCaches()
      const { stdout } = await run('sha256sum', [file])
      expect(stdout.split(' ')[0]).toBe(sha256(files['complete.bin'] as Buffer))
      // and a read that starts and ends inside pages: the reply is exactly the range asked for
      const middle = await run(PYTHON, ['-c', 'import os,sys,hashlib\nfd=os.open(sys.argv[1],os.O_RDONLY)\nprint(hashlib.sha256(os.pread(fd,300001,12345)).hexdigest())', file])
      expect(middle.stdout.trim()).toBe(sha256((files['complete.bin'] as Buffer).subarray(12345, 12345 + 300001)))
      const stats = mount.stats()
      expect(stats.spliceReads).toBe(false)
      expect(stats.readsSpliced).toBe(0)
      expect(stats.reads).toBeGreaterThan(0)
      expect(stats.bytesReadLocally).toBeGreaterThanOrEqual((files['complete.bin'] as Buffer).length)
    } finally {
      await mount.unmount()
    }
  })

  it('a read the view never answers gets EIO at the server\'s deadline, and is counted; the mount goes on', async () => {
    const mountpoint = join(dir, 'mnt-deadline')
    const mount = await mountFs({ fs: view, mountpoint, requestTimeoutMs: 1500, unansweredForTesting: ['read'] })
    try {
      // a file with chunks not local: its reads go to the view, which here never answers
      const started = Date.now()
      const result = await run(PYTHON, ['-c', 'import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY)\ntry:\n  os.pread(fd,4096,13*1024*1024-4096)\n  print("read")\nexcept OSError as e:\n  print(e.errno)', join(mountpoint, 'by-cid', cid, 'late-deadline.bin')], { timeout: 20_000 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? 'killed' }))
      const elapsed = Date.now() - started
      expect(result.stdout.trim()).toBe('5') // EIO
      expect(elapsed).toBeGreaterThanOrEqual(1400)
      expect(elapsed).toBeLessThan(8000)
      expect(mount.stats().requestTimeouts).toBeGreaterThanOrEqual(1)
      // the rest of the mount answers as before
      const { stdout } = await run('sha256sum', [join(mountpoint, 'by-cid', cid, 'complete.bin')], { timeout: 20_000 })
      expect(stdout.split(' ')[0]).toBe(sha256(files['complete.bin'] as Buffer))
    } finally {
      await mount.unmount()
    }
  })

  it('rejects bad settings before mounting', async () => {
    await expect(mountFs({ fs: view, mountpoint: join(dir, 'mnt-bad'), threads: -1 })).rejects.toBeInstanceOf(RangeError)
    expect(new KernelFuseUnavailableError('why').message).toMatch(/why/)
  })

  it('the server, driven as the kernel and the store do: many names, store files replaced under complete files (bytes or EIO, never zeros), deadlines (ASan, UBSan)', async () => {
    const binary = join(dir, 'scenarios')
    await run('gcc', ['-std=gnu11', '-g', '-O1', '-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all',
      join(NATIVE, 'test', 'scenarios.c'), ...SERVER_SOURCES, '-o', binary, '-lpthread'])
    const scratch = await mkdtemp(join(dir, 'scenarios-'))
    const { stdout } = await run(binary, [scratch], { timeout: 60_000, env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' } })
    expect(stdout.trim()).toBe('ok')
  }, 120_000)

  it('the fuzz target\'s seed corpus runs through the parser under AddressSanitizer and UBSan', async () => {
    const binary = join(dir, 'fuzz-corpus')
    await run('gcc', ['-std=gnu11', '-g', '-O1', '-DSW_FUZZ_STANDALONE', '-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all',
      join(NATIVE, 'test', 'fuzz.c'), ...SERVER_SOURCES, '-o', binary, '-lpthread'])
    const corpus = join(NATIVE, 'test', 'corpus')
    const inputs = (await readdir(corpus)).map(name => join(corpus, name))
    expect(inputs.length).toBeGreaterThanOrEqual(10)
    const { stdout } = await run(binary, inputs, { timeout: 60_000, env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' } })
    expect(JSON.parse(stdout.trim())).toEqual({ inputs: inputs.length })
  }, 120_000)

  it('request parsing survives malformed, truncated and random requests under AddressSanitizer and UBSan', async () => {
    const binary = join(dir, 'harness')
    await run('gcc', ['-std=gnu11', '-g', '-O1', '-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all',
      join(NATIVE, 'test', 'harness.c'), ...SERVER_SOURCES, '-o', binary, '-lpthread'])
    const { stdout } = await run(binary, [dir, '20000', '7'], { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=1:abort_on_error=1', UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1' }, maxBuffer: 16 * MiB })
    const report = JSON.parse(stdout.trim()) as { requests: number, malformed: number, reads: number, readsForwarded: number, bytesReadLocally: number }
    expect(report.requests).toBeGreaterThan(1_000_000)
    expect(report.malformed).toBeGreaterThan(100_000)
    // well-formed reads among the noise went all the way: to the backing file, and to the host
    expect(report.bytesReadLocally).toBeGreaterThan(0)
    expect(report.readsForwarded).toBeGreaterThan(0)
  }, 120_000)
})
