import { createServer } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { generateSwarmKey, InvalidBootstrapAddressError, InvalidMultiaddrError } from '../src/index.js'
import { addressWithPeer, capturingLogger, collect, Fleet, manifestCid, waitFor } from './helpers.js'

const swarmKey = generateSwarmKey()

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise(resolve => server.close(resolve))
  if (address == null || typeof address === 'string') {
    throw new Error('no port')
  }
  return address.port
}

describe('swarm membership', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('connects nodes that bootstrap from one seed', async () => {
    const seed = await fleet.add({ swarmKey })
    // more than libp2p's default 5 inbound connections per second from one host
    const others = await Promise.all(Array.from({ length: 7 }, async () => await fleet.add({ swarmKey, bootstrap: [addressWithPeer(seed)] })))
    await waitFor(() => others.every(node => seed.isConnected(node.peerId) && node.isConnected(seed.peerId)), 'every node to connect to the seed')
    expect(new Set(seed.connectedPeers())).toEqual(new Set(others.map(node => node.peerId)))
    expect(seed.isConnected('not a peer id')).toBe(false)
    for (const address of seed.multiaddrs()) {
      expect(address.endsWith(`/p2p/${seed.peerId}`)).toBe(true)
    }
  })

  it('retries a failed bootstrap dial within seconds, backing off, not a whole interval later', async () => {
    const port = await freePort()
    // the seed exists but does not listen yet: its address refuses connections
    const seed = await fleet.add({ swarmKey, listen: [`/ip4/127.0.0.1/tcp/${port}`], start: false })
    const node = await fleet.add({ swarmKey, bootstrap: [`/ip4/127.0.0.1/tcp/${port}/p2p/${seed.peerId}`], bootstrapInterval: 600_000 })
    await new Promise(resolve => setTimeout(resolve, 1_500))
    expect(node.isConnected(seed.peerId)).toBe(false)
    await seed.start()
    const started = Date.now()
    await waitFor(() => node.isConnected(seed.peerId) && seed.isConnected(node.peerId), 'the node to reach its seed', 20_000)
    // retries at 1, 2, 4, 8 s after the first failure: the seed, up since 1.5 s, is reached by the 4 s one
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it('keeps out nodes with another swarm key or none', async () => {
    const seed = await fleet.add({ swarmKey })
    const member = await fleet.add({ swarmKey })
    const stranger = await fleet.add({ swarmKey: generateSwarmKey() })
    const open = await fleet.add()

    for (const outsider of [stranger, open]) {
      await expect(outsider.libp2p.dial(seed.libp2p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
      await expect(seed.libp2p.dial(outsider.libp2p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(2_000) })).rejects.toThrow()
      expect(outsider.isConnected(seed.peerId)).toBe(false)
      expect(seed.isConnected(outsider.peerId)).toBe(false)
    }
    // the same dial with the right key works
    await member.libp2p.dial(seed.libp2p.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(5_000) })
    await waitFor(() => seed.isConnected(member.peerId), 'the member to connect')
    expect(seed.connectedPeers()).toEqual([member.peerId])
  })

  it('resolves dns: bootstrap entries to every address of the name', async () => {
    const seed = await fleet.add({ swarmKey })
    const port = Number(addressWithPeer(seed).split('/')[4])
    // localhost resolves to 127.0.0.1 (and often ::1, where nothing listens: that dial just fails)
    const node = await fleet.add({ swarmKey, bootstrap: [`dns:localhost:${port}`] })
    await waitFor(() => seed.isConnected(node.peerId), 'the node to reach the seed through dns:localhost')
    // a second round finds the seed connected and dials nothing new
    await node.bootstrap()
    expect(node.connectedPeers()).toEqual([seed.peerId])
  })

  it('keeps re-resolving and re-dialling bootstrap entries', async () => {
    const port = await freePort()
    const node = await fleet.add({ swarmKey, bootstrap: [`dns:localhost:${port}`], bootstrapInterval: 200 })
    await node.bootstrap()
    expect(node.connectedPeers()).toEqual([])
    // the seed comes up after the node
    const seed = await fleet.add({ swarmKey, listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    await waitFor(() => node.isConnected(seed.peerId), 'the node to find the late seed')
    // and after losing it, the node dials it again
    await node.libp2p.hangUp(seed.libp2p.peerId)
    await waitFor(() => !node.isConnected(seed.peerId), 'the connection to close')
    await waitFor(() => node.isConnected(seed.peerId), 'the node to reconnect')
  })

  it('skips its own address when a dns: entry resolves to it', async () => {
    const port = await freePort()
    const entries: Array<{ obj: Record<string, unknown>, msg?: string }> = []
    const node = await fleet.add({
      swarmKey,
      listen: [`/ip4/127.0.0.1/tcp/${port}`],
      bootstrap: [`dns:localhost:${port}`],
      logger: capturingLogger(entries)
    })
    await node.bootstrap()
    const peer = await fleet.add({ swarmKey, bootstrap: [`dns:localhost:${port}`] })
    await waitFor(() => node.isConnected(peer.peerId), 'the other node to reach it')
    await node.bootstrap()
    const dialled = entries.filter(entry => entry.msg === 'bootstrap dial failed' || entry.msg === 'bootstrap peer connected')
    expect(dialled.map(entry => entry.obj.address)).not.toContain(`/ip4/127.0.0.1/tcp/${port}`)
    expect(node.connectedPeers()).toEqual([peer.peerId])
  })
})

describe('node settings', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('rejects bad multiaddrs and bootstrap entries before listening', async () => {
    await expect(fleet.add({ listen: ['/ip4/1.2.3/tcp/1'] })).rejects.toBeInstanceOf(InvalidMultiaddrError)
    await expect(fleet.add({ bootstrap: ['swarm:4001'] })).rejects.toBeInstanceOf(InvalidBootstrapAddressError)
  })

  it('fails to start when its port is taken, and the port stays usable', async () => {
    const server = createServer()
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as { port: number }
    await expect(fleet.add({ listen: [`/ip4/127.0.0.1/tcp/${port}`] })).rejects.toThrow(/EADDRINUSE/)
    await new Promise(resolve => server.close(resolve))
    const node = await fleet.add({ listen: [`/ip4/127.0.0.1/tcp/${port}`] })
    expect(node.multiaddrs()).toEqual([`/ip4/127.0.0.1/tcp/${port}/p2p/${node.peerId}`])
  })
})

describe('routing', () => {
  const fleet = new Fleet()
  afterEach(async () => { await fleet.stopAll() })

  it('finds a provider through the DHT', async () => {
    const seed = await fleet.add({ swarmKey })
    const nodes = await Promise.all([1, 2, 3].map(async () => await fleet.add({ swarmKey, bootstrap: [addressWithPeer(seed)] })))
    await waitFor(() => nodes.every(node => seed.isConnected(node.peerId)), 'the fleet to connect')
    const [provider, , seeker] = nodes as [typeof seed, typeof seed, typeof seed]
    const key = await manifestCid('routing')

    await provider.router.advertise(key, { wait: true, signal: AbortSignal.timeout(20_000) })
    expect(provider.router.advertised()).toEqual([key])

    const found = await collect(seeker.router.lookup(key, { signal: AbortSignal.timeout(10_000) }))
    expect(found.map(peer => peer.peerId)).toEqual([provider.peerId])
    expect(found[0]?.multiaddrs.some(address => address.startsWith('/ip4/127.0.0.1/tcp/'))).toBe(true)
    // a lookup never returns ourselves
    expect(await collect(provider.router.lookup(key, { signal: AbortSignal.timeout(10_000) }))).toEqual([])
    // dialling what a lookup found works even without a prior connection
    await seeker.control.dial(found[0]!)
    expect(seeker.isConnected(provider.peerId)).toBe(true)
  })

  it('stops finding a withdrawn provider while an advertised one stays found', async () => {
    // short provider records, so expiry and re-providing happen within the test
    const providerValidity = 3_000
    const seed = await fleet.add({ swarmKey, providerValidity })
    const nodes = await Promise.all([1, 2, 3].map(async () => await fleet.add({ swarmKey, providerValidity, bootstrap: [addressWithPeer(seed)] })))
    await waitFor(() => nodes.every(node => seed.isConnected(node.peerId)), 'the fleet to connect')
    const [leaving, staying, seeker] = nodes as [typeof seed, typeof seed, typeof seed]
    const key = await manifestCid('withdraw')

    await Promise.all([leaving, staying].map(async node => { await node.router.advertise(key, { wait: true, signal: AbortSignal.timeout(20_000) }) }))
    const before = await collect(seeker.router.lookup(key, { signal: AbortSignal.timeout(10_000) }))
    expect(new Set(before.map(peer => peer.peerId))).toEqual(new Set([leaving.peerId, staying.peerId]))

    await leaving.router.withdraw(key)
    expect(leaving.router.advertised()).toEqual([])
    const withdrawnAt = Date.now()
    let after: string[] = []
    await waitFor(async () => {
      after = (await collect(seeker.router.lookup(key, { signal: AbortSignal.timeout(10_000) }))).map(peer => peer.peerId)
      return !after.includes(leaving.peerId)
    }, 'the withdrawn provider to drop out of lookups', 20_000)
    // it lasted about one validity period, no longer, and the provider that stayed was
    // re-provided past its first record's expiry
    expect(Date.now() - withdrawnAt).toBeLessThan(providerValidity * 4)
    expect(after).toEqual([staying.peerId])
    await new Promise(resolve => setTimeout(resolve, providerValidity))
    const later = await collect(seeker.router.lookup(key, { signal: AbortSignal.timeout(10_000) }))
    expect(later.map(peer => peer.peerId)).toEqual([staying.peerId])
  })

  it('rejects keys that are not CIDs', async () => {
    const node = await fleet.add({ swarmKey })
    await expect(node.router.advertise('not-a-cid')).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST_CID' })
    await expect(collect(node.router.lookup('not-a-cid'))).rejects.toMatchObject({ code: 'ERR_INVALID_MANIFEST_CID' })
  })
})
