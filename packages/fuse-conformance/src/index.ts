/**
 * @packageDocumentation
 *
 * The behaviour every FUSE adapter must have, as one vitest `describe` block each adapter runs on a
 * real mount (root and /dev/fuse) over a real store. Every read through the mount happens in a
 * child process: the test process may itself be answering the kernel, so it must never block on
 * its own mount.
 *
 * What it holds adapters to: the mount table entry; names as relative links into `by-cid/`;
 * listings and attributes as the manifest says; byte-identical reads through cat, dd with large
 * blocks and Python's mmap(MAP_SHARED); a file that completes while a reader holds it open, and
 * is opened again afterwards; EROFS for every change, ENOENT for unknown paths, EIO for a chunk
 * nobody has (with the rest of the mount unharmed); 16 readers at once; refusing a second mount
 * on a live one.
 *
 * @example
 *
 * ```ts
 * import { fuseConformanceTests } from '@swarm/fuse-conformance'
 * import { mountFs } from '../src/index.js'
 *
 * fuseConformanceTests('kernel', { mountFs })
 * ```
 */

import { execFile, spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { hashChunks, planChunks } from '@swarm/chunker'
import { fetcher } from '@swarm/fetcher'
import { MountpointBusyError, modelFs } from '@swarm/fs'
import { encodeManifest } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ModelFs } from '@swarm/fs'
import type { ChunkRequest, ChunkSource, Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

export interface MountedForTest {
  unmount(): Promise<void>
  /** the store evicted a model (adapters that cache what the store holds) */
  evicted?(manifestCid: string): void
}

export interface FuseAdapterUnderTest {
  mountFs(init: { fs: ModelFs, mountpoint: string }): Promise<MountedForTest>
}

const run = promisify(execFile)
const MiB = 1024 * 1024
/** Debian's interpreter, which has numpy; the first python3 on PATH may be another one */
const PYTHON = '/usr/bin/python3'

function bytesFor (seed: string, length: number): Buffer {
  const key = createHash('sha256').update(seed).digest()
  return createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32)).update(Buffer.alloc(length))
}

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** Runs a shell command; resolves with its exit code and output whatever the code. */
async function sh (command: string): Promise<{ code: number, stdout: string, stderr: string }> {
  return await new Promise(resolve => {
    execFile('sh', ['-c', command], { encoding: 'utf8', maxBuffer: 64 * MiB }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : Number((err as { code?: number }).code ?? 1), stdout, stderr })
    })
  })
}

async function isMounted (mountpoint: string): Promise<boolean> {
  return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some(line => line.split(' ')[4] === mountpoint)
}

/** Maps a file MAP_SHARED and prints the SHA-256 of the mapping, as safetensors' loader maps files. */
const MMAP_SHA256 = `
import hashlib, mmap, sys
with open(sys.argv[1], 'rb') as f:
    m = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    print(hashlib.sha256(m[:]).hexdigest())
    m.close()
`

/** Reads the first MiB, says so, waits for a line on stdin, reads the rest from the same descriptor. */
const HOLD_OPEN = `
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], 'rb', buffering=0) as f:
    h.update(f.read(1 << 20))
    print('first', flush=True)
    sys.stdin.readline()
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        h.update(b)
print(h.hexdigest(), flush=True)
`

export { fuseEvictionTests } from './eviction.js'

