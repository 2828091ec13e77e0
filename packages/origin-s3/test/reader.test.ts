import { randomBytes } from 'node:crypto'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError } from '@swarm/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { S3CredentialsError, s3Origin } from '../src/index.js'
import { s3ChunkReader } from '../src/reader.js'
import { deletePrefix, s3, startFaultServer, uniquePrefix } from './helpers.js'
import type { S3ChunkReaderInit } from '../src/reader.js'
import type { FaultServer } from './helpers.js'
import type { ChunkReader, ChunkReaderSpec, Origin } from '@swarm/interface'

const credentials = { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }

function chunk (size = 64 * 1024): { cid: string, bytes: Uint8Array } {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: cidForBytes(bytes), bytes }
}

describe('s3ChunkReader', () => {
  let prefix: string
  const closing: Array<Origin | ChunkReader | FaultServer> = []

  function open (endpoint = s3.endpoint, init: { objectGets?: 'presigned' | 'sdk' } = {}): Origin {
    const origin = s3Origin({ url: `s3://${s3.bucket}/${prefix}`, endpoint, region: s3.region, credentials, ...init })
    closing.push(origin)
    return origin
  }

  function reader (spec: ChunkReaderSpec, refresh?: () => Promise<ChunkReaderSpec>): ChunkReader {
    const opened = s3ChunkReader({ spec, ...(refresh !== undefined ? { refresh } : {}) })
    closing.push(opened)
    return opened
  }

  beforeEach(() => {
    prefix = uniquePrefix('s3-reader')
  })

  afterEach(async () => {
    await Promise.all(closing.splice(0).map(async c => { await c.close() }))
    await deletePrefix(prefix)
  })

  it('reads the chunks the origin reads, from the spec the origin gives, with its errors', async () => {
    const origin = open()
    const chunks = [chunk(), chunk(1), chunk(3 * 1024 * 1024)]
    for (const c of chunks) await origin.putChunk(c.cid, c.bytes)
    const spec = await origin.chunkReaderSpec!()
    expect(spec?.adapter).toBe('s3')
    // static credentials do not expire
    expect(spec?.expiresAt).toBeUndefined()
    const read = reader(spec!)
    for (const c of chunks) {
      const bytes = await read.getChunk(c.cid)
      expect(Buffer.compare(bytes, c.bytes)).toBe(0)
      read.release?.(bytes)
    }
    await expect(read.getChunk(chunk().cid)).rejects.toThrow(NotFoundError)
    await expect(read.getChunk('not-a-cid')).rejects.toThrow(TypeError)
  })

  it('the spec crosses threads as it is: plain data', async () => {
    const spec = await open().chunkReaderSpec!()
    expect(structuredClone(spec)).toEqual(spec)
  })

  it('an origin that GETs through the SDK offers no reader', async () => {
    expect(await open(s3.endpoint, { objectGets: 'sdk' }).chunkReaderSpec!()).toBeUndefined()
  })

  it('asks for a fresh spec once the one it holds has expired, and once more when S3 says the token expired', async () => {
    const origin = open()
    const { cid, bytes } = chunk()
    await origin.putChunk(cid, bytes)
    const good = (await origin.chunkReaderSpec!())!
    const stale: ChunkReaderSpec = {
      ...good,
      init: { ...(good.init as S3ChunkReaderInit), credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'expired-secret' } },
      expiresAt: Date.now() - 1
    }
    let refreshes = 0
    const read = reader(stale, async () => { refreshes++; return good })
    expect(Buffer.compare(await read.getChunk(cid), bytes)).toBe(0)
    expect(refreshes).toBe(1)

    // a front that answers the first GET as S3 does for a session token past its time
    let refused = 0
    const front = await startFaultServer(req => req.method === 'GET' && refused++ === 0 ? { status: 400, code: 'ExpiredToken' } : 'proxy')
    closing.push(front)
    const viaFront = { ...good, init: { ...(good.init as S3ChunkReaderInit), base: { ...(good.init as S3ChunkReaderInit).base, hostname: '127.0.0.1', port: Number(new URL(front.endpoint).port), host: new URL(front.endpoint).host } } }
    let fronted = 0
    const again = reader(viaFront, async () => { fronted++; return viaFront })
    expect(Buffer.compare(await again.getChunk(cid), bytes)).toBe(0)
    expect(fronted).toBe(1)
    expect(front.count(`/chunks/${cid}`, 'GET')).toBe(2)

    // without a way to refresh, the refusal is the caller's
    const alone = reader({ ...stale, expiresAt: undefined })
    await expect(alone.getChunk(cid)).rejects.toThrow(S3CredentialsError)
  })

  it('refuses a spec of another adapter', () => {
    expect(() => s3ChunkReader({ spec: { adapter: 'http', init: {} } })).toThrow(TypeError)
  })
})
