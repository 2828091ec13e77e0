// Real mounts: needs root (or FUSE access), /dev/fuse, fusermount and libfuse 2. Every read through
// the mount happens in a child process: this process answers the kernel, so it must never block on
// its own mount.
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { constants } from 'node:os'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { BadHandleError, IsADirectoryError, NotADirectoryError, NotALinkError, ReadOnlyError, ReadTimeoutError } from '@swarm/fs'
import { AbortError, ChunkUnavailableError, ChunkVerificationError, NotFoundError } from '@swarm/interface'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { fuseConformanceTests, fuseEvictionTests } from '@swarm/fuse-conformance'
import { FuseUnavailableError, checkFuse, errnoOf, mountFs } from '../src/index.js'
import type { ModelFs } from '@swarm/fs'

const run = promisify(execFile)
const MiB = 1024 * 1024
const { errno } = constants

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

fuseConformanceTests('fuse-native', { mountFs })
fuseEvictionTests('fuse-native', { mountFs })

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
