/**
 * The FUSE view of a node's models: `@swarm/fs` answers, a FUSE adapter mounts, and this module
 * wires them to what the node has.
 *
 * - Adapters: `kernel` (`@swarm/fuse-kernel`: our own server on /dev/fuse; complete files in
 *   kernel passthrough, other reads on its threads) wherever it can mount, which needs
 *   CAP_SYS_ADMIN; `fuse-native` (libfuse 2 through fusermount) otherwise. `auto` (the default)
 *   picks the first that can mount here and logs which and why.
 *
 * - In the agent (`swarm agent --mount DIR`, or SWARM_MOUNT): reads that need a chunk get it
 *   through the agent's fetcher with the sources a pull uses (`pull-peers.ts`), from peers whose
 *   bitfields say they hold it (a few, in random order, to spread the load; never a banned one),
 *   then the origin. A read is one chunk wanted now, not a pull: it does not wait for the
 *   pullers to settle nor take turns by ownership, so it goes to the fetcher directly rather than
 *   through a `PullSession`; the two share one fetch when they want the same chunk at once. A peer whose bytes fail
 *   verification is scored by the agent's fetcher, as in a pull. What arrives is counted in the agent's metrics
 *   and announced to peers (`have`), as a pull's chunks are. A name not held resolves at the
 *   origin; a manifest not held comes from peers or the origin (verified against its CID either
 *   way), is added to the store without pulling its files, and is announced.
 * - Alone (`swarm mount DIR`, no agent on this data directory): the same view over the store with
 *   the origin as the only source. Manifests not held come through `@swarm/pull`'s resolver
 *   either way, as a pull's do. Its fetcher lends the view each chunk's verified bytes (`landing`),
 *   so a read waiting for a chunk is answered from them while the store writes, syncs and
 *   journals them.
 *
 * The mount goes first when the process stops, so no reader waits on a store that is closing.
 */

import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseByteSize } from '@swarm/config'
import { fetcher as createFetcher, originSource } from '@swarm/fetcher'
import { DEFAULT_READ_TIMEOUT_MS, modelFs } from '@swarm/fs'
import { checkKernelFuse, mountFs as mountKernelFs } from '@swarm/fuse-kernel'
import { READ_TIMEOUT_MARGIN_MS, checkFuse, mountFs as mountFuseNative } from '@swarm/fuse-native'
import { hasBit, NotFoundError, uniqueChunks } from '@swarm/interface'
import { resolveManifest } from '@swarm/pull'
import { z } from 'zod'
import { agentSources } from './pull-peers.js'
import type { Agent } from './agent.js'
import type { Config } from '@swarm/config'
import type { ChunkFetcher, ModelFs, ModelResolver } from '@swarm/fs'
import type { NativeStats } from '@swarm/fuse-kernel'
import type { AbortOptions, ChunkRef, ChunkSource, CidString, Logger, Origin, RefEntry } from '@swarm/interface'
import type { Store } from '@swarm/store'

export interface MountOptions {
  /** where the view is mounted; created when missing */
  mountpoint: string
  /** the most a sequential reader's read-ahead grows to (default 256 MiB) */
  readAheadBytes?: number
  /** chunks prefetched at once (default 16) */
  prefetchConcurrency?: number
  /** a read waits at most this long for its chunks (default 60 s) */
  readTimeoutMs?: number
  /** which FUSE adapter mounts (default auto: kernel where it can mount, else fuse-native) */
  adapter?: FuseAdapter
  /** kernel adapter: open complete files in passthrough (default true) */
  passthrough?: boolean
  /** kernel adapter: answer reads from the store's file by splicing it to the kernel (default true) */
  splice?: boolean
  /** kernel adapter: its threads drop CAP_SYS_ADMIN once mounted (passthrough is then refused) */
  dropSysAdmin?: boolean
}

export type FuseAdapter = 'auto' | 'kernel' | 'fuse-native'

/** A mounted view; `close` unmounts it and stops its prefetching. */
export interface ModelMount {
  readonly mountpoint: string
  readonly view: ModelFs
  /** the adapter that mounted it */
  readonly adapter: 'kernel' | 'fuse-native'
  /** the kernel adapter's request counts (undefined with fuse-native) */
  fuseStats(): NativeStats | undefined
  /** the store evicted a model (its onEvict): the view and the adapter let go of its files */
  evicted(manifestCid: CidString): void
  close(): Promise<void>
}

/**
 * The view's settings as `@swarm/config` validated them (flags, else SWARM_MOUNT_* env, else the
 * file's `mount.*`); undefined when no mount point is given.
 */
export function mountOptionsFrom (settings: Config['mount']): MountOptions | undefined {
  if (settings.dir === undefined) return undefined
  return {
    mountpoint: resolve(settings.dir),
    readAheadBytes: settings.readAhead,
    prefetchConcurrency: settings.prefetch,
    readTimeoutMs: settings.readTimeoutMs,
    adapter: settings.adapter,
    passthrough: settings.passthrough,
    splice: settings.splice,
    dropSysAdmin: settings.dropSysAdmin
  }
}

