/**
 * The agent's control API: HTTP on a Unix socket (mode 0600, so only the node's own users can
 * drive it), one JSON request in, newline-delimited JSON out. `POST /v1/pull` streams progress
 * events and ends with `done` or `error`; `GET /v1/status` answers one object.
 * Requests are validated with zod: the socket is an edge. Nothing a client sends can end the
 * agent: every request is handled inside try/catch, a body that is not a valid request (not JSON,
 * unknown fields, a target that is neither a manifest CID nor a `name[:tag]`) gets a 400 naming
 * what is wrong, one over {@link MAX_REQUEST_BYTES} a 413, and an unexpected failure a 500.
 */

import { request as httpRequest, createServer } from 'node:http'
import { chmod, rm } from 'node:fs/promises'
import { z } from 'zod'
import { isManifestCid, parseRef } from '@swarm/manifest'
import type { Agent } from './agent.js'
import type { Server } from 'node:http'
import type { Logger, ModelRef, TransferProgress } from '@swarm/interface'

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

/** Largest request body the socket reads. */
export const MAX_REQUEST_BYTES = 64 * 1024

const PullBody = z.object({
  target: z.string().min(1).max(512),
  cid: z.boolean().default(false),
  to: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').refine(path => !path.includes('\0'), 'must not contain NUL').optional(),
  pin: z.boolean().default(false)
}).strict()
export type PullBody = z.input<typeof PullBody>

/** A pull body, its target resolved to a manifest CID or a model reference. */
const PullRequestBody = PullBody.transform((body, ctx) => {
  const target: { cid: string } | { ref: ModelRef } | undefined = body.cid || isManifestCid(body.target)
    ? (isManifestCid(body.target) ? { cid: body.target } : undefined)
    : refOf(body.target, ctx)
  if (target === undefined) {
    if (body.cid) ctx.addIssue({ code: 'custom', path: ['target'], message: 'not a manifest CID' })
    return z.NEVER
  }
  return { ...target, to: body.to, pin: body.pin }
})

function refOf (text: string, ctx: z.RefinementCtx): { ref: ModelRef } | undefined {
  try {
    return { ref: parseRef(text) }
  } catch (err) {
    ctx.addIssue({ code: 'custom', path: ['target'], message: (err as Error).message })
    return undefined
  }
}

function describeIssues (error: z.ZodError): string {
  return error.issues.map(issue => `${issue.path.length > 0 ? issue.path.join('.') : '(body)'}: ${issue.message}`).join('; ')
}

export interface ErrorDescription { message: string, code: string, exitCode: number }

export async function serveControlApi (agent: Agent, socket: string, describe: (err: unknown) => ErrorDescription, log: Logger = agent.log): Promise<Server> {
  await rm(socket, { force: true })
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown): void => {
      if (res.headersSent) {
        res.end()
        return
      }
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n')
    }
    const fail = (err: unknown): void => {
      log.error({ err: (err as Error)?.message, stack: (err as Error)?.stack }, 'control request failed')
      try {
        reply(500, { event: 'error', code: 'ERR_INTERNAL', message: `the agent failed to answer: ${String((err as Error)?.message ?? err)}` })
      } catch {
        res.destroy()
      }
    }
    req.on('error', () => { res.destroy() })
    try {
      if (req.method !== 'POST' || req.url !== '/v1/pull') {
        // a body nobody reads is drained, so the connection ends cleanly
        req.resume()
      }
      if (req.method === 'GET' && req.url === '/v1/status') {
        reply(200, agent.status())
        return
      }
      if (req.method !== 'POST' || req.url !== '/v1/pull') {
        reply(404, { event: 'error', code: 'ERR_NOT_FOUND', message: `no such endpoint: ${req.method ?? ''} ${req.url ?? ''}` })
        return
      }
      const chunks: Buffer[] = []
      let length = 0
      let tooLarge = false
      req.on('data', (d: Buffer) => {
        if (tooLarge) return
        length += d.length
        if (length > MAX_REQUEST_BYTES) {
          tooLarge = true
          chunks.length = 0
          reply(413, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad pull request: the body is over ${MAX_REQUEST_BYTES} bytes` })
          req.resume()
          return
        }
        chunks.push(d)
      })
      req.on('end', () => {
        if (tooLarge) return
        try {
          pull(Buffer.concat(chunks))
        } catch (err) {
          fail(err)
        }
      })
    } catch (err) {
      fail(err)
    }

    function pull (bytes: Buffer): void {
      let json: unknown
      try {
        json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes))
      } catch (err) {
        reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad pull request: the body is not UTF-8 JSON (${(err as Error).message})` })
        return
      }
      const parsed = PullRequestBody.safeParse(json)
      if (!parsed.success) {
        reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad pull request: ${describeIssues(parsed.error)}` })
        return
      }
      const request = parsed.data
      const controller = new AbortController()
      res.on('close', () => { if (!res.writableFinished) controller.abort() })
      res.writeHead(200, { 'content-type': 'application/x-ndjson' })
      let last = 0
      const onProgress = (progress: TransferProgress, manifestCid: string): void => {
        const now = performance.now()
        if (now - last < 250 && progress.doneBytes < progress.totalBytes) return
        last = now
        try {
          res.write(JSON.stringify({ event: 'progress', manifestCid, ...progress }) + '\n')
        } catch (err) {
          log.debug({ err: (err as Error).message }, 'could not write progress to a control client')
        }
      }
      Promise.resolve().then(async () => await agent.pull(request, { signal: controller.signal, onProgress }))
        .then(result => {
          res.end(JSON.stringify({ event: 'done', ...result, durationMs: Math.round(result.durationMs) }) + '\n')
        }, (err: unknown) => {
          res.end(JSON.stringify({ event: 'error', ...describe(err) }) + '\n')
        })
        .catch(fail)
    }
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
