#!/usr/bin/env node
/**
 * `swarm`: publish, pull, inspect and maintain models. Every command takes the same
 * configuration layers (flags > SWARM_* env > YAML file > defaults) and honours `--json`.
 */

import { existsSync } from 'node:fs'
import { rm, writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Command, Option } from 'commander'
import { loadConfig } from '@swarm/config'
import { formatRef, isManifestCid, parseRef } from '@swarm/manifest'
import { createStore, verifyModel } from '@swarm/store'
import { describeError, EXIT } from './exit-codes.js'
import { formatBytes, outputMode, reporter } from './progress.js'
import { pullModel, placeFiles, resolveManifestCid } from './pull.js'
import { pushDirectory, PushSourceError } from './push.js'
import { detectHfSnapshot, findHfSnapshot, hfMetadata } from './hf-cache.js'
import type { HfSnapshot } from './hf-cache.js'
import { agentPull, agentStatus } from './agent/control-api.js'
import { createByteWorkers, createLogger, createOrigin } from './runtime.js'
import { registerFleetCommands } from './commands/fleet.js'
import type { Config, ConfigLayer } from '@swarm/config'
import { redactDeep, redactSecrets } from '@swarm/interface'
import type { ChunkStore, GcReport, Logger, TransferProgress } from '@swarm/interface'
import type { Store } from '@swarm/store'

interface GlobalOptions {
  origin?: string
  dataDir?: string
  config?: string
  logLevel?: string
  concurrency?: string
  cacheSize?: string
  chunkSize?: string
  workers?: string
  json?: boolean
}

export class ModelNotHeldError extends Error {
  static override name = 'ModelNotHeldError'
  readonly code = 'ERR_MODEL_NOT_HELD'
  constructor (target: string) {
    super(`${target} is not held locally (swarm ls shows what is)`)
    this.name = 'ModelNotHeldError'
  }
}

export class VerifyFailedError extends Error {
  static override name = 'VerifyFailedError'
  readonly code = 'ERR_VERIFY_FAILED'
  constructor (message: string) {
    super(message)
    this.name = 'VerifyFailedError'
  }
}

export class KeyFileExistsError extends Error {
  static override name = 'KeyFileExistsError'
  readonly code = 'ERR_KEY_FILE_EXISTS'
  constructor (path: string) {
    super(`${path} exists; a swarm key is never overwritten (remove it first if you mean to replace the swarm's key)`)
    this.name = 'KeyFileExistsError'
  }
}

const controller = new AbortController()

function globals (command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>()
}

async function configFrom (options: GlobalOptions, agent?: Record<string, unknown>): Promise<Config> {
  const flags: ConfigLayer = {}
  if (agent != null && Object.keys(agent).length > 0) flags.agent = agent
  if (options.origin != null) flags.origin = options.origin
  if (options.dataDir != null) flags.dataDir = options.dataDir
  if (options.logLevel != null) flags.logLevel = options.logLevel
  if (options.concurrency != null) flags.concurrency = options.concurrency
  if (options.cacheSize != null) flags.cacheSize = options.cacheSize
  if (options.chunkSize != null) flags.chunkSize = options.chunkSize
  if (options.workers != null) flags.agent = { ...(flags.agent as Record<string, unknown> | undefined), workers: options.workers }
  return await loadConfig({ flags, file: options.config })
}

function logLevelFor (config: Config, options: GlobalOptions): Config['logLevel'] {
  // keep stderr for the progress bar unless asked otherwise
  return options.logLevel != null ? config.logLevel : (config.logLevel === 'info' ? 'warn' : config.logLevel)
}

function emit (options: GlobalOptions, result: Record<string, unknown>, human: string): void {
  if (options.json === true) process.stdout.write(JSON.stringify(redactDeep({ event: 'done', ...result })) + '\n')
  else process.stdout.write(redactSecrets(human) + '\n')
}

