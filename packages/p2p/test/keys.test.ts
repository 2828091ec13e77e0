import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createSwarmNode, generateSwarmKey, InvalidKeyFileError, InvalidSwarmKeyError, loadOrCreateKey, parseSwarmKey } from '../src/index.js'

describe('loadOrCreateKey', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-p2p-keys-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates a key once and returns the same peer id afterwards', async () => {
    const path = join(dir, 'nested', 'node.key')
    const first = await loadOrCreateKey(path)
    const second = await loadOrCreateKey(path)
    expect(first.type).toBe('Ed25519')
    expect(peerIdFromPrivateKey(second).toString()).toBe(peerIdFromPrivateKey(first).toString())
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('gives processes racing to create the key one identity', async () => {
    const path = join(dir, 'node.key')
    const keys = await Promise.all(Array.from({ length: 6 }, async () => await loadOrCreateKey(path)))
    const ids = new Set(keys.map(key => peerIdFromPrivateKey(key).toString()))
    expect(ids.size).toBe(1)
    expect(peerIdFromPrivateKey(await loadOrCreateKey(path)).toString()).toBe([...ids][0])
  })

  it('restricts a key file readable by others to 0600', async () => {
    const path = join(dir, 'node.key')
    const key = await loadOrCreateKey(path)
    await chmod(path, 0o644)
    const again = await loadOrCreateKey(path)
    expect(peerIdFromPrivateKey(again).equals(peerIdFromPrivateKey(key))).toBe(true)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })

  it('rejects a file that is not a key', async () => {
    const path = join(dir, 'node.key')
    await writeFile(path, 'not a key', { mode: 0o600 })
    await expect(loadOrCreateKey(path)).rejects.toBeInstanceOf(InvalidKeyFileError)
    expect(await readFile(path, 'utf8')).toBe('not a key')
  })
})

describe('swarm keys', () => {
  it('generates keys in the pnet file format that parse back', () => {
    const key = generateSwarmKey()
    const text = new TextDecoder().decode(key)
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}\n$/)
    expect(new TextDecoder().decode(parseSwarmKey(key))).toBe(text.trimEnd())
    expect(new TextDecoder().decode(generateSwarmKey())).not.toBe(text)
  })

  it('accepts CRLF line ends and upper-case hex', () => {
    const hex = 'AB'.repeat(32)
    const parsed = parseSwarmKey(`/key/swarm/psk/1.0.0/\r\n/base16/\r\n${hex}\r\n`)
    expect(new TextDecoder().decode(parsed)).toBe(`/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}`)
  })

  it.each([
    ['a wrong header', `/key/swarm/psk/2.0.0/\n/base16/\n${'a'.repeat(64)}`],
    ['another encoding', `/key/swarm/psk/1.0.0/\n/base64/\n${'a'.repeat(64)}`],
    ['a short key', `/key/swarm/psk/1.0.0/\n/base16/\n${'a'.repeat(62)}`],
    ['a key that is not hex', `/key/swarm/psk/1.0.0/\n/base16/\n${'g'.repeat(64)}`],
    ['a missing line', '/key/swarm/psk/1.0.0/\n/base16/\n'],
    ['an empty file', '']
  ])('rejects %s', (_name, contents) => {
    expect(() => parseSwarmKey(new TextEncoder().encode(contents))).toThrow(InvalidSwarmKeyError)
  })

  it('refuses to create a node with a bad swarm key', async () => {
    await expect(createSwarmNode({ swarmKey: new TextEncoder().encode('nope'), listen: ['/ip4/127.0.0.1/tcp/0'] }))
      .rejects.toBeInstanceOf(InvalidSwarmKeyError)
  })
})
