/**
 * What an end-to-end test sets up around its agents, and takes down after: a work directory, a
 * prefix of its own on the real S3 server (behind a counting proxy when asked), the CLI's
 * environment pointing there, a swarm key its agents share, and the agents it started.
 *
 * ```ts
 * let world: TestWorld
 * beforeAll(async () => { world = await openWorld('fleet', { proxy: true }) })
 * afterAll(async () => { await world?.close() })
 * it('…', async () => {
 *   const cid = await world.push(modelDir, 'fleet:v1')
 *   const first = await world.startAgent('agent-0')
 * })
 * ```
 *
 * `close` kills every agent started through the world, stops the proxy, deletes what was written
 * under the prefix and removes the work directory, whatever of that set-up got as far as.
 */

import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateSwarmKey } from '@swarm/p2p'
import { expect } from 'vitest'
import { startAgent } from './agents.js'
import { swarm } from './cli.js'
import { originProxy } from './proxy.js'
import { cliEnv, deletePrefix, s3Client, s3Settings, uniquePrefix } from './s3.js'
import type { AgentOptions, RunningAgent } from './agents.js'
import type { OriginProxy } from './proxy.js'
import type { S3Settings } from './s3.js'

export interface TestWorld {
  readonly s3: S3Settings
  readonly work: string
  readonly prefix: string
  /** the CLI's environment: the S3 origin at this world's prefix, through the proxy when there is one */
  readonly env: Record<string, string>
  /** the same origin, straight to the S3 server */
  readonly directEnv: Record<string, string>
  readonly proxy: OriginProxy | undefined
  /** the swarm key the world's agents share, and the file that holds it */
  readonly swarmKey: Uint8Array
  readonly keyFile: string
  /** every agent started through {@link TestWorld.startAgent}, killed by `close` */
  readonly agents: RunningAgent[]
  /**
   * `swarm push` of a model directory as `name` (1 MiB chunks unless `chunkSize` says otherwise,
   * `args` added), expected to succeed; returns the manifest CID
   */
  push(dir: string, name: string, options?: { chunkSize?: string, args?: string[], env?: Record<string, string> }): Promise<string>
  /** `count` agents in `work/<name>-N`, the first one the others' bootstrap */
  startFleet(name: string, count: number, options?: Partial<AgentOptions>): Promise<RunningAgent[]>
  /** an agent in `work/<name>` with this world's environment and swarm key (`options` overrides them) */
  startAgent(name: string, options?: Partial<AgentOptions>): Promise<RunningAgent>
  close(): Promise<void>
}

/** A world whose CLI environment reaches S3 through a counting proxy (`openWorld(name, { proxy: true })`). */
export type ProxiedWorld = TestWorld & { readonly proxy: OriginProxy }

export async function openWorld (name: string, options: { proxy: true }): Promise<ProxiedWorld>
export async function openWorld (name: string, options?: { proxy?: false }): Promise<TestWorld>
export async function openWorld (name: string, options: { proxy?: boolean } = {}): Promise<TestWorld> {
  const s3 = s3Settings()
  const work = await mkdtemp(join(tmpdir(), `swarm-${name}-`))
  const prefix = uniquePrefix(name)
  const agents: RunningAgent[] = []
  let proxy: OriginProxy | undefined
  const close = async (): Promise<void> => {
    await Promise.allSettled(agents.map(async a => await a.kill()))
    await proxy?.stop().catch(() => {})
    const client = s3Client(s3)
    try {
      await deletePrefix(client, s3.bucket, prefix)
    } finally {
      client.destroy()
      await rm(work, { recursive: true, force: true })
    }
  }
  try {
    if (options.proxy === true) proxy = await originProxy(s3.endpoint)
    const swarmKey = generateSwarmKey()
    const keyFile = join(work, 'swarm.key')
    await writeFile(keyFile, swarmKey, { mode: 0o600 })
    const directEnv = cliEnv(s3, prefix)
    const env = proxy === undefined ? directEnv : cliEnv(s3, prefix, proxy.endpoint)
    const startOne = async (agentName: string, agentOptions: Partial<AgentOptions> = {}): Promise<RunningAgent> => {
      const agent = await startAgent({ dataDir: join(work, agentName), env, swarmKeyFile: keyFile, ...agentOptions })
      agents.push(agent)
      return agent
    }
    return {
      s3,
      work,
      prefix,
      env,
      directEnv,
      proxy,
      swarmKey,
      keyFile,
      agents,
      async push (dir, modelName, pushOptions = {}) {
        const result = await swarm(['push', dir, '--name', modelName, '--chunk-size', pushOptions.chunkSize ?? '1MiB', '--json', ...(pushOptions.args ?? [])], pushOptions.env ?? env)
        expect(result.code, result.stderr).toBe(0)
        return String(result.done?.manifestCid)
      },
      async startFleet (fleetName, count, agentOptions = {}) {
        const fleet: RunningAgent[] = []
        for (let i = 0; i < count; i++) {
          fleet.push(await startOne(`${fleetName}-${i}`, { ...agentOptions, ...(i > 0 ? { bootstrap: fleet[0]!.multiaddrs } : {}) }))
        }
        return fleet
      },
      startAgent: startOne,
      close
    }
  } catch (err) {
    await close()
    throw err
  }
}
