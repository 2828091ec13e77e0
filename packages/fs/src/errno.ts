/**
 * The one place where errors of the view become errno values, for every FUSE adapter. Everything the view cannot name
 * more precisely (a chunk no source could deliver, a read that timed out, bytes that failed
 * verification, a manifest that could not be fetched) is an I/O error.
 */

import { constants } from 'node:os'

const { errno } = constants

const BY_CODE: Readonly<Record<string, number>> = {
  ERR_NOT_FOUND: errno.ENOENT,
  ERR_READ_ONLY: errno.EROFS,
  ERR_IS_A_DIRECTORY: errno.EISDIR,
  ERR_NOT_A_DIRECTORY: errno.ENOTDIR,
  ERR_NOT_A_LINK: errno.EINVAL,
  ERR_BAD_HANDLE: errno.EBADF,
  ABORT_ERR: errno.EINTR
}

/** The negative errno a FUSE reply carries for `err`. */
export function errnoOf (err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string') {
    const mapped = BY_CODE[code]
    if (mapped !== undefined) return -mapped
  }
  if (err instanceof RangeError) return -errno.EINVAL
  return -errno.EIO
}
