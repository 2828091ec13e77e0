/** `swarm keygen`: write a new swarm key, never over an existing file. */

import { writeFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { KeyFileExistsError, globals, emit } from './context.js'
import type { Command } from 'commander'

export async function keygenCommand (file: string, _local: unknown, command: Command): Promise<void> {
  const options = globals(command)
  const { generateSwarmKey } = await import('@swarm/p2p')
  const path = resolve(file)
  try {
    await writeFile(path, generateSwarmKey(), { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileExistsError(path)
    throw err
  }
  emit(options, { command: 'keygen', file: path }, `swarm key written to ${path}; every agent of the swarm needs this same file (--swarm-key ${path})`)
}
