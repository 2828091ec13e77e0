/**
 * @packageDocumentation
 *
 * One configuration for the CLI and the agent, from four layers, later ones winning:
 * defaults, a YAML file (`--config`, `SWARM_CONFIG`, or /etc/swarm/config.yaml when present),
 * `SWARM_*` environment variables, and command-line flags. Every layer is validated with zod,
 * and an error names the field and the layer it came from (`SWARM_CONCURRENCY (env): expected
 * a positive integer`), so a typo never turns into a silent default.
 *
 * @example
 *
 * ```ts
 * import { loadConfig } from '@swarm/config'
 *
 * const config = await loadConfig({ flags: { origin: 's3://models/prod' }, env: process.env })
 * ```
 */

import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { DEFAULT_BLOCK_SIZE, DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY, DEFAULT_CONFIG_FILE, DEFAULT_DATA_DIR_ROOT, DEFAULT_DATA_PORT, DEFAULT_METRICS_PORT, DEFAULT_P2P_PORT, DEFAULT_PEER_BAN_SECONDS, DEFAULT_UPLOAD_SLOTS } from './constants.js'
import { ConfigError } from './errors.js'

export * from './constants.js'
export * from './errors.js'

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4 }

/** `4MiB`, `100 GB`, `1.5t` or a plain number of bytes. */
export function parseByteSize (text: string | number): number {
  if (typeof text === 'number') return text
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)
  const unit = UNITS[match?.[2]?.toLowerCase() ?? 'x']
  if (match == null || unit == null) throw new Error(`"${text}" is not a size (e.g. 4MiB, 100GB, 1048576)`)
  return Math.round(Number(match[1]) * unit)
}

const byteSize = z.union([z.number(), z.string()]).transform((value, ctx) => {
  try {
    const bytes = parseByteSize(value)
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error(`"${value}" is out of range`)
    return bytes
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message })
    return z.NEVER
  }
})

const integer = (min: number, max: number): z.ZodType<number, unknown> =>
  z.coerce.number({ error: 'expected a number' }).int('expected an integer').min(min).max(max) as unknown as z.ZodType<number, unknown>

const boolean = z.union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
  .transform(v => v === true || v === 'true' || v === '1' || v === 'yes')

const list = z.union([z.array(z.string()), z.string()])
  .transform(v => Array.isArray(v) ? v : v.split(',').map(s => s.trim()).filter(s => s.length > 0))

/**
 * Node labels as Kubernetes writes them (so the downward API's pass unchanged): a map, or
 * `k=v,k2=v2`, or a list of `k=v` (repeatable `--label`).
 */
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/
const labels = z.union([z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])), z.string(), z.array(z.string())]).transform((value, ctx) => {
  const pairs: Array<[string, string]> = []
  if (typeof value === 'string' || Array.isArray(value)) {
    for (const item of (Array.isArray(value) ? value : [value]).flatMap(v => v.split(',')).map(v => v.trim()).filter(v => v !== '')) {
      const eq = item.indexOf('=')
      if (eq <= 0) {
        ctx.addIssue({ code: 'custom', message: `"${item}" is not a label (expected key=value)` })
        return z.NEVER
      }
      pairs.push([item.slice(0, eq).trim(), item.slice(eq + 1).trim()])
    }
  } else {
    for (const [k, v] of Object.entries(value)) pairs.push([k, String(v)])
  }
  for (const [k, v] of pairs) {
    if (!LABEL_KEY.test(k)) ctx.addIssue({ code: 'custom', message: `"${k}" is not a label key (letters, digits, '-', '_', '.', up to 63, optionally after a DNS prefix and '/')` })
    else if (!LABEL_VALUE.test(v)) ctx.addIssue({ code: 'custom', message: `"${v}" is not a value for label ${k} (letters, digits, '-', '_', '.', up to 63, starting and ending alphanumeric)` })
  }
  if (pairs.length > 32) ctx.addIssue({ code: 'custom', message: `${pairs.length} labels; at most 32` })
  return Object.fromEntries(pairs)
})

/**
 * The FUSE view of the models (`swarm agent --mount DIR`, `swarm mount DIR`). Unset values are
 * the defaults of `@swarm/fs` and the adapters; without `dir` the agent mounts nothing.
 */
