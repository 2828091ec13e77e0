import { cidForBytes } from '@swarm/chunker'
import { dataClient } from '@swarm/exchange'
import { silentLogger } from '@swarm/interface'
import { createSwarmNode, generateSwarmKey } from '@swarm/p2p'
import { afterEach, describe, expect, it } from 'vitest'
import { nodePullPeers } from '../src/agent/pull-peers.js'
import type { Router, SwarmNode } from '@swarm/p2p'

const swarmKey = generateSwarmKey()
const nodes: SwarmNode[] = []

async function node (bootstrap: SwarmNode[] = []): Promise<SwarmNode> {
  const created = await createSwarmNode({ listen: ['/ip4/127.0.0.1/tcp/0'], swarmKey, bootstrap: bootstrap.map(addressOf) })
  nodes.push(created)
  return created
}

function addressOf (node: SwarmNode): string {
  const address = node.multiaddrs().find(a => a.startsWith('/ip4/127.0.0.1/'))
  if (address == null) throw new Error('no loopback address')
  return address
}

async function waitFor (condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/**
 * Closes every connection between two nodes until none comes back for a while: a dial one of
 * them began before (the DHT filling its table after start) may land just after a close.
 */
async function disconnect (a: SwarmNode, b: SwarmNode): Promise<void> {
  for (let tries = 0; tries < 20; tries++) {
    await Promise.all([...a.libp2p.getConnections(b.libp2p.peerId), ...b.libp2p.getConnections(a.libp2p.peerId)].map(async c => { await c.close() }))
    await new Promise(resolve => setTimeout(resolve, 250))
    if (!a.isConnected(b.peerId) && !b.isConnected(a.peerId)) return
  }
  throw new Error('the two nodes kept reconnecting')
}

/** The node as the adapter sees it, with its router's lookups counted (the node itself is real). */
function countingLookups (real: SwarmNode): { node: SwarmNode, lookups: () => number } {
  let lookups = 0
  const router: Router = {
    advertise: async (key, options) => { await real.router.advertise(key, options) },
    withdraw: async (key, options) => { await real.router.withdraw(key, options) },
    advertised: () => real.router.advertised(),
    lookup: (key, options) => {
      lookups++
      return real.router.lookup(key, options)
    }
  }
  return { node: Object.create(real, { router: { value: router } }) as SwarmNode, lookups: () => lookups }
}

describe('provider lookups of a running pull', () => {
  afterEach(async () => {
    await Promise.all(nodes.splice(0).map(async n => { await n.stop() }))
  })

  it('looks again only while the node knows of peers it is not connected to', async () => {
    const seed = await node()
    const provider = await node([seed])
    const seeker = await node([seed])
    await waitFor(() => seed.isConnected(provider.peerId) && seed.isConnected(seeker.peerId), 'the fleet to connect')
    const key = cidForBytes(new TextEncoder().encode('rediscovery'))
    await provider.router.advertise(key, { wait: true, signal: AbortSignal.timeout(20_000) })

    // the seeker knows of the provider (its address in the peer store) but is not connected to it
    await seeker.libp2p.peerStore.merge(provider.libp2p.peerId, { multiaddrs: provider.libp2p.getMultiaddrs() })
    await disconnect(seeker, provider)
    expect(seeker.isConnected(provider.peerId)).toBe(false)

    const counted = countingLookups(seeker)
    const client = dataClient({ privateKey: seeker.privateKey })
    const peers = nodePullPeers(counted.node, client, key, silentLogger)
    // a lookup again runs: it finds the provider and dials it
    await peers.discover?.({ again: true, signal: AbortSignal.timeout(20_000) })
    expect(counted.lookups()).toBe(1)
    await waitFor(() => seeker.isConnected(provider.peerId), 'the seeker to dial the provider it found')

    // now connected to every node it knows of: a lookup again could find no one, and is skipped
    expect(new Set(seeker.connectedPeers())).toEqual(new Set([seed.peerId, provider.peerId]))
    await peers.discover?.({ again: true, signal: AbortSignal.timeout(20_000) })
    expect(counted.lookups()).toBe(1)
    // the first lookup of a pull is never skipped: it may find a node no one has told us of
    await peers.discover?.({ signal: AbortSignal.timeout(20_000) })
    expect(counted.lookups()).toBe(2)
    await client.close()
  })
})
