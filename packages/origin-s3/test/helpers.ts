import { randomUUID } from 'node:crypto'
import { createServer, request as httpRequest } from 'node:http'
import { DeleteObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { inject } from 'vitest'
import type { Logger } from '@swarm/interface'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export const s3 = inject('s3')

export function uniquePrefix (label: string): string {
  return `test/${label}/${randomUUID()}`
}

export function adminClient (): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED'
  })
}

/** Removes what a test left under `prefix` (one DeleteObject each: multi-delete needs checksums some servers reject). */
export async function deletePrefix (prefix: string): Promise<void> {
  const client = adminClient()
  try {
    let token: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: `${prefix}/`, ...(token !== undefined ? { ContinuationToken: token } : {}) }))
      const keys = (page.Contents ?? []).flatMap(o => o.Key !== undefined ? [o.Key] : [])
      for (let i = 0; i < keys.length; i += 16) {
        await Promise.all(keys.slice(i, i + 16).map(async Key => await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key }))))
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
  } finally {
    client.destroy()
  }
}

export interface LogRecord {
  level: string
  msg?: string
  [key: string]: unknown
}

/** A pino-shaped logger that keeps every record, so tests can count retries and look for leaks. */
export function recordingLogger (records: LogRecord[] = [], bindings: Record<string, unknown> = {}): Logger & { records: LogRecord[] } {
  const at = (level: string) => (objOrMsg: object | string, msg?: string): void => {
    if (typeof objOrMsg === 'string') records.push({ ...bindings, level, msg: objOrMsg })
    else records.push({ ...bindings, ...objOrMsg, level, ...(msg !== undefined ? { msg } : {}) })
  }
  return {
    records,
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => recordingLogger(records, { ...bindings, ...more })
  }
}

/** What the fault-injecting server does with one request. */
export type Action =
  | 'proxy'
  /** passed through, the answer's body sent chunked rather than with its Content-Length */
  | 'proxy-chunked'
  | 'hang'
  | 'reset'
  | { status: number, code?: string }
  /** 200 with these bytes, sent in `pieces` parts `intervalMs` apart */
  | { drip: Uint8Array, pieces: number, intervalMs: number }

export interface SeenRequest {
  method: string
  /** path without the query */
  path: string
  /** resolves when the client closes or finishes the request */
  closed: Promise<void>
}

export interface FaultServer {
  endpoint: string
  requests: SeenRequest[]
  /** requests whose path ends with `suffix` (and of `method`, if given) */
  count(suffix: string, method?: string): number
  close(): Promise<void>
}

/**
 * A real HTTP server on 127.0.0.1 standing between the origin and the S3 server: `decide` picks,
 * per request, whether to pass it through (Host and signature untouched), answer with an S3 error,
 * never answer, or drop the connection.
 */
export async function startFaultServer (decide: (req: IncomingMessage, seen: SeenRequest[]) => Action): Promise<FaultServer> {
  const target = new URL(s3.endpoint)
  const requests: SeenRequest[] = []
  const sockets = new Set<Socket>()

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const seen: SeenRequest = {
      method: req.method ?? '',
      path: (req.url ?? '').split('?')[0] ?? '',
      closed: new Promise(resolve => { res.once('close', () => { resolve() }) })
    }
    requests.push(seen)
    const action = decide(req, requests)
    if (action === 'hang') return
    if (action === 'reset') {
      req.socket.destroy()
      return
    }
    if (action === 'proxy' || action === 'proxy-chunked') {
      const headers = { ...req.headers }
      delete headers.expect
      const upstream = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers }, (answer) => {
        const answerHeaders = { ...answer.headers }
        if (action === 'proxy-chunked') delete answerHeaders['content-length']
        res.writeHead(answer.statusCode ?? 502, answerHeaders)
        answer.pipe(res)
      })
      upstream.on('error', () => { res.destroy() })
      req.pipe(upstream)
      return
    }
    if ('drip' in action) {
      const { drip, pieces, intervalMs } = action
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': drip.byteLength })
      const size = Math.ceil(drip.byteLength / pieces)
      let sent = 0
      const timer = setInterval(() => {
        res.write(drip.subarray(sent, sent + size))
        sent += size
        if (sent >= drip.byteLength) {
          clearInterval(timer)
          res.end()
        }
      }, intervalMs)
      res.once('close', () => { clearInterval(timer) })
      return
    }
    // an S3 error, after the request body, as S3 answers
    req.resume()
    req.once('end', () => {
      const body = req.method === 'HEAD' || action.code === undefined
        ? ''
        : `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${action.code}</Code><Message>injected</Message><RequestId>test</RequestId></Error>`
      res.writeHead(action.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) })
      res.end(req.method === 'HEAD' ? undefined : body)
    })
  })
  server.on('connection', socket => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    requests,
    count: (suffix, method) => requests.filter(r => r.path.endsWith(suffix) && (method === undefined || r.method === method)).length,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

/** A port nothing listens on: bound, then released. */
export async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return address.port
}
