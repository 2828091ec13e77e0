/**
 * Safe defaults, end to end with the real CLI and real agents: a swarm is closed unless someone
 * opens it on purpose, `--to` never writes through a link someone planted, and credentials in
 * URLs never reach an output or a log.
 */

import { randomBytes } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loopbackAgentEnv } from '../agents/swarm/src/loopback.js'
import { metric, startAgent } from './helpers/agents.js'
import { collect, spawnSwarm, swarm } from './helpers/cli.js'
import { sha256File } from './helpers/model.js'
import { cliEnv, deletePrefix, s3Client, s3Settings, uniquePrefix } from './helpers/s3.js'
import type { RunningAgent } from './helpers/agents.js'

/** A small model with nested directories, pushed to a fresh file:// origin. */
async function pushNestedModel (work: string, name: string): Promise<{ origin: string, dir: string, files: Record<string, string>, manifestCid: string }> {
  const dir = join(work, `${name}-src`)
  const files: Record<string, string> = {
    'config.json': '{"hidden":64}',
    'tokenizer/vocab.txt': 'a\nb\nc\n',
    'weights/part-0.bin': randomBytes(300_000).toString('base64'),
    'weights/deep/part-1.bin': randomBytes(200_000).toString('base64')
  }
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), text)
  }
  const originDir = join(work, `${name}-origin`)
  await mkdir(originDir)
  const origin = pathToFileURL(originDir).href
  const push = await swarm(['push', dir, '--name', `${name}:v1`, '--chunk-size', '1MiB', '--json', '--data-dir', join(work, `${name}-pusher`)], { SWARM_ORIGIN: origin })
  expect(push.code, push.stderr).toBe(0)
  return { origin, dir, files, manifestCid: String(push.done?.manifestCid) }
}

describe('a swarm is closed by default', () => {
  let work: string
  const agents: RunningAgent[] = []

  beforeAll(async () => { work = await mkdtemp(join(tmpdir(), 'swarm-closed-')) })
  afterAll(async () => {
    await Promise.all(agents.map(async a => await a.stop()))
    await rm(work, { recursive: true, force: true })
  })

  const agentEnv = (dir: string): Record<string, string> => loopbackAgentEnv(join(work, dir))

  it('an agent without a swarm key does not start, and says how to give one', async () => {
    const result = await swarm(['agent', '--json'], agentEnv('no-key'))
    expect(result.code).toBe(2)
    expect(result.error?.code).toBe('ERR_SWARM_KEY_REQUIRED')
    expect(result.stderr).toMatch(/--swarm-key FILE/)
    expect(result.stderr).toMatch(/--insecure-open-swarm/)
    expect(result.stdout).not.toMatch(/"ready"/)
  })

  it('--insecure-open-swarm starts it, warns at start and says so in /metrics', async () => {
    const open = await startAgent({ dataDir: join(work, 'open'), env: { SWARM_INSECURE_OPEN_SWARM: '1' } })
    agents.push(open)
    expect(await metric(open, 'swarm_insecure_open_swarm')).toBe(1)
    expect(open.stderr()).toMatch(/open swarm \(--insecure-open-swarm\)/)
  })

  it('swarm keygen writes a key readable only by its owner and never overwrites one', async () => {
    const file = join(work, 'made.key')
    const made = await swarm(['keygen', file, '--json'], {})
    expect(made.code, made.stderr).toBe(0)
    expect(made.done?.file).toBe(file)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const key = await readFile(file, 'utf8')
    expect(key).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n?$/)
    const again = await swarm(['keygen', file, '--json'], {})
    expect(again.code).toBe(2)
    expect(again.error?.code).toBe('ERR_KEY_FILE_EXISTS')
    expect(await readFile(file, 'utf8')).toBe(key)
  })

  it('a node with another key is refused: it connects to nobody and gets no chunk', async () => {
    const { origin, manifestCid } = await pushNestedModel(work, 'keyed')
    const keyA = join(work, 'a.key')
    const keyB = join(work, 'b.key')
    expect((await swarm(['keygen', keyA], {})).code).toBe(0)
    expect((await swarm(['keygen', keyB], {})).code).toBe(0)
    const holder = await startAgent({ dataDir: join(work, 'holder'), env: { SWARM_ORIGIN: origin }, swarmKeyFile: keyA })
    agents.push(holder)
    const held = await swarm(['pull', 'keyed:v1', '--json'], { ...holder.env, SWARM_ORIGIN: origin })
    expect(held.code, held.stderr).toBe(0)

    const member = await startAgent({ dataDir: join(work, 'member'), env: {}, swarmKeyFile: keyA, bootstrap: holder.multiaddrs })
    const stranger = await startAgent({ dataDir: join(work, 'stranger'), env: {}, swarmKeyFile: keyB, bootstrap: holder.multiaddrs })
    agents.push(member, stranger)
    // neither has an origin: whatever they get comes from the holder
    const fromMember = await swarm(['pull', '--cid', manifestCid, '--json'], member.env)
    expect(fromMember.code, fromMember.stderr).toBe(0)
    expect((fromMember.done?.bytesBySource as { peer: number }).peer).toBeGreaterThan(0)

    const fromStranger = await swarm(['pull', '--cid', manifestCid, '--json'], stranger.env)
    expect(fromStranger.code).toBe(5)
    expect(await metric(stranger, 'swarm_peers')).toBe(0)
    expect(await metric(stranger, 'swarm_bytes_total', { source: 'peer' })).toBe(0)
    expect(await metric(holder, 'swarm_insecure_open_swarm')).toBe(0)
  }, 180_000)
})

