#!/usr/bin/env node
/**
 * `swarm`: publish, pull, inspect and maintain models. Every command takes the same
 * configuration layers (flags > SWARM_* env > YAML file > defaults) and honours `--json`.
 *
 * This file parses arguments and dispatches; each command's body is in `commands/<name>.ts`,
 * what they share in `commands/context.ts`.
 */

import { Command, Option } from 'commander'
import { EXIT, describeError } from './exit-codes.js'
import { controller, globals, configFrom } from './commands/context.js'
import { registerFleetCommands } from './commands/fleet.js'
import { redactSecrets } from '@swarm/interface'

export { KeyFileExistsError, ModelNotHeldError, VerifyFailedError } from './commands/context.js'

/**
 * A command's module is loaded when that command runs: each loads only what it needs (the agent
 * the whole peer stack, push the chunker), so `swarm pull` does not pay for `swarm agent`.
 */
function lazy<K extends string> (load: () => Promise<Record<K, (...args: any[]) => Promise<void>>>, name: K): (...args: any[]) => Promise<void> {
  return async (...args) => { await (await load())[name](...args) }
}

export function program (): Command {
  const cmd = new Command('swarm')
    .description('Peer-to-peer model-weight distribution: peers first, object storage after')
    .option('--origin <url>', 'where the models live: s3://bucket/prefix, file:///dir, az://account/container/prefix or https://host/prefix (read-only) (SWARM_ORIGIN)')
    .option('--data-dir <dir>', 'local store directory (SWARM_DATA_DIR)')
    .option('--config <file>', 'YAML config file (SWARM_CONFIG; default /etc/swarm/config.yaml)')
    .option('--concurrency <n>', 'chunks in flight (SWARM_CONCURRENCY)')
    .option('--workers <n>', 'threads that fetch, verify and write chunks; 0: all in the main thread; default one per core but two from 4 cores up, at most 32, none below (SWARM_WORKERS)')
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
    .option('--block-size <size>', 'block size of the manifest\'s block digests, 16KiB–64MiB, or 0 for none (SWARM_BLOCK_SIZE, default 256KiB)')
    .action(lazy(async () => await import('./commands/push.js'), 'pushCommand'))

  cmd.command('pull')
    .description('fetch a model into the local store, through the local agent when one runs (peers first, origin after)')
    .argument('<target>', 'name[:tag], or a manifest CID with --cid')
    .option('--to <dir>', 'also place the files in this directory')
    .option('--cid', 'the target is a manifest CID (verified against its bytes; peers may serve it)')
    .option('--pin', 'pin the model so gc never evicts it')
    .option('--no-agent', 'pull straight from the origin in this process, without the local agent')
    .action(lazy(async () => await import('./commands/pull.js'), 'pullCommand'))

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
    .action(lazy(async () => await import('./commands/agent.js'), 'agentCommand'))

  cmd.command('mount')
    .description('mount the read-only view of the models at <dir> without an agent (origin only; with an agent: swarm agent --mount); files are fetched as they are read')
    .argument('<dir>', 'mount point, created when missing')
    .option('--read-ahead <size>', 'largest read-ahead of a sequential reader, default 256MiB (SWARM_MOUNT_READ_AHEAD)')
    .option('--adapter <name>', 'FUSE adapter: auto, kernel (own server, passthrough) or fuse-native (SWARM_MOUNT_ADAPTER)')
    .action(lazy(async () => await import('./commands/mount.js'), 'mountCommand'))

  cmd.command('keygen')
    .description('write a new swarm key (mode 0600); give the same file to every agent of the swarm with --swarm-key')
    .argument('<file>', 'where to write it; an existing file is never overwritten')
    .action(lazy(async () => await import('./commands/keygen.js'), 'keygenCommand'))

  cmd.command('status')
    .description('what the local agent is doing: peers, models held, transfers in flight and their rates')
    .action(lazy(async () => await import('./commands/status.js'), 'statusCommand'))

  cmd.command('ls')
    .description('list tags at the origin and models held locally')
    .option('--local', 'only models held locally')
    .option('--remote', 'only tags at the origin')
    .action(lazy(async () => await import('./commands/ls.js'), 'lsCommand'))

  cmd.command('verify')
    .description('re-hash every chunk of a held model against its CID')
    .argument('<target>', 'name[:tag] or manifest CID')
    .action(lazy(async () => await import('./commands/verify.js'), 'verifyCommand'))

  cmd.command('pin')
    .description('keep a held model from eviction (--off to undo)')
    .argument('<target>', 'name[:tag] or manifest CID')
    .option('--off', 'unpin')
    .action(lazy(async () => await import('./commands/pin.js'), 'pinCommand'))

  cmd.command('gc')
    .description('evict least-recently-used models that are neither pinned nor in use until the store fits its budget; models that hold nothing and have no name go too')
    .option('--cache-size <size>', 'budget, e.g. 200GiB (SWARM_CACHE_SIZE); 0 evicts every unpinned model')
    .action(lazy(async () => await import('./commands/gc.js'), 'gcCommand'))

  registerFleetCommands(cmd, { setup: async command => ({ config: await configFrom(globals(command)), json: globals(command).json === true }), signal: controller.signal })

  return cmd
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