const mount = z.object({
  dir: z.string().min(1, 'the mount point is empty').optional(),
  /** the most a sequential reader's read-ahead grows to */
  readAhead: byteSize.refine(v => v >= 1024 * 1024, 'read-ahead must be at least 1MiB').optional(),
  /** chunks prefetched at once */
  prefetch: integer(1, 256).optional(),
  /** a read waits at most this long for its chunks */
  readTimeoutMs: integer(100, Number.MAX_SAFE_INTEGER).optional(),
  /** which FUSE adapter mounts: auto (kernel where it can mount, else fuse-native), kernel or fuse-native */
  adapter: z.enum(['auto', 'kernel', 'fuse-native']).optional(),
  /** kernel adapter: open complete files in passthrough */
  passthrough: boolean.optional(),
  /** kernel adapter: answer reads from the store's file by splicing it to the kernel */
  splice: boolean.optional(),
  /** kernel adapter: its threads drop CAP_SYS_ADMIN once mounted (passthrough is then refused) */
  dropSysAdmin: boolean.optional()
}).strict()

const originUrl = z.string().refine(v => /^(s3|file|oci|az|https?):\/\/./.test(v), 'expected an s3://bucket[/prefix], file:///dir, oci://registry/namespace, az://account/container[/prefix] or http(s)://host[/prefix] URL')

/** Every key the configuration accepts. All optional here; defaults are applied after merging. */
export const ConfigSchema = z.object({
  origin: originUrl,
  dataDir: z.string().min(1),
  cacheSize: byteSize,
  chunkSize: byteSize.refine(v => v >= 1024 * 1024 && v <= 64 * 1024 * 1024, 'must be between 1MiB and 64MiB'),
  /** push: bytes per block whose digest the manifest lists (version 3); 0 writes none (version 1 or 2) */
  blockSize: byteSize.refine(v => v === 0 || (v >= 16 * 1024 && v <= 64 * 1024 * 1024), 'must be 0 (no block digests) or between 16KiB and 64MiB'),
  concurrency: integer(1, 1024),
  logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'silent']),
  s3: z.object({
    endpoint: z.url({ error: 'expected a URL such as http://127.0.0.1:7480' }).optional(),
    region: z.string().min(1).optional(),
    forcePathStyle: boolean.optional(),
    accessKeyId: z.string().min(1).optional(),
    secretAccessKey: z.string().min(1).optional()
  }).strict(),
  azure: z.object({
    /** the account's blob service URL, for Azurite or a private endpoint */
    endpoint: z.url({ error: 'expected a URL such as http://127.0.0.1:10000/devstoreaccount1' }).optional(),
    accountKey: z.string().min(1).optional(),
    sasToken: z.string().min(1).optional()
  }).strict(),
  http: z.object({
    /** PEM file of CA certificates to trust for an https origin, besides the system's */
    caFile: z.string().min(1).optional()
  }).strict(),
  agent: z.object({
    socket: z.string().min(1),
    listen: list,
    bootstrap: list,
    swarmKeyFile: z.string().min(1).optional(),
    /** run without a swarm key: any host that reaches the ports may join, learn and download everything held */
    insecureOpenSwarm: boolean,
    mdns: boolean,
    dataPort: integer(0, 65535),
    dataHost: z.string().min(1).optional(),
    metricsPort: integer(0, 65535),
    metricsHost: z.string().min(1),
    uploadSlots: integer(1, 4096),
    /** relays at once (chunks passed on while they arrive), beside the upload slots; absent: @swarm/exchange's default */
    relaySlots: integer(1, 4096).optional(),
    uploadRate: byteSize,
    downloadRate: byteSize,
    // data plane limits; absent: the defaults of @swarm/exchange
    dataConnections: integer(1, 65536).optional(),
    dataConnectionsPerPeer: integer(1, 1024).optional(),
    dataWriteTimeoutMs: integer(100, 3_600_000).optional(),
    dataIdleTimeoutMs: integer(100, 86_400_000).optional(),
    dataHandshakeTimeoutMs: integer(100, 600_000).optional(),
    peerBanSeconds: integer(0, 30 * 24 * 3600),
    /** byte worker threads (fetch, verify, write, sync of chunks); 0: all in the main thread; absent: one per core but two on nodes of 4 cores or more, at most 32, none below */
    workers: integer(0, 1024).optional(),
    /** this node's labels, which preheat and wait selectors match (`pool=a`) */
    labels
  }).strict(),
  mount
}).strict()

export type Config = z.output<typeof ConfigSchema>

type DeepPartialInput = { [K in keyof z.input<typeof ConfigSchema>]?: unknown }
export type ConfigLayer = Record<string, unknown> & DeepPartialInput