describe('--to writes only where it is meant to', () => {
  let work: string
  let model: Awaited<ReturnType<typeof pushNestedModel>>

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'swarm-to-'))
    model = await pushNestedModel(work, 'placed')
  })
  afterAll(async () => { await rm(work, { recursive: true, force: true }) })

  const pullTo = async (to: string, node: string): Promise<Awaited<ReturnType<typeof swarm>>> =>
    await swarm(['pull', 'placed:v1', '--no-agent', '--to', to, '--json', '--data-dir', join(work, node)], { SWARM_ORIGIN: model.origin })

  async function partials (dir: string): Promise<string[]> {
    const entries = await readdir(dir, { recursive: true })
    return entries.filter(name => name.includes('.swarm-partial-'))
  }

  it('copies every file, nested ones too, byte for byte, and leaves no temporary file', async () => {
    const to = join(work, 'plain')
    const pull = await pullTo(to, 'node-plain')
    expect(pull.code, pull.stderr).toBe(0)
    for (const path of Object.keys(model.files)) {
      expect(await sha256File(join(to, path))).toBe(await sha256File(join(model.dir, path)))
    }
    expect(await partials(to)).toEqual([])
  })

  it('refuses a directory inside the target that is a link, and writes nothing through it', async () => {
    const to = join(work, 'linked-dir')
    const outside = join(work, 'outside-dir')
    await mkdir(to)
    await mkdir(outside)
    await symlink(outside, join(to, 'weights'))
    const pull = await pullTo(to, 'node-linked-dir')
    expect(pull.code).toBe(2)
    expect(pull.error?.code).toBe('ERR_UNSAFE_TARGET')
    expect(pull.stderr).toContain(`${join(to, 'weights')} is a symbolic link`)
    expect(await readdir(outside)).toEqual([])
    expect(await partials(to)).toEqual([])
  })

  it('replaces a link planted at a file\'s name instead of writing through it', async () => {
    const to = join(work, 'linked-file')
    const victim = join(work, 'victim.txt')
    await writeFile(victim, 'keep me')
    await mkdir(to)
    await symlink(victim, join(to, 'config.json'))
    const pull = await pullTo(to, 'node-linked-file')
    expect(pull.code, pull.stderr).toBe(0)
    expect(await readFile(victim, 'utf8')).toBe('keep me')
    expect((await lstat(join(to, 'config.json'))).isSymbolicLink()).toBe(false)
    expect(await readFile(join(to, 'config.json'), 'utf8')).toBe(model.files['config.json'])
  })

  it('a failed placement removes its temporary file and names the path', async () => {
    const to = join(work, 'blocked')
    // a directory where a file must go: the rename fails
    await mkdir(join(to, 'config.json'), { recursive: true })
    const pull = await pullTo(to, 'node-blocked')
    expect(pull.code).not.toBe(0)
    expect(pull.stderr).toContain(join(to, 'config.json'))
    expect(await partials(to)).toEqual([])
  })
})

describe('credentials never reach an output or a log', () => {
  let work: string
  const prefixes: string[] = []

  beforeAll(async () => { work = await mkdtemp(join(tmpdir(), 'swarm-redact-')) })
  afterAll(async () => {
    const s3 = s3Settings()
    const client = s3Client(s3)
    for (const prefix of prefixes) await deletePrefix(client, s3.bucket, prefix)
    client.destroy()
    await rm(work, { recursive: true, force: true })
  })

  it('an origin URL with KEY:SECRET works and the secret is printed nowhere, at debug level too', async () => {
    const s3 = s3Settings()
    const prefix = uniquePrefix('redact')
    prefixes.push(prefix)
    const { SWARM_S3_ACCESS_KEY_ID: _k, SWARM_S3_SECRET_ACCESS_KEY: _s, ...env } = cliEnv(s3, prefix)
    const origin = `s3://${encodeURIComponent(s3.accessKeyId)}:${encodeURIComponent(s3.secretAccessKey)}@${s3.bucket}/${prefix}`
    const src = join(work, 'src')
    await mkdir(src)
    await writeFile(join(src, 'config.json'), '{"a":1}')
    const outputs: string[] = []
    const run = async (args: string[]): Promise<Awaited<ReturnType<typeof collect>>> => {
      const result = await collect(spawnSwarm(args, { ...env, SWARM_ORIGIN: origin, SWARM_DATA_DIR: join(work, 'node'), SWARM_LOG_LEVEL: 'debug' }))
      outputs.push(result.stdout, result.stderr)
      return result
    }
    const push = await run(['push', src, '--name', 'redact:v1', '--log-level', 'debug'])
    expect(push.code, push.stderr).toBe(0)
    const ls = await run(['ls', '--log-level', 'debug'])
    expect(ls.code, ls.stderr).toBe(0)
    expect(ls.stdout).toContain(`${s3.accessKeyId}:***@${s3.bucket}`)
    // an error that carries the URL: a name the origin does not have
    const missing = await run(['pull', 'no-such-model:v1', '--no-agent', '--json', '--log-level', 'debug'])
    expect(missing.code).toBe(3)
    for (const text of outputs) expect(text).not.toContain(s3.secretAccessKey)
    expect(outputs.join('').length).toBeGreaterThan(0)
  })
})
