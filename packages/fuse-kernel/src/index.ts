/**
 * @packageDocumentation
 *
 * Mounts a model view (`@swarm/fs`) with a FUSE server of our own (native/server.c, nodes.c,
 * requests.c, splice.c) that speaks the kernel protocol on /dev/fuse, with no libfuse:
 *
 * - Complete files are opened in passthrough: the kernel reads the store's file itself, at the
 *   speed of a local read, and no read request reaches this process.
 * - Files not yet complete are read by the server's threads from the store's file where their
 *   chunks are present, its pages spliced to the kernel (native/splice.c); only ranges with
 *   missing chunks come here, where the view fetches them (peers first, then the origin) and
 *   prefetches ahead of the reader.
 * - A model's directories and files are handed to the server when the model is first looked up,
 *   so path walks and attributes inside a model never wait on JavaScript. Names (`/<name>`,
 *   `/<name>@<tag>`, name directories) are asked of the view each time the kernel's short cache
 *   of them expires, as names move.
 *
 * - The server reads a store file only after checking it is the file the view described (device,
 *   inode, birth time): a model evicted and added back has new, empty files at the same paths.
 *   `evicted()` (the store's onEvict) drops what the server knew of a model and the kernel's
 *   cache of it. Opens the server serves itself hold their model from eviction (`ModelFs.hold`):
 *   the server says when a model gets its first open file and when it has had none for 2 s, so
 *   a walk over a checkpoint's files costs no call here per file.
 * - Every request passed to this process has a deadline (`requestTimeoutMs`, default 30 s): if
 *   the main thread does not answer, the server answers EIO and counts it (`requestTimeouts`).
 * - Chunks the view fetches (reads, prefetches) are told to the server as they land, so a file
 *   filled ahead of its reader (a checkpoint's small files) opens in passthrough with no request
 *   here; a model's tree is handed over with one look at the store for all its files.
 *
 * It needs CAP_SYS_ADMIN to mount (mount(2)) and for passthrough; where the kernel refuses
 * passthrough, files are read by the server's threads and the log says so once. Without the
 * capability, use `@swarm/fuse-native`, which mounts through fusermount.
 *
 * @example
 *
 * ```ts
 * import { checkKernelFuse, mountFs } from '@swarm/fuse-kernel'
 *
 * if ((await checkKernelFuse()).available) {
 *   const mount = await mountFs({ fs: view, mountpoint: '/mnt/swarm', logger })
 *   // … readers use /mnt/swarm/<name>/… …
 *   await mount.unmount()
 * }
 * ```
 */

import { mkdir, readFile, stat, statfs, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { checkFuseDevice, clearStaleMount, errnoOf, mountedAt } from '@swarm/fs'
import { silentLogger } from '@swarm/interface'
import {
  DEFAULT_CACHE_TIMEOUT_SECONDS,
  DEFAULT_MAX_READ,
  DEFAULT_NAME_TIMEOUT_SECONDS,
  DEFAULT_PRESENCE_INTERVAL_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_THREADS,
  OVERLAYFS_MAGIC,
  STATFS_INTERVAL_MS
} from './constants.js'
import { KernelFuseUnavailableError, MountFailedError } from './errors.js'
import { NodeKind, UpcallKind, loadAddon } from './native.js'
import type { Addon, ContentInit, NativeStats, NodeInit, Server, Upcall } from './native.js'
import type { Attributes, ChunkArrival, FileContent, FuseCheck, ModelFs } from '@swarm/fs'
import type { Logger } from '@swarm/interface'

export * from './constants.js'
export * from './errors.js'
export { MountpointBusyError } from '@swarm/fs'
export type { NativeStats } from './native.js'

export interface MountInit {
  fs: ModelFs
  /** created when missing */
  mountpoint: string
  /** let other users read the mount (default: when running as root) */
  allowOther?: boolean
  /** seconds the kernel caches entries and attributes under `by-cid/` (default 3600) */
  cacheTimeoutSeconds?: number
  /** seconds the kernel caches names (default 1) */
  nameTimeoutSeconds?: number
  /** largest read request and the mount's read-ahead, bytes (default 1 MiB less a page; see DEFAULT_MAX_READ) */
  maxRead?: number
  /** threads reading requests (default 4) */
  threads?: number
  /** open complete files in kernel passthrough (default true) */
  passthrough?: boolean
  /**
   * answer reads from the store's file by splicing its pages to the kernel through a pipe, one
   * copy instead of pread's and writev's two (default true; see native/splice.c)
   */
  splice?: boolean
  /** the store's directory: on overlayfs, passthrough needs a stack depth of 2 */
  backingDir?: string
  /** the server's threads drop CAP_SYS_ADMIN once mounted, so the kernel refuses passthrough */
  dropSysAdmin?: boolean
  /** how often open files still filling are checked for chunks that arrived (default 250 ms) */
  presenceIntervalMs?: number
  /**
   * a request passed to JavaScript that is not answered within this long is answered EIO by the
   * server itself, and counted (default 30 s; 0: never)
   */
  requestTimeoutMs?: number
  /**
   * For tests of the deadline only: requests of these kinds are never answered here, as if this
   * process's main thread were stuck, so the server's deadline answers them.
   */
  unansweredForTesting?: ReadonlyArray<'lookup' | 'opendir' | 'open' | 'read'>
  logger?: Logger
}

export interface Mount {
  readonly mountpoint: string
  /** requests served and how (reads that reached the server, passthrough opens, …) */
  stats(): NativeStats
  /**
   * The store evicted a model: the server stops reading its files' store files (opens and reads
   * go to the view, which adds it back when read), and the kernel drops what it cached of them.
   */
  evicted(manifestCid: string): void
  /** Unmounts (lazily, so held files do not block it). Safe to call twice. */
  unmount(): Promise<void>
}

const CAP_SYS_ADMIN = 21n

async function hasSysAdmin (): Promise<boolean> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '')
  const effective = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1]
  return effective !== undefined && ((BigInt(`0x${effective}`) >> CAP_SYS_ADMIN) & 1n) === 1n
}

