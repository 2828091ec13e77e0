/**
 * The process's logger: pino on stderr, with credentials scrubbed from every line. Its own module
 * so a byte worker can log without loading every origin adapter with runtime.ts.
 */
import { redactDeep, redactSecrets } from '@swarm/interface'
import { pino } from 'pino'
import type { Config } from '@swarm/config'
import type { Logger } from '@swarm/interface'

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
