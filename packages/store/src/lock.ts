/**
 * One process at a time per store directory. The lock is a file created with O_EXCL that names
 * its owner: the pid and, where /proc exists, that process's start time, so a pid reused by an
 * unrelated process (common after a container restart) is not mistaken for the owner. A lock whose
 * owner is no longer running (it was killed) is stale and taken over. Taking over a stale lock is
 * not atomic: two processes that find the same stale lock at the same instant could both proceed;
 * that race with crash recovery on one host is accepted in exchange for needing no native locking
 * module.
 */
import { open, readFile, unlink } from 'node:fs/promises'
import { resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EMPTY_LOCK_GRACE_MS, LOCK_TAKEOVER_ATTEMPTS } from './constants.js'
import { StoreLockedError } from './errors.js'

export interface StoreLock {
  readonly path: string
  release(): Promise<void>
}

interface LockOwner {
  pid: number
  /** process start time in clock ticks since boot (field 22 of /proc/<pid>/stat) */
  startTime?: string
}


/** locks this process holds, so a stale lock left by an earlier process with our pid is recognised */
const heldHere = new Set<string>()

export async function acquireLock (dir: string, lockPath: string): Promise<StoreLock> {
  const path = resolve(lockPath)
  const self: LockOwner = { pid: process.pid, startTime: await startTimeOf(process.pid) }
  for (let attempt = 0; attempt < LOCK_TAKEOVER_ATTEMPTS; attempt++) {
    if (!heldHere.has(path) && await tryCreate(path, self)) {
      heldHere.add(path)
      return { path, release: async () => { await releaseLock(path, self) } }
    }
    let owner = await readOwner(path)
    if (owner === 'gone') continue
    if (owner === undefined) {
      await sleep(EMPTY_LOCK_GRACE_MS)
      owner = await readOwner(path)
      if (owner === 'gone') continue
    }
    if (owner !== undefined && await isRunning(owner, path)) throw new StoreLockedError(dir, owner.pid, path)
    await unlink(path).catch(ignoreMissing)
  }
  throw new StoreLockedError(dir, undefined, path)
}

async function tryCreate (path: string, self: LockOwner): Promise<boolean> {
  let handle
  try {
    handle = await open(path, 'wx', 0o644)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw err
  }
  try {
    await handle.writeFile(`${self.pid} ${self.startTime ?? ''}`.trim() + '\n')
  } finally {
    await handle.close()
  }
  return true
}

/** the lock's owner, undefined when the file names none, 'gone' when the file vanished */
async function readOwner (path: string): Promise<LockOwner | undefined | 'gone'> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone'
    throw err
  }
  const match = /^([1-9][0-9]*)(?: ([0-9]+))?$/.exec(text.trim())
  if (match?.[1] === undefined) return undefined
  return { pid: Number(match[1]), startTime: match[2] }
}

async function isRunning (owner: LockOwner, path: string): Promise<boolean> {
  if (owner.pid === process.pid) return heldHere.has(path)
  try {
    process.kill(owner.pid, 0)
  } catch (err) {
    // EPERM: it exists but belongs to another user
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false
  }
  if (owner.startTime === undefined) return true
  const startTime = await startTimeOf(owner.pid)
  return startTime === undefined || startTime === owner.startTime
}

async function startTimeOf (pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    // the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19]
  } catch {
    return undefined
  }
}

async function releaseLock (path: string, self: LockOwner): Promise<void> {
  heldHere.delete(path)
  const owner = await readOwner(path)
  // never delete a lock another process has since taken over
  if (typeof owner === 'object' && owner.pid === self.pid && owner.startTime === self.startTime) {
    await unlink(path).catch(ignoreMissing)
  }
}

function ignoreMissing (err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err
}