async function withStore<T> (config: Config, logger: Logger, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await createStore({ dir: config.dataDir, budgetBytes: config.cacheSize > 0 ? config.cacheSize : undefined, logger })
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

function findHeld (store: ChunkStore, target: string): string {
  if (isManifestCid(target) && store.getManifest(target) != null) return target
  const ref = formatRef(parseRef(target))
  const held = store.models().filter(m => m.refs.includes(ref)).sort((a, b) => b.lastUsed - a.lastUsed)[0]
  if (held == null) throw new ModelNotHeldError(target)
  return held.manifestCid
}

export function program (): Command {
  const cmd = new Command('swarm')
    .description('Peer-to-peer model-weight distribution: peers first, object storage after')
    .option('--origin <url>', 'where the models live: s3://bucket/prefix, file:///dir, az://account/container/prefix or https://host/prefix (read-only) (SWARM_ORIGIN)')
    .option('--data-dir <dir>', 'local store directory (SWARM_DATA_DIR)')
    .option('--config <file>', 'YAML config file (SWARM_CONFIG; default /etc/swarm/config.yaml)')
    .option('--concurrency <n>', 'chunks in flight (SWARM_CONCURRENCY)')
    .option('--workers <n>', 'threads that fetch, verify and write chunks; 0: all in the main thread; default one per core (SWARM_WORKERS)')
    .addOption(new Option('--log-level <level>', 'log level (SWARM_LOG_LEVEL)').choices(['trace', 'debug', 'info', 'warn', 'error', 'silent']))
    .option('--json', 'machine-readable output: one JSON object per line on stdout')
    .showHelpAfterError()
    .exitOverride()

  cmd.command('push')
    .description('publish a model directory: chunk, upload what the origin lacks, write the manifest, move the tag')
    .argument('[dir]', 'model directory (a Hugging Face cache snapshot is recognized and its revision recorded)')
    .option('--name <name[:tag]>', 'name and tag to publish under (tag defaults to latest; with --hf-cache: the repository, lowercased)')
    .option('--hf-cache <org/name[@rev]>', 'push a model from the Hugging Face cache (HF_HUB_CACHE, HF_HOME; revision default main)')
    .option('--chunk-size <size>', 'target chunk size, 1MiB–64MiB (SWARM_CHUNK_SIZE)')
    .action(async (dirArg: string | undefined, local: { name?: string, hfCache?: string }, command: Command) => {
      const options = globals(command)
      if ((dirArg == null) === (local.hfCache == null)) throw new PushSourceError('push takes a directory or --hf-cache org/name[@rev], one of the two')
      const snapshot = local.hfCache != null ? await findHfSnapshot(local.hfCache) : await detectHfSnapshot(dirArg as string)
      const dir = snapshot?.dir ?? dirArg as string
      if (local.name == null && local.hfCache == null) throw new PushSourceError('push needs --name <name[:tag]>')
      const ref = parseRef(local.name ?? (snapshot as HfSnapshot).repo.toLowerCase())
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      const origin = createOrigin(config, logger)
      const progress = reporter(outputMode(options.json === true), `push ${formatRef(ref)}`)
      try {
        const result = await pushDirectory(dir, {
          origin, ref, chunkSize: config.chunkSize, concurrency: config.concurrency, logger, signal: controller.signal,
          ...(snapshot != null ? { metadata: hfMetadata(snapshot), linksWithin: snapshot.blobsDir } : {}),
          onProgress: p => { progress.update({ doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: { uploadedChunks: p.uploadedChunks, skippedChunks: p.skippedChunks } }) }
        })
        progress.stop()
        emit(options, { command: 'push', ...result },
          `pushed ${result.ref} = ${result.manifestCid}: ${result.files} files, ${formatBytes(result.totalBytes)}; uploaded ${result.uploadedChunks} chunks (${formatBytes(result.uploadedBytes)}), ${result.skippedChunks} already at the origin${snapshot != null ? `; ${snapshot.repo} at ${snapshot.revision}` : ''}`)
      } finally {
        progress.stop()
        await origin.close()
      }
    })

  cmd.command('pull')
    .description('fetch a model into the local store, through the local agent when one runs (peers first, origin after)')
    .argument('<target>', 'name[:tag], or a manifest CID with --cid')
    .option('--to <dir>', 'also place the files in this directory')
    .option('--cid', 'the target is a manifest CID (verified against its bytes; peers may serve it)')
    .option('--pin', 'pin the model so gc never evicts it')
    .option('--no-agent', 'pull straight from the origin in this process, without the local agent')
    .action(async (target: string, local: { to?: string, cid?: boolean, pin?: boolean, agent: boolean }, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      const ref = local.cid === true ? undefined : parseRef(target)
      const label = ref != null ? formatRef(ref) : target
      const progress = reporter(outputMode(options.json === true), `pull ${label}`)
      try {
        if (local.agent && existsSync(config.agent.socket)) {
          const result = await agentPull(config.agent.socket, { target, cid: local.cid === true, pin: local.pin === true, to: local.to != null ? resolve(local.to) : undefined }, event => {
            progress.update({ doneBytes: Number(event.doneBytes), totalBytes: Number(event.totalBytes), detail: { bytesBySource: event.bytesBySource } })
          })
          progress.stop()
          const bySource = result.progress as TransferProgress
          const seconds = Number(result.durationMs) / 1000
          emit(options, { command: 'pull', via: 'agent', ...result, ...bySource, peakRssBytes: process.resourceUsage().maxRSS * 1024, to: local.to },
            `pulled ${label} = ${String(result.manifestCid)} through the agent: ${formatBytes(bySource.totalBytes)} in ${seconds.toFixed(1)} s; ${formatBytes(bySource.bytesBySource.peer)} from peers, ${formatBytes(bySource.bytesBySource.origin)} from the origin${local.to != null ? `; placed in ${local.to}` : ''}`)
          return
        }
        const origin = createOrigin(config, logger)
        try {
          await withStore(config, logger, async store => {
            const manifestCid = ref != null ? await resolveManifestCid(origin, ref, { signal: controller.signal }) : target
            const workers = createByteWorkers(config, undefined, logger)
            try {
              const summary = await pullModel({
                store, origin, manifestCid, ref: ref != null ? formatRef(ref) : undefined, concurrency: config.concurrency, logger, signal: controller.signal, workers: workers?.chunks,
                onProgress: p => { progress.update({ doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: { bytesBySource: p.bytesBySource } }) }
              })
              progress.stop()
              if (local.pin === true) await store.pin(manifestCid, true)
              if (local.to != null) await placeFiles(store, manifestCid, local.to)
              if (config.cacheSize > 0) await store.gc({ budgetBytes: config.cacheSize })
              const seconds = summary.durationMs / 1000
              const fetched = summary.progress.bytesBySource.origin + summary.progress.bytesBySource.peer
              emit(options, { command: 'pull', via: 'origin', manifestCid, ref: ref != null ? formatRef(ref) : undefined, ...summary.progress, durationMs: Math.round(summary.durationMs), peakRssBytes: process.resourceUsage().maxRSS * 1024, to: local.to },
                `pulled ${label} = ${manifestCid}: ${formatBytes(summary.progress.totalBytes)}; fetched ${formatBytes(fetched)} in ${seconds.toFixed(1)} s (${formatBytes(fetched / Math.max(seconds, 1e-3))}/s), ${formatBytes(summary.progress.bytesBySource.local)} copied locally${local.to != null ? `; placed in ${local.to}` : ''}`)
            } catch (err) {
              const { message, exitCode, code } = describeError(err, store.getManifest(manifestCid))
              throw Object.assign(new Error(message), { exitCode, code })
            } finally {
              await workers?.close()
            }
          })
        } finally {
          await origin.close()
        }
      } finally {
        progress.stop()
      }
    })

  cmd.command('agent')
    .description('run the node agent: store, libp2p node, peer data server, control socket, metrics')
    .option('--listen <multiaddrs>', 'libp2p listen addresses, comma-separated (SWARM_LISTEN)')
    .option('--bootstrap <peers>', 'bootstrap multiaddrs or dns:<name>:<port>, comma-separated (SWARM_BOOTSTRAP)')
    .option('--swarm-key <file>', 'pre-shared swarm key file; only nodes with the same key connect (SWARM_SWARM_KEY_FILE); required unless --insecure-open-swarm')
    .option('--insecure-open-swarm', 'run without a swarm key: any host that reaches the ports may join and download every model held (SWARM_INSECURE_OPEN_SWARM)')
    .option('--data-port <port>', 'TLS data port, 0 for any (SWARM_DATA_PORT)')
    .option('--data-host <host>', 'address the data server binds and announces (SWARM_DATA_HOST)')
    .option('--data-connections <n>', 'data connections in all, more are refused at accept, default 512 (SWARM_DATA_CONNECTIONS)')
    .option('--data-connections-per-peer <n>', 'data connections of one peer, more are refused, default 8 (SWARM_DATA_CONNECTIONS_PER_PEER)')
    .option('--data-write-timeout <ms>', 'close a data connection whose peer takes no response bytes for this long, default 30000 (SWARM_DATA_WRITE_TIMEOUT_MS)')
    .option('--data-idle-timeout <ms>', 'close a data connection idle for this long, default 120000 (SWARM_DATA_IDLE_TIMEOUT_MS)')
    .option('--data-handshake-timeout <ms>', 'close a data connection not authenticated this long after accept, default 10000 (SWARM_DATA_HANDSHAKE_TIMEOUT_MS)')
    .option('--metrics-port <port>', 'Prometheus /metrics, /healthz, /readyz port, 0 for any (SWARM_METRICS_PORT)')
    .option('--socket <path>', 'control socket (SWARM_SOCKET)')
    .option('--mdns', 'also find peers on the local link with mDNS (SWARM_MDNS)')
    .option('--label <key=value>', 'a label of this node, for preheat and wait selectors; repeatable (SWARM_LABELS=k=v,k2=v2)', (value: string, prior: string[]) => [...prior, value], [] as string[])
    .option('--peer-ban-seconds <seconds>', 'how long a misbehaving peer is first banned, 0 never (SWARM_PEER_BAN_SECONDS)')
    .option('--mount <dir>', 'also mount the read-only view of the models there (SWARM_MOUNT)')
    .option('--mount-read-ahead <size>', 'largest read-ahead of a sequential reader of the mount, default 256MiB (SWARM_MOUNT_READ_AHEAD)')
    .option('--mount-adapter <name>', 'FUSE adapter: auto, kernel (own server, passthrough) or fuse-native (SWARM_MOUNT_ADAPTER)')
    .action(async (local: { listen?: string, bootstrap?: string, swarmKey?: string, insecureOpenSwarm?: boolean, dataPort?: string, dataHost?: string, dataConnections?: string, dataConnectionsPerPeer?: string, dataWriteTimeout?: string, dataIdleTimeout?: string, dataHandshakeTimeout?: string, metricsPort?: string, socket?: string, mdns?: boolean, peerBanSeconds?: string, mount?: string, mountReadAhead?: string, mountAdapter?: string, label: string[] }, command: Command) => {
      const options = globals(command)
      const agentFlags: Record<string, unknown> = {}
      if (local.listen != null) agentFlags.listen = local.listen
      if (local.bootstrap != null) agentFlags.bootstrap = local.bootstrap
      if (local.swarmKey != null) agentFlags.swarmKeyFile = local.swarmKey
      if (local.insecureOpenSwarm === true) agentFlags.insecureOpenSwarm = true
      if (local.dataPort != null) agentFlags.dataPort = local.dataPort
      if (local.dataHost != null) agentFlags.dataHost = local.dataHost
      if (local.dataConnections != null) agentFlags.dataConnections = local.dataConnections
      if (local.dataConnectionsPerPeer != null) agentFlags.dataConnectionsPerPeer = local.dataConnectionsPerPeer
      if (local.dataWriteTimeout != null) agentFlags.dataWriteTimeoutMs = local.dataWriteTimeout
      if (local.dataIdleTimeout != null) agentFlags.dataIdleTimeoutMs = local.dataIdleTimeout
      if (local.dataHandshakeTimeout != null) agentFlags.dataHandshakeTimeoutMs = local.dataHandshakeTimeout
      if (local.metricsPort != null) agentFlags.metricsPort = local.metricsPort
      if (local.socket != null) agentFlags.socket = local.socket
      if (local.mdns === true) agentFlags.mdns = true
      if (local.peerBanSeconds != null) agentFlags.peerBanSeconds = local.peerBanSeconds
      if (local.label.length > 0) agentFlags.labels = local.label
      const config = await configFrom(options, agentFlags)
      const logger = createLogger(config.logLevel)
      const origin = config.origin !== '' ? createOrigin(config, logger) : undefined
      const { Agent } = await import('./agent/agent.js')
      const { serveControlApi } = await import('./agent/control-api.js')
      const { mountOptionsFrom } = await import('./agent/mount.js')
      const mount = mountOptionsFrom({ mount: local.mount, readAhead: local.mountReadAhead, adapter: local.mountAdapter })
      const agent = await Agent.start({ config, origin, logger, mount })
      const api = await serveControlApi(agent, config.agent.socket, err => describeError(err))
      const ready = { event: 'ready', peerId: agent.node.peerId, multiaddrs: agent.node.multiaddrs(), dataPort: agent.dataPort, metricsPort: agent.metricsPort, socket: config.agent.socket, mount: agent.mount?.mountpoint ?? null, mountAdapter: agent.mount?.adapter ?? null }
      process.stdout.write((options.json === true ? JSON.stringify(ready) : `swarm agent ${agent.node.peerId} ready: libp2p ${agent.node.multiaddrs().join(' ')}, data port ${agent.dataPort}, metrics port ${agent.metricsPort}, socket ${config.agent.socket}${agent.mount != null ? `, models mounted at ${agent.mount.mountpoint}` : ''}`) + '\n')
      await new Promise<void>(resolve => { controller.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
      logger.info('shutting down')
      api.close()
      await agent.stop()
      await rm(config.agent.socket, { force: true })
    })

  cmd.command('mount')
    .description('mount the read-only view of the models at <dir> without an agent (origin only; with an agent: swarm agent --mount); files are fetched as they are read')
    .argument('<dir>', 'mount point, created when missing')
    .option('--read-ahead <size>', 'largest read-ahead of a sequential reader, default 256MiB (SWARM_MOUNT_READ_AHEAD)')
    .option('--adapter <name>', 'FUSE adapter: auto, kernel (own server, passthrough) or fuse-native (SWARM_MOUNT_ADAPTER)')
    .action(async (dir: string, local: { readAhead?: string, adapter?: string }, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      const { mountOptionsFrom, mountStoreView } = await import('./agent/mount.js')
      const settings = mountOptionsFrom({ mount: dir, readAhead: local.readAhead, adapter: local.adapter })
      if (settings == null) throw new Error('no mount point given')
      const origin = config.origin !== '' ? createOrigin(config, logger) : undefined
      try {
        await withStore(config, logger, async store => {
          const mount = await mountStoreView({ store, origin, logger }, settings)
          try {
            const ready = { event: 'ready', command: 'mount', mountpoint: mount.mountpoint, adapter: mount.adapter, dataDir: config.dataDir }
            process.stdout.write((options.json === true ? JSON.stringify(ready) : `swarm mount: models of ${config.dataDir} mounted read-only at ${mount.mountpoint} (${mount.adapter} adapter); stop with Ctrl-C`) + '\n')
            await new Promise<void>(resolve => {
              if (controller.signal.aborted) resolve()
              controller.signal.addEventListener('abort', () => { resolve() }, { once: true })
            })
          } finally {
            await mount.close()
          }
          const stats = mount.view.stats()
          emit(options, { command: 'mount', mountpoint: mount.mountpoint, adapter: mount.adapter, ...stats, fuse: mount.fuseStats() ?? null },
            `unmounted ${mount.mountpoint}: ${stats.reads} reads, ${formatBytes(stats.bytesRead)}; ${stats.chunksFetched} chunks fetched for reads, ${stats.prefetch.chunks} prefetched`)
        })
      } finally {
        await origin?.close()
      }
    })

  cmd.command('keygen')
    .description('write a new swarm key (mode 0600); give the same file to every agent of the swarm with --swarm-key')
    .argument('<file>', 'where to write it; an existing file is never overwritten')
    .action(async (file: string, _local: unknown, command: Command) => {
      const options = globals(command)
      const { generateSwarmKey } = await import('@swarm/p2p')
      const path = resolve(file)
      try {
        await writeFile(path, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileExistsError(path)
        throw err
      }
      emit(options, { command: 'keygen', file: path }, `swarm key written to ${path}; every agent of the swarm needs this same file (--swarm-key ${path})`)
    })

  cmd.command('status')
    .description('what the local agent is doing: peers, models held, transfers in flight and their rates')
    .action(async (_local: unknown, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const status = await agentStatus(config.agent.socket)
      if (options.json === true) {
        process.stdout.write(JSON.stringify({ event: 'done', command: 'status', ...status }) + '\n')
        return
      }
      const models = status.models as Array<{ refs: string[], manifestCid: string, totalBytes: number, presentBytes: number, pinned: boolean }>
      const transfers = status.transfers as Array<{ manifestCid: string, ref?: string, progress: TransferProgress, bytesPerSecond: number }>
      const lines = [
        `agent ${String(status.peerId)}`,
        `  origin: ${String(status.origin ?? '(none)')}`,
        `  listening: ${(status.multiaddrs as string[]).join(' ')}; data port ${String(status.dataPort)}; metrics port ${String(status.metricsPort)}`,
        `  peers: ${(status.peers as string[]).length}`,
        `  models held: ${models.length}`,
        ...models.map(m => `    ${(m.refs.join(',') || '(no name)').padEnd(32)} ${m.manifestCid} ${formatBytes(m.presentBytes)}/${formatBytes(m.totalBytes)}${m.pinned ? ' pinned' : ''}`),
        `  transfers: ${transfers.length}`,
        ...transfers.map(t => `    ${t.ref ?? t.manifestCid}: ${formatBytes(t.progress.doneBytes)}/${formatBytes(t.progress.totalBytes)} at ${formatBytes(t.bytesPerSecond)}/s (peers ${formatBytes(t.progress.bytesBySource.peer)}, origin ${formatBytes(t.progress.bytesBySource.origin)})`)
      ]
      process.stdout.write(lines.join('\n') + '\n')
    })

  cmd.command('ls')
    .description('list tags at the origin and models held locally')
    .option('--local', 'only models held locally')
    .option('--remote', 'only tags at the origin')
    .action(async (local: { local?: boolean, remote?: boolean }, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      const remote: Array<{ ref: string, cid: string }> = []
      if (local.local !== true && config.origin !== '') {
        const origin = createOrigin(config, logger)
        try {
          for await (const entry of origin.listRefs({ signal: controller.signal })) remote.push({ ref: formatRef(entry), cid: entry.cid })
        } finally {
          await origin.close()
        }
      }
      const held = local.remote === true ? [] : await withStore(config, logger, async store => store.models())
      if (options.json === true) {
        process.stdout.write(JSON.stringify({ event: 'done', command: 'ls', remote, local: held }) + '\n')
        return
      }
      if (local.local !== true) {
        process.stdout.write(`origin ${config.origin === '' ? '(none configured)' : redactSecrets(config.origin)}:\n`)
        for (const r of remote.sort((a, b) => a.ref.localeCompare(b.ref))) process.stdout.write(`  ${r.ref.padEnd(40)} ${r.cid}\n`)
      }
      if (local.remote !== true) {
        process.stdout.write(`local ${config.dataDir}:\n`)
        for (const m of held) {
          const pct = m.totalBytes === 0 ? 100 : Math.floor(m.presentBytes / m.totalBytes * 100)
          process.stdout.write(`  ${(m.refs.join(',') || '(no name)').padEnd(40)} ${m.manifestCid} ${formatBytes(m.totalBytes)} ${pct}%${m.pinned ? ' pinned' : ''}\n`)
        }
      }
    })

  cmd.command('verify')
    .description('re-hash every chunk of a held model against its CID')
    .argument('<target>', 'name[:tag] or manifest CID')
    .action(async (target: string, _local: unknown, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      await withStore(config, logger, async store => {
        const manifestCid = findHeld(store, target)
        const report = await verifyModel(store, manifestCid, { signal: controller.signal })
        emit(options, { command: 'verify', ...report },
          report.bad.length === 0
            ? `${target}: ${report.checkedChunks} chunks verified (${formatBytes(report.checkedBytes)}), ${report.missingChunks} missing`
            : `${target}: ${report.bad.length} of ${report.checkedChunks} chunks are corrupt and were marked missing (pull again to repair): ${report.bad.map(b => `${b.path} at offset ${b.offset} (${b.cid})`).join(', ')}`)
        if (report.bad.length > 0) throw new VerifyFailedError(`${report.bad.length} corrupt chunks in ${target}`)
      })
    })

  cmd.command('pin')
    .description('keep a held model from eviction (--off to undo)')
    .argument('<target>', 'name[:tag] or manifest CID')
    .option('--off', 'unpin')
    .action(async (target: string, local: { off?: boolean }, command: Command) => {
      const options = globals(command)
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      await withStore(config, logger, async store => {
        const manifestCid = findHeld(store, target)
        await store.pin(manifestCid, local.off !== true)
        emit(options, { command: 'pin', manifestCid, pinned: local.off !== true }, `${target} ${local.off === true ? 'unpinned' : 'pinned'}`)
      })
    })

  cmd.command('gc')
    .description('evict least-recently-used models that are neither pinned nor in use until the store fits its budget; models that hold nothing and have no name go too')
    .option('--cache-size <size>', 'budget, e.g. 200GiB (SWARM_CACHE_SIZE); 0 evicts every unpinned model')
    .action(async (local: { cacheSize?: string }, command: Command) => {
      const options = { ...globals(command), cacheSize: local.cacheSize }
      const config = await configFrom(options)
      const logger = createLogger(logLevelFor(config, options))
      await withStore(config, logger, async store => {
        const report = await store.gc({ budgetBytes: config.cacheSize, signal: controller.signal })
        emit(options, { command: 'gc', ...report }, describeGc(report))
      })
    })

  registerFleetCommands(cmd, { setup: async command => ({ config: await configFrom(globals(command)), json: globals(command).json === true }), signal: controller.signal })

  return cmd
}

function describeGc (report: GcReport): string {
  const name = (m: { manifestCid: string, refs: string[] }): string => m.refs.length > 0 ? `${m.refs.join(',')} (${m.manifestCid})` : m.manifestCid
  const lines = [report.evicted.length === 0
    ? 'nothing to evict'
    : `evicted ${report.evicted.length} models, freed ${formatBytes(report.evicted.reduce((sum, e) => sum + e.freedBytes, 0))}: ${report.evicted.map(e => `${name(e)}${e.reason === 'unused' ? ' (unused, held nothing)' : ''}`).join(', ')}`]
  const why = { pinned: 'pinned', leased: 'in use', 'shares-pinned': 'all its content is a pinned model\'s' }
  for (const s of report.skipped) lines.push(`kept ${name(s)}: ${why[s.reason]}${s.holders != null ? ` by ${s.holders.join(', ')}` : ''}`)
  if (report.budgetBytes != null && report.presentBytes > report.budgetBytes) lines.push(`still over budget: ${formatBytes(report.presentBytes)} present, budget ${formatBytes(report.budgetBytes)}`)
  return lines.join('\n')
}

export async function main (argv: string[]): Promise<number> {
  const onSignal = (): void => { controller.abort() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const cmd = program()
  const json = argv.includes('--json')
  try {
    await cmd.parseAsync(argv)
    return EXIT.ok
  } catch (err) {
    const e = err as Error & { exitCode?: number, code?: string }
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      // commander has already printed help or the usage error
      return e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help' ? EXIT.ok : EXIT.usage
    }
    const described = e.exitCode != null ? { message: e.message, exitCode: e.exitCode } : describeError(err)
    const { exitCode } = described
    const message = redactSecrets(described.message)
    if (json) process.stdout.write(JSON.stringify({ event: 'error', code: e.code ?? 'ERR_UNKNOWN', message, exitCode }) + '\n')
    process.stderr.write(`swarm: ${message}\n`)
    return exitCode
  }
}

main(process.argv).then(code => { process.exitCode = code }, err => {
  process.stderr.write(`swarm: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = EXIT.failure
})
