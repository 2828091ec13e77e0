import { randomUUID } from 'node:crypto'
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob'
import { originConformanceTests } from '@swarm/origin-conformance'
import { afterAll, beforeAll } from 'vitest'
import { startAzurite } from '../../../test/helpers/azurite.mjs'
import { azureOrigin } from '../src/index.js'

let azurite: Awaited<ReturnType<typeof startAzurite>>
const container = 'conformance'

beforeAll(async () => {
  azurite = await startAzurite()
  await new ContainerClient(`${azurite.endpoint}/${container}`, new StorageSharedKeyCredential(azurite.account, azurite.accountKey)).create()
})

afterAll(async () => {
  await azurite?.stop()
})

originConformanceTests('azureOrigin (Azurite, shared key)', async () => {
  const origin = azureOrigin({
    url: `az://${azurite.account}/${container}/${randomUUID()}`,
    endpoint: azurite.endpoint,
    credential: { accountKey: azurite.accountKey },
    env: {}
  })
  return { origin, teardown: async () => { await origin.close() } }
})