interface ViewParts {
  store: Store
  fetcher: ChunkFetcher
  resolver?: ModelResolver
  sourcesFor?(manifestCid: CidString, chunk: ChunkRef): ChunkSource[] | undefined
  logger: Logger
}

async function mountView (parts: ViewParts, options: MountOptions): Promise<ModelMount> {
  const view = modelFs({
    store: parts.store,
    fetcher: parts.fetcher,
    resolver: parts.resolver,
    sourcesFor: parts.sourcesFor,
    readAhead: { maxBytes: options.readAheadBytes, concurrency: options.prefetchConcurrency },
    readTimeoutMs: options.readTimeoutMs,
    logger: parts.logger
  })
  let mount: { mountpoint: string, unmount(): Promise<void>, stats?(): NativeStats, evicted?(manifestCid: string): void }
  let adapter: 'kernel' | 'fuse-native'
  try {
    adapter = await chooseAdapter(options.adapter ?? 'auto', parts.logger)
    mount = adapter === 'kernel'
      ? await mountKernelFs({
        fs: view,
        mountpoint: options.mountpoint,
        backingDir: parts.store.dir,
        passthrough: options.passthrough,
        splice: options.splice,
        dropSysAdmin: options.dropSysAdmin,
        // the view answers a read first, with EIO and the chunk it missed named in the log
        requestTimeoutMs: (options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS) + READ_TIMEOUT_MARGIN_MS,
        logger: parts.logger
      })
      : await mountFuseNative({
        fs: view,
        mountpoint: options.mountpoint,
        // the view answers a read first, with EIO, when its chunks cannot be had in time
        readOpTimeoutMs: (options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS) + READ_TIMEOUT_MARGIN_MS,
        logger: parts.logger
      })
  } catch (err) {
    await view.close()
    throw err
  }
  let closing: Promise<void> | undefined
  return {
    mountpoint: mount.mountpoint,
    view,
    adapter,
    fuseStats: () => mount.stats?.(),
    evicted (manifestCid) {
      view.evicted(manifestCid)
      mount.evicted?.(manifestCid)
    },
    async close () {
      closing ??= (async () => {
        try {
          await mount.unmount()
        } finally {
          await view.close()
        }
      })()
      await closing
    }
  }
}

/** The adapter to mount with: the one asked for, or under `auto` the first that can mount here. */
async function chooseAdapter (wanted: FuseAdapter, log: Logger): Promise<'kernel' | 'fuse-native'> {
  if (wanted !== 'auto') return wanted
  const kernel = await checkKernelFuse()
  if (kernel.available) return 'kernel'
  log.info({ reason: kernel.reason }, 'mounting with fuse-native: the kernel adapter cannot mount here')
  return 'fuse-native'
}

const MAX_LISTED_REFS = 10_000
/** peers asked for one chunk before the origin */
const PEERS_PER_CHUNK = 3

function originResolver (origin: Origin | undefined): Pick<ModelResolver, 'resolveRef' | 'listRefs'> {
  return {
    async resolveRef (ref, options) {
      if (origin == null) throw new NotFoundError('no origin is configured to resolve names')
      return await origin.resolveRef(ref, options)
    },
    async listRefs (options) {
      const refs: RefEntry[] = []
      if (origin == null) return refs
      for await (const entry of origin.listRefs(options)) {
        refs.push(entry)
        if (refs.length >= MAX_LISTED_REFS) break
      }
      return refs
    }
  }
}

/** The agent's view: peers first, then the origin; arrivals counted and announced. */
export async function mountAgentView (agent: Agent, options: MountOptions): Promise<ModelMount> {
  // chunk CID → index in a manifest's bitfield, for the manifests the view has read from
  const indexes = new Map<CidString, Map<CidString, number>>()
  const indexOf = (manifestCid: CidString): Map<CidString, number> | undefined => {
    let index = indexes.get(manifestCid)
    if (index === undefined) {
      const manifest = agent.store.getManifest(manifestCid)
      if (manifest == null) return undefined
      index = new Map(uniqueChunks(manifest).map((chunk, i) => [chunk.cid, i]))
      indexes.set(manifestCid, index)
    }
    return index
  }
  const fetcher: ChunkFetcher = {
    async fetch (request, fetchOptions) {
      const result = await agent.fetcher.fetch(request, fetchOptions)
      if (result.kind !== 'local') {
        agent.metrics.countBytes(result.kind, result.bytes)
        for (const [manifestCid, index] of indexes) {
          const at = index.get(request.cid)
          if (at !== undefined && agent.store.getManifest(manifestCid) != null) agent.node.control.have(manifestCid, [at])
        }
      }
      return result
    }
  }
  const sources = agentSources(agent.node, agent.client, agent.origin)
  return await mountView({
    store: agent.store,
    fetcher,
    logger: agent.log,
    sourcesFor (manifestCid, chunk) {
      const chosen: ChunkSource[] = []
      const at = indexOf(manifestCid)?.get(chunk.cid)
      if (at !== undefined) {
        const holders = agent.node.control.peersFor(manifestCid).filter(p => p.dataAddress != null && at < p.bitfield.length * 8 && hasBit(p.bitfield, at) && !agent.node.peerScores.isBanned(p.peerId))
        for (let i = holders.length - 1; i > 0; i--) {
          const j = Math.floor(Math.random() * (i + 1))
          ;[holders[i], holders[j]] = [holders[j] as typeof holders[number], holders[i] as typeof holders[number]]
        }
        for (const peer of holders.slice(0, PEERS_PER_CHUNK)) {
          const source = sources.peer(peer.peerId)
          if (source != null) chosen.push(source)
        }
      }
      if (sources.origin != null) chosen.push(sources.origin)
      return chosen
    },
    resolver: {
      ...originResolver(agent.origin),
      async addManifest (manifestCid, addOptions: AbortOptions & { ref?: string } = {}) {
        const manifest = await agent.fetchManifest(manifestCid, addOptions)
        await agent.store.addManifest(manifestCid, manifest, addOptions)
        agent.announce(manifestCid)
      }
    }
  }, options)
}

