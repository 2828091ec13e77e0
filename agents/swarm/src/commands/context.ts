/**
 * What every command shares: the global options, configuration layers, the log level, output
 * (`--json` or a line for people), the store, and the signal that SIGINT and SIGTERM abort.
 */

import { loadConfig } from '@swarm/config'
import { SwarmError, redactDeep, redactSecrets } from '@swarm/interface'
import { formatRef, isManifestCid, parseRef } from '@swarm/manifest'
import type { Command } from 'commander'
import type { Config, ConfigLayer } from '@swarm/config'
import type { ChunkStore, Logger } from '@swarm/interface'
import type { Store } from '@swarm/store'

export interface GlobalOptions {
  origin?: string
  dataDir?: string
  config?: string
  logLevel?: string
  concurrency?: string
  cacheSize?: string
  chunkSize?: string
  blockSize?: string
  workers?: string
  json?: boolean
}

export class ModelNotHeldError extends SwarmError {
  override readonly code = 'ERR_MODEL_NOT_HELD'
  constructor (target: string) {
    super(`${target} is not held locally (swarm ls shows what is)`)
  }
}

export class VerifyFailedError extends SwarmError {
  override readonly code = 'ERR_VERIFY_FAILED'
}

export class KeyFileExistsError extends SwarmError {
  override readonly code = 'ERR_KEY_FILE_EXISTS'
  constructor (path: string) {
    super(`${path} exists; a swarm key is never overwritten (remove it first if you mean to replace the swarm's key)`)
  }
}

/** aborted on SIGINT and SIGTERM: every command stops what it is doing */
export const controller = new AbortController()

export function globals (command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>()
}

export async function configFrom (options: GlobalOptions, agent?: Record<string, unknown>, mount?: { dir?: string, readAhead?: string, adapter?: string }): Promise<Config> {
  const flags: ConfigLayer = {}
  if (agent != null && Object.keys(agent).length > 0) flags.agent = agent
  const mountFlags = Object.fromEntries(Object.entries(mount ?? {}).filter(([, value]) => value != null))
  if (Object.keys(mountFlags).length > 0) flags.mount = mountFlags
  if (options.origin != null) flags.origin = options.origin
  if (options.dataDir != null) flags.dataDir = options.dataDir
  if (options.logLevel != null) flags.logLevel = options.logLevel
  if (options.concurrency != null) flags.concurrency = options.concurrency
  if (options.cacheSize != null) flags.cacheSize = options.cacheSize
  if (options.chunkSize != null) flags.chunkSize = options.chunkSize
  if (options.blockSize != null) flags.blockSize = options.blockSize
  if (options.workers != null) flags.agent = { ...(flags.agent as Record<string, unknown> | undefined), workers: options.workers }
  return await loadConfig({ flags, file: options.config })
}

export function logLevelFor (config: Config, options: GlobalOptions): Config['logLevel'] {
  // keep stderr for the progress bar unless asked otherwise
  return options.logLevel != null ? config.logLevel : (config.logLevel === 'info' ? 'warn' : config.logLevel)
}

export function emit (options: GlobalOptions, result: Record<string, unknown>, human: string): void {
  if (options.json === true) process.stdout.write(JSON.stringify(redactDeep({ event: 'done', ...result })) + '\n')
  else process.stdout.write(redactSecrets(human) + '\n')
}

export async function withStore<T> (config: Config, logger: Logger, fn: (store: Store) => Promise<T>): Promise<T> {
  // the store loads with the first command that opens it, not with every command
  const { createStore } = await import('@swarm/store')
  const store = await createStore({ dir: config.dataDir, budgetBytes: config.cacheSize > 0 ? config.cacheSize : undefined, logger })
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

export function findHeld (store: ChunkStore, target: string): string {
  if (isManifestCid(target) && store.getManifest(target) != null) return target
  const ref = formatRef(parseRef(target))
  const held = store.models().filter(m => m.refs.includes(ref)).sort((a, b) => b.lastUsed - a.lastUsed)[0]
  if (held == null) throw new ModelNotHeldError(target)
  return held.manifestCid
}
