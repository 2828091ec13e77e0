import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, parseByteSize } from '../src/index.js'

async function tempFile (text: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-config-'))
  const file = join(dir, 'config.yaml')
  await writeFile(file, text)
  return file
}

describe('config', () => {
  it('layers file < env < flags', async () => {
    const file = await tempFile('origin: file:///from-file\nconcurrency: 4\ncacheSize: 10GiB\ndataDir: /tmp/a\n')
    const config = await loadConfig({ file, env: { SWARM_CONCURRENCY: '8', SWARM_ORIGIN: 's3://bucket/env' }, flags: { origin: 'file:///flag' } })
    expect(config.origin).toBe('file:///flag')
    expect(config.concurrency).toBe(8)
    expect(config.cacheSize).toBe(10 * 1024 ** 3)
    expect(config.dataDir).toBe('/tmp/a')
    expect(config.agent.socket).toBe('/tmp/a/agent.sock')
  })

  it('takes a block size for the manifest\'s block digests, 0 for none, and refuses others', async () => {
    expect((await loadConfig({ env: {} })).blockSize).toBe(256 * 1024)
    expect((await loadConfig({ env: { SWARM_BLOCK_SIZE: '1MiB' } })).blockSize).toBe(1024 * 1024)
    expect((await loadConfig({ env: { SWARM_BLOCK_SIZE: '0' } })).blockSize).toBe(0)
    await expect(loadConfig({ env: { SWARM_BLOCK_SIZE: '4KiB' } })).rejects.toThrow(/SWARM_BLOCK_SIZE \(env\): must be 0 \(no block digests\) or between 16KiB and 64MiB/)
  })

  it('names the env variable of a bad value', async () => {
    const err = await loadConfig({ env: { SWARM_CONCURRENCY: 'lots' } }).catch(e => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect(err.message).toContain('SWARM_CONCURRENCY (env)')
  })

  it('names the file field of a bad value and rejects unknown keys', async () => {
    const file = await tempFile('chunkSize: 128MiB\n')
    await expect(loadConfig({ file, env: {} })).rejects.toThrow(/chunkSize \(.*config\.yaml\): must be between 1MiB and 64MiB/)
    const typo = await tempFile('orign: s3://x\n')
    await expect(loadConfig({ file: typo, env: {} })).rejects.toThrow(/unknown key "orign"/)
    const nested = await tempFile('s3:\n  endpont: http://x\n')
    await expect(loadConfig({ file: nested, env: {} })).rejects.toThrow(/unknown key "s3.endpont"/)
  })

  it('rejects bad YAML, a missing explicit file and bad origins clearly', async () => {
    const bad = await tempFile('origin: [unclosed\n')
    await expect(loadConfig({ file: bad, env: {} })).rejects.toThrow(/not valid YAML/)
    await expect(loadConfig({ file: '/nonexistent/swarm.yaml', env: {} })).rejects.toThrow(/cannot read config file \/nonexistent\/swarm.yaml/)
    await expect(loadConfig({ env: {}, flags: { origin: 'ftp://x' } })).rejects.toThrow(/origin \(flag\): expected an s3:\/\/bucket\[\/prefix\], file:\/\/\/dir, oci:\/\/registry\/namespace, az:\/\/account\/container\[\/prefix\] or http\(s\):\/\/host/)
  })

  it('splits comma lists and parses booleans from env', async () => {
    const config = await loadConfig({ env: { SWARM_BOOTSTRAP: '/ip4/10.0.0.1/tcp/4001/p2p/x, dns:swarm.default.svc:4001', SWARM_MDNS: 'true' } })
    expect(config.agent.bootstrap).toEqual(['/ip4/10.0.0.1/tcp/4001/p2p/x', 'dns:swarm.default.svc:4001'])
    expect(config.agent.mdns).toBe(true)
  })

  it('takes the byte worker count from file, env and flag (absent: one per core), and rejects a bad one', async () => {
    expect((await loadConfig({ env: {} })).agent.workers).toBeUndefined()
    const file = await tempFile('agent:\n  workers: 4\n')
    expect((await loadConfig({ file, env: {} })).agent.workers).toBe(4)
    expect((await loadConfig({ file, env: { SWARM_WORKERS: '0' } })).agent.workers).toBe(0)
    expect((await loadConfig({ file, env: { SWARM_WORKERS: '0' }, flags: { agent: { workers: '2' } } })).agent.workers).toBe(2)
    await expect(loadConfig({ env: { SWARM_WORKERS: 'many' } })).rejects.toThrow(/SWARM_WORKERS \(env\): expected a number/)
    await expect(loadConfig({ env: { SWARM_WORKERS: '-1' } })).rejects.toThrow(/SWARM_WORKERS \(env\)/)
  })

  it('takes the relay slots from file and env (absent: the data server\'s default), and rejects a bad one', async () => {
    expect((await loadConfig({ env: {} })).agent.relaySlots).toBeUndefined()
    const file = await tempFile('agent:\n  relaySlots: 4\n')
    expect((await loadConfig({ file, env: {} })).agent.relaySlots).toBe(4)
    expect((await loadConfig({ file, env: { SWARM_RELAY_SLOTS: '16' } })).agent.relaySlots).toBe(16)
    await expect(loadConfig({ env: { SWARM_RELAY_SLOTS: '0' } })).rejects.toThrow(/SWARM_RELAY_SLOTS \(env\)/)
    await expect(loadConfig({ env: { SWARM_RELAY_SLOTS: 'some' } })).rejects.toThrow(/SWARM_RELAY_SLOTS \(env\): expected a number/)
    await expect(loadConfig({ file: await tempFile('agent:\n  relaySlots: 2.5\n'), env: {} })).rejects.toThrow(/relaySlots/)
  })

  it('takes the peer ban time from file, env and flag, and rejects a bad one', async () => {
    expect((await loadConfig({ env: {} })).agent.peerBanSeconds).toBe(600)
    const file = await tempFile('agent:\n  peerBanSeconds: 30\n')
    expect((await loadConfig({ file, env: {} })).agent.peerBanSeconds).toBe(30)
    expect((await loadConfig({ file, env: { SWARM_PEER_BAN_SECONDS: '0' } })).agent.peerBanSeconds).toBe(0)
    expect((await loadConfig({ file, env: { SWARM_PEER_BAN_SECONDS: '0' }, flags: { agent: { peerBanSeconds: '120' } } })).agent.peerBanSeconds).toBe(120)
    await expect(loadConfig({ env: { SWARM_PEER_BAN_SECONDS: 'forever' } })).rejects.toThrow(/SWARM_PEER_BAN_SECONDS \(env\): expected a number/)
    await expect(loadConfig({ env: { SWARM_PEER_BAN_SECONDS: '-5' } })).rejects.toThrow(/SWARM_PEER_BAN_SECONDS \(env\)/)
  })

  it('takes node labels from file, env and repeated flags, later layers winning per key, and names a bad one', async () => {
    expect((await loadConfig({ env: {} })).agent.labels).toEqual({})
    const file = await tempFile('agent:\n  labels:\n    pool: a\n    zone: z1\n')
    expect((await loadConfig({ file, env: {} })).agent.labels).toEqual({ pool: 'a', zone: 'z1' })
    expect((await loadConfig({ file, env: { SWARM_LABELS: 'zone=z2, rack=r7' } })).agent.labels).toEqual({ pool: 'a', zone: 'z2', rack: 'r7' })
    expect((await loadConfig({ file, env: { SWARM_LABELS: 'zone=z2' }, flags: { agent: { labels: ['zone=z3', 'example.com/gpu=h100'] } } })).agent.labels).toEqual({ pool: 'a', zone: 'z3', 'example.com/gpu': 'h100' })
    await expect(loadConfig({ env: { SWARM_LABELS: 'pool' } })).rejects.toThrow(/SWARM_LABELS \(env\): "pool" is not a label \(expected key=value\)/)
    await expect(loadConfig({ env: {}, flags: { agent: { labels: ['pool=a b'] } } })).rejects.toThrow(/agent.labels \(flag\): "a b" is not a value for label pool/)
    await expect(loadConfig({ env: { SWARM_LABELS: '-x=1' } })).rejects.toThrow(/"-x" is not a label key/)
  })

  it('takes mount settings from file, env and flags, flags winning, and leaves unset ones to the view', async () => {
    expect((await loadConfig({ env: {} })).mount).toEqual({})
    const file = await tempFile('mount:\n  dir: /models\n  readAhead: 64MiB\n  prefetch: 4\n  passthrough: false\n')
    expect((await loadConfig({ file, env: {} })).mount).toEqual({ dir: '/models', readAhead: 64 * 1024 ** 2, prefetch: 4, passthrough: false })
    const env = {
      SWARM_MOUNT: '/env-models',
      SWARM_MOUNT_READ_AHEAD: '32MiB',
      SWARM_MOUNT_PREFETCH: '8',
      SWARM_MOUNT_READ_TIMEOUT_MS: '5000',
      SWARM_MOUNT_ADAPTER: 'fuse-native',
      SWARM_MOUNT_PASSTHROUGH: '1',
      SWARM_MOUNT_SPLICE: '0',
      SWARM_MOUNT_DROP_SYS_ADMIN: 'true'
    }
    expect((await loadConfig({ file, env })).mount).toEqual({ dir: '/env-models', readAhead: 32 * 1024 ** 2, prefetch: 8, readTimeoutMs: 5000, adapter: 'fuse-native', passthrough: true, splice: false, dropSysAdmin: true })
    const flagged = await loadConfig({ file, env, flags: { mount: { dir: '/flag-models', readAhead: '2MiB', adapter: 'kernel' } } })
    expect(flagged.mount).toEqual({ dir: '/flag-models', readAhead: 2 * 1024 ** 2, prefetch: 8, readTimeoutMs: 5000, adapter: 'kernel', passthrough: true, splice: false, dropSysAdmin: true })
    // an empty variable is unset, as for every other setting
    expect((await loadConfig({ env: { SWARM_MOUNT: '', SWARM_MOUNT_ADAPTER: '' } })).mount).toEqual({})
  })

  it('names a bad mount setting and where it came from', async () => {
    await expect(loadConfig({ env: { SWARM_MOUNT_READ_AHEAD: '512KiB' } })).rejects.toThrow(/SWARM_MOUNT_READ_AHEAD \(env\): read-ahead must be at least 1MiB/)
    await expect(loadConfig({ env: { SWARM_MOUNT_PREFETCH: '0' } })).rejects.toThrow(/SWARM_MOUNT_PREFETCH \(env\)/)
    await expect(loadConfig({ env: { SWARM_MOUNT_PREFETCH: '257' } })).rejects.toThrow(/SWARM_MOUNT_PREFETCH \(env\)/)
    await expect(loadConfig({ env: { SWARM_MOUNT_READ_TIMEOUT_MS: '50' } })).rejects.toThrow(/SWARM_MOUNT_READ_TIMEOUT_MS \(env\)/)
    await expect(loadConfig({ env: { SWARM_MOUNT_ADAPTER: 'fuse3' } })).rejects.toThrow(/SWARM_MOUNT_ADAPTER \(env\)/)
    await expect(loadConfig({ env: { SWARM_MOUNT_PASSTHROUGH: 'maybe' } })).rejects.toThrow(/SWARM_MOUNT_PASSTHROUGH \(env\)/)
    await expect(loadConfig({ env: { SWARM_MOUNT_SPLICE: 'sometimes' } })).rejects.toThrow(/SWARM_MOUNT_SPLICE \(env\)/)
    await expect(loadConfig({ env: {}, flags: { mount: { dir: '' } } })).rejects.toThrow(/mount.dir \(flag\): the mount point is empty/)
    await expect(loadConfig({ env: {}, flags: { mount: { adapter: 'fuse3' } } })).rejects.toThrow(ConfigError)
    const typo = await tempFile('mount:\n  readahead: 64MiB\n')
    await expect(loadConfig({ file: typo, env: {} })).rejects.toThrow(/unknown key "mount.readahead"/)
  })

  it('parses byte sizes', () => {
    expect(parseByteSize('4MiB')).toBe(4 * 1024 * 1024)
    expect(parseByteSize('1.5 GB')).toBe(1.5e9)
    expect(parseByteSize('123')).toBe(123)
    expect(() => parseByteSize('4 parsecs')).toThrow(/not a size/)
  })
})