/** The view without an agent: the store, with the origin as the only source. */
export async function mountStoreView (parts: { store: Store, origin?: Origin, logger: Logger }, options: MountOptions): Promise<ModelMount> {
  const { store, origin } = parts
  const sources = origin != null ? [originSource(origin)] : []
  let view: ModelFs | undefined
  const mount = await mountView({
    store,
    // reads take a chunk's verified bytes from memory while the store writes and syncs them
    fetcher: createFetcher({ store, sources, landing: (cid, bytes) => view?.landing(cid, bytes), logger: parts.logger }),
    logger: parts.logger,
    sourcesFor: () => sources,
    resolver: {
      ...originResolver(origin),
      async addManifest (manifestCid, addOptions: AbortOptions & { ref?: string } = {}) {
        if (origin == null) throw new NotFoundError(`model ${manifestCid} is not held and no origin is configured`)
        const manifest = await resolveManifest(manifestCid, { store, origin }, addOptions)
        await store.addManifest(manifestCid, manifest, addOptions)
      }
    }
  }, options)
  view = mount.view
  return mount
}

export interface DemoMountOptions {
  /** path of the `swarm` CLI (dist/cli.js) */
  cli: string
  /** environment for `swarm mount`: origin and data directory at least */
  env: Record<string, string>
  /** model name (optionally `name@tag`) as it appears at the top of the mount */
  name: string
  /** files of the model to read through the mount, with their SHA-256 when known */
  files: string[] | Record<string, string>
  say(line: string): void
}

export interface DemoMountResult {
  /** why nothing was mounted, when FUSE is not available here */
  skipped?: string
  bytes?: number
  seconds?: number
}

/**
 * For the demo: mounts the view with `swarm mount` (when FUSE is available here; otherwise says
 * why and returns), reads the model's files through the mount, checks their hashes when given,
 * prints the rate, and unmounts.
 */
export async function demoMount (options: DemoMountOptions): Promise<DemoMountResult> {
  const fuse = (await checkKernelFuse()).available ? { available: true as const } : await checkFuse()
  if (!fuse.available) {
    options.say(`mount: skipped (${fuse.reason})`)
    return { skipped: fuse.reason }
  }
  const mountpoint = await mkdtemp(join(tmpdir(), 'swarm-mount-'))
  const child = spawn(process.execPath, [options.cli, 'mount', mountpoint, '--json'], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
  try {
    await new Promise<void>((resolve, reject) => {
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d
        if (out.includes('"ready"')) resolve()
      })
      void exited.then(code => { reject(new Error(`swarm mount exited with ${String(code)} before it was ready`)) })
    })
    const files = Array.isArray(options.files) ? Object.fromEntries(options.files.map(f => [f, ''])) : options.files
    let bytes = 0
    const started = performance.now()
    for (const [file, expected] of Object.entries(files)) {
      const hash = createHash('sha256')
      for await (const piece of createReadStream(join(mountpoint, options.name, file), { highWaterMark: 1024 * 1024 })) {
        hash.update(piece as Buffer)
        bytes += (piece as Buffer).length
      }
      if (expected !== '' && hash.digest('hex') !== expected) throw new Error(`${file} read through the mount differs from the original`)
    }
    const seconds = (performance.now() - started) / 1000
    options.say(`mount: read ${Object.keys(files).length} files (${(bytes / 1024 / 1024).toFixed(0)} MiB) through ${join(mountpoint, options.name)} in ${seconds.toFixed(2)} s = ${(bytes / 1e6 / seconds).toFixed(0)} MB/s${Array.isArray(options.files) ? '' : ', byte-identical'}`)
    return { bytes, seconds }
  } finally {
    if (child.exitCode == null) child.kill('SIGTERM')
    await exited
    await rm(mountpoint, { recursive: true, force: true }).catch(() => {})
  }
}
