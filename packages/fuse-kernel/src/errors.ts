import { SwarmError } from '@swarm/interface'

export { MountFailedError } from '@swarm/fs'

/** This adapter cannot mount here; `reason` says what is missing. */
export class KernelFuseUnavailableError extends SwarmError {
  override readonly code = 'ERR_FUSE_UNAVAILABLE'
  constructor (readonly reason: string) {
    super(`the native FUSE adapter is not available: ${reason}`)
  }
}
