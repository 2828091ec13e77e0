import { SwarmError } from '@swarm/interface'

/** A change was asked of the read-only view (write, create, rename, truncate, …). */
export class ReadOnlyError extends SwarmError {
  override readonly code = 'ERR_READ_ONLY'
  constructor (readonly path: string, readonly operation: string) {
    super(`${operation} ${path}: the model view is read-only`)
  }
}

/** A path names a directory where a file was needed. */
export class IsADirectoryError extends SwarmError {
  override readonly code = 'ERR_IS_A_DIRECTORY'
  constructor (readonly path: string) {
    super(`${path} is a directory`)
  }
}

/** A path names a file or link where a directory was needed. */
export class NotADirectoryError extends SwarmError {
  override readonly code = 'ERR_NOT_A_DIRECTORY'
  constructor (readonly path: string) {
    super(`${path} is not a directory`)
  }
}

/** A path names something that is not a link where a link was needed. */
export class NotALinkError extends SwarmError {
  override readonly code = 'ERR_NOT_A_LINK'
  constructor (readonly path: string) {
    super(`${path} is not a symbolic link`)
  }
}

/** A file handle that was never opened or is already released. */
export class BadHandleError extends SwarmError {
  override readonly code = 'ERR_BAD_HANDLE'
  constructor (readonly handle: number) {
    super(`no open file with handle ${handle}`)
  }
}

/** A read waited longer than its bound for a chunk. */
export class ReadTimeoutError extends SwarmError {
  override readonly code = 'ERR_READ_TIMEOUT'
  constructor (readonly cid: string, readonly path: string, readonly ms: number) {
    super(`chunk ${cid} of ${path} did not arrive within ${ms} ms`)
  }
}

/** The view was used after close(). */
export class ViewClosedError extends SwarmError {
  override readonly code = 'ERR_VIEW_CLOSED'
  constructor () {
    super('the model view is closed')
  }
}

/** A live file system is already mounted at the mount point. */
export class MountpointBusyError extends SwarmError {
  override readonly code = 'ERR_MOUNTPOINT_BUSY'
  constructor (readonly mountpoint: string, readonly fsType: string) {
    super(`${mountpoint} is already mounted (${fsType}) and answering; unmount it first (umount ${mountpoint})`)
  }
}

/** Mounting the view failed: mount(2) or the FUSE library refused, for a reason other than a busy mount point. */
export class MountFailedError extends SwarmError {
  override readonly code = 'ERR_MOUNT_FAILED'
  constructor (readonly mountpoint: string, message: string, options?: { cause?: unknown }) {
    super(`mounting ${mountpoint} failed: ${message}`, options)
  }
}
