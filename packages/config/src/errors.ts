import { SwarmError } from '@swarm/interface'

/** A configuration value failed validation; the message names the field and where it came from. */
export class ConfigError extends SwarmError {
  override readonly code = 'ERR_CONFIG'
  constructor (message: string, readonly issues: Array<{ field: string, source: string, message: string }> = []) {
    super(message)
  }
}
