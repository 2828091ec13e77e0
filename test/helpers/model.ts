/** Model files for tests: synthetic Llama-shaped safetensors plus JSON files, and their hashes. */

import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { join } from 'node:path'

export { writeSyntheticModel } from '../../agents/swarm/src/synthetic.js'
export type { SyntheticModel } from '../../agents/swarm/src/synthetic.js'

export async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

export async function hashes (dir: string, files: string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const file of files) out[file] = await sha256File(join(dir, file))
  return out
}

/** A small Llama shape: ~10 MiB with 1 MiB chunks, several tensors per chunk and some bigger than one. */
export const SMALL_SHAPE = { layers: 2, hidden: 512, intermediate: 1536, vocab: 4096 } as const