/** Whether this process can mount with this adapter, and if not, what is missing. */
export async function checkKernelFuse (): Promise<FuseCheck> {
  const device = await checkFuseDevice()
  if (!device.available) return device
  if (!await hasSysAdmin()) return { available: false, reason: 'mounting with mount(2) needs CAP_SYS_ADMIN (run as root, or use the fuse-native adapter, which mounts through fusermount)' }
  try {
    loadAddon()
  } catch (err) {
    return { available: false, reason: `the addon is not built (npm run build:native -w @swarm/fuse-kernel): ${(err as Error).message}` }
  }
  return { available: true }
}

/** Runs of present chunks as [offset, length] byte ranges. */
function presentRanges (content: FileContent, known?: Uint8Array): Array<[number, number]> {
  const ranges: Array<[number, number]> = []
  let start = -1
  for (let i = 0; i <= content.present.length; i++) {
    const fresh = i < content.present.length && content.present[i] === 1 && known?.[i] !== 1
    const begin = i === 0 ? 0 : content.chunkEnds[i - 1] as number
    if (fresh && start === -1) start = begin
    if (!fresh && start !== -1) {
      ranges.push([start, begin - start])
      start = -1
    }
  }
  return ranges
}

interface ForwardedOpen { ino: number, path: string }

/** What the server was last told of a file: which store file (`key`), and which chunks of it are present. */
interface FileState { path: string, key: string, ends: number[], present: Uint8Array, complete: boolean }

function identityKey (content: FileContent): string {
  const id = content.identity
  return id === undefined ? '' : `${content.backingPath}\0${id.dev}:${id.ino}:${id.birthNs}`
}

function contentInit (content: FileContent): ContentInit {
  const id = content.identity
  return {
    size: content.size,
    backingPath: content.backingPath,
    ...(id !== undefined ? { backingDev: id.dev, backingIno: id.ino, backingBirthNs: id.birthNs } : {}),
    // a file nobody could look at is read through the view
    complete: content.complete && id !== undefined,
    chunkEnds: content.complete ? [] : content.chunkEnds
  }
}

/** Read buffers kept for reuse: as many as reads are usually forwarded at once. */
const SPARE_READ_BUFFERS = 16

const UNANSWERED = { lookup: UpcallKind.Lookup, opendir: UpcallKind.Opendir, open: UpcallKind.Open, read: UpcallKind.Read } as const

const LOG_LEVELS = ['debug', 'info', 'warn'] as const

