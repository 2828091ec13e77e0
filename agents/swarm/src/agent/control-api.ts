/**
 * The agent's control API: HTTP on a Unix socket (mode 0600, so only the node's own users can
 * drive it), one JSON request in, newline-delimited JSON out. `POST /v1/pull` streams progress
 * events and ends with `done` or `error`; `GET /v1/status` answers one object.
 * Requests are validated with zod: the socket is an edge.
 */

import { request as httpRequest, createServer } from 'node:http'
import { chmod, rm } from 'node:fs/promises'
import { z } from 'zod'
import { isManifestCid, parseRef } from '@swarm/manifest'
import type { Agent } from './agent.js'
import type { Server } from 'node:http'
import type { TransferProgress } from '@swarm/interface'

export class AgentUnavailableError extends Error {
  static override name = 'AgentUnavailableError'
  readonly code = 'ERR_AGENT_UNAVAILABLE'
  constructor (socket: string, reason: string) {
    super(`no agent answers on ${socket}: ${reason}`)
    this.name = 'AgentUnavailableError'
  }
}

/** An error the agent reported, with its stable code kept for exit codes. */
export class AgentError extends Error {
  static override name = 'AgentError'
  constructor (message: string, readonly code: string, readonly exitCode?: number) {
    super(message)
    this.name = 'AgentError'
  }
}

const PullBody = z.object({
  target: z.string().min(1).max(512),
  cid: z.boolean().default(false),
  to: z.string().min(1).startsWith('/', 'must be an absolute path').optional(),
  pin: z.boolean().default(false)
}).strict()
export type PullBody = z.input<typeof PullBody>

export interface ErrorDescription { message: string, code: string, exitCode: number }

export async function serveControlApi (agent: Agent, socket: string, describe: (err: unknown) => ErrorDescription): Promise<Server> {
  await rm(socket, { force: true })
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n')
    }
    if (req.method === 'GET' && req.url === '/v1/status') {
      reply(200, agent.status())
      return
    }
    if (req.method !== 'POST' || req.url !== '/v1/pull') {
      reply(404, { event: 'error', code: 'ERR_NOT_FOUND', message: `no such endpoint: ${req.method ?? ''} ${req.url ?? ''}` })
      return
    }
    let text = ''
    req.setEncoding('utf8')
    req.on('data', (d: string) => {
      text += d
      if (text.length > 64 * 1024) req.destroy()
    })
    req.on('end', () => {
      let body: z.output<typeof PullBody>
      try {
        body = PullBody.parse(JSON.parse(text))
      } catch (err) {
        reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad pull request: ${(err as Error).message}` })
        return
      }
      const controller = new AbortController()
      res.on('close', () => { if (!res.writableFinished) controller.abort() })
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      let last = 0
      const onProgress = (progress: TransferProgress, manifestCid: string): void => {
        const now = performance.now()
        if (now - last < 250 && progress.doneBytes < progress.totalBytes) return
        last = now
        res.write(JSON.stringify({ event: 'progress', manifestCid, ...progress }) + '\n')
      }
      const target = body.cid
        ? { cid: body.target }
        : isManifestCid(body.target) ? { cid: body.target } : { ref: parseRef(body.target) }
      Promise.resolve().then(async () => await agent.pull({ ...target, to: body.to, pin: body.pin }, { signal: controller.signal, onProgress }))
        .then(result => {
          res.end(JSON.stringify({ event: 'done', ...result, durationMs: Math.round(result.durationMs) }) + '\n')
        }, (err: unknown) => {
          res.end(JSON.stringify({ event: 'error', ...describe(err) }) + '\n')
        })
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socket, () => { resolve() })
  })
  await chmod(socket, 0o600)
  return server
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

export async function agentPull (socket: string, body: PullBody, onProgress: (event: Record<string, unknown>) => void): Promise<Record<string, unknown>> {
  let result: Record<string, unknown> | undefined
  await call(socket, 'POST', '/v1/pull', body, line => {
    if (line.event === 'progress') onProgress(line)
    else result = line
  })
  if (result == null) throw new AgentUnavailableError(socket, 'the agent closed the connection before answering')
  if (result.event === 'error') throw new AgentError(String(result.message), String(result.code), typeof result.exitCode === 'number' ? result.exitCode : undefined)
  return result
}
