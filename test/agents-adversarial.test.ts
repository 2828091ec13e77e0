/**
 * Agents among peers that lie, strangers without the swarm key, garbage on the wire, and peers
 * that die mid-transfer. Real agents, a real lying libp2p peer, the real S3 server.
 */

import { connect as tlsConnect } from 'node:tls'
import { connect as netConnect } from 'node:net'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { dataClient } from '@swarm/exchange'
import { decodeManifest } from '@swarm/manifest'
import { multiaddr } from '@multiformats/multiaddr'
import { createSwarmNode, generateSwarmKey } from '@swarm/p2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { lyingPeer } from './fixtures/lying-peer.js'
import { metric } from './helpers/agents.js'
import { swarm } from './helpers/cli.js'
import { hashes, writeSyntheticModel } from './helpers/model.js'
import { s3Client } from './helpers/s3.js'
import { openWorld } from './helpers/world.js'
import type { SyntheticModel } from './helpers/model.js'
import type { TestWorld } from './helpers/world.js'
import type { S3Client } from '@aws-sdk/client-s3'

describe('agents among hostile and failing peers', () => {
  let world: TestWorld
  let client: S3Client
  let model: SyntheticModel
  let manifestCid: string

  beforeAll(async () => {
    world = await openWorld('hostile')
    client = s3Client(world.s3)
    model = await writeSyntheticModel(join(world.work, 'model'), { layers: 4, hidden: 512, intermediate: 1536, vocab: 8192 })
    manifestCid = await world.push(model.dir, 'hostile:v1')
  })

  afterAll(async () => {
    client?.destroy()
    await world?.close()
  })

  async function originChunk (cid: string): Promise<Uint8Array> {
    const res = await client.send(new GetObjectCommand({ Bucket: world.s3.bucket, Key: `${world.prefix}/chunks/${cid}` }))
    return await res.Body!.transformToByteArray()
  }

  /** a lying peer of the model, and a victim agent (with `env`) that knows only it, pulling the model into a directory; the victim is checked to finish byte for byte */
  async function victimOfLiar (name: string, relaying: boolean, env: Record<string, string> = world.env): Promise<{ liar: Awaited<ReturnType<typeof lyingPeer>>, victim: Awaited<ReturnType<TestWorld['startAgent']>>, manifest: ReturnType<typeof decodeManifest> }> {
    const seed = await world.startAgent(`${name}-seed`)
    const manifestBytes = await (await client.send(new GetObjectCommand({ Bucket: world.s3.bucket, Key: `${world.prefix}/manifests/${manifestCid}` }))).Body!.transformToByteArray()
    const manifest = decodeManifest(manifestBytes, { expectedCid: manifestCid })
    const liar = await lyingPeer({ swarmKey: world.swarmKey, bootstrap: seed.multiaddrs, manifestCid, manifest, manifestBytes, chunk: originChunk, lie: () => true, relaying })
    try {
      const victim = await world.startAgent(name, { env, bootstrap: liar.node.multiaddrs() })
      const to = join(world.work, `${name}-out`)
      const pull = await swarm(['pull', 'hostile:v1', '--to', to, '--json'], victim.env)
      expect(pull.code, pull.stderr + victim.stderr()).toBe(0)
      expect(await hashes(to, model.files)).toEqual(await hashes(model.dir, model.files))
      return { liar, victim, manifest }
    } catch (err) {
      await liar.stop()
      throw err
    }
  }

  it('a lying peer is detected and dropped; its bytes are never stored; the pull completes correctly', async () => {
    const { liar, victim, manifest } = await victimOfLiar('victim', false)
    try {
      expect(liar.server.stats.requests).toBeGreaterThan(0)
      expect(await metric(victim, 'swarm_chunks_rejected_total', { source: 'peer' })).toBeGreaterThanOrEqual(1)
      // banned after its first bad answers: it was not asked for most chunks
      const chunkCount = new Set(manifest.files.flatMap(f => f.chunks.map(c => c.cid))).size
      expect(liar.server.stats.requests).toBeLessThan(chunkCount / 2)
      // banned by the node, not only for that pull: hung up on, and refused when it comes back
      expect(await metric(victim, 'swarm_peer_bans_total')).toBeGreaterThanOrEqual(1)
      expect(await metric(victim, 'swarm_peers_banned')).toBeGreaterThanOrEqual(1)
      for (let i = 0; i < 100 && liar.node.isConnected(victim.peerId); i++) await new Promise(resolve => setTimeout(resolve, 50))
      expect(liar.node.isConnected(victim.peerId)).toBe(false)
      const again = await liar.node.libp2p.dial(multiaddr(victim.multiaddrs[0]!), { signal: AbortSignal.timeout(3_000) }).catch(() => undefined)
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(again == null || again.status !== 'open').toBe(true)
      expect((await swarm(['status', '--json'], victim.env)).done?.peers).not.toContain(liar.node.peerId)
      const verify = await swarm(['verify', 'hostile:v1', '--json', '--data-dir', join(world.work, 'victim-verify-unused')], world.env)
      expect(verify.code).toBe(3) // not held there: verify runs against the agent's own store below
      await victim.stop()
      const own = await swarm(['verify', 'hostile:v1', '--json'], { ...world.env, SWARM_DATA_DIR: victim.dataDir })
      expect(own.code, own.stderr).toBe(0)
      expect(own.done?.bad).toEqual([])
      expect(own.done?.missingChunks).toBe(0)
    } finally {
      await liar.stop()
    }
  }, 180_000)

  for (const workers of [0, 2]) {
    it(`a peer that announces every chunk as arriving and relays lies is banned; nothing it sent is stored (${workers === 0 ? 'bytes on the main thread' : `${workers} byte workers`})`, async () => {
      const { liar, victim, manifest } = await victimOfLiar(`relay-victim-${workers}`, true, { ...world.env, SWARM_WORKERS: String(workers) })
      try {
        expect(manifest.version).toBe(3)
        // it was asked for relays, and its bytes failed the chunks' CIDs
        expect(liar.server.stats.requests).toBeGreaterThan(0)
        expect(await metric(victim, 'swarm_chunks_rejected_total', { source: 'peer' })).toBeGreaterThanOrEqual(1)
        expect(await metric(victim, 'swarm_peer_bans_total')).toBeGreaterThanOrEqual(1)
        await victim.stop()
        const own = await swarm(['verify', 'hostile:v1', '--json'], { ...world.env, SWARM_DATA_DIR: victim.dataDir })
        expect(own.code, own.stderr).toBe(0)
        expect(own.done?.bad).toEqual([])
      } finally {
        await liar.stop()
      }
    }, 180_000)
  }

  it('a node without the swarm key can neither connect over libp2p nor fetch over the data port', async () => {
    const member = world.agents[0]!
    // the member holds the model, so a refusal below is about admission, not a missing chunk
    const held = await swarm(['pull', 'hostile:v1', '--json'], member.env)
    expect(held.code, held.stderr).toBe(0)
    const stranger = await createSwarmNode({ listen: ['/ip4/127.0.0.1/tcp/0'] })
    const wrongKey = await createSwarmNode({ listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey: generateSwarmKey() })
    try {
      for (const outsider of [stranger, wrongKey]) {
        await expect(outsider.libp2p.dial((await import('@multiformats/multiaddr')).multiaddr(member.multiaddrs[0]!), { signal: AbortSignal.timeout(5_000) })).rejects.toThrow()
        expect(outsider.isConnected(member.peerId)).toBe(false)
      }
      // a valid libp2p identity that was never admitted gets nothing on the data port
      const outsiderClient = dataClient({ privateKey: await generateKeyPair('Ed25519'), requestTimeoutMs: 5_000 })
      const anyChunk = decodeManifest(await readFile(join(member.dataDir, 'manifests', manifestCid)), { expectedCid: manifestCid }).files[0]!.chunks[0]!
      await expect(outsiderClient.fetch({ peerId: member.peerId, host: '127.0.0.1', port: member.dataPort }, { cid: anyChunk.cid, size: anyChunk.size })).rejects.toThrow()
      expect(outsiderClient.stats.bytesReceived).toBe(0)
      await outsiderClient.close()
    } finally {
      await stranger.stop()
      await wrongKey.stop()
    }
  }, 180_000)

  it('garbage on the libp2p and data ports does not disturb the agent', async () => {
    const member = world.agents[0]!
    const libp2pPort = Number(/\/tcp\/(\d+)/.exec(member.multiaddrs[0]!)?.[1])
    for (const port of [libp2pPort, member.dataPort]) {
      await new Promise<void>(resolve => {
        const socket = netConnect(port, '127.0.0.1', () => {
          socket.write(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), Buffer.alloc(1024, 0x41)]))
        })
        socket.on('error', () => { resolve() })
        socket.on('close', () => { resolve() })
        setTimeout(() => { socket.destroy(); resolve() }, 2_000)
      })
    }
    // a TLS client with no certificate at all
    await new Promise<void>(resolve => {
      const socket = tlsConnect({ host: '127.0.0.1', port: member.dataPort, rejectUnauthorized: false, ALPNProtocols: ['swarm-data/1'] }, () => {
        socket.write(Buffer.from([0, 0, 0, 5, 1, 2, 3, 4, 5]))
      })
      let received = 0
      socket.on('data', (d: Buffer) => { received += d.length })
      socket.on('error', () => {})
      socket.on('close', () => {
        expect(received).toBe(0)
        resolve()
      })
      setTimeout(() => { socket.destroy() }, 3_000)
    })
    const status = await swarm(['status', '--json'], member.env)
    expect(status.code, status.stderr).toBe(0)
    expect(status.done?.peerId).toBe(member.peerId)
  }, 180_000)

  it('a peer killed with SIGKILL mid-transfer: the others finish byte-identical', async () => {
    await world.push(model.dir, 'killed:v1')
    // slow enough that the kill lands mid-transfer
    const fleet = await world.startFleet('k', 4, { env: { ...world.env, SWARM_DOWNLOAD_RATE: '24MiB' } })
    const pulls = fleet.map(async (agent, i) => await swarm(['pull', 'killed:v1', '--to', join(world.work, `k-out-${i}`), '--json'], agent.env))
    await new Promise(resolve => setTimeout(resolve, 1_000))
    await fleet[1]!.kill()
    const results = await Promise.all(pulls)
    expect(results[1]!.code).not.toBe(0)
    const expected = await hashes(model.dir, model.files)
    for (const i of [0, 2, 3]) {
      expect(results[i]!.code, results[i]!.stderr + fleet[i]!.stderr()).toBe(0)
      expect(await hashes(join(world.work, `k-out-${i}`), model.files)).toEqual(expected)
    }
    const stopped = await fleet[0]!.stop()
    expect(stopped).toBe(0)
  }, 180_000)
})
