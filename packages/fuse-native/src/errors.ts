export { MountpointBusyError } from '@swarm/fs'

/** FUSE cannot be used here; `reason` says what is missing and how to get it. */
export class FuseUnavailableError extends Error {
  static override name = 'FuseUnavailableError'
  readonly code = 'ERR_FUSE_UNAVAILABLE'
  constructor (readonly reason: string) {
    super(`FUSE is not available: ${reason}`)
    this.name = 'FuseUnavailableError'
  }
}

/** Mounting failed for another reason. */
export class MountFailedError extends Error {
  static override name = 'MountFailedError'
  readonly code = 'ERR_MOUNT_FAILED'
  constructor (readonly mountpoint: string, message: string, options?: { cause?: unknown }) {
    super(`mounting ${mountpoint} failed: ${message}`, options)
    this.name = 'MountFailedError'
  }
}
