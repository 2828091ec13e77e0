/** A change was asked of the read-only view (write, create, rename, truncate, …). */
export class ReadOnlyError extends Error {
  static override name = 'ReadOnlyError'
  readonly code = 'ERR_READ_ONLY'
  constructor (readonly path: string, readonly operation: string) {
    super(`${operation} ${path}: the model view is read-only`)
    this.name = 'ReadOnlyError'
  }
}

/** A path names a directory where a file was needed. */
export class IsADirectoryError extends Error {
  static override name = 'IsADirectoryError'
  readonly code = 'ERR_IS_A_DIRECTORY'
  constructor (readonly path: string) {
    super(`${path} is a directory`)
    this.name = 'IsADirectoryError'
  }
}

/** A path names a file or link where a directory was needed. */
export class NotADirectoryError extends Error {
  static override name = 'NotADirectoryError'
  readonly code = 'ERR_NOT_A_DIRECTORY'
  constructor (readonly path: string) {
    super(`${path} is not a directory`)
    this.name = 'NotADirectoryError'
  }
}

/** A path names something that is not a link where a link was needed. */
export class NotALinkError extends Error {
  static override name = 'NotALinkError'
  readonly code = 'ERR_NOT_A_LINK'
  constructor (readonly path: string) {
    super(`${path} is not a symbolic link`)
    this.name = 'NotALinkError'
  }
}

/** A file handle that was never opened or is already released. */
export class BadHandleError extends Error {
  static override name = 'BadHandleError'
  readonly code = 'ERR_BAD_HANDLE'
  constructor (readonly handle: number) {
    super(`no open file with handle ${handle}`)
    this.name = 'BadHandleError'
  }
}

/** A read waited longer than its bound for a chunk. */
export class ReadTimeoutError extends Error {
  static override name = 'ReadTimeoutError'
  readonly code = 'ERR_READ_TIMEOUT'
  constructor (readonly cid: string, readonly path: string, readonly ms: number) {
    super(`chunk ${cid} of ${path} did not arrive within ${ms} ms`)
    this.name = 'ReadTimeoutError'
  }
}

/** The view was used after close(). */
export class ViewClosedError extends Error {
  static override name = 'ViewClosedError'
  readonly code = 'ERR_VIEW_CLOSED'
  constructor () {
    super('the model view is closed')
    this.name = 'ViewClosedError'
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
