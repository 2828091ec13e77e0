/**
 * The origins end to end through the real CLI: a model pushed from a Hugging Face cache tree
 * (laid out as huggingface_hub lays it out, written here) to a file origin, pulled back through
 * nginx over TLS with a test CA (the HTTP origin); a round trip through Azurite (the Azure
 * origin); and the errors a user meets: links out of the cache, revisions and repositories the
 * cache lacks, writes to a read-only origin, origin URLs that cannot be.
 */

import { createHash, randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startAzurite } from './helpers/azurite.mjs'
import { swarm } from './helpers/cli.js'
import { hashes, SMALL_SHAPE, writeSyntheticModel } from './helpers/model.js'
import { startNginx } from './helpers/nginx.mjs'

const CHUNK = '1MiB'

/** huggingface_hub names small files by their git blob SHA-1 and LFS files by SHA-256. */
function blobName (path: string, bytes: Buffer): string {
  if (path.endsWith('.safetensors')) return createHash('sha256').update(bytes).digest('hex')
  return createHash('sha1').update(`blob ${bytes.byteLength}\0`).update(bytes).digest('hex')
}

/** Lays `files` (relative path → bytes) out as a cached snapshot of `repo` at a random commit, `refs/main` pointing at it. */
async function writeHfCache (hub: string, repo: string, files: Map<string, Buffer>): Promise<{ repoDir: string, commit: string, snapshot: string }> {
  const repoDir = join(hub, `models--${repo.split('/').join('--')}`)
  const commit = randomBytes(20).toString('hex')
  const snapshot = join(repoDir, 'snapshots', commit)
  await mkdir(join(repoDir, 'blobs'), { recursive: true })
  await mkdir(join(repoDir, 'refs'), { recursive: true })
  for (const [path, bytes] of files) {
    const blob = join(repoDir, 'blobs', blobName(path, bytes))
    await writeFile(blob, bytes)
    const link = join(snapshot, path)
    await mkdir(dirname(link), { recursive: true })
    await symlink(relative(dirname(link), blob), link)
  }
  await writeFile(join(repoDir, 'refs', 'main'), commit)
  return { repoDir, commit, snapshot }
}

async function readTree (dir: string, base = dir, out = new Map<string, Buffer>()): Promise<Map<string, Buffer>> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) await readTree(path, base, out)
    else out.set(relative(base, path), await readFile(path))
  }
  return out
}

