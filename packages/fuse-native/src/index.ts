/**
 * @packageDocumentation
 *
 * Mounts a model view (`@swarm/fs`) with FUSE through fuse-native (libfuse 2). This package only
 * translates: kernel requests become calls on the view, its answers become replies, and its
 * errors become errno values in one place (`errnoOf`).
 *
 * What the mount asks of the kernel, and why:
 * - `kernel_cache` and hour-long attribute and entry timeouts: files live under a manifest CID
 *   and never change, so the page cache may serve re-reads and mmap faults without a request.
 *   Names (`/<name>`) are links, whose targets libfuse 2 never lets the kernel cache.
 * - never `direct_io`: it breaks shared mmap (ENODEV), and safetensors maps files shared.
 * - `auto_unmount`: a killed process leaves no mount behind whose readers would hang; on start a
 *   stale mount (ENOTCONN) at the mount point is cleared with `fusermount -uz` first.
 * - a larger read-ahead for the mount than the kernel's default: libfuse 2 requests are 128 KiB
 *   at most, so sequential throughput comes from having several in flight, answered on libfuse's
 *   threads.
 *
 * @example
 *
 * ```ts
 * import { checkFuse, mountFs } from '@swarm/fuse-native'
 *
 * const fuse = await checkFuse()
 * if (!fuse.available) console.error(`no FUSE: ${fuse.reason}`)
 * const mount = await mountFs({ fs: view, mountpoint: '/mnt/swarm', logger })
 * // … readers use /mnt/swarm/<name>/… …
 * await mount.unmount()
 * ```
 */

