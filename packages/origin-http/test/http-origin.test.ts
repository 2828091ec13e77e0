import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { fileOrigin } from '@swarm/origin-file'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startNginx } from '../../../test/helpers/nginx.mjs'
import { HttpListingUnsupportedError, HttpOriginAuthError, httpOrigin, parseHttpOriginUrl } from '../src/index.js'
import type { IncomingHttpHeaders, IncomingMessage, Server } from 'node:http'

let nginx: Awaited<ReturnType<typeof startNginx>>

beforeAll(async () => {
  nginx = await startNginx({
    tls: true,
    // a tree without listings, and one behind Basic auth (user swarm, password secret)
    extraLocations: `location /plain/ { autoindex off; }
    location /private/ { auth_basic "models"; auth_basic_user_file /dev/null; }`
  })
})

afterAll(async () => {
  await nginx?.stop()
})

interface Seen { method: string, path: string, headers: IncomingHttpHeaders, status: number }

/**
 * A real proxy in front of nginx that can cut a response off after some bytes (the connection
 * dropped mid-body) and run a step before forwarding a request, and records what passed.
 */
async function cuttingProxy (target: string, plan: { cutAfter?: (n: number) => number | undefined, before?: (n: number) => Promise<void> }): Promise<{ url: string, seen: Seen[], close: () => Promise<void> }> {
  const upstream = new URL(target)
  const seen: Seen[] = []
  const server: Server = createServer((req: IncomingMessage, res) => {
    const n = seen.length
    const entry: Seen = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, status: 0 }
    seen.push(entry)
    void (plan.before?.(n) ?? Promise.resolve()).then(() => {
      const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, answer => {
        entry.status = answer.statusCode ?? 0
        const parts: Buffer[] = []
        answer.on('data', (d: Buffer) => parts.push(d))
        answer.on('end', () => {
          const body = Buffer.concat(parts)
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          const cut = plan.cutAfter?.(n)
          if (cut === undefined) {
            res.end(body)
            return
          }
          res.write(body.subarray(0, cut), () => { res.socket?.destroy() })
        })
      })
      req.pipe(forward)
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no address')
  return {
    url: `http://127.0.0.1:${address.port}`,
    seen,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

describe('httpOrigin against nginx', () => {
  let dir: string
  let prefix: string
  const closers: Array<() => Promise<void>> = []

  afterEach(async () => {
    for (const close of closers.splice(0)) await close()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function served (): Promise<ReturnType<typeof fileOrigin>> {
    prefix = `models-${randomUUID()}`
    dir = join(nginx.root, prefix)
    await mkdir(dir)
    const writer = fileOrigin({ url: pathToFileURL(dir) })
    closers.push(async () => { await writer.close() })
    return writer
  }

  function open (base: string, extra: Parameters<typeof httpOrigin>[0] = { url: '' }): ReturnType<typeof httpOrigin> {
    const origin = httpOrigin({ ...extra, url: `${base}/${prefix}` })
    closers.push(async () => { await origin.close() })
    return origin
  }

  it('resumes a body cut off mid-read with a ranged GET bound to the ETag, and gets the same bytes, reported as they land in one buffer', async () => {
    const writer = await served()
    const bytes = new Uint8Array(randomBytes(3 * 1024 * 1024 + 5))
    const cid = cidForBytes(bytes)
    await writer.putChunk(cid, bytes)
    const proxy = await cuttingProxy(nginx.url, { cutAfter: n => n === 0 ? 1024 * 1024 : undefined })
    closers.push(proxy.close)
    const reports: Array<{ buffer: Uint8Array, filled: number }> = []
    const got = await open(proxy.url).getChunk(cid, { onData: (buffer, filled) => { reports.push({ buffer, filled }) } })
    expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true)
    expect(reports.every(r => r.buffer === got)).toBe(true)
    // never backwards: the resumed read goes on from where the first stopped
    expect(reports.every((r, i) => i === 0 || r.filled >= reports[i - 1]!.filled)).toBe(true)
    expect(reports.some(r => r.filled > 0 && r.filled < 1024 * 1024)).toBe(true)
    expect(reports.at(-1)?.filled).toBe(bytes.length)
    expect(proxy.seen).toHaveLength(2)
    const [first, second] = proxy.seen
    expect(first?.headers.range).toBeUndefined()
    expect(second?.headers.range).toMatch(/^bytes=\d+-$/)
    expect(Number(/^bytes=(\d+)-$/.exec(second?.headers.range ?? '')?.[1])).toBeGreaterThan(0)
    expect(second?.headers['if-match']).toMatch(/^"[^"]+"$/)
    expect(second?.status).toBe(206)
  })

  it('reads an object again from the start when it changed between a broken read and the resumption (412)', async () => {
    const writer = await served()
    const a = cidForBytes(new Uint8Array(randomBytes(64)), 0x0200)
    const b = cidForBytes(new Uint8Array(randomBytes(64)), 0x0200)
    await writer.putRef({ name: 'org/model', tag: 'v1' }, a)
    const proxy = await cuttingProxy(nginx.url, {
      cutAfter: n => n === 0 ? 20 : undefined,
      // the tag moves while the first read is broken off: a newer, larger file (new ETag)
      before: async n => { if (n === 1) await writeFile(join(dir, 'refs', 'org', 'model', 'v1'), `${b}\n`) }
    })
    closers.push(proxy.close)
    expect(await open(proxy.url).resolveRef({ name: 'org/model', tag: 'v1' })).toBe(b)
    expect(proxy.seen.map(s => [s.headers.range !== undefined, s.status])).toEqual([[false, 200], [true, 412], [false, 200]])
  })

  it('follows a redirect to another server for a chunk without taking the credentials along', async () => {
    const writer = await served()
    const bytes = new Uint8Array(randomBytes(2 * 1024 * 1024 + 3))
    const cid = cidForBytes(bytes)
    await writer.putChunk(cid, bytes)
    const storage = await cuttingProxy(nginx.url, {})
    closers.push(storage.close)
    // a CDN edge that hands every GET on to the storage host
    const asked: IncomingHttpHeaders[] = []
    const edge = createServer((req, res) => {
      asked.push(req.headers)
      res.writeHead(302, { location: `${storage.url}${req.url ?? ''}`, 'content-length': '2' })
      res.end('go')
    })
    await new Promise<void>(resolve => edge.listen(0, '127.0.0.1', resolve))
    closers.push(async () => { edge.closeAllConnections(); await new Promise<void>(resolve => edge.close(() => { resolve() })) })
    const port = (edge.address() as { port: number }).port
    const got = await open(`http://swarm:token@127.0.0.1:${port}`).getChunk(cid)
    expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true)
    expect(asked[0]?.authorization).toBe(`Basic ${Buffer.from('swarm:token').toString('base64')}`)
    expect(storage.seen.map(s => [s.status, s.headers.authorization])).toEqual([[200, undefined]])
  })

  it('reads bodies the server sends chunked, without a Content-Length, through the general client', async () => {
    const writer = await served()
    const chunks = [new Uint8Array(randomBytes(300_000)), new Uint8Array(randomBytes(5000))]
    for (const bytes of chunks) await writer.putChunk(cidForBytes(bytes), bytes)
    // node's own server writes a body chunked when it is given no length
    const server = createServer((req, res) => {
      const name = (req.url ?? '').split('/').pop() ?? ''
      const bytes = chunks.find(c => cidForBytes(c) === name)
      if (bytes === undefined) {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200)
      res.write(bytes.subarray(0, 1000))
      res.end(bytes.subarray(1000))
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    closers.push(async () => { server.closeAllConnections(); await new Promise<void>(resolve => server.close(() => { resolve() })) })
    const origin = open(`http://127.0.0.1:${(server.address() as { port: number }).port}`)
    for (const bytes of chunks) expect(Buffer.from(await origin.getChunk(cidForBytes(bytes))).equals(Buffer.from(bytes))).toBe(true)
  })

  it('takes a directory for no object: a prefix of a name is not found, not followed', async () => {
    const writer = await served()
    await writer.putRef({ name: 'org/team/model', tag: 'latest' }, cidForBytes(new Uint8Array(randomBytes(8)), 0x0200))
    await expect(open(nginx.url).resolveRef({ name: 'org', tag: 'team' })).rejects.toBeInstanceOf(NotFoundError)
    await expect(open(nginx.url).resolveRef({ name: 'org/team', tag: 'model' })).rejects.toBeInstanceOf(NotFoundError)
  })

  it('names how to enable listings when the server gives none, while pulls by name still work', async () => {
    prefix = `plain/models-${randomUUID()}`
    dir = join(nginx.root, prefix)
    await mkdir(dir, { recursive: true })
    const writer = fileOrigin({ url: pathToFileURL(dir) })
    const cid = cidForBytes(new Uint8Array(randomBytes(8)), 0x0200)
    await writer.putRef({ name: 'org/model', tag: 'v1' }, cid)
    const origin = open(nginx.url)
    expect(await origin.resolveRef({ name: 'org/model', tag: 'v1' })).toBe(cid)
    const listing = async (): Promise<unknown[]> => { const out = []; for await (const r of origin.listRefs()) out.push(r); return out }
    await expect(listing()).rejects.toBeInstanceOf(HttpListingUnsupportedError)
    await expect(listing()).rejects.toThrow(/autoindex_format json/)
  })

  it('refuses with HttpOriginAuthError when the server asks for credentials, and keeps them out of url and messages', async () => {
    prefix = `private/models-${randomUUID()}`
    dir = join(nginx.root, prefix)
    await mkdir(dir, { recursive: true })
    const origin = httpOrigin({ url: `${nginx.url.replace('http://', 'http://swarm:s3cret@')}/${prefix}` })
    closers.push(async () => { await origin.close() })
    expect(origin.url).not.toContain('s3cret')
    const err = await origin.getManifest(cidForBytes(new Uint8Array(8), 0x0200)).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(HttpOriginAuthError)
    expect((err as HttpOriginAuthError).status).toBe(401)
    expect((err as Error).message).not.toContain('s3cret')
  })

  it('trusts the test CA only when given it: without it the TLS handshake fails', async () => {
    const writer = await served()
    const cid = cidForBytes(new Uint8Array(randomBytes(8)), 0x0200)
    await writer.putRef({ name: 'm', tag: 'v1' }, cid)
    expect(await open(nginx.httpsUrl as string, { url: '', ca: nginx.ca?.ca }).resolveRef({ name: 'm', tag: 'v1' })).toBe(cid)
    const untrusted = open(nginx.httpsUrl as string, { url: '', retries: 0 })
    await expect(untrusted.resolveRef({ name: 'm', tag: 'v1' })).rejects.toThrow(/certificate/i)
  })

  it('says the server cannot be reached after its retries, naming it', async () => {
    prefix = 'models'
    const origin = httpOrigin({ url: `http://127.0.0.1:${await freePort()}/models`, retries: 1 })
    closers.push(async () => { await origin.close() })
    const err = await origin.getChunk(cidForBytes(new Uint8Array(8))).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(OriginUnavailableError)
    expect(err.message).toMatch(/cannot be reached.*failed 2 times.*ECONNREFUSED/)
  })
})

describe('parseHttpOriginUrl', () => {
  it('keeps the prefix, drops credentials from the display form and turns them into Basic auth', () => {
    const parsed = parseHttpOriginUrl('https://user:p%40ss@models.example.com:8443/team/prod/')
    expect(parsed).toEqual({
      origin: 'https://models.example.com:8443',
      basePath: '/team/prod/',
      display: 'https://models.example.com:8443/team/prod',
      authorization: `Basic ${Buffer.from('user:p@ss').toString('base64')}`
    })
    expect(parseHttpOriginUrl('http://127.0.0.1:8080').basePath).toBe('/')
  })

  it('rejects other schemes, queries and dot segments with a clear error, never echoing a secret', () => {
    expect(() => parseHttpOriginUrl('ftp://host/x')).toThrow(/expected the http: or https: scheme/)
    expect(() => parseHttpOriginUrl('https://host/x?token=abc')).toThrow(/no query or fragment/)
    expect(() => parseHttpOriginUrl('https://host/x?token=abc')).not.toThrow(/abc/)
    expect(() => parseHttpOriginUrl('https://host/a//b')).toThrow(/an empty, "\." or "\.\." component/)
    expect(() => parseHttpOriginUrl('not a url s3cret')).toThrow(/not a URL/)
    expect(() => parseHttpOriginUrl('not a url s3cret')).not.toThrow(/s3cret/)
  })
})