export function fuseConformanceTests (name: string, adapter: FuseAdapterUnderTest): void {
  describe(`FUSE conformance: ${name}`, () => {
    let dir: string
    let store: Store
    let view: ModelFs
    let mount: MountedForTest | undefined
    let mountpoint: string
    let cid: string
    let manifest: Manifest
    const files: Record<string, Buffer> = {}
    const chunks = new Map<string, Uint8Array>()
    /** chunks the origin has lost: reads of them fail */
    const missing = new Set<string>()
    /** chunks the origin holds back until released: a file stays incomplete meanwhile */
    const held = new Set<string>()

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), `swarm-fuse-${name}-`))
      mountpoint = join(dir, 'mnt')
      store = await createStore({ dir: join(dir, 'store') })
      files['weights.bin'] = bytesFor('weights', 6 * MiB + 777)
      files['sub/dir/notes.txt'] = Buffer.from('hello through FUSE\n')
      files['broken.bin'] = bytesFor('broken', 2 * MiB)
      files['late.bin'] = bytesFor('late', 5 * MiB + 3)
      manifest = { version: 1, chunkSize: MiB, files: [] }
      for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => a < b ? -1 : 1)) {
        const refs = hashChunks(bytes, planChunks({ size: bytes.length, chunkSize: MiB }))
        for (const ref of refs) chunks.set(ref.cid, bytes.subarray(ref.offset, ref.offset + ref.size))
        manifest.files.push({ path, size: bytes.length, mode: 0o644, chunks: refs })
      }
      for (const ref of manifest.files.find(f => f.path === 'broken.bin')?.chunks ?? []) missing.add(ref.cid)
      for (const ref of manifest.files.find(f => f.path === 'late.bin')?.chunks.slice(1) ?? []) held.add(ref.cid)
      cid = encodeManifest(manifest).cid
      await store.addManifest(cid, manifest, { ref: 'demo/model:v1' })
      // weights.bin is complete in the store before the mount, as after a pull
      for (const ref of manifest.files.find(f => f.path === 'weights.bin')?.chunks ?? []) await store.putChunk(ref.cid, chunks.get(ref.cid) as Uint8Array)
      const source: ChunkSource = {
        name: 'origin',
        kind: 'origin',
        async fetch ({ cid }: ChunkRequest) {
          const bytes = chunks.get(cid)
          if (bytes == null || missing.has(cid) || held.has(cid)) throw new Error(`origin does not have ${cid}`)
          return bytes
        }
      }
      view = modelFs({ store, fetcher: fetcher({ store, sources: [source] }), readTimeoutMs: 2_000 })
      mount = await adapter.mountFs({ fs: view, mountpoint })
    })

    afterAll(async () => {
      await mount?.unmount()
      await view?.close()
      await store?.close()
      await rm(dir, { recursive: true, force: true })
    })

    it('is mounted as fuse.swarm, with names as relative links and attributes from the manifest', async () => {
      expect(await isMounted(mountpoint)).toBe(true)
      expect((await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find(l => l.split(' ')[4] === mountpoint)).toMatch(/ - fuse\.swarm swarm /)
      expect((await run('ls', [mountpoint])).stdout.split('\n').filter(Boolean)).toEqual(['by-cid', 'demo'])
      expect((await run('readlink', [join(mountpoint, 'demo', 'model@v1')])).stdout.trim()).toBe(`../by-cid/${cid}`)
      expect((await run('ls', [join(mountpoint, 'by-cid', cid)])).stdout.split('\n').filter(Boolean)).toEqual(['broken.bin', 'late.bin', 'sub', 'weights.bin'])
      const listing = await run('ls', ['-R', join(mountpoint, 'demo', 'model@v1/')])
      expect(listing.stdout).toMatch(/notes\.txt/)
      const info = await run('stat', ['-L', '-c', '%s %a %F', join(mountpoint, 'demo', 'model@v1', 'weights.bin')])
      expect(info.stdout.trim()).toBe(`${files['weights.bin']?.length} 444 regular file`)
      expect((await run('stat', ['-c', '%F', join(mountpoint, 'demo', 'model@v1', 'sub', 'dir')])).stdout.trim()).toBe('directory')
    })

    it('every file reads back byte-identical through cat, dd with large blocks and mmap(MAP_SHARED)', async () => {
      const root = join(mountpoint, 'by-cid', cid)
      const cat = await run('sha256sum', [join(root, 'weights.bin'), join(root, 'sub/dir/notes.txt')])
      expect(cat.stdout).toContain(sha256(files['weights.bin'] as Buffer))
      expect(cat.stdout).toContain(sha256(files['sub/dir/notes.txt'] as Buffer))
      const dd = await sh(`dd if=${join(mountpoint, 'demo/model@v1/weights.bin')} bs=4M 2>/dev/null | sha256sum`)
      expect(dd.stdout.split(' ')[0]).toBe(sha256(files['weights.bin'] as Buffer))
      const mapped = await run(PYTHON, ['-c', MMAP_SHA256, join(root, 'weights.bin')])
      expect(mapped.stdout.trim()).toBe(sha256(files['weights.bin'] as Buffer))
    })

    it('a file that completes while a reader holds it open reads right, and so does the next open', async () => {
      const path = join(mountpoint, 'demo/model@v1/late.bin')
      const reader = spawn(PYTHON, ['-c', HOLD_OPEN, path], { stdio: ['pipe', 'pipe', 'pipe'] })
      let out = ''
      let err = ''
      reader.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
      reader.stderr.setEncoding('utf8').on('data', (d: string) => { err += d })
      // 'close', not 'exit': a process can exit before its stdout has all been read here
      const exited = new Promise<number | null>(resolve => reader.on('close', resolve))
      const deadline = Date.now() + 20_000
      while (!out.includes('first') && reader.exitCode == null && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
      expect(out, err).toContain('first')
      // the rest arrives in the store (as a pull would bring it) while the file is open
      held.clear()
      for (const ref of manifest.files.find(f => f.path === 'late.bin')?.chunks ?? []) await store.putChunk(ref.cid, chunks.get(ref.cid) as Uint8Array)
      expect(store.files(cid).find(f => f.entry.path === 'late.bin')?.complete).toBe(true)
      await new Promise(resolve => setTimeout(resolve, 300))
      reader.stdin.end('go\n')
      expect(await exited, err).toBe(0)
      expect(out.trim().split('\n').pop()).toBe(sha256(files['late.bin'] as Buffer))
      const again = await run('sha256sum', [path])
      expect(again.stdout.split(' ')[0]).toBe(sha256(files['late.bin'] as Buffer))
    })

    it('16 readers at once get the right bytes', async () => {
      const root = join(mountpoint, 'by-cid', cid)
      const sums = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
        const file = i % 2 === 0 ? 'weights.bin' : 'late.bin'
        const { stdout } = await run('sha256sum', [join(root, file)])
        return stdout.split(' ')[0] === sha256(files[file] as Buffer)
      }))
      expect(sums.every(Boolean)).toBe(true)
    })

    it('changes get EROFS, unknown paths ENOENT, a chunk nobody has EIO', async () => {
      const file = join(mountpoint, 'demo/model@v1/sub/dir/notes.txt')
      const tries = [
        `echo x > ${file}`,
        `echo x >> ${file}`,
        `touch ${join(mountpoint, 'demo/model@v1/new-file')}`,
        `mkdir ${join(mountpoint, 'newdir')}`,
        `mv ${file} ${file}.moved`,
        `rm -f ${file}`,
        `truncate -s 0 ${file}`,
        `chmod 777 ${file}`,
        `ln -s /etc/passwd ${join(mountpoint, 'link')}`
      ]
      for (const command of tries) {
        const result = await sh(command)
        expect(result.code, command).not.toBe(0)
        expect(result.stderr, command).toMatch(/Read-only file system/)
      }
      await expect(writeFile(file, 'x')).rejects.toMatchObject({ code: 'EROFS' })
      for (const path of ['nope', 'demo/other', `by-cid/${cid}/nope.bin`, 'by-cid/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy']) {
        await expect(stat(join(mountpoint, path)), path).rejects.toMatchObject({ code: 'ENOENT' })
      }
      const broken = await sh(`cat ${join(mountpoint, 'demo/model@v1/broken.bin')} > /dev/null`)
      expect(broken.code).not.toBe(0)
      expect(broken.stderr).toMatch(/Input\/output error/)
      // the rest of the mount is unharmed
      expect((await run('cat', [file])).stdout).toBe('hello through FUSE\n')
    })

    it('refuses a second mount on a live one', async () => {
      await expect(adapter.mountFs({ fs: view, mountpoint })).rejects.toBeInstanceOf(MountpointBusyError)
    })
  })
}
