/**
 * The in-place GET client against real servers on loopback: a raw TCP server that answers each
 * request as a test scripts it (split heads, bodies in the head's packet, short and long bodies,
 * chunked framing, silence, closed keep-alive connections), and a TLS server with a certificate
 * from a test CA. The S3 origin's own suites run it against the real S3 server.
 */

import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import { promisify } from 'node:util'
import { BufferPool } from '@swarm/interface'
import { afterEach, describe, expect, it } from 'vitest'
import { BodyLengthError, InPlaceGets, ObjectGets, UnsupportedFramingError, getThrough } from '../src/index.js'
import type { BodyTarget, Endpoint, InPlaceGetInit } from '../src/index.js'
import type { Server, Socket } from 'node:net'

const run = promisify(execFile)

const INIT: InPlaceGetInit = { maxConnections: 4, keepAliveMs: 5_000, timeoutMs: 2_000, maxErrorBodyBytes: 64 }

/** what a scripted server does with one request: write these pieces (with pauses), then maybe close */
type Answer = (socket: Socket, request: string) => Promise<void> | void

interface Scripted {
  endpoint: Endpoint
  /** connections accepted so far */
  connections: number
  requests: string[]
  /** the next answers, one per request; the last one repeats */
  answers: Answer[]
  close(): Promise<void>
}

