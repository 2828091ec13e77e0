/**
 * The OCI registry origin end to end: the real CLI against a real registry (Debian's
 * docker-registry, distribution 2.8, started by scripts/oci-registry.sh), with models published
 * as `modctl` lays them out and by `swarm push`. The registry has no referrers API, so these also
 * exercise the OCI 1.1 tag-schema fallback.
 */

import { cp, mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ociOrigin } from '../packages/origin-oci/src/index.js'
import { publishModctlArtifact } from './fixtures/modctl-artifact.js'
import { swarm } from './helpers/cli.js'
import { hashes, SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { blobPath, sha256, startRegistry } from './helpers/oci-registry.js'
import type { LayerStyle } from './fixtures/modctl-artifact.js'
import type { TestRegistry } from './helpers/oci-registry.js'

const DERIVED = 'derived the chunk manifest from the layers'
const LONG_PATH = `docs/${'a-rather-long-directory-name/'.repeat(3)}model-card-with-a-name-long-enough-for-pax.md`

/** modctl's tar layers for most files; the older cnai names, a raw layer and a pax header for some. */
function styleOf (path: string): LayerStyle {
  if (path === 'config.json') return 'cncf-raw'
  if (path.startsWith('tokenizer')) return 'cnai-tar'
  return 'cncf-tar'
}

async function flipByte (path: string, offset: number): Promise<void> {
  const handle = await open(path, 'r+')
  try {
    const byte = Buffer.alloc(1)
    await handle.read(byte, 0, 1, offset)
    byte[0] = (byte[0] as number) ^ 0xff
    await handle.write(byte, 0, 1, offset)
  } finally {
    await handle.close()
  }
}

describe('OCI registry origin, end to end', () => {
  let registry: TestRegistry
  let work: string
  let model: { dir: string, files: string[] }

  beforeAll(async () => {
    registry = await startRegistry()
    work = await mkdtemp(join(tmpdir(), 'swarm-oci-e2e-'))
    const synthetic = await writeSyntheticModel(join(work, 'model'), { ...SMALL_SHAPE, shards: 2 })
    await mkdir(join(synthetic.dir, LONG_PATH, '..'), { recursive: true })
    await writeFile(join(synthetic.dir, LONG_PATH), '# model card\n'.repeat(100))
    model = { dir: synthetic.dir, files: [...synthetic.files, LONG_PATH].sort() }
  })

  afterAll(async () => {
    await registry?.stop()
    await rm(work, { recursive: true, force: true })
  })

  function pull (args: string[], node: string): ReturnType<typeof swarm> {
    return swarm(['pull', ...args, '--no-agent', '--json', '--log-level', 'info', '--data-dir', join(work, node)], { SWARM_CHUNK_SIZE: '1MiB' })
  }

  it('pulls an artifact laid out as modctl lays it out byte for byte, and a second node reuses the chunk manifest the first derived', async () => {
    const artifact = await publishModctlArtifact(registry.endpoint, 'team/llama', 'v1', model.dir, model.files, styleOf)
    expect(new Set(artifact.layers.map(l => l.mediaType))).toEqual(new Set([
      'application/vnd.cncf.model.weight.v1.tar', 'application/vnd.cncf.model.weight.config.v1.tar', 'application/vnd.cncf.model.weight.config.v1.raw',
      'application/vnd.cnai.model.weight.config.v1.tar', 'application/vnd.cncf.model.doc.v1.tar'
    ]))

    const first = await pull(['llama', '--origin', `oci://${registry.host}/team/llama:v1`, '--to', join(work, 'out-1')], 'node-1')
    expect(first.code, first.stderr).toBe(0)
    expect(await hashes(join(work, 'out-1'), model.files)).toEqual(await hashes(model.dir, model.files))
    expect(first.stderr).toContain(DERIVED)
    expect(first.done?.bytesBySource).toMatchObject({ origin: first.done?.totalBytes })

    // published back as a referrer: distribution 2.8 has no referrers API, so in the tag-schema index
    const index = await fetch(`${registry.endpoint}/v2/team/llama/manifests/${artifact.manifestDigest.replace(':', '-')}`, { headers: { accept: 'application/vnd.oci.image.index.v1+json' } })
    expect(index.status).toBe(200)
    const referrers = (await index.json() as { manifests: Array<{ artifactType: string, annotations: Record<string, string> }> }).manifests
    expect(referrers).toHaveLength(1)
    expect(referrers[0]?.artifactType).toBe('application/vnd.swarm.chunk-manifest.v1')
    expect(referrers[0]?.annotations['io.swarm.manifest.cid']).toBe(first.done?.manifestCid)

    // another node, naming the model through the namespace: same manifest, nothing re-hashed
    const second = await pull(['llama:v1', '--origin', `oci://${registry.host}/team`, '--to', join(work, 'out-2')], 'node-2')
    expect(second.code, second.stderr).toBe(0)
    expect(second.done?.manifestCid).toBe(first.done?.manifestCid)
    expect(second.stderr).not.toContain(DERIVED)
    expect(await hashes(join(work, 'out-2'), model.files)).toEqual(await hashes(model.dir, model.files))
  })

  it('swarm push publishes a ModelPack artifact and its chunk manifest; another node pulls it byte for byte', async () => {
    const origin = `oci://${registry.host}/pushed`
    const push = await swarm(['push', model.dir, '--name', 'tiny:v1', '--chunk-size', '1MiB', '--json', '--origin', origin, '--data-dir', join(work, 'pusher')], {})
    expect(push.code, push.stderr).toBe(0)

    const response = await fetch(`${registry.endpoint}/v2/pushed/tiny/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    const manifest = await response.json() as { artifactType: string, config: { mediaType: string }, layers: Array<{ mediaType: string, digest: string, annotations: Record<string, string> }> }
    expect(manifest.artifactType).toBe('application/vnd.cncf.model.manifest.v1+json')
    expect(manifest.config.mediaType).toBe('application/vnd.cncf.model.config.v1+json')
    expect(manifest.layers.map(l => l.annotations['org.cncf.model.filepath']).sort()).toEqual(model.files)
    // each layer is the file itself
    for (const layer of manifest.layers) {
      expect(layer.digest).toBe(sha256(await readFile(join(model.dir, layer.annotations['org.cncf.model.filepath'] as string))))
      if (layer.annotations['org.cncf.model.filepath']?.endsWith('.safetensors') === true) expect(layer.mediaType).toBe('application/vnd.cncf.model.weight.v1.raw')
    }

    const pulled = await pull(['tiny:v1', '--origin', origin, '--to', join(work, 'out-pushed')], 'node-3')
    expect(pulled.code, pulled.stderr).toBe(0)
    expect(pulled.done?.manifestCid).toBe(push.done?.manifestCid)
    expect(pulled.stderr).not.toContain(DERIVED)
    expect(await hashes(join(work, 'out-pushed'), model.files)).toEqual(await hashes(model.dir, model.files))
  })

  it('detects a tampered layer, whether it derives the manifest or finds it published', async () => {
    const weights = model.files.find(f => f.endsWith('.safetensors')) as string
    // published and pulled once (the referrer exists), then a layer's bytes change under the registry
    const known = await publishModctlArtifact(registry.endpoint, 'team/known', 'v1', model.dir, model.files, () => 'cncf-raw')
    const before = await pull(['known', '--origin', `oci://${registry.host}/team/known:v1`], 'node-4')
    expect(before.code, before.stderr).toBe(0)
    // a distinct model for the derive case: its own layer blobs
    const copy = join(work, 'model-copy')
    await cp(model.dir, copy, { recursive: true })
    await writeFile(join(copy, 'config.json'), JSON.stringify({ different: true }))
    const fresh = await publishModctlArtifact(registry.endpoint, 'team/fresh', 'v1', copy, model.files, styleOf)

    const layer = known.layers.find(l => l.path === weights)
    await flipByte(blobPath(registry, layer?.digest as string), 4 * 1024 * 1024 + 17)
    const freshConfig = fresh.layers.find(l => l.path === 'config.json')
    await flipByte(blobPath(registry, freshConfig?.digest as string), 3)

    const published = await pull(['known', '--origin', `oci://${registry.host}/team/known:v1`, '--to', join(work, 'out-known')], 'node-5')
    expect(published.code, published.stderr).toBe(4)
    expect(published.error?.message).toMatch(/failed verification/)
    expect(published.error?.message).toContain(weights)

    const derived = await pull(['fresh', '--origin', `oci://${registry.host}/team/fresh:v1`, '--to', join(work, 'out-fresh')], 'node-6')
    expect(derived.code, derived.stderr).toBe(4)
    expect(derived.error?.message).toMatch(new RegExp(`layer ${freshConfig?.digest as string} \\(config\\.json\\) does not match its digest`))
  })

  it('refuses files that a wrong chunk manifest would make: each is checked against its layer digest', async () => {
    // two models with the same paths and sizes; only the safetensors bytes differ
    const other = await writeSyntheticModel(join(work, 'other'), { ...SMALL_SHAPE, shards: 2, seed: 'other' })
    await mkdir(join(other.dir, LONG_PATH, '..'), { recursive: true })
    await cp(join(model.dir, LONG_PATH), join(other.dir, LONG_PATH))
    const genuine = await publishModctlArtifact(registry.endpoint, 'team/genuine', 'v1', model.dir, model.files, styleOf)
    await publishModctlArtifact(registry.endpoint, 'team/other', 'v1', other.dir, model.files, styleOf)

    // the node holds the other model; then someone publishes its chunk manifest as the genuine one's
    const held = await pull(['other', '--origin', `oci://${registry.host}/team/other:v1`], 'node-7')
    expect(held.code, held.stderr).toBe(0)
    const origin = ociOrigin({ url: `oci://${registry.host}/team` })
    const forged = await origin.getManifest(await origin.resolveRef({ name: 'other', tag: 'v1' }))
    await origin.close()
    await forgeReferrer(registry.endpoint, 'team/genuine', genuine.manifestDigest, forged, held.done?.manifestCid as string)

    const pulled = await pull(['genuine', '--origin', `oci://${registry.host}/team/genuine:v1`, '--to', join(work, 'out-genuine')], 'node-7')
    expect(pulled.code, pulled.stderr).toBe(4)
    expect(pulled.error?.code).toBe('ERR_DIGEST_MISMATCH')
    expect(pulled.error?.message).toMatch(/the manifest named the wrong chunks/)
    // nothing was placed
    await expect(readFile(join(work, 'out-genuine', 'config.json'))).rejects.toThrow(/ENOENT/)
  })
})

/** A referrer of `subject` carrying `manifest` as its chunk manifest, written with plain HTTP as anyone could. */
async function forgeReferrer (endpoint: string, repository: string, subject: string, manifest: Uint8Array, cid: string): Promise<void> {
  const upload = async (bytes: Uint8Array): Promise<string> => {
    const digest = sha256(bytes)
    const started = await fetch(`${endpoint}/v2/${repository}/blobs/uploads/`, { method: 'POST' })
    const location = new URL(started.headers.get('location') as string, endpoint)
    location.searchParams.set('digest', digest)
    expect((await fetch(location, { method: 'PUT', body: bytes })).status).toBe(201)
    return digest
  }
  const empty = await upload(new TextEncoder().encode('{}'))
  const layer = await upload(manifest)
  const annotations = { 'io.swarm.manifest.cid': cid, 'io.swarm.chunk-size': String(1024 * 1024) }
  const referrer = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: 'application/vnd.swarm.chunk-manifest.v1',
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty, size: 2 },
    layers: [{ mediaType: 'application/vnd.swarm.manifest.v1+json', digest: layer, size: manifest.byteLength }],
    subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: subject, size: 0 },
    annotations
  }))
  const put = await fetch(`${endpoint}/v2/${repository}/manifests/${sha256(referrer)}`, { method: 'PUT', body: referrer, headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' } })
  expect(put.status).toBe(201)
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(referrer), size: referrer.byteLength, artifactType: 'application/vnd.swarm.chunk-manifest.v1', annotations }] }
  const tagged = await fetch(`${endpoint}/v2/${repository}/manifests/${subject.replace(':', '-')}`, { method: 'PUT', body: JSON.stringify(index), headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' } })
  expect(tagged.status).toBe(201)
}