class KernelMount implements Mount {
  private readonly addon: Addon
  private readonly server: Server
  private readonly log: Logger
  private readonly paths = new Map<number, string>([[1, '/']])
  private readonly inos = new Map<string, number>([['/', 1]])
  /** models with files open that the server serves without us (passthrough, local): how many, and their hold from eviction */
  private readonly held = new Map<string, { files: number, hold: Promise<{ release(): void } | undefined> }>()
  private readonly unanswered: ReadonlySet<UpcallKind>
  /** model directories under by-cid already handed to the server */
  private readonly populated = new Map<string, Promise<void>>()
  private readonly forwarded = new Map<number, ForwardedOpen>()
  /**
   * Buffers of answered reads, for the next ones: a lazy read forwards hundreds of 1 MiB reads,
   * and a fresh buffer for each kept the garbage collector busy. `replyData` has written the bytes
   * to /dev/fuse when it returns, so a buffer is free again as soon as its read is answered.
   */
  private readonly spareBuffers: Buffer[] = []
  private readonly files = new Map<number, FileState>()
  private readonly timers: NodeJS.Timeout[] = []
  private unmounting?: Promise<void>
  private polling = false
  private readonly stopArrivals: () => void

  constructor (readonly mountpoint: string, private readonly fs: ModelFs, private readonly init: MountInit & { maxStackDepth: number }) {
    this.addon = loadAddon()
    this.log = (init.logger ?? silentLogger).child({ component: 'fuse' })
    this.unanswered = new Set((init.unansweredForTesting ?? []).map(kind => UNANSWERED[kind]))
    this.server = this.addon.mount({
      mountpoint,
      threads: init.threads ?? DEFAULT_THREADS,
      maxRead: init.maxRead ?? DEFAULT_MAX_READ,
      passthrough: init.passthrough !== false,
      splice: init.splice !== false,
      maxStackDepth: init.maxStackDepth,
      allowOther: init.allowOther ?? process.getuid?.() === 0,
      rootTimeout: this.nameTimeout,
      dropSysAdmin: init.dropSysAdmin === true,
      requestTimeout: (init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS) / 1000
    }, upcall => { this.dispatch(upcall) })
    this.stopArrivals = fs.onArrival(arrival => { this.arrived(arrival) })
    this.refreshStatfs()
    const statfsTimer = setInterval(() => { this.refreshStatfs() }, STATFS_INTERVAL_MS)
    const presenceTimer = setInterval(() => { void this.pollPresence() }, init.presenceIntervalMs ?? DEFAULT_PRESENCE_INTERVAL_MS)
    for (const timer of [statfsTimer, presenceTimer]) {
      timer.unref()
      this.timers.push(timer)
    }
  }

  private get cacheTimeout (): number {
    return this.init.cacheTimeoutSeconds ?? DEFAULT_CACHE_TIMEOUT_SECONDS
  }

  private get nameTimeout (): number {
    return this.init.nameTimeoutSeconds ?? DEFAULT_NAME_TIMEOUT_SECONDS
  }

  stats (): NativeStats {
    return this.addon.stats(this.server)
  }

  evicted (manifestCid: string): void {
    const path = `/by-cid/${manifestCid}`
    const ino = this.inos.get(path)
    // looked up again, the model's tree is handed over again, with the store's new files
    this.populated.delete(path)
    for (const [fileIno, state] of this.files) {
      if (state.path.startsWith(`${path}/`)) this.files.delete(fileIno)
    }
    if (ino === undefined) return
    const files = this.addon.evict(this.server, ino, this.inos.get('/by-cid') ?? 0, manifestCid)
    this.log.info({ mountpoint: this.mountpoint, manifestCid, files }, 'model evicted: its files are served through the view')
  }

  async unmount (): Promise<void> {
    this.unmounting ??= (async () => {
      for (const timer of this.timers) clearInterval(timer)
      this.stopArrivals()
      try {
        this.addon.unmount(this.mountpoint)
      } catch (err) {
        // already gone (unmounted by hand) is as good as unmounted
        if ((await mountedAt(this.mountpoint))?.fsType.startsWith('fuse') === true) throw err
      }
      // files still held open keep being served, but no longer keep the process alive
      this.addon.unref(this.server)
      this.log.info({ mountpoint: this.mountpoint }, 'unmounted')
    })()
    await this.unmounting
  }

  // ---- requests the server passes up ---------------------------------------------------------

