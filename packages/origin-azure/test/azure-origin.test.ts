import { randomBytes, randomUUID } from 'node:crypto'
import { ContainerClient, ContainerSASPermissions, generateBlobSASQueryParameters, StorageSharedKeyCredential } from '@azure/storage-blob'
import { cidForBytes } from '@swarm/chunker'
import { NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAzurite } from '../../../test/helpers/azurite.mjs'
import { freePort } from '../../../test/helpers/nginx.mjs'
import { AzureContainerNotFoundError, AzureCredentialsError, azureOrigin, isAzureBlobUrl, parseAzureUrl } from '../src/index.js'

let azurite: Awaited<ReturnType<typeof startAzurite>>
let admin: ContainerClient
const container = 'models'

beforeAll(async () => {
  azurite = await startAzurite()
  admin = new ContainerClient(`${azurite.endpoint}/${container}`, new StorageSharedKeyCredential(azurite.account, azurite.accountKey))
  await admin.create()
})

afterAll(async () => {
  await azurite?.stop()
})

function sas (permissions: string): string {
  return generateBlobSASQueryParameters({
    containerName: container,
    permissions: ContainerSASPermissions.parse(permissions),
    expiresOn: new Date(Date.now() + 3600_000)
  }, new StorageSharedKeyCredential(azurite.account, azurite.accountKey)).toString()
}

describe('azureOrigin against Azurite', () => {
  it('writes a chunk once: a second put finds it there (If-None-Match: *) and leaves the blob as it was', async () => {
    const prefix = randomUUID()
    const origin = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    const bytes = new Uint8Array(randomBytes(100_000))
    const cid = cidForBytes(bytes)
    await origin.putChunk(cid, bytes)
    const before = await admin.getBlobClient(`${prefix}/chunks/${cid}`).getProperties()
    await Promise.all([origin.putChunk(cid, bytes), origin.putChunk(cid, bytes)])
    const after = await admin.getBlobClient(`${prefix}/chunks/${cid}`).getProperties()
    expect(after.etag).toBe(before.etag)
    expect(after.contentType).toBe('application/octet-stream')
    expect(Buffer.from(await origin.getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
  })

  it('takes a SAS from the URL, from AZURE_STORAGE_SAS_TOKEN and from the caller, and keeps it out of url and errors', async () => {
    const prefix = randomUUID()
    const token = sas('racwl')
    const bytes = new Uint8Array(randomBytes(1000))
    const cid = cidForBytes(bytes)
    const fromUrl = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}?${token}`, endpoint: azurite.endpoint, env: {} })
    expect(fromUrl.url).toBe(`az://${azurite.account}/${container}/${prefix}`)
    await fromUrl.putChunk(cid, bytes)
    const fromEnv = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}`, endpoint: azurite.endpoint, env: { AZURE_STORAGE_SAS_TOKEN: token } })
    expect(await fromEnv.hasChunk(cid)).toBe(true)
    // a read-only SAS reads, and a write with it is refused as a credentials problem
    const readOnly = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}`, endpoint: azurite.endpoint, credential: { sasToken: sas('rl') }, env: {} })
    expect(Buffer.from(await readOnly.getChunk(cid)).equals(Buffer.from(bytes))).toBe(true)
    const other = new Uint8Array(randomBytes(10))
    const err = await readOnly.putChunk(cidForBytes(other), other).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(AzureCredentialsError)
    expect(err.message).toContain('the SAS given')
    expect(err.message).not.toMatch(/sig=/)
  })

  it('uses AZURE_STORAGE_KEY for the account it belongs to, and refuses a wrong key as a credentials error', async () => {
    const prefix = randomUUID()
    const origin = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}`, endpoint: azurite.endpoint, env: { AZURE_STORAGE_ACCOUNT: azurite.account, AZURE_STORAGE_KEY: azurite.accountKey } })
    const manifest = new TextEncoder().encode('{"version":1}')
    const cid = cidForBytes(manifest, 0x0200)
    await origin.putManifest(cid, manifest)
    expect(new TextDecoder().decode(await origin.getManifest(cid))).toBe('{"version":1}')
    const wrong = azureOrigin({ url: `az://${azurite.account}/${container}/${prefix}`, endpoint: azurite.endpoint, credential: { accountKey: Buffer.from('not the key').toString('base64') }, env: {} })
    const err = await wrong.getManifest(cid).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(AzureCredentialsError)
    expect(err.message).toMatch(/HTTP 403/)
  })

  it('names a missing container, and a missing blob is NotFoundError', async () => {
    const origin = azureOrigin({ url: `az://${azurite.account}/absent-container/x`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    const cid = cidForBytes(new Uint8Array(4))
    const err = await origin.putChunk(cid, new Uint8Array(4)).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(AzureContainerNotFoundError)
    expect(err.message).toContain('container absent-container does not exist')
    const present = azureOrigin({ url: `az://${azurite.account}/${container}/${randomUUID()}`, endpoint: azurite.endpoint, credential: { accountKey: azurite.accountKey }, env: {} })
    await expect(present.getChunk(cid)).rejects.toBeInstanceOf(NotFoundError)
  })

  it('says the endpoint cannot be reached after its retries', async () => {
    const origin = azureOrigin({ url: `az://${azurite.account}/${container}/x`, endpoint: `http://127.0.0.1:${await freePort()}/${azurite.account}`, credential: { accountKey: azurite.accountKey }, env: {}, retries: 1 })
    const err = await origin.getChunk(cidForBytes(new Uint8Array(4))).catch((e: unknown) => e as Error)
    expect(err).toBeInstanceOf(OriginUnavailableError)
    expect(err.message).toMatch(/cannot be reached.*2 attempts.*ECONNREFUSED/)
  })
})

describe('parseAzureUrl', () => {
  it('reads both URL forms and takes a SAS out of the query', () => {
    expect(parseAzureUrl('az://acct/models/team/prod/')).toEqual({ account: 'acct', container: 'models', prefix: 'team/prod/', serviceUrl: 'https://acct.blob.core.windows.net', display: 'az://acct/models/team/prod' })
    expect(parseAzureUrl('https://acct.blob.core.windows.net/models?sv=2024&sig=abc')).toEqual({ account: 'acct', container: 'models', prefix: '', serviceUrl: 'https://acct.blob.core.windows.net', display: 'https://acct.blob.core.windows.net/models', sasToken: 'sv=2024&sig=abc' })
    expect(isAzureBlobUrl('https://acct.blob.core.windows.net/models')).toBe(true)
    expect(isAzureBlobUrl('https://models.example.com/x')).toBe(false)
    expect(isAzureBlobUrl('az://acct/models')).toBe(true)
  })

  it('rejects bad accounts, containers and prefixes with a clear error, never echoing a secret', () => {
    expect(() => parseAzureUrl('az://acct')).toThrow(/no container/)
    expect(() => parseAzureUrl('az://Bad_Account/models')).toThrow(/not a storage account name/)
    expect(() => parseAzureUrl('az://acct/Models')).toThrow(/not a container name/)
    expect(() => parseAzureUrl('az://acct/models/a//b')).toThrow(/empty, "\." or "\.\." component/)
    expect(() => parseAzureUrl('https://example.com/models')).toThrow(/is not <account>\.blob\.core\.windows\.net/)
    expect(() => parseAzureUrl('az://user:s3cret@acct/models')).toThrow(/credentials do not go in the URL/)
    expect(() => parseAzureUrl('az://user:s3cret@acct/models')).not.toThrow(/s3cret/)
    expect(() => parseAzureUrl('az://acct/models?sig=s3cret#x')).not.toThrow(/s3cret/)
  })
})
