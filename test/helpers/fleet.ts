/** A small fleet of real agents sharing one swarm key, and the cleanup of a test that ran one. */

import { rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSwarmKey } from '@swarm/p2p'
import { startAgent } from './agents.js'
import { deletePrefix, s3Client } from './s3.js'
import type { RunningAgent } from './agents.js'
import type { S3Settings } from './s3.js'

/** `count` agents in `work/agent-N`, the first one the others' bootstrap; each is pushed to `agents` as it starts, so a failed start still leaves the started ones for cleanup. */
export async function startFleet (count: number, options: { work: string, env: Record<string, string>, agents: RunningAgent[] }): Promise<RunningAgent[]> {
  const keyFile = join(options.work, 'swarm.key')
  await writeFile(keyFile, generateSwarmKey(), { mode: 0o600 })
  for (let i = 0; i < count; i++) {
    options.agents.push(await startAgent({ dataDir: join(options.work, `agent-${i}`), env: options.env, swarmKeyFile: keyFile, bootstrap: i > 0 ? options.agents[0]!.multiaddrs : undefined }))
  }
  return options.agents
}

/** Kills the agents, deletes what the test wrote under its S3 prefix and removes its work directory. */
export async function cleanUp (options: { agents: Array<RunningAgent | undefined>, s3: S3Settings, prefix: string, work: string }): Promise<void> {
  await Promise.allSettled(options.agents.map(async a => await a?.kill()))
  const client = s3Client(options.s3)
  try {
    await deletePrefix(client, options.s3.bucket, options.prefix)
  } finally {
    client.destroy()
    await rm(options.work, { recursive: true, force: true })
  }
}