  private dispatch (upcall: Upcall): void {
    if (this.unanswered.has(upcall.kind)) return
    switch (upcall.kind) {
      case UpcallKind.Lookup: this.answer(upcall, async () => { this.addon.replyEntry(this.server, upcall.token, upcall.unique, await this.lookup(upcall.ino, upcall.text)) }); break
      case UpcallKind.Opendir: this.answer(upcall, async () => { this.addon.replyDir(this.server, upcall.token, upcall.unique, await this.fs.readdir(this.pathOf(upcall.ino))) }); break
      case UpcallKind.Open: this.answer(upcall, async () => { await this.open(upcall) }); break
      case UpcallKind.Read: this.answer(upcall, async () => { await this.read(upcall) }); break
      case UpcallKind.ReadNotice: this.fs.observe(upcall.handle, upcall.offset, upcall.size); break
      case UpcallKind.Release: this.release(upcall.handle); break
      case UpcallKind.Opened: this.hold(upcall.ino); break
      case UpcallKind.Closed: this.unhold(upcall.ino); break
      case UpcallKind.Log: this.log[LOG_LEVELS[upcall.level] ?? 'info']({ mountpoint: this.mountpoint }, upcall.text); break
      default: this.log.warn({ kind: upcall.kind }, 'unknown request from the FUSE server')
    }
  }

  private answer (upcall: Upcall, work: () => Promise<void>): void {
    work().catch((err: unknown) => {
      const errno = -errnoOf(err)
      if (errno === 5) this.log.debug({ ino: upcall.ino, name: upcall.text, err: (err as Error).message }, 'request failed')
      this.addon.replyError(this.server, upcall.token, upcall.unique, errno)
    })
  }

  private pathOf (ino: number): string {
    const path = this.paths.get(ino)
    // an inode this process never handed out (a server restarted under a kernel that remembers)
    if (path === undefined) throw Object.assign(new Error(`unknown inode ${ino}`), { code: 'ERR_NOT_FOUND' })
    return path
  }

  private async lookup (parent: number, name: string): Promise<number> {
    const parentPath = this.pathOf(parent)
    const path = parentPath === '/' ? `/${name}` : `${parentPath}/${name}`
    const attributes = await this.fs.getattr(path)
    const ino = await this.setNode(parent, name, path, attributes)
    const parts = path.split('/')
    // a model's own directory: hand its whole tree to the server once
    if (parts[1] === 'by-cid' && parts.length === 3 && attributes.kind === 'directory') {
      let populating = this.populated.get(path)
      if (populating === undefined) {
        populating = this.populate(ino, path)
        populating.catch(() => { this.populated.delete(path) })
        this.populated.set(path, populating)
      }
      await populating
    }
    return ino
  }

  private inModel (path: string): boolean {
    return path.startsWith('/by-cid/') && path.split('/').length >= 3
  }

  private async setNode (parent: number, name: string, path: string, attributes: Attributes, known?: FileContent): Promise<number> {
    const timeout = this.inModel(path) ? this.cacheTimeout : this.nameTimeout
    const base = {
      mode: attributes.mode & 0o7777,
      uid: attributes.uid,
      gid: attributes.gid,
      mtime: Math.floor(attributes.mtime.getTime() / 1000),
      entryTimeout: timeout,
      attrTimeout: timeout
    }
    let init: NodeInit
    let content: FileContent | undefined
    if (attributes.kind === 'directory') {
      init = { ...base, kind: NodeKind.Directory, dynamic: !this.inModel(path) }
    } else if (attributes.kind === 'symlink') {
      init = { ...base, kind: NodeKind.Link, target: await this.fs.readlink(path) }
    } else {
      content = known ?? await this.fs.content(path)
      init = { ...base, kind: NodeKind.File, ...contentInit(content) }
    }
    const ino = this.addon.setNode(this.server, parent, name, init)
    this.paths.set(ino, path)
    this.inos.set(path, ino)
    if (content !== undefined) {
      // what setNode told the server; a file it knew already keeps what it was told of it
      const known = this.files.get(ino)
      if (known === undefined || known.key !== identityKey(content)) this.files.set(ino, { path, key: identityKey(content), ends: content.chunkEnds, present: new Uint8Array(content.present.length), complete: false })
      this.notePresence(ino, path, content)
    }
    return ino
  }

  /** Hands a model's tree to the server: every file's content looked up at once, as one per file would cost O(files) each. */
  private async populate (ino: number, path: string, contents?: Map<string, FileContent>, relative = ''): Promise<void> {
    contents ??= await this.fs.contents(path)
    const dir = relative === '' ? path : `${path}/${relative}`
    for (const name of await this.fs.readdir(dir)) {
      const child = `${dir}/${name}`
      const childRelative = relative === '' ? name : `${relative}/${name}`
      const attributes = await this.fs.getattr(child)
      const childIno = await this.setNode(this.inos.get(dir) ?? ino, name, child, attributes, contents.get(childRelative))
      if (attributes.kind === 'directory') await this.populate(childIno, path, contents, childRelative)
    }
  }

