/**
 * Wiring shared by the CLI commands and the agent: origin from a URL, the store, the logger.
 * Adapters are chosen here, at the edge; libraries only see the interfaces.
 */

import { readFileSync } from 'node:fs'
import { ConfigError } from '@swarm/config'
import { azureOrigin, isAzureBlobUrl } from '@swarm/origin-azure'
import { fileOrigin } from '@swarm/origin-file'
import { ociOrigin } from '@swarm/origin-oci'
import { httpOrigin } from '@swarm/origin-http'
import { s3Origin } from '@swarm/origin-s3'
import { pino } from 'pino'
import type { Config } from '@swarm/config'
import { SwarmError, redactDeep, redactSecrets } from '@swarm/interface'
import type { Logger, Origin } from '@swarm/interface'

export class NoOriginError extends SwarmError {
  override readonly code = 'ERR_NO_ORIGIN'
  constructor () {
    super('no origin configured: pass --origin s3://bucket/prefix, file:///dir, oci://registry/namespace, az://account/container/prefix or https://host/prefix, or set SWARM_ORIGIN')
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

/** The origin a URL names; a URL its adapter cannot take is a configuration error (exit 2), not a crash. */
export function createOrigin (config: Config, logger: Logger): Origin {
  if (config.origin === '') throw new NoOriginError()
  try {
    return originFor(config, logger)
  } catch (err) {
    if (err instanceof TypeError) throw new ConfigError(`invalid origin: ${err.message}`)
    throw err
  }
}

function originFor (config: Config, logger: Logger): Origin {
  const url = config.origin
  if (url.startsWith('file://')) return fileOrigin({ url, logger })
  // derived chunk manifests are cut at the configured chunk size, like swarm push
  if (url.startsWith('oci://')) return ociOrigin({ url, chunkSize: config.chunkSize, logger })
  // an https URL of Azure Blob Storage is Azure; any other http(s) URL a plain web server
  if (url.startsWith('az://') || isAzureBlobUrl(url)) {
    const { endpoint, accountKey, sasToken } = config.azure
    return azureOrigin({
      url,
      endpoint,
      credential: accountKey != null ? { accountKey } : sasToken != null ? { sasToken } : undefined,
      logger
    })
  }
  if (url.startsWith('http://') || url.startsWith('https://')) {
    let ca: string | undefined
    if (config.http.caFile != null) {
      try {
        ca = readFileSync(config.http.caFile, 'utf8')
      } catch (err) {
        throw new ConfigError(`cannot read http.caFile ${config.http.caFile}: ${(err as Error).message}`)
      }
    }
    return httpOrigin({ url, ca, logger })
  }
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
