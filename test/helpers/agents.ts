/** Starts real `swarm agent` processes on loopback and reads their metrics. */

import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { generateSwarmKey } from '@swarm/p2p'
import { loopbackAgentEnv } from '../../agents/swarm/src/loopback.js'
import { spawnSwarm } from './cli.js'
import type { ChildProcess } from 'node:child_process'

export interface RunningAgent {
  peerId: string
  multiaddrs: string[]
  dataPort: number
  metricsPort: number
  socket: string
  /** the FUSE adapter that mounted the view, when one was asked for */
  mountAdapter: string | null
  dataDir: string
  child: ChildProcess
  env: Record<string, string>
  stderr(): string
  stop(): Promise<number | null>
  kill(): Promise<void>
}

export interface AgentOptions {
  dataDir: string
  env: Record<string, string>
  bootstrap?: string[]
  swarmKeyFile?: string
  /** more arguments for `swarm agent` (e.g. `--label pool=a`) */
  args?: string[]
}

/**
 * Starts an agent. Agents refuse to run without a swarm key: one started without `swarmKeyFile`
 * (and not told to run open) gets a key of its own, so it is alone in its swarm; agents meant to
 * find each other share a `swarmKeyFile`.
 */
export async function startAgent (options: AgentOptions): Promise<RunningAgent> {
  if (options.swarmKeyFile == null && options.env.SWARM_INSECURE_OPEN_SWARM == null && options.env.SWARM_SWARM_KEY_FILE == null) {
    await mkdir(options.dataDir, { recursive: true })
    const keyFile = join(options.dataDir, 'swarm.key')
    await writeFile(keyFile, generateSwarmKey(), { mode: 0o600, flag: 'w' })
    options = { ...options, swarmKeyFile: keyFile }
  }
  const env: Record<string, string> = {
    // the byte path on worker threads, as on a real node (the default keeps it on the main thread below 4 cores)
    SWARM_WORKERS: '2',
    ...options.env,
    ...loopbackAgentEnv(options.dataDir, { bootstrap: options.bootstrap }),
    ...(options.swarmKeyFile != null ? { SWARM_SWARM_KEY_FILE: options.swarmKeyFile } : {})
  }
  const child = spawnSwarm(['agent', '--json', ...(options.args ?? [])], { ...env, SWARM_LOG_LEVEL: process.env.SWARM_TEST_AGENT_LOG ?? 'warn' })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => { resolve(code) }))
  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`agent did not start in 30 s: ${stderr}`)) }, 30_000)
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const line = out.split('\n').find(l => l.includes('"ready"'))
      if (line != null) {
        clearTimeout(timer)
        resolve(JSON.parse(line) as Record<string, unknown>)
      }
    })
    child.on('exit', code => {
      clearTimeout(timer)
      reject(new Error(`agent exited with ${String(code)} before it was ready: ${stderr}`))
    })
  })
  return {
    peerId: String(ready.peerId),
    multiaddrs: ready.multiaddrs as string[],
    dataPort: Number(ready.dataPort),
    metricsPort: Number(ready.metricsPort),
    socket: env.SWARM_SOCKET!,
    mountAdapter: typeof ready.mountAdapter === 'string' ? ready.mountAdapter : null,
    dataDir: options.dataDir,
    child,
    env,
    stderr: () => stderr,
    async stop () {
      if (child.exitCode != null) return child.exitCode
      child.kill('SIGTERM')
      // an agent that does not finish its shutdown must not outlive the test
      const overdue = setTimeout(() => { child.kill('SIGKILL') }, 20_000)
      try {
        return await exited
      } finally {
        clearTimeout(overdue)
      }
    },
    async kill () {
      if (child.exitCode == null) child.kill('SIGKILL')
      await exited
    }
  }
}

/** One Prometheus sample by name and labels, from the agent's /metrics. */
export async function metric (agent: RunningAgent, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${agent.metricsPort}/metrics`)).text()
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue
    const match = /^(\w+)(\{[^}]*\})?\s+(\S+)$/.exec(line)
    if (match == null || match[1] !== name) continue
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map(m => [m[1], m[2]]))
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3])
  }
  throw new Error(`metric ${name}${JSON.stringify(labels)} not found`)
}