  /** Tells the server which store file holds a file's bytes, and which chunks arrived since it was last told. */
  private notePresence (ino: number, path: string, content: FileContent): void {
    const key = identityKey(content)
    let known = this.files.get(ino)
    if (known === undefined || known.key !== key) {
      // another store file (the model was evicted and added back): the server starts afresh
      this.addon.setContent(this.server, ino, contentInit(content))
      known = { path, key, ends: content.chunkEnds, present: new Uint8Array(content.present.length), complete: false }
      this.files.set(ino, known)
    }
    if (known.complete || key === '') return
    if (content.complete) {
      this.addon.setComplete(this.server, ino)
      known.complete = true
      return
    }
    for (const [offset, length] of presentRanges(content, known.present)) this.addon.markPresent(this.server, ino, offset, length)
    content.present.forEach((bit, i) => { if (bit === 1) known.present[i] = 1 })
  }

  /**
   * A chunk fetched through the view (a read, a prefetch) is in the store's file of `path`: the
   * server reads it there from now on, and a file now whole is opened in passthrough, with no
   * request to us. The file the server knows is the one the chunk went into unless the store
   * replaced it since, which the server finds out itself when it opens it.
   */
  private arrived ({ path, offset, length }: ChunkArrival): void {
    const ino = this.inos.get(path)
    const known = ino === undefined ? undefined : this.files.get(ino)
    if (ino === undefined || known === undefined || known.complete || known.key === '') return
    this.addon.markPresent(this.server, ino, offset, length)
    let index = 0
    while (index < known.ends.length && (known.ends[index] as number) <= offset) index++
    known.present[index] = 1
    if (known.present.every(bit => bit === 1)) {
      this.addon.setComplete(this.server, ino)
      known.complete = true
    }
  }

  /**
   * The server opened a file without us, the first open in its model (`unhold` comes, with the
   * model directory's inode, once the model has had no open file for the server's grace): the
   * model is held from eviction while any of its files is open, with one lease.
   */
  private hold (ino: number): void {
    const path = this.paths.get(ino)
    const model = path?.split('/').slice(0, 3).join('/')
    if (path === undefined || model === undefined) return
    const held = this.held.get(model)
    if (held !== undefined) {
      held.files++
      return
    }
    this.held.set(model, {
      files: 1,
      hold: this.fs.hold(path).catch((err: Error) => {
        this.log.debug({ path, err: err.message }, 'could not hold the model of an open file')
        return undefined
      })
    })
  }

  private unhold (ino: number): void {
    const model = this.paths.get(ino)?.split('/').slice(0, 3).join('/')
    const held = model === undefined ? undefined : this.held.get(model)
    if (model === undefined || held === undefined || --held.files > 0) return
    this.held.delete(model)
    void held.hold.then(h => { h?.release() })
  }

  private async open (upcall: Upcall): Promise<void> {
    const path = this.pathOf(upcall.ino)
    const handle = await this.fs.open(path, upcall.flags)
    if (!this.addon.replyOpen(this.server, upcall.token, upcall.unique, handle)) {
      // the opener gave up (interrupted): nobody will release this handle but us
      await this.fs.release(handle)
      return
    }
    this.forwarded.set(handle, { ino: upcall.ino, path })
    this.notePresence(upcall.ino, path, await this.fs.content(path))
  }

  private async read (upcall: Upcall): Promise<void> {
    // chunks that arrived since the server forwarded the read (it hears of each as it lands) may
    // cover the range by now: then the server answers from the store's file itself, and the view
    // only hears of the read. The store is not asked here: on a lazy read, hundreds of reads are
    // forwarded while their chunks land, and asking it for each (O(chunks)) cost more CPU than
    // the reads; chunks that came another way are found by the presence poll.
    if (this.addon.replyLocal(this.server, upcall.token, upcall.unique)) {
      this.fs.observe(upcall.handle, upcall.offset, upcall.size)
      return
    }
    const whole = this.spareBuffers.pop() ?? Buffer.allocUnsafe(Math.max(upcall.size, this.init.maxRead ?? DEFAULT_MAX_READ))
    const buffer = whole.length >= upcall.size ? whole.subarray(0, upcall.size) : Buffer.allocUnsafe(upcall.size)
    try {
      const bytes = await this.fs.read(upcall.handle, buffer, upcall.offset)
      // not marked present here: the view may have answered from a chunk's verified bytes while the
      // store was still writing them; the server hears of the chunk once it is in the file (`arrived`)
      this.addon.replyData(this.server, upcall.token, upcall.unique, bytes === buffer.length ? buffer : buffer.subarray(0, bytes))
    } finally {
      // the view has settled the read: nothing writes into the buffer any more
      if (this.spareBuffers.length < SPARE_READ_BUFFERS) this.spareBuffers.push(whole)
    }
  }

