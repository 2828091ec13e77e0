import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { cidForBytes, verifyChunk } from '@swarm/chunker'
import { InvalidRefError, silentLogger } from '@swarm/interface'
import type { Logger } from '@swarm/interface'
import { decodeManifest } from '@swarm/manifest'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { publishModctlArtifact } from '../../../test/fixtures/modctl-artifact.js'
import { sha256, startRegistry, startTokenServer } from '../../../test/helpers/oci-registry.js'
import { OciCredentialsError, ociOrigin, parseOciUrl, UnsupportedArtifactError } from '../src/index.js'
import type { TestRegistry, TokenServer } from '../../../test/helpers/oci-registry.js'

describe('oci:// URLs', () => {
  it('maps a namespace, pins a tag or digest, and keeps credentials out of the name', () => {
    expect(parseOciUrl('oci://registry.example.com/team')).toMatchObject({ base: 'https://registry.example.com', namespace: 'team', display: 'oci://registry.example.com/team' })
    expect(parseOciUrl('oci://127.0.0.1:5000')).toMatchObject({ base: 'http://127.0.0.1:5000', namespace: '', registry: '127.0.0.1:5000' })
    expect(parseOciUrl('oci://registry.example.com/team/llama-70b:v3')).toMatchObject({ namespace: 'team', pinned: { name: 'llama-70b', repository: 'team/llama-70b', reference: 'v3' } })
    const digest = `sha256:${'a'.repeat(64)}`
    expect(parseOciUrl(`oci://r.example/m@${digest}`).pinned).toEqual({ name: 'm', repository: 'm', reference: digest })
    const withUser = parseOciUrl('oci://me:p%40ss@r.example/team')
    expect(withUser.credentials).toEqual({ username: 'me', password: 'p@ss' })
    expect(withUser.display).toBe('oci://r.example/team')
    expect(parseOciUrl('oci://localhost:5000/x', false).base).toBe('https://localhost:5000')
  })

  it('refuses URLs a registry could not serve, saying why', () => {
    expect(() => parseOciUrl('s3://bucket/x')).toThrow(/expected the oci: scheme/)
    expect(() => parseOciUrl('oci://r.example/Team')).toThrow(/repository component "Team"/)
    expect(() => parseOciUrl('oci://r.example/team/m:bad tag')).toThrow(TypeError)
    expect(() => parseOciUrl('oci://r.example/team?x=1')).toThrow(/no query/)
  })

  it('refuses a model name the registry could not hold before sending any request', async () => {
    const origin = ociOrigin({ url: 'oci://127.0.0.1:9/team/llama:v3', retries: 0 })
    // the ref grammar is checked before any request: a name the registry could not hold is refused
    await expect(origin.resolveRef({ name: 'a..b', tag: 'v1' })).rejects.toBeInstanceOf(InvalidRefError)
    await origin.close()
  })
})

