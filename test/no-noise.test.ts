/**
 * Normal commands print no warnings: push, pull (through an agent and alone), ls and status
 * against the real S3 server, with Node's warnings left on (no --no-warnings, and without the
 * AWS SDK's opt-out variable the test setup sets for its own workers). The model has enough
 * chunks that a pull keeps its full concurrency of fetches in flight on one signal, which is
 * what used to print `MaxListenersExceededWarning`.
 */

import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { swarm } from './helpers/cli.js'
import { writeSyntheticModel } from './helpers/model.js'
import { openWorld } from './helpers/world.js'
import type { RunningAgent } from './helpers/agents.js'
import type { CliResult } from './helpers/cli.js'
import type { TestWorld } from './helpers/world.js'

/** stderr lines a warning puts there: Node's `(node:PID) XWarning: …` and the SDK's notices */
function warnings (result: CliResult | string): string[] {
  const text = typeof result === 'string' ? result : result.stderr
  return text.split('\n').filter(line => /warning/i.test(line))
}

describe('normal commands print no warnings', () => {
  let world: TestWorld
  let env: Record<string, string | undefined>
  let model: Awaited<ReturnType<typeof writeSyntheticModel>>
  let agent: RunningAgent | undefined

  beforeAll(async () => {
    world = await openWorld('quiet')
    env = {
      ...world.env,
      // what a user's shell has: the SDK's opt-out unset, Node's warnings on
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined,
      NODE_OPTIONS: undefined,
      NODE_NO_WARNINGS: undefined
    }
    // ~40 chunks of 1 MiB: more than the pull's 16 fetches in flight
    model = await writeSyntheticModel(join(world.work, 'model'), { layers: 4, hidden: 512, intermediate: 1536, vocab: 8192, shards: 2 })
  })

  afterAll(async () => {
    await world?.close()
  }, 60_000)

  it('push, pull --no-agent, pull through the agent, ls and status', async () => {
    expect(model.totalBytes).toBeGreaterThan(32 * 1024 * 1024)
    const push = await swarm(['push', model.dir, '--name', 'quiet:v1', '--chunk-size', '1MiB', '--data-dir', join(world.work, 'pusher')], env)
    expect(push.code, push.stderr).toBe(0)
    expect(warnings(push)).toEqual([])

    const alone = await swarm(['pull', 'quiet:v1', '--no-agent', '--to', join(world.work, 'out-alone'), '--data-dir', join(world.work, 'alone')], env)
    expect(alone.code, alone.stderr).toBe(0)
    expect(warnings(alone)).toEqual([])

    agent = await world.startAgent('agent', { env: env as Record<string, string> })
    const agentEnv = { ...env, ...agent.env }
    const viaAgent = await swarm(['pull', 'quiet:v1', '--to', join(world.work, 'out-agent'), '--json'], agentEnv)
    expect(viaAgent.code, viaAgent.stderr).toBe(0)
    expect(viaAgent.done?.via).toBe('agent')
    expect(warnings(viaAgent)).toEqual([])

    // ls reads a store directly, and the agent holds its own: list the pusher's
    const ls = await swarm(['ls', '--data-dir', join(world.work, 'pusher')], env)
    expect(ls.code, ls.stderr).toBe(0)
    expect(ls.stdout).toContain('quiet')
    expect(warnings(ls)).toEqual([])

    const status = await swarm(['status'], agentEnv)
    expect(status.code, status.stderr).toBe(0)
    expect(warnings(status)).toEqual([])

    // the agent did the pull's world.work: its own stderr holds no warning either
    expect(warnings(agent.stderr())).toEqual([])
    expect(await agent.stop()).toBe(0)
    expect(warnings(agent.stderr())).toEqual([])
  }, 180_000)
})
