/** This adapter cannot mount here; `reason` says what is missing. */
export class KernelFuseUnavailableError extends Error {
  static override name = 'KernelFuseUnavailableError'
  readonly code = 'ERR_FUSE_UNAVAILABLE'
  constructor (readonly reason: string) {
    super(`the native FUSE adapter is not available: ${reason}`)
    this.name = 'KernelFuseUnavailableError'
  }
}

/** A live file system is already mounted at the mount point. */
export class MountpointBusyError extends Error {
  static override name = 'MountpointBusyError'
  readonly code = 'ERR_MOUNTPOINT_BUSY'
  constructor (readonly mountpoint: string, readonly fsType: string) {
    super(`${mountpoint} is already mounted (${fsType}) and answering; unmount it first (umount ${mountpoint})`)
    this.name = 'MountpointBusyError'
  }
}

/** mount(2) failed. */
export class MountFailedError extends Error {
  static override name = 'MountFailedError'
  readonly code = 'ERR_MOUNT_FAILED'
  constructor (readonly mountpoint: string, message: string, options?: { cause?: unknown }) {
    super(`mounting ${mountpoint} failed: ${message}`, options)
    this.name = 'MountFailedError'
  }
}
