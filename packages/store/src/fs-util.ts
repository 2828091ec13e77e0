import { open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'
import { TEMP_SUFFIX } from './constants.js'

/**
 * Replaces `path` so that after a crash it holds either the old or the new bytes in full:
 * write a temp file, fsync it, rename it over, fsync the directory so the rename itself lasts.
 */
export async function writeFileAtomic (path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const temp = path + TEMP_SUFFIX
  const handle = await open(temp, 'w', mode)
  try {
    await handle.writeFile(data)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(temp, path)
  await fsyncDir(dirname(path))
}

/** Makes creations, renames and deletions in a directory durable. */
export async function fsyncDir (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export async function unlinkIfPresent (path: string): Promise<void> {
  try {
    await unlink(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

export function isMissing (err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
}
