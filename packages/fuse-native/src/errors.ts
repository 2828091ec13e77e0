import { SwarmError } from '@swarm/interface'

export { MountFailedError, MountpointBusyError } from '@swarm/fs'

/** FUSE cannot be used here; `reason` says what is missing and how to get it. */
export class FuseUnavailableError extends SwarmError {
  override readonly code = 'ERR_FUSE_UNAVAILABLE'
  constructor (readonly reason: string) {
    super(`FUSE is not available: ${reason}`)
  }
}
