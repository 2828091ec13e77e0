import { SwarmError } from '@swarm/interface'

/** No source could give a manifest: not held, not at the origin (or none configured), no peer had it. */
export class ManifestUnavailableError extends SwarmError {
  override readonly code = 'ERR_MANIFEST_UNAVAILABLE'
  constructor (manifestCid: string, reason: string) {
    super(`manifest ${manifestCid} could not be had: ${reason}`)
  }
}

/** A pull was started twice; a session runs once. */
export class SessionStartedError extends SwarmError {
  override readonly code = 'ERR_SESSION_STARTED'
  constructor () {
    super('this pull session has already been run')
  }
}
