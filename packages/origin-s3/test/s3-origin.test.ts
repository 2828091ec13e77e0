import { randomBytes } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { DeleteObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { S3CredentialsError, S3NoSuchBucketError, s3Origin } from '../src/index.js'
import { adminClient, closedPort, deletePrefix, recordingLogger, s3, startFaultServer, uniquePrefix } from './helpers.js'
import type { Action, FaultServer, LogRecord } from './helpers.js'
import type { S3OriginInit } from '../src/index.js'
import type { Origin } from '@swarm/interface'
import type { IncomingMessage } from 'node:http'

function chunk (size = 4096): { cid: string, bytes: Uint8Array } {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: cidForBytes(bytes), bytes }
}

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }

describe('s3Origin', () => {
  let prefix: string
  const opened: Origin[] = []
  const servers: FaultServer[] = []

  function open (init: Partial<S3OriginInit> = {}): Origin {
    const origin = s3Origin({ url: `s3://${s3.bucket}/${prefix}`, endpoint: s3.endpoint, region: s3.region, credentials, ...init })
    opened.push(origin)
    return origin
  }

  async function faultServer (decide: (req: IncomingMessage, seen: FaultServer['requests']) => Action): Promise<FaultServer> {
    const server = await startFaultServer(decide)
    servers.push(server)
    return server
  }

  /** The first `times` requests matching `method` and `suffix` get `action`; everything else passes through. */
  function failFirst (times: number, method: string, suffix: string, action: Action) {
    let failed = 0
    return (req: IncomingMessage): Action => {
      if (req.method === method && (req.url ?? '').split('?')[0]?.endsWith(suffix) === true && failed < times) {
        failed++
        return action
      }
      return 'proxy'
    }
  }

  beforeEach(() => {
    prefix = uniquePrefix('s3-origin')
  })

  afterEach(async () => {
    await Promise.all(opened.splice(0).map(async origin => { await origin.close() }))
    await Promise.all(servers.splice(0).map(async server => { await server.close() }))
    await deletePrefix(prefix)
  })

  describe('credentials', () => {
    it('a wrong secret gets S3CredentialsError, without retries', async () => {
      const { cid, bytes } = chunk()
      await open().putChunk(cid, bytes)
      const proxy = await faultServer(() => 'proxy')
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const wrong = open({ endpoint: proxy.endpoint, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-secret' }, objectGets })
        await expect(wrong.getChunk(cid)).rejects.toThrow(S3CredentialsError)
        await expect(wrong.getChunk(cid)).rejects.toThrow(/SignatureDoesNotMatch.*secret access key is wrong/)
      }
      const wrong = open({ endpoint: proxy.endpoint, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-secret' } })
      await expect(wrong.hasChunk(cid)).rejects.toThrow(S3CredentialsError)
      await expect(wrong.putChunk(chunk().cid, bytes)).rejects.toThrow(S3CredentialsError)
      await expect(collect(wrong.listChunks())).rejects.toThrow(S3CredentialsError)
      // one request per call: 4 GETs, a HEAD, a PUT, a LIST
      expect(proxy.requests).toHaveLength(7)
    })

    it('an unknown access key gets S3CredentialsError naming that', async () => {
      const unknown = open({ credentials: { accessKeyId: 'nobody', secretAccessKey: 'x' } })
      await expect(unknown.getChunk(chunk().cid)).rejects.toThrow(/InvalidAccessKeyId.*access key id is unknown/)
    })

    it('takes credentials from the URL and never shows them', async () => {
      const secret = encodeURIComponent(s3.secretAccessKey)
      const logger = recordingLogger()
      const proxy = await faultServer(failFirst(1, 'GET', '', { status: 503, code: 'SlowDown' }))
      const origin = s3Origin({ url: `s3://${s3.accessKeyId}:${secret}@${s3.bucket}/${prefix}`, endpoint: proxy.endpoint, logger })
      opened.push(origin)
      expect(origin.url).toBe(`s3://${s3.bucket}/${prefix}`)
      const { cid, bytes } = chunk()
      await origin.putChunk(cid, bytes)
      expect(Buffer.from(await origin.getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
      const missing = chunk().cid
      const err = await origin.getChunk(missing).catch((e: Error) => e)
      expect(err).toBeInstanceOf(NotFoundError)
      // the retry was logged; no record nor message holds the secret or a signature
      expect(logger.records.some(r => r.msg?.includes('retrying'))).toBe(true)
      const logged = JSON.stringify(logger.records) + String((err as Error).message)
      expect(logged).not.toContain(s3.secretAccessKey)
      expect(logged).not.toContain('X-Amz-Signature')
    })
  })

  describe('chunk buffers', () => {
    it('reads a later chunk into memory given back through release, and only into that', async () => {
      const origin = open()
      const first = chunk(300_000)
      const second = chunk(300_000)
      await origin.putChunk(first.cid, first.bytes)
      await origin.putChunk(second.cid, second.bytes)

      const got = await origin.getChunk(first.cid)
      expect(Buffer.from(got).equals(Buffer.from(first.bytes))).toBe(true)
      origin.release?.(got)
      // a second release of the same bytes, and bytes the origin never lent, are ignored
      origin.release?.(got)
      origin.release?.(new Uint8Array(300_000))
      const again = await origin.getChunk(second.cid)
      expect(again.buffer).toBe(got.buffer)
      expect(Buffer.from(again).equals(Buffer.from(second.bytes))).toBe(true)
      // the buffer was lent once: held bytes are never handed out again
      const third = await origin.getChunk(first.cid)
      expect(third.buffer).not.toBe(again.buffer)
      expect(Buffer.from(third).equals(Buffer.from(first.bytes))).toBe(true)
      expect(Buffer.from(again).equals(Buffer.from(second.bytes))).toBe(true)
    })
  })

  describe('object GETs', () => {
    it('reports a chunk\'s bytes as they land, in the buffer getChunk then returns', async () => {
      const origin = open()
      const big = chunk(3 * 1024 * 1024)
      await origin.putChunk(big.cid, big.bytes)
      const reports: Array<{ buffer: Uint8Array, filled: number }> = []
      const got = await origin.getChunk(big.cid, { onData: (buffer, filled) => { reports.push({ buffer, filled }) } })
      expect(Buffer.from(got).equals(Buffer.from(big.bytes))).toBe(true)
      expect(reports.length).toBeGreaterThan(1)
      expect(reports.every(r => r.buffer === got)).toBe(true)
      expect(reports.every((r, i) => i === 0 || r.filled > reports[i - 1]!.filled)).toBe(true)
      expect(reports.at(-1)?.filled).toBe(big.bytes.length)
    })

    it('reads bodies framed otherwise (chunked) through undici from then on, and says so once', async () => {
      const records: LogRecord[] = []
      const front = await faultServer(req => req.method === 'GET' ? 'proxy-chunked' : 'proxy')
      const origin = open({ endpoint: front.endpoint, logger: recordingLogger(records) })
      const chunks = [chunk(), chunk(300_000), chunk(1)]
      for (const c of chunks) await origin.putChunk(c.cid, c.bytes)
      for (const c of chunks) expect(Buffer.compare(await origin.getChunk(c.cid), c.bytes)).toBe(0)
      expect(front.count('/chunks/' + chunks[2].cid, 'GET')).toBe(1)
      expect(records.filter(r => String(r.msg).includes('not framed by Content-Length'))).toHaveLength(1)
    })
  })

  describe('retries', () => {
    it('retries 503 SlowDown on every kind of request, then succeeds', async () => {
      const { cid, bytes } = chunk(200_000)
      const slowdown = { status: 503, code: 'SlowDown' }
      let failures = 0
      const twice = new Map<string, number>()
      // each distinct request (method and path) is refused twice before it passes
      const proxy = await faultServer((req) => {
        const key = `${req.method} ${(req.url ?? '').split('?')[0]}${req.method === 'GET' && (req.url ?? '').includes('list-type=2') ? ' list' : ''}`
        const seen = twice.get(key) ?? 0
        twice.set(key, seen + 1)
        if (seen < 2) {
          failures++
          return slowdown
        }
        return 'proxy'
      })
      const origin = open({ endpoint: proxy.endpoint })
      await origin.putChunk(cid, bytes)
      expect(await origin.hasChunk(cid)).toBe(true)
      expect(Buffer.from(await origin.getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
      expect(await collect(origin.listChunks())).toEqual([cid])
      const viaSdk = open({ endpoint: proxy.endpoint, objectGets: 'sdk' })
      await viaSdk.putManifest(cid, bytes)
      expect(Buffer.from(await viaSdk.getManifest(cid)).equals(Buffer.from(bytes))).toBe(true)

      expect(proxy.count(`/chunks/${cid}`, 'PUT')).toBe(3)
      expect(proxy.count(`/chunks/${cid}`, 'HEAD')).toBe(3)
      expect(proxy.count(`/chunks/${cid}`, 'GET')).toBe(3)
      expect(proxy.count(`/manifests/${cid}`, 'PUT')).toBe(3)
      expect(proxy.count(`/manifests/${cid}`, 'GET')).toBe(3)
      expect(proxy.requests.filter(r => r.method === 'GET' && r.path.replace(/\/$/, '') === `/${s3.bucket}`)).toHaveLength(3)
      expect(failures).toBe(12)
    })

    it('retries a dropped connection and a response that never comes', async () => {
      const { cid, bytes } = chunk()
      await open().putChunk(cid, bytes)
      const reset = await faultServer(failFirst(1, 'GET', cid, 'reset'))
      expect(Buffer.from(await open({ endpoint: reset.endpoint }).getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
      expect(reset.count(cid, 'GET')).toBe(2)

      for (const objectGets of ['presigned', 'sdk'] as const) {
        const silent = await faultServer(failFirst(1, 'GET', cid, 'hang'))
        const started = performance.now()
        const bytesBack = await open({ endpoint: silent.endpoint, requestTimeoutMs: 300, objectGets }).getChunk(cid)
        expect(Buffer.from(bytesBack).equals(Buffer.from(bytes))).toBe(true)
        expect(silent.count(cid, 'GET')).toBe(2)
        expect(performance.now() - started).toBeGreaterThanOrEqual(250)
      }
    })

    it('lets a slow transfer run past requestTimeoutMs while bytes keep coming', async () => {
      const { cid, bytes } = chunk(64 * 1024)
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const slow = await faultServer(() => ({ drip: bytes, pieces: 8, intervalMs: 100 }))
        const started = performance.now()
        const got = await open({ endpoint: slow.endpoint, requestTimeoutMs: 400, objectGets }).getChunk(cid)
        expect(performance.now() - started).toBeGreaterThan(700)
        expect(Buffer.from(got).equals(Buffer.from(bytes))).toBe(true)
        expect(slow.count(cid, 'GET')).toBe(1)
      }
    })

    it('does not retry a 404', async () => {
      const proxy = await faultServer(() => 'proxy')
      const { cid } = chunk()
      for (const objectGets of ['presigned', 'sdk'] as const) {
        await expect(open({ endpoint: proxy.endpoint, objectGets }).getChunk(cid)).rejects.toThrow(NotFoundError)
      }
      expect(await open({ endpoint: proxy.endpoint }).hasChunk(cid)).toBe(false)
      expect(proxy.count(cid, 'GET')).toBe(2)
      expect(proxy.count(cid, 'HEAD')).toBe(1)
    })

    it('gives up on a server that keeps failing with OriginUnavailableError after the retries', async () => {
      const broken = await faultServer(() => ({ status: 500, code: 'InternalError' }))
      const { cid, bytes } = chunk()
      const origin = open({ endpoint: broken.endpoint, retries: 2 })
      const err = await origin.getChunk(cid).catch((e: Error) => e)
      expect(err).toBeInstanceOf(OriginUnavailableError)
      expect((err as Error).message).toContain(broken.endpoint)
      expect((err as Error).message).toMatch(/keeps failing.*failed 3 times.*HTTP 500 InternalError/)
      await expect(origin.putChunk(cid, bytes)).rejects.toThrow(OriginUnavailableError)
      expect(broken.count(cid, 'GET')).toBe(3)
      expect(broken.count(cid, 'PUT')).toBe(3)
    })

    it('reports an endpoint where nothing listens as OriginUnavailableError after bounded retries', async () => {
      const endpoint = `http://127.0.0.1:${await closedPort()}`
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const logger = recordingLogger()
        const origin = open({ endpoint, retries: 3, objectGets, logger })
        const started = performance.now()
        const err = await origin.getChunk(chunk().cid).catch((e: Error) => e)
        expect(err).toBeInstanceOf(OriginUnavailableError)
        expect((err as Error).message).toContain(`S3 endpoint ${endpoint} cannot be reached`)
        expect((err as Error).message).toMatch(/failed 4 times.*ECONNREFUSED/)
        expect(logger.records.filter(r => r.msg?.includes('retrying'))).toHaveLength(3)
        // three backoffs of at most 200, 400, 800 ms
        expect(performance.now() - started).toBeLessThan(1400 + 1000)
      }
      await expect(open({ endpoint, retries: 1 }).putChunk(chunk().cid, new Uint8Array(1))).rejects.toThrow(OriginUnavailableError)
      await expect(open({ endpoint, retries: 1 }).hasChunk(chunk().cid)).rejects.toThrow(OriginUnavailableError)
    })
  })

  describe('aborts', () => {
    it('aborting a request in flight rejects at once and closes the connection', async () => {
      const { cid, bytes } = chunk()
      await open().putChunk(cid, bytes)
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const silent = await faultServer(() => 'hang')
        const origin = open({ endpoint: silent.endpoint, objectGets })
        const controller = new AbortController()
        const reason = new Error('user gave up')
        const pending = origin.getChunk(cid, { signal: controller.signal })
        while (silent.requests.length === 0) await new Promise(resolve => setTimeout(resolve, 10))
        const started = performance.now()
        controller.abort(reason)
        await expect(pending).rejects.toBe(reason)
        expect(performance.now() - started).toBeLessThan(500)
        // the server sees the client hang up
        await silent.requests[0]?.closed
        expect(silent.requests).toHaveLength(1)
      }
    })

    it('requests in flight add no abort listener to the caller\'s signal, and its abort still reaches every one', async () => {
      const { cid, bytes } = chunk()
      await open().putChunk(cid, bytes)
      for (const objectGets of ['presigned', 'sdk'] as const) {
        const silent = await faultServer(() => 'hang')
        const origin = open({ endpoint: silent.endpoint, objectGets, maxSockets: 32 })
        // one signal shared by a whole pull, as the fetcher and the agent pass it
        const controller = new AbortController()
        const pending = Array.from({ length: 24 }, async () => await origin.getChunk(cid, { signal: controller.signal }))
        while (silent.requests.length < 24) await new Promise(resolve => setTimeout(resolve, 10))
        // the SDK and our GET add listeners per request: none of them on the caller's signal
        expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0)
        const reason = new Error('pull cancelled')
        controller.abort(reason)
        for (const request of pending) await expect(request).rejects.toBe(reason)
        await Promise.all(silent.requests.map(async request => await request.closed))
      }
    })

    it('an abort during the backoff ends the wait', async () => {
      const broken = await faultServer(() => ({ status: 503, code: 'SlowDown' }))
      const origin = open({ endpoint: broken.endpoint, retries: 10 })
      const controller = new AbortController()
      const pending = origin.getChunk(chunk().cid, { signal: controller.signal })
      while (broken.requests.length === 0) await new Promise(resolve => setTimeout(resolve, 10))
      controller.abort()
      await expect(pending).rejects.toMatchObject({ name: 'AbortError' })
      const seen = broken.requests.length
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(broken.requests.length).toBe(seen)
    })
  })

  describe('listing', () => {
    it('follows ListObjectsV2 pages', async () => {
      const chunks = Array.from({ length: 25 }, () => chunk(64))
      const origin = open()
      await Promise.all(chunks.map(async ({ cid, bytes }) => { await origin.putChunk(cid, bytes) }))
      const proxy = await faultServer(() => 'proxy')
      const paged = open({ endpoint: proxy.endpoint, listPageSize: 7 })
      expect((await collect(paged.listChunks())).sort()).toEqual(chunks.map(c => c.cid).sort())
      expect(proxy.requests.filter(r => r.method === 'GET' && r.path.replace(/\/$/, '') === `/${s3.bucket}`)).toHaveLength(4)
    })

    it('lists refs across pages, skipping keys that are not refs and refs that hold no CID', async () => {
      const origin = open({ listPageSize: 2 })
      const { cid } = chunk()
      const names = ['a/one', 'a/two', 'b', 'c/d/e']
      for (const name of names) await origin.putRef({ name, tag: 'v1' }, cid)
      // objects under refs/ that no ref names
      const client = adminClient()
      for (const key of ['refs/Upper/v1', 'refs/no-tag']) {
        await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/${key}`, Body: cid }))
      }
      // a ref whose body is no CID
      await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${prefix}/refs/damaged/v1`, Body: 'garbage' }))
      client.destroy()
      await expect(origin.resolveRef({ name: 'damaged', tag: 'v1' })).rejects.toThrow(/ref damaged:v1 at .* does not hold a CID/)
      expect(await collect(origin.listRefs())).toEqual(names.map(name => ({ name, tag: 'v1', cid })))
    })
  })

  describe('configuration', () => {
    it('refuses malformed URLs and options with TypeError, without echoing secrets', () => {
      expect(() => s3Origin({ url: 'http://bucket/prefix' })).toThrow(/expected the s3: scheme/)
      expect(() => s3Origin({ url: 's3:///prefix' })).toThrow(/no bucket/)
      expect(() => s3Origin({ url: 's3://bucket/a//b' })).toThrow(/empty, "\." or "\.\." component/)
      expect(() => s3Origin({ url: 'not a url with secret s3cr3t' })).toThrow(/^invalid S3 origin URL: not a URL/)
      expect(() => s3Origin({ url: 'not a url with secret s3cr3t' })).not.toThrow(/s3cr3t/)
      expect(() => s3Origin({ url: 's3://bucket', endpoint: 'ftp://host' })).toThrow(/http: or https:/)
      expect(() => s3Origin({ url: 's3://bucket', maxSockets: 0 })).toThrow(/maxSockets must be an integer ≥ 1/)
      expect(() => s3Origin({ url: 's3://bucket', retries: -1 })).toThrow(/retries must be an integer ≥ 0/)
      expect(() => s3Origin({ url: 's3://bucket', objectGets: 'curl' as 'sdk' })).toThrow(/objectGets/)
    })

    it('names its location without credentials, with or without a prefix', () => {
      expect(s3Origin({ url: 's3://bucket' }).url).toBe('s3://bucket')
      expect(s3Origin({ url: 's3://bucket/a/b/' }).url).toBe('s3://bucket/a/b')
      expect(s3Origin({ url: new URL('s3://key:secret@bucket/p') }).url).toBe('s3://bucket/p')
    })

    it('a bucket that does not exist gets S3NoSuchBucketError', async () => {
      const origin = s3Origin({ url: 's3://swarm-no-such-bucket/x', endpoint: s3.endpoint, region: s3.region, credentials })
      opened.push(origin)
      await expect(origin.getChunk(chunk().cid)).rejects.toThrow(S3NoSuchBucketError)
      await expect(collect(origin.listChunks())).rejects.toThrow(/bucket swarm-no-such-bucket does not exist/)
    })

    it('works with the whole bucket as the origin (no prefix)', async () => {
      // keys land at the bucket root: use a name no other test writes, and remove it after
      const origin = s3Origin({ url: `s3://${s3.bucket}`, endpoint: s3.endpoint, region: s3.region, credentials })
      opened.push(origin)
      const { cid, bytes } = chunk()
      await origin.putChunk(cid, bytes)
      try {
        expect(Buffer.from(await origin.getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
        expect(await collect(origin.listChunks())).toContain(cid)
      } finally {
        const client = adminClient()
        await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: `chunks/${cid}` }))
        client.destroy()
      }
    })
  })
})