export interface LoadConfigOptions {
  /** values from flags, already named as config keys (`dataDir`, `s3.endpoint` nested) */
  flags?: ConfigLayer
  env?: Record<string, string | undefined>
  /** explicit file; a missing explicit file is an error, a missing default one is not */
  file?: string
}

/** Where each environment variable goes. */
export const ENV_KEYS: Record<string, string> = {
  SWARM_ORIGIN: 'origin',
  SWARM_DATA_DIR: 'dataDir',
  SWARM_CACHE_SIZE: 'cacheSize',
  SWARM_CHUNK_SIZE: 'chunkSize',
  SWARM_BLOCK_SIZE: 'blockSize',
  SWARM_CONCURRENCY: 'concurrency',
  SWARM_LOG_LEVEL: 'logLevel',
  SWARM_S3_ENDPOINT: 's3.endpoint',
  SWARM_S3_REGION: 's3.region',
  SWARM_S3_FORCE_PATH_STYLE: 's3.forcePathStyle',
  SWARM_S3_ACCESS_KEY_ID: 's3.accessKeyId',
  SWARM_S3_SECRET_ACCESS_KEY: 's3.secretAccessKey',
  SWARM_AZURE_ENDPOINT: 'azure.endpoint',
  SWARM_AZURE_ACCOUNT_KEY: 'azure.accountKey',
  SWARM_AZURE_SAS_TOKEN: 'azure.sasToken',
  SWARM_HTTP_CA_FILE: 'http.caFile',
  SWARM_SOCKET: 'agent.socket',
  SWARM_LISTEN: 'agent.listen',
  SWARM_BOOTSTRAP: 'agent.bootstrap',
  SWARM_SWARM_KEY_FILE: 'agent.swarmKeyFile',
  SWARM_INSECURE_OPEN_SWARM: 'agent.insecureOpenSwarm',
  SWARM_MDNS: 'agent.mdns',
  SWARM_DATA_PORT: 'agent.dataPort',
  SWARM_DATA_HOST: 'agent.dataHost',
  SWARM_METRICS_PORT: 'agent.metricsPort',
  SWARM_METRICS_HOST: 'agent.metricsHost',
  SWARM_UPLOAD_SLOTS: 'agent.uploadSlots',
  SWARM_RELAY_SLOTS: 'agent.relaySlots',
  SWARM_UPLOAD_RATE: 'agent.uploadRate',
  SWARM_DOWNLOAD_RATE: 'agent.downloadRate',
  SWARM_DATA_CONNECTIONS: 'agent.dataConnections',
  SWARM_DATA_CONNECTIONS_PER_PEER: 'agent.dataConnectionsPerPeer',
  SWARM_DATA_WRITE_TIMEOUT_MS: 'agent.dataWriteTimeoutMs',
  SWARM_DATA_IDLE_TIMEOUT_MS: 'agent.dataIdleTimeoutMs',
  SWARM_DATA_HANDSHAKE_TIMEOUT_MS: 'agent.dataHandshakeTimeoutMs',
  SWARM_PEER_BAN_SECONDS: 'agent.peerBanSeconds',
  SWARM_WORKERS: 'agent.workers',
  SWARM_LABELS: 'agent.labels',
  SWARM_MOUNT: 'mount.dir',
  SWARM_MOUNT_READ_AHEAD: 'mount.readAhead',
  SWARM_MOUNT_PREFETCH: 'mount.prefetch',
  SWARM_MOUNT_READ_TIMEOUT_MS: 'mount.readTimeoutMs',
  SWARM_MOUNT_ADAPTER: 'mount.adapter',
  SWARM_MOUNT_PASSTHROUGH: 'mount.passthrough',
  SWARM_MOUNT_SPLICE: 'mount.splice',
  SWARM_MOUNT_DROP_SYS_ADMIN: 'mount.dropSysAdmin'
}