describe('a registry that wants credentials', () => {
  let basic: TestRegistry
  let tokens: TokenServer
  let bearer: TestRegistry
  let work: string

  beforeAll(async () => {
    basic = await startRegistry({ htpasswd: { username: 'swarm', password: 'right' } })
    tokens = await startTokenServer('swarm', 'right')
    bearer = await startRegistry({ token: tokens })
    work = await mkdtemp(join(tmpdir(), 'swarm-oci-auth-'))
  })

  afterAll(async () => {
    await basic?.stop()
    await bearer?.stop()
    await tokens?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('says how to give credentials when it has none, and that they were refused when wrong', async () => {
    const empty = join(work, 'empty-config')
    const anonymous = ociOrigin({ url: `oci://${basic.host}/ns`, env: { DOCKER_CONFIG: empty } })
    await expect(anonymous.resolveRef({ name: 'm', tag: 'v1' })).rejects.toThrow(/wants credentials \(HTTP basic\) and none were found: run docker login/)
    await anonymous.close()
    const wrong = ociOrigin({ url: `oci://swarm:wrong@${basic.host}/ns` })
    await expect(wrong.hasChunk('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')).rejects.toBeInstanceOf(OciCredentialsError)
    await wrong.close()
    const wrongToken = ociOrigin({ url: `oci://swarm:wrong@${bearer.host}/ns` })
    await expect(wrongToken.resolveRef({ name: 'm', tag: 'v1' })).rejects.toThrow(/token server http:\/\/127\.0\.0\.1:\d+\/token refused the credentials of swarm/)
    await wrongToken.close()
    expect(tokens.requests.some(r => r.user === 'swarm')).toBe(true)
  })

  it('reads credentials from a credential helper named in the Docker config', async () => {
    const config = join(work, 'helper-config')
    const bin = join(work, 'bin')
    await mkdir(config, { recursive: true })
    await mkdir(bin, { recursive: true })
    await writeFile(join(config, 'config.json'), JSON.stringify({ credHelpers: { [basic.host]: 'swarmtest' } }))
    // a real helper program, speaking the docker-credential protocol: the server URL on stdin, JSON on stdout
    await writeFile(join(bin, 'docker-credential-swarmtest'), `#!/bin/sh\nread server\n[ "$1" = get ] && [ "$server" = "${basic.host}" ] && echo '{"Username":"swarm","Secret":"right"}'\n`)
    await chmod(join(bin, 'docker-credential-swarmtest'), 0o755)
    const origin = ociOrigin({ url: `oci://${basic.host}/ns`, env: { DOCKER_CONFIG: config, PATH: `${bin}:${process.env.PATH ?? ''}` } })
    const cid = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'
    expect(await origin.hasChunk(cid)).toBe(false)
    await origin.close()
  })

  it('names a malformed Docker config instead of pulling anonymously', async () => {
    const config = join(work, 'bad-config')
    await mkdir(config, { recursive: true })
    await writeFile(join(config, 'config.json'), '{"auths": {"x": {"auth": 7}}}')
    const origin = ociOrigin({ url: `oci://${basic.host}/ns`, env: { DOCKER_CONFIG: config } })
    await expect(origin.resolveRef({ name: 'm', tag: 'v1' })).rejects.toThrow(new RegExp(`the Docker config ${config}/config.json is not valid: auths.x.auth`))
    await origin.close()
  })
})

describe('artifacts Swarm cannot read as a model', () => {
  let registry: TestRegistry
  beforeAll(async () => { registry = await startRegistry() })
  afterAll(async () => { await registry?.stop() })

  async function putManifest (repository: string, tag: string, manifest: unknown): Promise<void> {
    const response = await fetch(`${registry.endpoint}/v2/${repository}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(manifest), headers: { 'content-type': (manifest as { mediaType: string }).mediaType } })
    expect(response.status, await response.text()).toBe(201)
  }

  async function pushBlob (repository: string, bytes: Uint8Array): Promise<{ digest: string, size: number }> {
    const digest = sha256(bytes)
    const started = await fetch(`${registry.endpoint}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
    const location = new URL(started.headers.get('location') as string, registry.endpoint)
    location.searchParams.set('digest', digest)
    expect((await fetch(location, { method: 'PUT', body: bytes })).status).toBe(201)
    return { digest, size: bytes.byteLength }
  }

  it('refuses compressed layers, layers that name no file, and paths that escape the model, saying which', async () => {
    const config = await pushBlob('bad/model', new TextEncoder().encode('{}'))
    const blob = await pushBlob('bad/model', randomBytes(1000))
    const base = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config } }
    await putManifest('bad/model', 'gzip', { ...base, layers: [{ mediaType: 'application/vnd.cncf.model.weight.v1.tar+gzip', ...blob, annotations: { 'org.cncf.model.filepath': 'w.bin' } }] })
    await putManifest('bad/model', 'nameless', { ...base, layers: [{ mediaType: 'application/octet-stream', ...blob }] })
    await putManifest('bad/model', 'escape', { ...base, layers: [{ mediaType: 'application/octet-stream', ...blob, annotations: { 'org.opencontainers.image.title': '../etc/passwd' } }] })
    const origin = ociOrigin({ url: `oci://${registry.host}/bad` })
    await expect(origin.resolveRef({ name: 'model', tag: 'gzip' })).rejects.toThrow(/is compressed; Swarm reads layers by byte range/)
    await expect(origin.resolveRef({ name: 'model', tag: 'nameless' })).rejects.toThrow(/names no file/)
    await expect(origin.resolveRef({ name: 'model', tag: 'escape' })).rejects.toBeInstanceOf(UnsupportedArtifactError)
    await origin.close()
  })
})

describe('a registry that redirects blob reads to S3', () => {
  let registry: TestRegistry
  let work: string
  beforeAll(async () => {
    const s3 = inject('s3')
    registry = await startRegistry({ s3: { endpoint: s3.endpoint, bucket: s3.bucket, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
    work = await mkdtemp(join(tmpdir(), 'swarm-oci-redirect-'))
  })
  afterAll(async () => {
    await registry?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('follows the registry redirects to presigned S3 URLs, for the layer stream and for ranged chunk reads, reporting a chunk\'s bytes as they land', async () => {
    const dir = join(work, 'model')
    await mkdir(dir, { recursive: true })
    const weights = randomBytes(5 * 1024 * 1024 + 123)
    await writeFile(join(dir, 'w.bin'), weights)
    await writeFile(join(dir, 'config.json'), '{"a":1}')
    await publishModctlArtifact(registry.endpoint, 'redirect/model', 'v1', dir, ['config.json', 'w.bin'])
    // the registry answers blob GETs with a redirect to the S3 server
    const probe = await fetch(`${registry.endpoint}/v2/redirect/model/blobs/${(await (await fetch(`${registry.endpoint}/v2/redirect/model/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json() as { layers: Array<{ digest: string }> }).layers[1]?.digest as string}`, { redirect: 'manual' })
    expect(probe.status).toBe(307)
    expect(probe.headers.get('location')).toContain(new URL(inject('s3').endpoint).host)

    const origin = ociOrigin({ url: `oci://${registry.host}/redirect`, chunkSize: 1024 * 1024 })
    const cid = await origin.resolveRef({ name: 'model', tag: 'v1' })
    const manifest = decodeManifest(await origin.getManifest(cid), { expectedCid: cid })
    const file = manifest.files.find(f => f.path === 'w.bin')
    expect(file?.chunks.length).toBe(6)
    for (const chunk of file?.chunks ?? []) {
      // the range's bytes are reported as they land, in the buffer getChunk returns
      const reports: Array<{ buffer: Uint8Array, filled: number }> = []
      const bytes = await origin.getChunk(chunk.cid, { onData: (buffer, filled) => { reports.push({ buffer, filled }) } })
      expect(verifyChunk(chunk.cid, bytes)).toBe(true)
      expect(Buffer.compare(Buffer.from(bytes), weights.subarray(chunk.offset, chunk.offset + chunk.size))).toBe(0)
      expect(reports.length).toBeGreaterThan(0)
      expect(reports.every((r, i) => r.buffer === bytes && (i === 0 || r.filled > reports[i - 1]!.filled))).toBe(true)
      expect(reports.at(-1)?.filled).toBe(chunk.size)
    }
    await origin.close()
  })

  it('reads a chunk right from a registry that ignores Range and sends the whole blob', async () => {
    const dir = join(work, 'whole')
    await mkdir(dir, { recursive: true })
    const weights = randomBytes(3 * 1024 * 1024 + 7)
    await writeFile(join(dir, 'w.bin'), weights)
    await publishModctlArtifact(registry.endpoint, 'whole/model', 'v1', dir, ['w.bin'])
    // a front that answers every blob GET with the whole blob, 200, whatever range was asked for
    let blobGets = 0
    const front = createServer((req, res) => {
      const isBlob = /\/blobs\/sha256:/.test(req.url ?? '')
      if (isBlob) blobGets++
      void fetch(`${registry.endpoint}${req.url ?? ''}`, { headers: { accept: req.headers.accept ?? '*/*' } }).then(async answer => {
        const body = Buffer.from(await answer.arrayBuffer())
        res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/octet-stream', 'content-length': String(body.byteLength), ...(answer.headers.get('docker-content-digest') !== null ? { 'docker-content-digest': answer.headers.get('docker-content-digest') as string } : {}) })
        res.end(body)
      })
    })
    await new Promise<void>(resolve => front.listen(0, '127.0.0.1', resolve))
    const said: string[] = []
    const logger: Logger = { ...silentLogger, info: (a: object | string, b?: string) => { said.push(typeof a === 'string' ? a : b ?? '') }, child: () => logger }
    const origin = ociOrigin({ url: `oci://127.0.0.1:${(front.address() as { port: number }).port}/whole`, chunkSize: 1024 * 1024, logger })
    try {
      const cid = await origin.resolveRef({ name: 'model', tag: 'v1' })
      const manifest = decodeManifest(await origin.getManifest(cid), { expectedCid: cid })
      const chunks = manifest.files.find(f => f.path === 'w.bin')?.chunks ?? []
      expect(chunks.length).toBe(4)
      const before = blobGets
      for (const chunk of chunks) {
        const bytes = await origin.getChunk(chunk.cid)
        expect(Buffer.compare(Buffer.from(bytes), weights.subarray(chunk.offset, chunk.offset + chunk.size))).toBe(0)
      }
      // found out once (the first range read, while the manifest was derived), then read through the general client
      expect(said.filter(line => line.includes('answers a range with the whole blob'))).toHaveLength(1)
      expect(blobGets - before).toBe(chunks.length)
    } finally {
      await origin.close()
      front.closeAllConnections()
      await new Promise<void>(resolve => front.close(() => { resolve() }))
    }
  })
})

describe('chunk locations handed to another instance (a byte worker\'s)', () => {
  let registry: TestRegistry
  let work: string
  beforeAll(async () => {
    registry = await startRegistry()
    work = await mkdtemp(join(tmpdir(), 'swarm-oci-locations-'))
  })
  afterAll(async () => {
    await registry?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('reads the layer ranges the resolving instance found, once told where they lie, and refuses what is no location', async () => {
    const dir = join(work, 'model')
    await mkdir(dir, { recursive: true })
    const weights = randomBytes(3 * 1024 * 1024 + 5)
    await writeFile(join(dir, 'w.bin'), weights)
    await publishModctlArtifact(registry.endpoint, 'located/model', 'v1', dir, ['w.bin'])
    const resolving = ociOrigin({ url: `oci://${registry.host}/located`, chunkSize: 1024 * 1024 })
    const other = ociOrigin({ url: `oci://${registry.host}/located`, chunkSize: 1024 * 1024 })
    try {
      const manifest = decodeManifest(await resolving.getManifest(await resolving.resolveRef({ name: 'model', tag: 'v1' })))
      const chunks = manifest.files.find(f => f.path === 'w.bin')?.chunks ?? []
      expect(chunks.length).toBe(4)
      const first = chunks[0]!
      // another instance resolved nothing: it looks among the generic blobs and finds none
      await expect(other.getChunk(first.cid)).rejects.toThrow(/not found/)
      for (const chunk of chunks) {
        const location = resolving.chunkLocation!(chunk.cid)
        expect(structuredClone(location)).toEqual(location)
        other.addChunkLocation!(chunk.cid, location)
        const bytes = await other.getChunk(chunk.cid)
        expect(Buffer.compare(Buffer.from(bytes), weights.subarray(chunk.offset, chunk.offset + chunk.size))).toBe(0)
      }
      expect(resolving.chunkLocation!(cidForBytes(new TextEncoder().encode('in no layer')))).toBeUndefined()
      const good = resolving.chunkLocation!(first.cid) as Record<string, unknown>
      for (const bad of [undefined, { ...good, repository: '../etc' }, { ...good, digest: 'md5:abc' }, { ...good, offset: -1 }, { ...good, size: 0 }]) {
        expect(() => other.addChunkLocation!(first.cid, bad)).toThrow(TypeError)
      }
    } finally {
      await resolving.close()
      await other.close()
    }
  })
})