async function scriptedServer (): Promise<Scripted> {
  const sockets = new Set<Socket>()
  const state: Scripted = { endpoint: { protocol: 'http:', hostname: '127.0.0.1', port: 0, host: '' }, connections: 0, requests: [], answers: [], close: async () => {} }
  const server: Server = createServer(socket => {
    state.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    let pending = ''
    socket.on('data', data => {
      pending += data.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const request = pending.slice(0, end)
        pending = pending.slice(end + 4)
        state.requests.push(request)
        const answer = state.answers.length > 1 ? state.answers.shift()! : state.answers[0]!
        void answer(socket, request)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  state.endpoint = { protocol: 'http:', hostname: '127.0.0.1', port, host: `127.0.0.1:${port}` }
  state.close = async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>(resolve => server.close(() => { resolve() }))
  }
  return state
}

/** every body read whole into a buffer of its own */
const whole: BodyTarget = (_status, _headers, length) => Buffer.allocUnsafe(length)

const ok = (body: Uint8Array, extra = ''): Answer => socket => {
  socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.byteLength}\r\n${extra}\r\n`)
  socket.write(body)
}

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function setUp (init: Partial<InPlaceGetInit> = {}): Promise<{ server: Scripted, client: InPlaceGets }> {
  const server = await scriptedServer()
  const client = new InPlaceGets({ ...INIT, ...init })
  cleanups.push(server.close, async () => { await client.close() })
  return { server, client }
}

describe('in-place GETs', () => {
  it('reads a body into the buffer the pool lends, and keeps the connection for the next request', async () => {
    const { server, client } = await setUp()
    const first = randomBytes(4 * 1024 * 1024)
    const second = randomBytes(4 * 1024 * 1024)
    server.answers = [ok(first), ok(second)]
    const pool = new BufferPool()
    const into: BodyTarget = (status, _headers, length) => status === 200 ? pool.take(length) : undefined
    const a = await client.get(server.endpoint, '/bucket/a?X-Amz-Signature=1', { into, headers: { 'x-extra': 'yes' } })
    expect(a.status).toBe(200)
    expect(Buffer.compare(a.body, first)).toBe(0)
    pool.give(a.body)
    const b = await client.get(server.endpoint, '/bucket/b', { into })
    expect(Buffer.compare(b.body, second)).toBe(0)
    // the second body was read into the memory the first was given back in
    expect(b.body.buffer === a.body.buffer).toBe(true)
    expect(server.connections).toBe(1)
    expect(server.requests[0]).toMatch(new RegExp(`^GET /bucket/a\\?X-Amz-Signature=1 HTTP/1.1\r\nHost: 127.0.0.1:${server.endpoint.port}\r\nx-extra: yes$`))
  })

  it('reads a head split over many packets and a body that came with it', async () => {
    const { server, client } = await setUp()
    const body = randomBytes(1000)
    server.answers = [async socket => {
      const whole = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nX-Long: ${'a'.repeat(3000)}\r\nContent-Length: 1000\r\n\r\n`), body])
      for (let i = 0; i < 200; i += 7) {
        socket.write(whole.subarray(i, i + 7))
        await new Promise(resolve => setTimeout(resolve, 1))
      }
      socket.write(whole.subarray(203 - (203 % 7)))
    }]
    const response = await client.get(server.endpoint, '/x', { into: whole })
    expect(Buffer.compare(response.body, body)).toBe(0)
    expect(response.headers.get('x-long')).toBe('a'.repeat(3000))
  })

  it('reports a body\'s bytes as they land in the buffer named for it, the part that came with the head first', async () => {
    const { server, client } = await setUp()
    const body = randomBytes(50_000)
    server.answers = [async socket => {
      socket.write(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 50000\r\n\r\n'), body.subarray(0, 100)]))
      for (let at = 100; at < body.length; at += 10_000) {
        await new Promise(resolve => setTimeout(resolve, 10))
        socket.write(body.subarray(at, at + 10_000))
      }
    }]
    const reports: Array<{ buffer: Uint8Array, received: number, copy: Buffer }> = []
    const response = await client.get(server.endpoint, '/x', { into: whole, onBody: (buffer, received) => { reports.push({ buffer, received, copy: Buffer.from(buffer.subarray(0, received)) }) } })
    expect(Buffer.compare(response.body, body)).toBe(0)
    expect(reports[0]?.received).toBe(100)
    expect(reports.length).toBeGreaterThan(2)
    for (const [i, report] of reports.entries()) {
      expect(report.buffer).toBe(response.body)
      if (i > 0) expect(report.received).toBeGreaterThan(reports[i - 1]!.received)
      // what was reported had landed: the bytes so far are the body's
      expect(Buffer.compare(report.copy, body.subarray(0, report.received))).toBe(0)
    }
    expect(reports.at(-1)?.received).toBe(50_000)
  })

  it('returns another status with the start of its body, and the connection stays usable', async () => {
    const { server, client } = await setUp()
    const document = `<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>${'m'.repeat(200)}</Message></Error>`
    server.answers = [socket => { socket.write(`HTTP/1.1 503 Slow Down\r\nContent-Length: ${document.length}\r\n\r\n${document}`) }, ok(Buffer.from('fine'))]
    const refused = await client.get(server.endpoint, '/x')
    expect(refused.status).toBe(503)
    expect(Buffer.from(refused.body).toString()).toBe(document.slice(0, INIT.maxErrorBodyBytes))
    const next = await client.get(server.endpoint, '/y')
    expect(Buffer.from(next.body).toString()).toBe('fine')
    expect(server.connections).toBe(1)
  })

  it('fails a body cut short with BodyLengthError and gives back nothing half read', async () => {
    const { server, client } = await setUp()
    server.answers = [socket => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n')
      socket.end(randomBytes(5000))
    }]
    const failed = await client.get(server.endpoint, '/x', { into: whole }).catch((err: unknown) => err)
    expect(failed).toBeInstanceOf(BodyLengthError)
    expect(failed).toMatchObject({ expected: 100000, received: 5000 })
  })

  it('says how much of a body cut short landed in the buffer named for it, for a ranged resumption', async () => {
    const { server, client } = await setUp()
    const start = randomBytes(3000)
    server.answers = [async socket => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 8000\r\n\r\n')
      await new Promise(resolve => setTimeout(resolve, 20))
      socket.end(start)
    }]
    const target = Buffer.alloc(8000)
    const failed = await client.get(server.endpoint, '/x', { into: () => target }).catch((err: unknown) => err)
    expect(failed).toMatchObject({ expected: 8000, received: 3000 })
    expect(Buffer.compare(target.subarray(0, 3000), start)).toBe(0)
  })

  it('refuses a buffer of the wrong size for a body, and a header or a path with a line break, without sending anything odd', async () => {
    const { server, client } = await setUp()
    server.answers = [ok(Buffer.from('12345'))]
    await expect(client.get(server.endpoint, '/x', { into: () => Buffer.alloc(4) })).rejects.toBeInstanceOf(RangeError)
    await expect(client.get(server.endpoint, '/y', { headers: { 'x-a': 'b\r\nx-injected: 1' } })).rejects.toThrow(/line break/)
    await expect(client.get(server.endpoint, '/z HTTP/1.1\r\nx-injected: 1\r\n\r\nGET /w')).rejects.toThrow(/not a request target/)
    expect(server.requests.join('\n')).not.toContain('x-injected')
  })

  it('reads none of a body the caller does not want, and closes that connection instead of draining it', async () => {
    const { server, client } = await setUp()
    let closed = false
    server.answers = [socket => {
      socket.on('close', () => { closed = true })
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n')
      socket.write(randomBytes(64 * 1024))
    }, ok(Buffer.from('next'))]
    const skipped = await client.get(server.endpoint, '/whole-blob', { into: () => false })
    expect(skipped.status).toBe(200)
    expect(skipped.body.byteLength).toBe(0)
    expect(Buffer.from((await client.get(server.endpoint, '/next', { into: whole })).body).toString()).toBe('next')
    expect(server.connections).toBe(2)
    expect(closed).toBe(true)
  })

  it('fails a body longer than its Content-Length in the first packet with BodyLengthError', async () => {
    const { server, client } = await setUp()
    server.answers = [socket => { socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n12345678') }]
    await expect(client.get(server.endpoint, '/x')).rejects.toBeInstanceOf(BodyLengthError)
  })

  it('refuses framings it does not read (chunked, no length) with UnsupportedFramingError', async () => {
    const { server, client } = await setUp()
    server.answers = [
      socket => { socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n') },
      socket => { socket.end('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close') }
    ]
    await expect(client.get(server.endpoint, '/x')).rejects.toBeInstanceOf(UnsupportedFramingError)
    await expect(client.get(server.endpoint, '/y')).rejects.toMatchObject({ framing: 'no Content-Length' })
  })

  it('sends a request again, once, on a new connection when a kept one was closed by the server', async () => {
    const { server, client } = await setUp()
    const body = randomBytes(2048)
    server.answers = [ok(body), socket => { socket.destroy() }, ok(body)]
    await client.get(server.endpoint, '/warm')
    const again = await client.get(server.endpoint, '/x', { into: whole })
    expect(Buffer.compare(again.body, body)).toBe(0)
    expect(server.connections).toBe(2)
  })

  it('does not send a request again on a new connection that fails', async () => {
    const { server, client } = await setUp()
    server.answers = [socket => { socket.destroy() }, ok(Buffer.from('never'))]
    await expect(client.get(server.endpoint, '/x')).rejects.toMatchObject({ code: 'ECONNRESET' })
    expect(server.requests).toHaveLength(1)
  })

  it('closes the connection after an answer that says Connection: close', async () => {
    const { server, client } = await setUp()
    server.answers = [ok(Buffer.from('one'), 'Connection: close\r\n'), ok(Buffer.from('two'))]
    expect(Buffer.from((await client.get(server.endpoint, '/1')).body).toString()).toBe('one')
    expect(Buffer.from((await client.get(server.endpoint, '/2')).body).toString()).toBe('two')
    expect(server.connections).toBe(2)
  })

  it('fails with ETIMEDOUT when a server goes silent, but not while bytes keep coming', async () => {
    const { server, client } = await setUp({ timeoutMs: 300 })
    server.answers = [
      async socket => {
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n')
        for (let i = 0; i < 10; i++) {
          await new Promise(resolve => setTimeout(resolve, 100))
          socket.write('x')
        }
      },
      socket => { socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxx') }
    ]
    expect(Buffer.from((await client.get(server.endpoint, '/slow')).body).toString()).toBe('x'.repeat(10))
    await expect(client.get(server.endpoint, '/silent')).rejects.toMatchObject({ code: 'ETIMEDOUT' })
  })

  it('an abort rejects with the signal\'s reason and closes the connection', async () => {
    const { server, client } = await setUp()
    server.answers = [socket => { socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nstart') }]
    const controller = new AbortController()
    const pending = client.get(server.endpoint, '/x', { signal: controller.signal })
    await new Promise(resolve => setTimeout(resolve, 50))
    controller.abort(new Error('stop'))
    await expect(pending).rejects.toThrow('stop')
    await expect(client.get(server.endpoint, '/y', { signal: AbortSignal.abort(new Error('before')) })).rejects.toThrow('before')
  })

  it('opens at most maxConnections to an endpoint; the rest wait for one', async () => {
    const { server, client } = await setUp({ maxConnections: 2 })
    server.answers = [async socket => {
      await new Promise(resolve => setTimeout(resolve, 50))
      ok(Buffer.from('done'))(socket, '')
    }]
    const bodies = await Promise.all(Array.from({ length: 6 }, async (_, i) => (await client.get(server.endpoint, `/${i}`)).body))
    expect(bodies.map(b => Buffer.from(b).toString())).toEqual(Array(6).fill('done'))
    expect(server.connections).toBe(2)
  })

  it('reaches an IPv6 address written as a URL writes it', async () => {
    const server = createServer(socket => { socket.on('data', () => { ok(Buffer.from('v6'))(socket, '') }) })
    await new Promise<void>(resolve => server.listen(0, '::1', resolve))
    cleanups.push(async () => { await new Promise<void>(resolve => server.close(() => { resolve() })) })
    const port = (server.address() as { port: number }).port
    const client = new InPlaceGets(INIT)
    cleanups.push(async () => { await client.close() })
    const response = await client.get({ protocol: 'http:', hostname: '[::1]', port, host: `[::1]:${port}` }, '/x', { into: whole })
    expect(Buffer.from(response.body).toString()).toBe('v6')
  })

  it('lets a process that is done exit while its connections idle, as undici does', async () => {
    const { server } = await setUp()
    server.answers = [ok(Buffer.from('done'))]
    // the built package, as the CLI runs it; the server keeps the connection open
    const dist = new URL('../dist/index.js', import.meta.url).href
    const script = `const { InPlaceGets } = await import(${JSON.stringify(dist)})
const gets = new InPlaceGets({ maxConnections: 1, keepAliveMs: 60000, timeoutMs: 60000, maxErrorBodyBytes: 64 })
const response = await gets.get(${JSON.stringify(server.endpoint)}, '/x', { into: (s, h, n) => Buffer.alloc(n) })
process.stdout.write(Buffer.from(response.body).toString())`
    const started = Date.now()
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000 })
    expect(stdout).toBe('done')
    expect(Date.now() - started).toBeLessThan(10_000)
    expect(server.connections).toBe(1)
  })

  it('refuses a response that is not HTTP/1.x', async () => {
    const { server, client } = await setUp()
    server.answers = [socket => { socket.write('SSH-2.0-OpenSSH\r\n\r\n') }]
    await expect(client.get(server.endpoint, '/x')).rejects.toThrow(/not an HTTP\/1.x status line/)
  })

  it('reads over TLS, checking the server against the CA it is given', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'swarm-in-place-tls-'))
    cleanups.push(async () => { await rm(dir, { recursive: true, force: true }) })
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    await run('openssl', ['req', '-x509', ...ec, '-keyout', join(dir, 'ca.key'), '-out', join(dir, 'ca.pem'), '-days', '2', '-subj', '/CN=Swarm test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
    await run('openssl', ['req', ...ec, '-keyout', join(dir, 'server.key'), '-out', join(dir, 'server.csr'), '-subj', '/CN=localhost'])
    await writeFile(join(dir, 'server.ext'), 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
    await run('openssl', ['x509', '-req', '-in', join(dir, 'server.csr'), '-CA', join(dir, 'ca.pem'), '-CAkey', join(dir, 'ca.key'), '-CAcreateserial', '-out', join(dir, 'server.pem'), '-days', '2', '-extfile', join(dir, 'server.ext')])
    const body = randomBytes(2 * 1024 * 1024)
    const server = createTlsServer({ key: await readFile(join(dir, 'server.key')), cert: await readFile(join(dir, 'server.pem')) }, socket => {
      socket.on('data', () => { ok(body)(socket, '') })
      socket.on('error', () => {})
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    cleanups.push(async () => { await new Promise<void>(resolve => server.close(() => { resolve() })) })
    const port = (server.address() as { port: number }).port
    const endpoint = { protocol: 'https:', hostname: 'localhost', port, host: `localhost:${port}` }
    const trusting = new InPlaceGets({ ...INIT, ca: await readFile(join(dir, 'ca.pem'), 'utf8') })
    const untrusting = new InPlaceGets(INIT)
    cleanups.push(async () => { await trusting.close(); await untrusting.close() })
    expect(Buffer.compare((await trusting.get(endpoint, '/x', { into: whole })).body, body)).toBe(0)
    await expect(untrusting.get(endpoint, '/x')).rejects.toMatchObject({ code: expect.stringMatching(/CERT|SELF_SIGNED|UNABLE/) })
  })
})

describe('ObjectGets and getThrough: the same answers through undici for bodies framed otherwise', () => {
  const chunked = (body: Buffer, status = 200): Answer => socket => {
    socket.write(`HTTP/1.1 ${status} X\r\nTransfer-Encoding: chunked\r\n\r\n`)
    for (let at = 0; at < body.byteLength; at += 1000) {
      const piece = body.subarray(at, at + 1000)
      socket.write(`${piece.byteLength.toString(16)}\r\n`)
      socket.write(piece)
      socket.write('\r\n')
    }
    socket.write('0\r\n\r\n')
  }

  it('reads in place until a body comes chunked, then through undici from then on, saying so once', async () => {
    const server = await scriptedServer()
    const framed = randomBytes(3000)
    const first = randomBytes(2500)
    const second = randomBytes(10)
    server.answers = [ok(framed), chunked(first), chunked(first), chunked(second)]
    const retired: string[] = []
    const gets = new ObjectGets({ ...INIT, onRetire: framing => { retired.push(framing) } })
    cleanups.push(async () => { await gets.close(); await server.close() })
    const pool = new BufferPool({ maxFreeBytes: 1 << 20, idleMs: 1000 })
    expect(Buffer.compare((await gets.get(server.endpoint, '/a', { into: whole })).body, framed)).toBe(0)
    // the first chunked body is asked for again through undici, into the buffer `into` names
    const got = await gets.get(server.endpoint, '/b', { into: (_s, _h, length) => pool.take(length), headers: { 'x-test': '1' } })
    expect(got.status).toBe(200)
    expect(Buffer.compare(got.body, first)).toBe(0)
    expect(Buffer.compare((await gets.get(server.endpoint, '/c', { into: whole })).body, second)).toBe(0)
    expect(retired).toEqual(['chunked'])
    expect(server.requests.map(r => r.split(' ')[1])).toEqual(['/a', '/b', '/b', '/c'])
    expect(server.requests[2]).toMatch(/x-test: 1/i)
  })

  it('keeps only the start of an error document, and reads none of a body not wanted', async () => {
    const server = await scriptedServer()
    const { Agent } = await import('undici')
    const agent = new Agent()
    cleanups.push(async () => { await agent.close(); await server.close() })
    server.answers = [chunked(Buffer.from('<Error>' + 'x'.repeat(500) + '</Error>'), 503), ok(randomBytes(5000))]
    const error = await getThrough(agent, server.endpoint, '/e', { into: whole, maxErrorBodyBytes: 64 })
    expect(error.status).toBe(503)
    expect(Buffer.from(error.body).toString()).toBe(('<Error>' + 'x'.repeat(500)).slice(0, 64))
    const skipped = await getThrough(agent, server.endpoint, '/f', { into: () => false, maxErrorBodyBytes: 64 })
    expect(skipped).toMatchObject({ status: 200 })
    expect(skipped.body.byteLength).toBe(0)
  })

  it('fails a body cut short, with the code of a failure the origins retry', async () => {
    const server = await scriptedServer()
    const { Agent } = await import('undici')
    const agent = new Agent()
    cleanups.push(async () => { await agent.close(); await server.close() })
    server.answers = [socket => { socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234'); socket.destroy() }]
    await expect(getThrough(agent, server.endpoint, '/g', { into: whole, maxErrorBodyBytes: 64 })).rejects.toMatchObject({ code: expect.stringMatching(/^UND_ERR_(SOCKET|RES_CONTENT_LENGTH_MISMATCH)$|^ERR_BODY_LENGTH$/) })
  })
})