import { execFile } from 'node:child_process'
import { constants as fsConstants } from 'node:fs'
import { access, mkdir, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { delimiter, join, resolve } from 'node:path'
import { promisify } from 'node:util'
import { silentLogger } from '@swarm/interface'
import {
  DEFAULT_CACHE_TIMEOUT_SECONDS,
  DEFAULT_MAX_BACKGROUND,
  DEFAULT_OP_TIMEOUT_MS,
  DEFAULT_READ_AHEAD_KB,
  DEFAULT_READ_OP_TIMEOUT_MS,
  FS_NAME
} from './constants.js'
import { FuseUnavailableError, MountFailedError } from './errors.js'
import { checkFuseDevice, clearStaleMount, errnoOf, mountedAt } from '@swarm/fs'
import type { Attributes, FsStatistics, FuseCheck, ModelFs } from '@swarm/fs'
import type { Logger } from '@swarm/interface'
import type FuseClass from 'fuse-native'

export * from './constants.js'
export * from './errors.js'
export { errnoOf } from '@swarm/fs'

export interface MountInit {
  fs: ModelFs
  /** created when missing */
  mountpoint: string
  /** let other users read the mount (default: when running as root) */
  allowOther?: boolean
  /** seconds the kernel caches attributes and entries (default 3600) */
  cacheTimeoutSeconds?: number
  /** the mount's read-ahead in KiB (default 1024); 0 leaves the kernel's */
  readAheadKb?: number
  /** background requests the kernel may keep in flight (default: the kernel's); needs fusectl */
  maxBackground?: number
  /** metadata requests fail after this long (default 30 s) */
  opTimeoutMs?: number
  /**
   * read requests fail after this long (default 75 s). Keep it above the view's own read bound:
   * the view must answer first, as a late answer would go into a buffer libfuse has taken back.
   */
  readOpTimeoutMs?: number
  /** libfuse's debug output on stderr */
  debug?: boolean
  logger?: Logger
}

export interface Mount {
  readonly mountpoint: string
  /** Unmounts (lazily, so held files do not block it). Safe to call twice. */
  unmount(): Promise<void>
}

export type { FuseCheck } from '@swarm/fs'

const run = promisify(execFile)
const require = createRequire(import.meta.url)

async function onPath (program: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (dir === '') continue
    const candidate = join(dir, program)
    try {
      await access(candidate, fsConstants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

function loadFuse (): typeof FuseClass {
  return require('fuse-native') as typeof FuseClass
}

/** Whether this process can mount with FUSE, and if not, what is missing. */
export async function checkFuse (): Promise<FuseCheck> {
  const device = await checkFuseDevice()
  if (!device.available) return device
  if (await onPath('fusermount') === undefined) {
    return { available: false, reason: 'fusermount is not on PATH: install FUSE 2 (Debian: apt-get install fuse libfuse2)' }
  }
  try {
    loadFuse()
  } catch (err) {
    return { available: false, reason: `the FUSE binding could not be loaded (Debian: apt-get install libfuse2): ${(err as Error).message}` }
  }
  return { available: true }
}

/** Writes a tunable of the mount's backing device; a kernel that refuses only costs speed. */
async function tune (path: string, value: number, log: Logger): Promise<void> {
  try {
    await writeFile(path, String(value))
  } catch (err) {
    log.debug({ path, value, err: (err as Error).message }, 'could not tune the mount')
  }
}

function statArray (a: Attributes): Record<string, unknown> {
  return { mode: a.mode, uid: a.uid, gid: a.gid, size: a.size, nlink: a.nlink, blksize: a.blksize, blocks: a.blocks, mtime: a.mtime, atime: a.mtime, ctime: a.mtime }
}

type Reply = (...args: unknown[]) => void

/** The fuse-native operations for a view: each one calls the view and replies. */
function operations (fs: ModelFs): Record<string, (...args: any[]) => void> {
  const fail = (cb: Reply) => (err: unknown) => { cb(errnoOf(err)) }
  const refuse = (operation: string) => (path: string, ...rest: unknown[]) => {
    const cb = rest[rest.length - 1] as Reply
    fs.change(path, operation).catch(fail(cb))
  }
  return {
    getattr: (path: string, cb: Reply) => { fs.getattr(path).then(a => { cb(0, statArray(a)) }, fail(cb)) },
    fgetattr: (path: string, _fd: number, cb: Reply) => { fs.getattr(path).then(a => { cb(0, statArray(a)) }, fail(cb)) },
    readdir: (path: string, cb: Reply) => { fs.readdir(path).then(names => { cb(0, names) }, fail(cb)) },
    readlink: (path: string, cb: Reply) => { fs.readlink(path).then(target => { cb(0, target) }, fail(cb)) },
    access: (path: string, mode: number, cb: Reply) => { fs.access(path, mode).then(() => { cb(0) }, fail(cb)) },
    open: (path: string, flags: number, cb: Reply) => { fs.open(path, flags).then(handle => { cb(0, handle) }, fail(cb)) },
    // fuse-native's read reply is the byte count, or a negative errno
    read: (_path: string, handle: number, buffer: Buffer, length: number, position: number, cb: Reply) => {
      fs.read(handle, length === buffer.length ? buffer : buffer.subarray(0, length), position).then(bytes => { cb(bytes) }, fail(cb))
    },
    release: (_path: string, handle: number, cb: Reply) => { fs.release(handle).then(() => { cb(0) }, fail(cb)) },
    statfs: (_path: string, cb: Reply) => { cb(0, fs.statfs() satisfies FsStatistics) },
    write: refuse('write'),
    create: refuse('create'),
    truncate: refuse('truncate'),
    ftruncate: refuse('truncate'),
    unlink: refuse('unlink'),
    rename: refuse('rename'),
    link: refuse('link'),
    symlink: (_target: string, path: string, cb: Reply) => { fs.change(path, 'symlink').catch(fail(cb)) },
    mkdir: refuse('mkdir'),
    rmdir: refuse('rmdir'),
    mknod: refuse('mknod'),
    chmod: refuse('chmod'),
    chown: refuse('chown'),
    utimens: refuse('utimens'),
    setxattr: refuse('setxattr'),
    removexattr: refuse('removexattr')
  }
}

/** Mounts `init.fs` at `init.mountpoint`; rejects with FuseUnavailableError when FUSE cannot be used here. */
export async function mountFs (init: MountInit): Promise<Mount> {
  const log = (init.logger ?? silentLogger).child({ component: 'fuse' })
  const mountpoint = resolve(init.mountpoint)
  const check = await checkFuse()
  if (!check.available) throw new FuseUnavailableError(check.reason)
  const cacheTimeout = init.cacheTimeoutSeconds ?? DEFAULT_CACHE_TIMEOUT_SECONDS
  if (!Number.isFinite(cacheTimeout) || cacheTimeout < 0) throw new RangeError(`cacheTimeoutSeconds must be a non-negative number, got ${String(cacheTimeout)}`)

  await clearStaleMount(mountpoint, log, async path => { await run('fusermount', ['-uz', path]) })
  await mkdir(mountpoint, { recursive: true })
  const Fuse = loadFuse()
  const opTimeout = init.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS
  const fuse = new Fuse(mountpoint, operations(init.fs), {
    // clears a stale mount fuse-native itself detects, in case one appeared since the check above
    force: true,
    autoUnmount: true,
    kernelCache: true,
    attrTimeout: cacheTimeout,
    entryTimeout: cacheTimeout,
    allowOther: init.allowOther ?? process.getuid?.() === 0,
    fsname: FS_NAME,
    subtype: FS_NAME,
    debug: init.debug === true,
    timeout: { default: opTimeout, read: init.readOpTimeoutMs ?? DEFAULT_READ_OP_TIMEOUT_MS }
  })
  try {
    await promisify(fuse.mount.bind(fuse))()
  } catch (err) {
    throw new MountFailedError(mountpoint, (err as Error).message, { cause: err })
  }

  const device = (await stat(mountpoint)).dev
  const minor = (device & 0xff) | ((device >> 12) & 0xfff00)
  const major = (device >> 8) & 0xfff
  const readAheadKb = init.readAheadKb ?? DEFAULT_READ_AHEAD_KB
  const maxBackground = init.maxBackground ?? DEFAULT_MAX_BACKGROUND
  if (maxBackground > 0) {
    await tune(`/sys/fs/fuse/connections/${minor}/max_background`, maxBackground, log)
    await tune(`/sys/fs/fuse/connections/${minor}/congestion_threshold`, Math.max(1, Math.floor(maxBackground * 3 / 4)), log)
  }
  if (readAheadKb > 0) await tune(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, readAheadKb, log)
  log.info({ mountpoint, device: `${major}:${minor}`, readAheadKb, maxBackground }, 'mounted')

  let unmounting: Promise<void> | undefined
  return {
    mountpoint,
    async unmount () {
      unmounting ??= (async () => {
        try {
          await promisify(fuse.unmount.bind(fuse))()
        } catch (err) {
          // already gone (unmounted by hand, or by auto_unmount) is as good as unmounted
          if ((await mountedAt(mountpoint))?.fsType.startsWith('fuse') === true) throw err
        }
        log.info({ mountpoint }, 'unmounted')
      })()
      await unmounting
    }
  }
}
