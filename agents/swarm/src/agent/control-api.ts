/**
 * The agent's control API: HTTP on a Unix socket (mode 0600, so only the node's own users can
 * drive it), one JSON request in, newline-delimited JSON out. `POST /v1/pull` streams progress
 * events and ends with `done` or `error`; `GET /v1/status` and `GET /v1/fleet` (every node the
 * agent knows of, and its models' states) answer one object; `POST /v1/preheat` asks the fleet to
 * pull a model and `POST /v1/resolve` names the manifest a `name[:tag]` resolves to here, each
 * answering one `done` or `error` line.
 * Requests are validated with zod: the socket is an edge. Nothing a client sends can end the
 * agent: every request is handled inside try/catch, a body that is not a valid request (not JSON,
 * unknown fields, a target that is neither a manifest CID nor a `name[:tag]`) gets a 400 naming
 * what is wrong, one over {@link MAX_REQUEST_BYTES} a 413, and an unexpected failure a 500.
 * The client (`control-client.ts`) lives apart, so the commands that use it load none of this.
 */

import { createServer } from 'node:http'
import { chmod, rm } from 'node:fs/promises'
import { z } from 'zod'
import { formatRef, isManifestCid, parseRef } from '@swarm/manifest'
import { parseSelector } from '@swarm/p2p'
import type { Agent } from './agent.js'
import type { Server } from 'node:http'
import type { Logger, ModelRef, TransferProgress } from '@swarm/interface'

/** Largest request body the socket reads. */
export const MAX_REQUEST_BYTES = 64 * 1024

const PullBody = z.object({
  target: z.string().min(1).max(512),
  cid: z.boolean().default(false),
  to: z.string().min(1).max(4096).startsWith('/', 'must be an absolute path').refine(path => !path.includes('\0'), 'must not contain NUL').optional(),
  pin: z.boolean().default(false)
}).strict()

/** What `POST /v1/pull` takes (the client's side: `control-client.ts`). */
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

const PreheatBody = z.object({
  target: z.string().min(1).max(512),
  nodes: z.string().max(1024).default('')
}).strict().transform((body, ctx) => {
  const target = refOf(body.target, ctx)
  try {
    parseSelector(body.nodes)
  } catch (err) {
    ctx.addIssue({ code: 'custom', path: ['nodes'], message: (err as Error).message })
    return z.NEVER
  }
  return target === undefined ? z.NEVER : { ref: target.ref, selector: body.nodes }
})
export type PreheatBody = z.input<typeof PreheatBody>

const ResolveBody = z.object({ target: z.string().min(1).max(512) }).strict()

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
        // per-thread CPU comes from the workers themselves, so it is asked for
        Promise.all([agent.fullStatus(), agent.threads()]).then(([status, threads]) => { reply(200, { ...status, threads }) }, fail)
        return
      }
      if (req.method === 'GET' && req.url === '/v1/fleet') {
        reply(200, agent.fleet())
        return
      }
      const handler = req.method === 'POST' ? ({ '/v1/pull': pull, '/v1/preheat': preheat, '/v1/resolve': resolveTarget } as Record<string, (json: unknown) => void>)[req.url ?? ''] : undefined
      if (handler === undefined) {
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
          reply(413, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad request: the body is over ${MAX_REQUEST_BYTES} bytes` })
          req.resume()
          return
        }
        chunks.push(d)
      })
      req.on('end', () => {
        if (tooLarge) return
        let json: unknown
        try {
          json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks)))
        } catch (err) {
          reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad request: the body is not UTF-8 JSON (${(err as Error).message})` })
          return
        }
        try {
          handler(json)
        } catch (err) {
          fail(err)
        }
      })
    } catch (err) {
      fail(err)
    }

    /** One `done` or `error` line for a request that ends at once. */
    function answer (work: () => Promise<Record<string, unknown>>): void {
      work().then(result => { reply(200, { event: 'done', ...result }) }, (err: unknown) => { reply(200, { event: 'error', ...describe(err) }) }).catch(fail)
    }

    function preheat (json: unknown): void {
      const parsed = PreheatBody.safeParse(json)
      if (!parsed.success) {
        reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad preheat request: ${describeIssues(parsed.error)}` })
        return
      }
      answer(async () => await agent.preheat(parsed.data.ref, parsed.data.selector))
    }

    function resolveTarget (json: unknown): void {
      const parsed = ResolveBody.safeParse(json)
      if (!parsed.success) {
        reply(400, { event: 'error', code: 'ERR_BAD_REQUEST', message: `bad resolve request: ${describeIssues(parsed.error)}` })
        return
      }
      const target = parsed.data.target
      answer(async () => {
        if (isManifestCid(target)) return { manifestCid: target }
        const ref = parseRef(target)
        if (agent.origin == null) return { ref: formatRef(ref) }
        return { ref: formatRef(ref), manifestCid: await agent.origin.resolveRef(ref) }
      })
    }

    function pull (json: unknown): void {
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