export function defaultConfig (env: Record<string, string | undefined> = process.env): Config {
  const root = process.getuid?.() === 0
  const dataDir = root ? DEFAULT_DATA_DIR_ROOT : join(env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'swarm')
  return {
    origin: '',
    dataDir,
    cacheSize: 0,
    chunkSize: DEFAULT_CHUNK_SIZE,
    blockSize: DEFAULT_BLOCK_SIZE,
    concurrency: DEFAULT_CONCURRENCY,
    logLevel: 'info',
    s3: {},
    azure: {},
    http: {},
    agent: {
      socket: join(dataDir, 'agent.sock'),
      listen: [`/ip4/0.0.0.0/tcp/${DEFAULT_P2P_PORT}`],
      bootstrap: [],
      insecureOpenSwarm: false,
      mdns: false,
      dataPort: DEFAULT_DATA_PORT,
      metricsPort: DEFAULT_METRICS_PORT,
      metricsHost: '127.0.0.1',
      uploadSlots: DEFAULT_UPLOAD_SLOTS,
      uploadRate: 0,
      downloadRate: 0,
      peerBanSeconds: DEFAULT_PEER_BAN_SECONDS,
      labels: {}
    },
    mount: {}
  }
}

function setPath (target: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = target
  for (const key of keys.slice(0, -1)) {
    node[key] ??= {}
    node = node[key] as Record<string, unknown>
  }
  node[keys[keys.length - 1] as string] = value
}

function envLayer (env: Record<string, string | undefined>): { layer: Record<string, unknown>, names: Map<string, string> } {
  const layer: Record<string, unknown> = {}
  const names = new Map<string, string>()
  for (const [name, path] of Object.entries(ENV_KEYS)) {
    const value = env[name]
    if (value != null && value !== '') {
      setPath(layer, path, value)
      names.set(path, name)
    }
  }
  return { layer, names }
}

const PartialSchema = ConfigSchema.partial().extend({
  s3: ConfigSchema.shape.s3.partial().optional(),
  azure: ConfigSchema.shape.azure.partial().optional(),
  http: ConfigSchema.shape.http.partial().optional(),
  agent: ConfigSchema.shape.agent.partial().optional(),
  mount: ConfigSchema.shape.mount.optional()
}).strict()

/** Validates one layer alone, so an error can say which layer the bad value came from. */
function validateLayer (layer: unknown, source: string, names?: Map<string, string>): Record<string, unknown> {
  const result = PartialSchema.safeParse(layer)
  if (result.success) return stripUndefined(result.data as Record<string, unknown>)
  const issues = result.error.issues.map(issue => {
    const path = issue.path.join('.')
    const field = names?.get(path) ?? (path === '' ? '(root)' : path)
    const message = issue.code === 'unrecognized_keys'
      ? `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map(k => `"${[path, k].filter(Boolean).join('.')}"`).join(', ')}`
      : issue.message
    return { field, source, message }
  })
  throw new ConfigError(`invalid configuration: ${issues.map(i => `${i.field} (${i.source}): ${i.message}`).join('; ')}`, issues)
}

function stripUndefined (value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue
    out[key] = v != null && typeof v === 'object' && !Array.isArray(v) ? stripUndefined(v as Record<string, unknown>) : v
  }
  return out
}

function merge (base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base }
  for (const [key, value] of Object.entries(over)) {
    const prior = out[key]
    out[key] = value != null && typeof value === 'object' && !Array.isArray(value) && prior != null && typeof prior === 'object' && !Array.isArray(prior)
      ? merge(prior as Record<string, unknown>, value as Record<string, unknown>)
      : value
  }
  return out
}

export async function loadConfig (options: LoadConfigOptions = {}): Promise<Config> {
  const env = options.env ?? process.env
  const explicit = options.file ?? env.SWARM_CONFIG
  const file = explicit ?? (existsSync(DEFAULT_CONFIG_FILE) ? DEFAULT_CONFIG_FILE : undefined)

  let fileLayer: Record<string, unknown> = {}
  if (file != null) {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`)
    }
    let parsed: unknown
    try {
      parsed = parseYaml(text) ?? {}
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid YAML: ${(err as Error).message}`)
    }
    fileLayer = validateLayer(parsed, file)
  }
  const { layer, names } = envLayer(env)
  const envValues = validateLayer(layer, 'env', names)
  const flagValues = validateLayer(options.flags ?? {}, 'flag')

  const defaults = defaultConfig(env)
  const merged = merge(merge(merge(defaults as unknown as Record<string, unknown>, fileLayer), envValues), flagValues)
  // the socket follows the data dir unless set explicitly
  const agentOverride = [fileLayer, envValues, flagValues].some(l => (l.agent as Record<string, unknown> | undefined)?.socket != null)
  if (!agentOverride) (merged.agent as Record<string, unknown>).socket = join(merged.dataDir as string, 'agent.sock')
  return merged as unknown as Config
}
