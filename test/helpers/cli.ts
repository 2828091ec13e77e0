/** Runs the real `swarm` CLI as a child process, the way users and scripts do. */

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'

export const CLI = fileURLToPath(new URL('../../agents/swarm/dist/cli.js', import.meta.url))

export interface CliResult {
  code: number
  stdout: string
  stderr: string
  /** parsed JSON lines of stdout (with --json) */
  events: Array<Record<string, unknown>>
  done?: Record<string, unknown>
  error?: Record<string, unknown>
}

export function spawnSwarm (args: string[], env: Record<string, string | undefined>): ChildProcess {
  return spawn(process.execPath, [CLI, ...args], { env: { ...process.env, SWARM_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
}

export async function collect (child: ChildProcess): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const code = await new Promise<number>(resolve => child.on('close', (c, signal) => { resolve(c ?? (signal != null ? 128 : 1)) }))
  const events = stdout.split('\n').filter(l => l.startsWith('{')).map(l => JSON.parse(l) as Record<string, unknown>)
  return { code, stdout, stderr, events, done: events.find(e => e.event === 'done'), error: events.find(e => e.event === 'error') }
}

export async function swarm (args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  return await collect(spawnSwarm(args, env))
}