  private release (handle: number): void {
    const open = this.forwarded.get(handle)
    this.forwarded.delete(handle)
    this.fs.release(handle).catch((err: Error) => { this.log.debug({ handle, err: err.message }, 'release failed') })
    // a file that completed while open: the next open goes to the server alone, in passthrough
    if (open !== undefined && this.files.get(open.ino)?.complete !== true) {
      this.fs.content(open.path).then(content => { this.notePresence(open.ino, open.path, content) }, () => {})
    }
  }

  /** Chunks that prefetching brought in for open files, and files that became complete. */
  private async pollPresence (): Promise<void> {
    if (this.polling || this.forwarded.size === 0) return
    this.polling = true
    try {
      const inos = new Map<number, string>()
      for (const { ino, path } of this.forwarded.values()) inos.set(ino, path)
      for (const [ino, path] of inos) {
        if (this.files.get(ino)?.complete === true) continue
        try {
          this.notePresence(ino, path, await this.fs.content(path))
        } catch (err) {
          this.log.debug({ path, err: (err as Error).message }, 'presence check failed')
        }
      }
    } finally {
      this.polling = false
    }
  }

  private refreshStatfs (): void {
    const totals = this.fs.statfs()
    this.addon.setStatfs(this.server, totals.blocks, totals.files)
  }
}

/** Writes a tunable of the mount's backing device; a kernel that refuses only costs speed. */
async function tune (path: string, value: number, log: Logger): Promise<void> {
  try {
    await writeFile(path, String(value))
  } catch (err) {
    log.debug({ path, value, err: (err as Error).message }, 'could not tune the mount')
  }
}

/** Mounts `init.fs` at `init.mountpoint`; rejects with KernelFuseUnavailableError when this adapter cannot be used here. */
export async function mountFs (init: MountInit): Promise<Mount> {
  const log = (init.logger ?? silentLogger).child({ component: 'fuse' })
  const mountpoint = resolve(init.mountpoint)
  const check = await checkKernelFuse()
  if (!check.available) throw new KernelFuseUnavailableError(check.reason)
  for (const [name, value] of Object.entries({ cacheTimeoutSeconds: init.cacheTimeoutSeconds, nameTimeoutSeconds: init.nameTimeoutSeconds, threads: init.threads, maxRead: init.maxRead })) {
    if (value !== undefined && (!Number.isFinite(value) || value < 0)) throw new RangeError(`${name} must be a non-negative number, got ${String(value)}`)
  }
  const addon = loadAddon()
  await clearStaleMount(mountpoint, log, async path => { addon.unmount(path) })
  await mkdir(mountpoint, { recursive: true })
  let maxStackDepth = 1
  if (init.backingDir !== undefined) {
    const backing = await statfs(init.backingDir).catch(() => undefined)
    if (backing?.type === OVERLAYFS_MAGIC) maxStackDepth = 2
  }
  let mount: KernelMount
  try {
    mount = new KernelMount(mountpoint, init.fs, { ...init, maxStackDepth })
  } catch (err) {
    throw new MountFailedError(mountpoint, (err as Error).message, { cause: err })
  }
  const device = (await stat(mountpoint)).dev
  const minor = (device & 0xff) | ((device >> 12) & 0xfff00)
  const major = (device >> 8) & 0xfff
  const readAheadKb = Math.floor((init.maxRead ?? DEFAULT_MAX_READ) / 1024)
  await tune(`/sys/class/bdi/${major}:${minor}/read_ahead_kb`, readAheadKb, log)
  log.info({ mountpoint, adapter: 'kernel', device: `${major}:${minor}`, readAheadKb, maxStackDepth }, 'mounted')
  return mount
}
