/**
 * Wiring shared by the CLI commands and the agent: origin from a URL, the store, the logger.
 * Adapters are chosen here, at the edge; libraries only see the interfaces.
 */

import { fileOrigin } from '@swarm/origin-file'
import { s3Origin } from '@swarm/origin-s3'
import { pino } from 'pino'
import type { Config } from '@swarm/config'
import { redactDeep, redactSecrets } from '@swarm/interface'
import type { Logger, Origin } from '@swarm/interface'

export class NoOriginError extends Error {
  static override name = 'NoOriginError'
  readonly code = 'ERR_NO_ORIGIN'
  constructor () {
    super('no origin configured: pass --origin s3://bucket/prefix or file:///dir, or set SWARM_ORIGIN')
    this.name = 'NoOriginError'
  }
}

export function createLogger (level: Config['logLevel'], destination: number = 2): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    // credentials in URLs (origin URLs, presigned links) never reach a log line
    formatters: { log: record => redactDeep(record) },
    hooks: {
      logMethod (args, method) {
        method.apply(this, args.map(arg => typeof arg === 'string' ? redactSecrets(arg) : arg) as Parameters<typeof method>)
      }
    }
  }, pino.destination({ fd: destination, sync: true })) as unknown as Logger
}

export function createOrigin (config: Config, logger: Logger): Origin {
  const url = config.origin
  if (url === '') throw new NoOriginError()
  if (url.startsWith('file://')) return fileOrigin({ url, logger })
  return s3Origin({
    url,
    endpoint: config.s3.endpoint,
    region: config.s3.region,
    forcePathStyle: config.s3.forcePathStyle ?? (config.s3.endpoint != null),
    credentials: config.s3.accessKeyId != null && config.s3.secretAccessKey != null
      ? { accessKeyId: config.s3.accessKeyId, secretAccessKey: config.s3.secretAccessKey }
      : undefined,
    logger
  })
}
