import { randomBytes, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError } from '@swarm/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAzurite } from '../../../test/helpers/azurite.mjs'
import { AzureCredentialsError, azureOrigin } from '../src/index.js'
import { azureChunkReader } from '../src/reader.js'
import type { AzureChunkReaderInit } from '../src/reader.js'
import type { AccessToken, TokenCredential } from '@azure/core-auth'
import type { ChunkReaderSpec } from '@swarm/interface'
import type { AddressInfo } from 'node:net'

let azurite: Awaited<ReturnType<typeof startAzurite>>
const container = 'readers'

beforeAll(async () => {
  azurite = await startAzurite()
  const origin = azureOrigin({ url: `az://${azurite.account}/${container}`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
  const { ContainerClient, StorageSharedKeyCredential } = await import('@azure/storage-blob')
  await new ContainerClient(`${azurite.endpoint}/${container}`, new StorageSharedKeyCredential(azurite.account, azurite.accountKey)).create()
  await origin.close()
})

afterAll(async () => {
  await azurite?.stop()
})

function chunk (size: number): { cid: string, bytes: Uint8Array } {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: cidForBytes(bytes), bytes }
}

describe('azureChunkReader', () => {
  it('reads what the origin reads, with the SAS it derives from its shared key, which expires', async () => {
    const origin = azureOrigin({ url: `az://${azurite.account}/${container}/${randomUUID()}`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    const chunks = [chunk(1), chunk(100_000), chunk(3 * 1024 * 1024)]
    for (const c of chunks) await origin.putChunk(c.cid, c.bytes)
    const spec = (await origin.chunkReaderSpec!())!
    expect(spec.adapter).toBe('azure')
    // a SAS made from the key: read permission only, for a while
    expect((spec.init as AzureChunkReaderInit).auth.query).toMatch(/sp=r&/)
    expect(spec.expiresAt).toBeGreaterThan(Date.now())
    expect(structuredClone(spec)).toEqual(spec)
    const reader = azureChunkReader({ spec })
    try {
      for (const c of chunks) {
        const bytes = await reader.getChunk(c.cid)
        expect(Buffer.compare(bytes, c.bytes)).toBe(0)
        reader.release?.(bytes)
      }
      await expect(reader.getChunk(chunk(5).cid)).rejects.toThrow(NotFoundError)
    } finally {
      await reader.close()
      await origin.close()
    }
  })

  it('asks for a fresh spec once its own has expired, and at once when the service refuses it', async () => {
    const origin = azureOrigin({ url: `az://${azurite.account}/${container}/${randomUUID()}`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    const { cid, bytes } = chunk(50_000)
    await origin.putChunk(cid, bytes)
    const good = (await origin.chunkReaderSpec!())!
    const forged = (expiresAt?: number): ChunkReaderSpec => ({
      ...good,
      init: { ...(good.init as AzureChunkReaderInit), auth: { query: (good.init as AzureChunkReaderInit).auth.query!.replace(/sig=[^&]+/, 'sig=AAAA') } },
      ...(expiresAt !== undefined ? { expiresAt } : { expiresAt: undefined })
    })
    let refreshes = 0
    const refresh = async (): Promise<ChunkReaderSpec> => { refreshes++; return good }
    const expired = azureChunkReader({ spec: forged(Date.now() - 1), refresh })
    const refused = azureChunkReader({ spec: forged(), refresh })
    const alone = azureChunkReader({ spec: forged() })
    try {
      expect(Buffer.compare(await expired.getChunk(cid), bytes)).toBe(0)
      expect(refreshes).toBe(1)
      expect(Buffer.compare(await refused.getChunk(cid), bytes)).toBe(0)
      expect(refreshes).toBe(2)
      // with no way to refresh, the refusal is the caller's
      await expect(alone.getChunk(cid)).rejects.toThrow(AzureCredentialsError)
    } finally {
      await Promise.all([expired.close(), refused.close(), alone.close(), origin.close()])
    }
  })

  it('refuses a spec of another adapter', () => {
    expect(() => azureChunkReader({ spec: { adapter: 's3', init: {} } })).toThrow(TypeError)
  })
})

describe('blob GETs with a token credential', () => {
  it('send the bearer token the credential gives, with a service version, and hand its expiry to the reader', async () => {
    const bytes = new Uint8Array(randomBytes(70_000))
    const seen: Array<{ url: string, authorization?: string, version?: string }> = []
    // a blob endpoint that takes only the current token: Azurite takes tokens only over HTTPS with OAuth set up
    let valid = 'token-1'
    const server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', authorization: req.headers.authorization, version: req.headers['x-ms-version'] as string | undefined })
      if (req.headers.authorization !== `Bearer ${valid}`) {
        res.writeHead(401, { 'x-ms-error-code': 'InvalidAuthenticationInfo', 'content-length': 0 })
        res.end()
        return
      }
      res.writeHead(200, { 'content-length': bytes.byteLength })
      res.end(bytes)
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    let issued = 0
    const tokenCredential: TokenCredential = {
      async getToken (): Promise<AccessToken> {
        issued++
        return { token: valid, expiresOnTimestamp: Date.now() + 3600_000 }
      }
    }
    const origin = azureOrigin({ url: 'az://account/models/p', endpoint: `http://127.0.0.1:${port}/account`, credential: { tokenCredential }, env: {} })
    const cid = cidForBytes(bytes)
    try {
      expect(Buffer.compare(await origin.getChunk(cid), bytes)).toBe(0)
      expect(seen[0]).toEqual({ url: `/account/models/p/chunks/${cid}`, authorization: 'Bearer token-1', version: expect.stringMatching(/^\d{4}-\d{2}-\d{2}$/) })
      const spec = (await origin.chunkReaderSpec!())!
      expect(spec.expiresAt).toBeGreaterThan(Date.now() + 3000_000)
      expect(issued).toBe(1)
      // the token is revoked early: the reader is refused once, asks for a fresh spec and reads on
      valid = 'token-2'
      const reader = azureChunkReader({
        spec,
        refresh: async () => ({ ...spec, init: { ...(spec.init as AzureChunkReaderInit), auth: { headers: { authorization: `Bearer ${valid}` } } } })
      })
      expect(Buffer.compare(await reader.getChunk(cid), bytes)).toBe(0)
      expect(seen.slice(-2).map(s => s.authorization)).toEqual(['Bearer token-1', 'Bearer token-2'])
      await reader.close()
    } finally {
      await origin.close()
      await new Promise(resolve => server.close(resolve))
    }
  })
})
