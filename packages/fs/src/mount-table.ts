/**
 * What every FUSE adapter needs around a mount, whatever speaks the protocol: whether /dev/fuse
 * can be used, what is mounted where, and clearing a mount left by a process that is gone.
 */

import { constants as fsConstants } from 'node:fs'
import { access, readFile, stat } from 'node:fs/promises'
import { MountpointBusyError } from './errors.js'
import type { Logger } from '@swarm/interface'

export type FuseCheck = { available: true } | { available: false, reason: string }

/** Whether /dev/fuse can be opened for reading and writing here, and if not, how to get it. */
export async function checkFuseDevice (): Promise<FuseCheck> {
  try {
    await access('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK)
    return { available: true }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    return {
      available: false,
      reason: code === 'ENOENT'
        ? '/dev/fuse does not exist: load the fuse kernel module (modprobe fuse), or give the container the device (docker --device /dev/fuse; in Kubernetes a privileged container or a hostPath /dev/fuse)'
        : `/dev/fuse cannot be opened for reading and writing (${code ?? String(err)}): run as root or give this user access to it`
    }
  }
}

export interface MountEntry { mountpoint: string, fsType: string }

function unescapeMountinfo (text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** What is mounted at `mountpoint` according to /proc/self/mountinfo (the last, topmost mount). */
export async function mountedAt (mountpoint: string): Promise<MountEntry | undefined> {
  let found: MountEntry | undefined
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  for (const line of text.split('\n')) {
    const fields = line.split(' ')
    const separator = fields.indexOf('-')
    if (separator === -1 || fields[4] === undefined) continue
    if (unescapeMountinfo(fields[4]) === mountpoint) found = { mountpoint, fsType: fields[separator + 1] ?? '' }
  }
  return found
}

/**
 * Clears a FUSE mount whose process is gone (ENOTCONN) with `detach`; refuses one that still
 * answers with MountpointBusyError.
 */
export async function clearStaleMount (mountpoint: string, log: Logger, detach: (mountpoint: string) => Promise<void>): Promise<void> {
  const entry = await mountedAt(mountpoint)
  if (entry === undefined || !entry.fsType.startsWith('fuse')) return
  try {
    await stat(mountpoint)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED' && code !== 'EIO') throw err
    log.warn({ mountpoint, fsType: entry.fsType }, 'clearing a stale mount left by a process that is gone')
    await detach(mountpoint)
    return
  }
  throw new MountpointBusyError(mountpoint, entry.fsType)
}
