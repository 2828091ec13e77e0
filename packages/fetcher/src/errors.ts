import { SwarmError } from '@swarm/interface'

export class SourceTimeoutError extends SwarmError {
  override readonly code = 'ERR_SOURCE_TIMEOUT'
  constructor (source: string, ms: number) {
    super(`${source} did not deliver within ${ms} ms`)
  }
}
