// Real mounts: needs root (or FUSE access), /dev/fuse, fusermount and libfuse 2. Every read through
// the mount happens in a child process: this process answers the kernel, so it must never block on
// its own mount.
import { execFile, spawn } from 'node:child_process'
import { createCipheriv, createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { constants } from 'node:os'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { hashChunks, planChunks } from '@swarm/chunker'
import { fetcher } from '@swarm/fetcher'
import { BadHandleError, IsADirectoryError, NotADirectoryError, NotALinkError, ReadOnlyError, ReadTimeoutError, modelFs } from '@swarm/fs'
import { AbortError, ChunkUnavailableError, ChunkVerificationError, NotFoundError } from '@swarm/interface'
import { encodeManifest } from '@swarm/manifest'
import { createStore } from '@swarm/store'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { FuseUnavailableError, MountpointBusyError, checkFuse, errnoOf, mountFs } from '../src/index.js'
import type { Mount } from '../src/index.js'
import type { ModelFs } from '@swarm/fs'
import type { ChunkRequest, ChunkSource, Manifest } from '@swarm/interface'
import type { Store } from '@swarm/store'

const run = promisify(execFile)
const MiB = 1024 * 1024
const { errno } = constants

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

describe('errnoOf', () => {
  it('maps each error of the view to its errno, anything else to EIO', () => {
    expect(errnoOf(new NotFoundError())).toBe(-errno.ENOENT)
    expect(errnoOf(new ReadOnlyError('/x', 'write'))).toBe(-errno.EROFS)
    expect(errnoOf(new IsADirectoryError('/x'))).toBe(-errno.EISDIR)
    expect(errnoOf(new NotADirectoryError('/x'))).toBe(-errno.ENOTDIR)
    expect(errnoOf(new NotALinkError('/x'))).toBe(-errno.EINVAL)
    expect(errnoOf(new BadHandleError(3))).toBe(-errno.EBADF)
    expect(errnoOf(new AbortError())).toBe(-errno.EINTR)
    expect(errnoOf(new RangeError('bad offset'))).toBe(-errno.EINVAL)
    expect(errnoOf(new ChunkUnavailableError('bafy', []))).toBe(-errno.EIO)
    expect(errnoOf(new ChunkVerificationError('bafy', 'peer'))).toBe(-errno.EIO)
    expect(errnoOf(new ReadTimeoutError('bafy', 'a.bin', 10))).toBe(-errno.EIO)
    expect(errnoOf(new Error('anything'))).toBe(-errno.EIO)
    expect(errnoOf(undefined)).toBe(-errno.EIO)
  })
})

describe('checkFuse', () => {
  it('is available here, and names what is missing when it is not', async () => {
    expect(await checkFuse()).toEqual({ available: true })
    const path = process.env.PATH
    process.env.PATH = '/nonexistent'
    try {
      const check = await checkFuse()
      expect(check.available).toBe(false)
      expect(!check.available && check.reason).toMatch(/fusermount/)
      await expect(mountFs({ fs: {} as ModelFs, mountpoint: '/tmp/never' })).rejects.toBeInstanceOf(FuseUnavailableError)
    } finally {
      process.env.PATH = path
    }
  })
})

describe('mount', () => {
  let dir: string
  let store: Store
  let view: ModelFs
  let mount: Mount | undefined
  let mountpoint: string
  let cid: string
  const files: Record<string, Buffer> = {}
  const chunks = new Map<string, Uint8Array>()
  const missing = new Set<string>()

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fuse-'))
    mountpoint = join(dir, 'mnt')
    store = await createStore({ dir: join(dir, 'store') })
    files['weights.bin'] = bytesFor('weights', 6 * MiB + 777)
    files['sub/dir/notes.txt'] = Buffer.from('hello through FUSE\n')
    files['broken.bin'] = bytesFor('broken', 2 * MiB)
    const manifest: Manifest = { version: 1, chunkSize: MiB, files: [] }
    for (const [path, bytes] of Object.entries(files).sort(([a], [b]) => a < b ? -1 : 1)) {
      const refs = hashChunks(bytes, planChunks({ size: bytes.length, chunkSize: MiB }))
      for (const ref of refs) chunks.set(ref.cid, bytes.subarray(ref.offset, ref.offset + ref.size))
      manifest.files.push({ path, size: bytes.length, mode: 0o644, chunks: refs })
    }
    for (const ref of manifest.files.find(f => f.path === 'broken.bin')?.chunks ?? []) missing.add(ref.cid)
    cid = encodeManifest(manifest).cid
    await store.addManifest(cid, manifest, { ref: 'demo/model:v1' })
    const source: ChunkSource = {
      name: 'origin',
      kind: 'origin',
      async fetch ({ cid }: ChunkRequest) {
        const bytes = chunks.get(cid)
        if (bytes == null || missing.has(cid)) throw new Error(`origin lost ${cid}`)
        return bytes
      }
    }
    view = modelFs({ store, fetcher: fetcher({ store, sources: [source] }) })
    mount = await mountFs({ fs: view, mountpoint })
  })

  afterAll(async () => {
    await mount?.unmount()
    await view?.close()
    await store?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('is mounted as fuse.swarm, read-only in practice, with names as links', async () => {
    expect(await isMounted(mountpoint)).toBe(true)
    expect((await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find(l => l.split(' ')[4] === mountpoint)).toMatch(/ - fuse\.swarm swarm /)
    expect((await run('ls', [mountpoint])).stdout.split('\n').filter(Boolean)).toEqual(['by-cid', 'demo'])
    expect((await run('readlink', [join(mountpoint, 'demo', 'model@v1')])).stdout.trim()).toBe(`../by-cid/${cid}`)
    const listing = await run('ls', ['-R', join(mountpoint, 'demo', 'model@v1/')])
    expect(listing.stdout).toMatch(/broken\.bin/)
    expect(listing.stdout).toMatch(/notes\.txt/)
    const info = await run('stat', ['-L', '-c', '%s %a %F', join(mountpoint, 'demo', 'model@v1', 'weights.bin')])
    expect(info.stdout.trim()).toBe(`${files['weights.bin']?.length} 444 regular file`)
  })

  it('every file reads back byte-identical (cat, and dd with large blocks)', async () => {
    const root = join(mountpoint, 'by-cid', cid)
    const cat = await run('sha256sum', [join(root, 'weights.bin'), join(root, 'sub/dir/notes.txt')])
    expect(cat.stdout).toContain(sha256(files['weights.bin'] as Buffer))
    expect(cat.stdout).toContain(sha256(files['sub/dir/notes.txt'] as Buffer))
    const dd = await sh(`dd if=${join(mountpoint, 'demo/model@v1/weights.bin')} bs=4M 2>/dev/null | sha256sum`)
    expect(dd.stdout.split(' ')[0]).toBe(sha256(files['weights.bin'] as Buffer))
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
    // the file is still there and intact where its chunks can be had
    expect((await run('cat', [file])).stdout).toBe('hello through FUSE\n')
  })

  it('refuses a second mount on a live one', async () => {
    await expect(mountFs({ fs: view, mountpoint })).rejects.toBeInstanceOf(MountpointBusyError)
  })
})

describe('lifecycle', () => {
  let dir: string
  const children: Array<ReturnType<typeof spawn>> = []

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-fuse-life-'))
  })

  afterEach(async () => {
    for (const child of children.splice(0)) if (child.exitCode == null) child.kill('SIGKILL')
  })

  afterAll(async () => {
    await run('fusermount', ['-uz', join(dir, 'mnt')]).catch(() => {})
    await rm(dir, { recursive: true, force: true })
  })

  /** A process serving a trivial file system at `mountpoint` until killed; resolves once mounted. */
  async function mountInChild (mountpoint: string, script: string): Promise<ReturnType<typeof spawn>> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, mountpoint], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('mounted')) resolve() })
      child.on('exit', code => { reject(new Error(`mount child exited with ${String(code)}`)) })
    })
    return child
  }

  const rawFuse = `
    import Fuse from 'fuse-native'
    const ops = { getattr: (p, cb) => p === '/' ? cb(0, { mode: 0o40555, size: 0, mtime: new Date(), atime: new Date(), ctime: new Date() }) : cb(-2), readdir: (p, cb) => cb(0, []) }
    const fuse = new Fuse(process.argv[1], ops, { autoUnmount: false, mkdir: true })
    fuse.mount(err => { if (err) throw err; console.log('mounted') })
  `

  const viewMount = `
    import { mountFs } from './dist/index.js'
    const fs = { getattr: async p => { if (p !== '/') throw Object.assign(new Error('no'), { code: 'ERR_NOT_FOUND' }); return { kind: 'directory', mode: 0o40555, size: 0, nlink: 2, uid: 0, gid: 0, mtime: new Date(), blksize: 4096, blocks: 0 } }, readdir: async () => [], statfs: () => ({}) }
    await mountFs({ fs, mountpoint: process.argv[1] })
    console.log('mounted')
  `

  it('a SIGKILLed server leaves a stale mount, which mounting again clears', async () => {
    const mountpoint = join(dir, 'mnt')
    const child = await mountInChild(mountpoint, rawFuse)
    child.kill('SIGKILL')
    await new Promise(resolve => child.on('exit', resolve))
    await expect(stat(mountpoint)).rejects.toMatchObject({ code: 'ENOTCONN' })
    const again = await mountFs({ fs: { getattr: async () => ({ kind: 'directory', mode: 0o40555, size: 0, nlink: 2, uid: 0, gid: 0, mtime: new Date(), blksize: 4096, blocks: 0 }), readdir: async () => ['fresh'] } as unknown as ModelFs, mountpoint })
    try {
      expect((await run('ls', [mountpoint])).stdout.trim()).toBe('fresh')
    } finally {
      await again.unmount()
    }
    expect(await isMounted(mountpoint)).toBe(false)
    await again.unmount()
  })

  it('with auto_unmount, a SIGKILLed server\'s mount goes away by itself', async () => {
    const mountpoint = join(dir, 'auto')
    const child = await mountInChild(mountpoint, viewMount)
    expect(await isMounted(mountpoint)).toBe(true)
    child.kill('SIGKILL')
    await new Promise(resolve => child.on('exit', resolve))
    const deadline = Date.now() + 10_000
    while (await isMounted(mountpoint) && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 100))
    expect(await isMounted(mountpoint)).toBe(false)
  })
})
