/**
 * The client side of the agent's control API (`control-api.ts` serves it): what `swarm pull`,
 * `swarm status` and the fleet commands send over the agent's Unix socket. Kept apart from the
 * server so a command that only talks to the agent loads `node:http` and nothing of the peer
 * stack: loading the server's module cost a `swarm pull` about a CPU-second per run.
 */

import { request as httpRequest } from 'node:http'
import { SwarmError } from '@swarm/interface'
// types only: erased from the output, so the server's module (and the peer stack) is not loaded
import type { PullBody } from './control-api.js'
import type { FleetView } from './fleet.js'

export class AgentUnavailableError extends SwarmError {
  override readonly code = 'ERR_AGENT_UNAVAILABLE'
  constructor (socket: string, reason: string) {
    super(`no agent answers on ${socket}: ${reason}`)
  }
}

/** An error the agent reported, with its stable code kept for exit codes. */
export class AgentError extends SwarmError {
  constructor (message: string, override readonly code: string, readonly exitCode?: number) {
    super(message)
  }
}

function call (socket: string, method: string, path: string, body: unknown, onLine: (line: Record<string, unknown>) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath: socket, method, path, headers: { 'content-type': 'application/json' } }, res => {
      let buffer = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => {
        buffer += d
        let nl: number
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl)
          buffer = buffer.slice(nl + 1)
          if (line.trim() !== '') onLine(JSON.parse(line) as Record<string, unknown>)
        }
      })
      res.on('end', () => { resolve() })
      res.on('error', reject)
    })
    req.on('error', err => { reject(new AgentUnavailableError(socket, err.message)) })
    if (body != null) req.end(JSON.stringify(body))
    else req.end()
  })
}

export async function agentStatus (socket: string): Promise<Record<string, unknown>> {
  let status: Record<string, unknown> | undefined
  await call(socket, 'GET', '/v1/status', undefined, line => { status = line })
  if (status == null) throw new AgentUnavailableError(socket, 'empty answer')
  return status
}

export async function agentFleet (socket: string): Promise<FleetView> {
  let view: FleetView | undefined
  await call(socket, 'GET', '/v1/fleet', undefined, line => { view = line as unknown as FleetView })
  if (view == null) throw new AgentUnavailableError(socket, 'empty answer')
  return view
}

/** A request that answers one `done` line; an `error` line throws {@link AgentError}. */
export async function agentRequest (socket: string, path: '/v1/preheat' | '/v1/resolve', body: unknown): Promise<Record<string, unknown>> {
  let result: Record<string, unknown> | undefined
  await call(socket, 'POST', path, body, line => { result = line })
  return answered(socket, result)
}

export async function agentPull (socket: string, body: PullBody, onProgress: (event: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  let result: Record<string, unknown> | undefined
  await call(socket, 'POST', '/v1/pull', body, line => {
    if (line.event === 'progress') onProgress(line)
    else result = line
  })
  return answered(socket, result)
}

/** The last line of a request that answers `done` or `error`; an `error` throws {@link AgentError}. */
function answered (socket: string, result: Record<string, unknown> | undefined): Record<string, unknown> {
  if (result == null) throw new AgentUnavailableError(socket, 'the agent closed the connection before answering')
  if (result.event === 'error') throw new AgentError(String(result.message), String(result.code), typeof result.exitCode === 'number' ? result.exitCode : undefined)
  return result
}
