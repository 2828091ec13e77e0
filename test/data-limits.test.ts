/**
 * The data plane limits as an operator sets them: `SWARM_DATA_*` variables and flags reach a real
 * agent's data server, and its /metrics shows them at work.
 */

import { connect } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { metric, startAgent } from './helpers/agents.js'
import { swarm } from './helpers/cli.js'
import type { RunningAgent } from './helpers/agents.js'

/** A TCP connection to the data port that never starts TLS; resolves with when it was closed. */
async function silentConnection (port: number): Promise<{ closed: Promise<number> }> {
  const socket = connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const closed = new Promise<number>(resolve => socket.once('close', () => { resolve(performance.now()) }))
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => { resolve() })
    socket.once('close', () => { reject(new Error('closed before connecting')) })
  })
  return { closed }
}

describe('data plane limits in the agent', () => {
  let work: string
  let agent: RunningAgent

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'swarm-data-limits-'))
    agent = await startAgent({
      dataDir: join(work, 'agent'),
      env: { SWARM_DATA_CONNECTIONS: '2', SWARM_DATA_HANDSHAKE_TIMEOUT_MS: '1500' }
    })
  })

  afterAll(async () => {
    await agent?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('closes connections beyond SWARM_DATA_CONNECTIONS and those that do not authenticate within SWARM_DATA_HANDSHAKE_TIMEOUT_MS, and counts both', async () => {
    const opened = performance.now()
    const silent = [await silentConnection(agent.dataPort), await silentConnection(agent.dataPort), await silentConnection(agent.dataPort)]
    const closedAfter = (await Promise.all(silent.map(async s => await s.closed))).map(at => at - opened).sort((a, b) => a - b)
    // one is over the cap: closed at once, not at the handshake deadline. Which one is the
    // kernel's and the threads' to say: the byte workers each accept on the port, and the node's
    // one count decides in the order their questions reach it
    expect(closedAfter[0]).toBeLessThan(1000)
    for (const after of closedAfter.slice(1)) {
      expect(after).toBeGreaterThanOrEqual(1450)
      expect(after).toBeLessThan(6000)
    }
    expect(await metric(agent, 'swarm_data_connections_refused_total', { cap: 'total' })).toBe(1)
    expect(await metric(agent, 'swarm_data_timeouts_total', { kind: 'handshake' })).toBe(2)
    expect(await metric(agent, 'swarm_data_timeouts_total', { kind: 'write' })).toBe(0)
    expect(await metric(agent, 'swarm_data_connections')).toBe(0)
    expect(await metric(agent, 'swarm_data_upload_slots_used')).toBe(0)
    // an agent that has uploaded nothing yet opens two slots, more as chunks land quickly
    expect(await metric(agent, 'swarm_data_upload_slots_open')).toBe(2)
  })

  it('refuses a limit out of range, naming the flag\'s key or the variable', async () => {
    const env = { SWARM_DATA_DIR: join(work, 'bad') }
    const flag = await swarm(['agent', '--data-write-timeout', '5', '--json'], env)
    expect(flag.code).toBe(2)
    expect(flag.stdout + flag.stderr).toMatch(/dataWriteTimeoutMs/)
    const variable = await swarm(['agent', '--json'], { ...env, SWARM_DATA_CONNECTIONS_PER_PEER: 'many' })
    expect(variable.code).toBe(2)
    expect(variable.stdout + variable.stderr).toMatch(/SWARM_DATA_CONNECTIONS_PER_PEER \(env\)/)
  })
})
