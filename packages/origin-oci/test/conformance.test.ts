import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { originConformanceTests } from '@swarm/origin-conformance'
import { afterAll, beforeAll, describe } from 'vitest'
import { startRegistry, startTokenServer } from '../../../test/helpers/oci-registry.js'
import { ociOrigin } from '../src/index.js'
import type { TestRegistry, TokenServer } from '../../../test/helpers/oci-registry.js'

/** each test gets a namespace of its own in one registry: an empty origin */
function namespace (): string {
  return `conformance-${randomBytes(6).toString('hex')}`
}

describe('anonymous registry', () => {
  let registry: TestRegistry
  beforeAll(async () => { registry = await startRegistry() })
  afterAll(async () => { await registry?.stop() })

  originConformanceTests('ociOrigin (anonymous)', async () => {
    const origin = ociOrigin({ url: `oci://${registry.host}/${namespace()}` })
    return { origin, teardown: async () => { await origin.close() } }
  })
})

describe('registry with htpasswd (HTTP basic)', () => {
  let registry: TestRegistry
  beforeAll(async () => { registry = await startRegistry({ htpasswd: { username: 'swarm', password: 's3cret-basic' } }) })
  afterAll(async () => { await registry?.stop() })

  // credentials in the URL, as for s3://KEY:SECRET@bucket
  originConformanceTests('ociOrigin (basic auth)', async () => {
    const origin = ociOrigin({ url: `oci://swarm:s3cret-basic@${registry.host}/${namespace()}` })
    return { origin, teardown: async () => { await origin.close() } }
  })
})

describe('registry with bearer tokens', () => {
  let tokens: TokenServer
  let registry: TestRegistry
  let dockerConfig: string
  beforeAll(async () => {
    tokens = await startTokenServer('swarm', 's3cret-token')
    registry = await startRegistry({ token: tokens })
    // credentials from a Docker config file, as `docker login` writes it
    dockerConfig = await mkdtemp(join(tmpdir(), 'swarm-docker-config-'))
    await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from('swarm:s3cret-token').toString('base64') } } }))
  })
  afterAll(async () => {
    await registry?.stop()
    await tokens?.stop()
    await rm(dockerConfig, { recursive: true, force: true })
  })

  originConformanceTests('ociOrigin (bearer tokens)', async () => {
    const origin = ociOrigin({ url: `oci://${registry.host}/${namespace()}`, env: { DOCKER_CONFIG: dockerConfig } })
    return { origin, teardown: async () => { await origin.close() } }
  })
})