describe('origins through the CLI', () => {
  let work: string
  let nginx: Awaited<ReturnType<typeof startNginx>>
  let azurite: Awaited<ReturnType<typeof startAzurite>>
  let model: Awaited<ReturnType<typeof writeSyntheticModel>>
  let files: Map<string, Buffer>

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'swarm-origins-'))
    ;[nginx, azurite] = await Promise.all([startNginx({ tls: true }), startAzurite()])
    model = await writeSyntheticModel(join(work, 'model'), { ...SMALL_SHAPE, shards: 2 })
    files = await readTree(model.dir)
  })

  afterAll(async () => {
    await nginx?.stop()
    await azurite?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('pushes a Hugging Face cache snapshot with its revision, and pulls it back through nginx over TLS with the test CA', async () => {
    const hub = join(work, 'hf-hub')
    const { commit } = await writeHfCache(hub, 'Org/Tiny-Llama', files)
    const root = join(nginx.root, 'hf')
    await mkdir(root)
    const push = await swarm(['push', '--hf-cache', 'Org/Tiny-Llama', '--chunk-size', CHUNK, '--json', '--origin', `file://${root}`, '--data-dir', join(work, 'hf-a')], { HF_HUB_CACHE: hub })
    expect(push.code, push.stderr).toBe(0)
    expect(push.done).toMatchObject({ ref: 'org/tiny-llama:latest', files: files.size, metadata: { 'huggingface.repo': 'Org/Tiny-Llama', 'huggingface.revision': commit } })
    const manifest = JSON.parse(await readFile(join(root, 'manifests', push.done?.manifestCid as string), 'utf8')) as { version: number, blockSize: number, metadata: Record<string, string> }
    // version 3: metadata and the blocks' digests
    expect(manifest.version).toBe(3)
    expect(manifest.blockSize).toBe(256 * 1024)
    expect(manifest.metadata['huggingface.revision']).toBe(commit)

    const to = join(work, 'hf-out')
    const pull = await swarm(['pull', 'org/tiny-llama', '--no-agent', '--to', to, '--json', '--origin', `${nginx.httpsUrl as string}/hf`, '--data-dir', join(work, 'hf-b')], { SWARM_HTTP_CA_FILE: nginx.ca?.caFile })
    expect(pull.code, pull.stderr).toBe(0)
    expect(pull.done?.manifestCid).toBe(push.done?.manifestCid)
    expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))

    // the same HTTPS origin without the CA: the handshake fails, and the error says why
    const untrusted = await swarm(['pull', 'org/tiny-llama', '--no-agent', '--json', '--origin', `${nginx.httpsUrl as string}/hf`, '--data-dir', join(work, 'hf-c')], {})
    expect(untrusted.code).not.toBe(0)
    expect(untrusted.stdout + untrusted.stderr).toMatch(/certificate/i)

    // and `swarm ls` lists the name from nginx's JSON listings
    const ls = await swarm(['ls', '--json', '--origin', `${nginx.url}/hf`, '--data-dir', join(work, 'hf-b')], {})
    expect(ls.code, ls.stderr).toBe(0)
    expect(JSON.stringify(ls.events)).toContain('org/tiny-llama:latest')
  })

  it('pushes a snapshot directory given as a path, by the revision under a tag, the same manifest as --hf-cache', async () => {
    const hub = join(work, 'hf-hub-2')
    const { snapshot, commit, repoDir } = await writeHfCache(hub, 'org/model', files)
    await writeFile(join(repoDir, 'refs', 'v1.0'), commit)
    const root = await mkdtemp(join(work, 'origin-'))
    const byPath = await swarm(['push', snapshot, '--name', 'org/model:v1', '--chunk-size', CHUNK, '--json', '--origin', `file://${root}`, '--data-dir', join(work, 'p-a')], {})
    expect(byPath.code, byPath.stderr).toBe(0)
    expect(byPath.done?.metadata).toEqual({ 'huggingface.repo': 'org/model', 'huggingface.revision': commit })
    const byTag = await swarm(['push', '--hf-cache', 'org/model@v1.0', '--name', 'org/model:v1.0', '--chunk-size', CHUNK, '--json', '--origin', `file://${root}`, '--data-dir', join(work, 'p-a')], { HF_HOME: dirname(hub), HF_HUB_CACHE: hub })
    expect(byTag.code, byTag.stderr).toBe(0)
    expect(byTag.done?.manifestCid).toBe(byPath.done?.manifestCid)
    expect(byTag.done?.uploadedChunks).toBe(0)
  })

  it('refuses a snapshot whose link leaves the cache\'s blobs/, before uploading anything', async () => {
    const hub = join(work, 'hf-hub-3')
    const secret = join(work, 'secret.txt')
    await writeFile(secret, 'not part of any model')
    const { snapshot } = await writeHfCache(hub, 'org/evil', new Map([['config.json', Buffer.from('{}')]]))
    await symlink(relative(snapshot, secret), join(snapshot, 'tokenizer.json'))
    const root = await mkdtemp(join(work, 'origin-'))
    const push = await swarm(['push', '--hf-cache', 'org/evil', '--json', '--origin', `file://${root}`, '--data-dir', join(work, 'e-a')], { HF_HUB_CACHE: hub })
    expect(push.code).toBe(2)
    expect(push.error).toMatchObject({ code: 'ERR_PUSH_SOURCE' })
    expect(String(push.error?.message)).toMatch(/tokenizer\.json links to .*secret\.txt, not to a file inside .*blobs/)
    expect(await readdir(root)).toEqual([])
  })

  it('names what the cache lacks, and refuses a malformed --hf-cache', async () => {
    const hub = join(work, 'hf-hub-4')
    await writeHfCache(hub, 'org/present', new Map([['config.json', Buffer.from('{}')]]))
    const env = { HF_HUB_CACHE: hub, SWARM_ORIGIN: `file://${work}` }
    const absent = await swarm(['push', '--hf-cache', 'org/absent', '--json'], env)
    expect(absent.code).toBe(3)
    expect(String(absent.error?.message)).toContain(`org/absent is not in the Hugging Face cache at ${hub}`)
    const noRev = await swarm(['push', '--hf-cache', 'org/present@v9', '--json'], env)
    expect(noRev.code).toBe(3)
    expect(String(noRev.error?.message)).toContain('has no revision v9')
    const bad = await swarm(['push', '--hf-cache', '../etc@main', '--json'], env)
    expect(bad.code).toBe(2)
    const both = await swarm(['push', work, '--hf-cache', 'org/present', '--json'], env)
    expect(both.code).toBe(2)
    expect(String(both.error?.message)).toContain('one of the two')
  })

  it('round-trips a model through Azurite (az:// with SWARM_AZURE_ENDPOINT and AZURE_STORAGE_KEY)', async () => {
    await new ContainerClient(`${azurite.endpoint}/models`, new StorageSharedKeyCredential(azurite.account, azurite.accountKey)).create()
    const env = { SWARM_ORIGIN: `az://${azurite.account}/models/e2e`, SWARM_AZURE_ENDPOINT: azurite.endpoint, AZURE_STORAGE_KEY: azurite.accountKey }
    const push = await swarm(['push', model.dir, '--name', 'tiny:v1', '--chunk-size', CHUNK, '--json', '--data-dir', join(work, 'az-a')], env)
    expect(push.code, push.stderr).toBe(0)
    const to = join(work, 'az-out')
    const pull = await swarm(['pull', 'tiny:v1', '--no-agent', '--to', to, '--json', '--data-dir', join(work, 'az-b')], env)
    expect(pull.code, pull.stderr).toBe(0)
    expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))
    const again = await swarm(['push', model.dir, '--name', 'tiny:v2', '--chunk-size', CHUNK, '--json', '--data-dir', join(work, 'az-a')], env)
    expect(again.done).toMatchObject({ manifestCid: push.done?.manifestCid, uploadedChunks: 0 })
    // without credentials for it, Azurite refuses, and the CLI says which credentials it used
    const wrong = await swarm(['pull', 'tiny:v1', '--no-agent', '--json', '--data-dir', join(work, 'az-c')], { ...env, AZURE_STORAGE_KEY: Buffer.from('wrong').toString('base64') })
    expect(wrong.code).not.toBe(0)
    expect(String(wrong.error?.message)).toContain('AZURE_STORAGE_KEY')
  })

  it('refuses a push to an HTTP origin as read-only, and origin URLs that cannot be, with exit 2', async () => {
    const readOnly = await swarm(['push', model.dir, '--name', 'x:v1', '--json', '--origin', nginx.url, '--data-dir', join(work, 'ro')], {})
    expect(readOnly.code).toBe(2)
    expect(readOnly.error).toMatchObject({ code: 'ERR_ORIGIN_READ_ONLY' })
    for (const [origin, message] of [
      ['az://acct', /invalid origin: .*no container/],
      ['https://acct.blob.core.windows.net/Bad_Container', /not a container name/],
      ['https://host/models?token=s3cret', /no query or fragment/],
      ['ftp://host/models', /expected an s3:\/\/bucket/]
    ] as const) {
      const result = await swarm(['ls', '--json', '--origin', origin, '--data-dir', join(work, 'bad')], {})
      expect(result.code, origin).toBe(2)
      expect(String(result.error?.message), origin).toMatch(message)
      expect(result.stdout + result.stderr).not.toContain('s3cret')
    }
  })
})
