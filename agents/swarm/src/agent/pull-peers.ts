/**
 * The agent's side of `@swarm/pull`: its libp2p node and data client as a pull's peers, chunk
 * sources and manifest peers. Pulls, the FUSE view's reads and manifest lookups all take their
 * peers and sources from here, so they reach a peer the same way and never a banned one.
 *
 * - Peers of one manifest (`nodePullPeers`): joins (with the origin fetchers each peer names),
 *   haves, arrivals and leaves from the control channel, filtered to the manifest; disconnects and bans (the node's peer scores) for every manifest;
 *   announcements go out on the control channel, the manifest is provided in the DHT, and other
 *   providers are looked up and dialled so they get our join and we their bitfields.
 * - Sources (`agentSources`): a peer by id over the TLS data plane at the data address its
 *   control channel announced; the origin, when one is configured.
 * - Manifest peers (`agentManifestPeers`): connected peers, then providers found in the DHT, each
 *   asked over the data plane for the manifest's bytes (verified by the resolver).
 */

import { MAX_CHUNK_SIZE, peerSource } from '@swarm/exchange'
import { originSource } from '@swarm/fetcher'
import { MANIFEST_LIMITS } from '@swarm/manifest'
import type { DataClient } from '@swarm/exchange'
import type { ChunkSource, Logger, Origin } from '@swarm/interface'
import type { ControlEvents, PeerBannedEvent, PeerHaveEvent, SwarmNode } from '@swarm/p2p'
import type { ManifestPeers, PullPeers, PullSources } from '@swarm/pull'

/** How long one provider lookup of a running pull may take. */
const LOOKUP_TIMEOUT_MS = 30_000
/** How long dialling one provider may take. */
const DIAL_TIMEOUT_MS = 10_000

/**
 * The node's peers of one manifest, for a pull of it. Our data servers pass on chunks as they
 * arrive (see @swarm/fetcher's `ArrivingChunks`), so we announce them as arriving.
 */
export function nodePullPeers (node: SwarmNode, client: DataClient, manifestCid: string, log: Logger): PullPeers {
  return {
    selfId: node.peerId,
    peers: () => node.control.peersFor(manifestCid).map(p => ({ peerId: p.peerId, pulling: p.pulling, bitfield: p.bitfield, fetchers: p.fetchers })),
    connectedCount: () => node.connectedPeers().length,
    isBanned: peerId => node.peerScores.isBanned(peerId),
    join (state) { node.control.join(manifestCid, state) },
    have (indices) { node.control.have(manifestCid, indices) },
    arriving (indices) { node.control.arriving(manifestCid, indices, true) },
    notArriving (indices) { node.control.arriving(manifestCid, indices, false) },
    async advertise () { await node.router.advertise(manifestCid) },
    async discover (options) {
      if (options.again === true && await connectedToAllKnown(node)) return
      const signal = AbortSignal.any([AbortSignal.timeout(LOOKUP_TIMEOUT_MS), ...(options.signal != null ? [options.signal] : [])])
      for await (const peer of node.router.lookup(manifestCid, { signal })) {
        options.signal?.throwIfAborted()
        if (node.isConnected(peer.peerId)) continue
        node.control.dial(peer, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }).catch(err => {
          log.debug({ peer: peer.peerId, err: (err as Error).message }, 'dial failed')
        })
      }
    },
    rejected (peerId) { client.disconnect(peerId) },
    subscribe (events) {
      const control = node.control
      const scores = node.peerScores
      const removers: Array<() => void> = []
      const on = <K extends keyof ControlEvents>(type: K, handler: (event: ControlEvents[K]) => void): void => {
        control.addEventListener(type, handler)
        removers.push(() => { control.removeEventListener(type, handler) })
      }
      // haves and arrivals of this manifest, each to its handler
      const indicesOf = (deliver: (peerId: string, indices: readonly number[]) => void) => (event: CustomEvent<PeerHaveEvent>): void => {
        if (event.detail.manifestCid === manifestCid) deliver(event.detail.peerId, event.detail.indices)
      }
      on('peer:joined', event => {
        if (event.detail.manifestCid === manifestCid) events.joined({ peerId: event.detail.peerId, pulling: event.detail.pulling, bitfield: event.detail.bitfield, fetchers: event.detail.fetchers })
      })
      on('peer:have', indicesOf(events.have))
      on('peer:arriving', indicesOf(events.arriving))
      on('peer:not-arriving', indicesOf(events.notArriving))
      on('peer:left', event => {
        if (event.detail.manifestCid === manifestCid) events.left(event.detail.peerId, 'left')
      })
      on('peer:disconnected', event => { events.left(event.detail.peerId, 'disconnected') })
      const onBanned = (event: CustomEvent<PeerBannedEvent>): void => { events.left(event.detail.peerId, 'banned') }
      scores.addEventListener('peer:banned', onBanned)
      return () => {
        for (const remove of removers.splice(0)) remove()
        scores.removeEventListener('peer:banned', onBanned)
      }
    }
  }
}

/**
 * Whether the node is connected to every peer it knows of (its peer store): then a provider
 * lookup can only name peers that already joined on the control channel, or nodes that know us
 * better than we know them and will find our own record (see `REDISCOVER_AFTER_MS`).
 */
async function connectedToAllKnown (node: SwarmNode): Promise<boolean> {
  const connected = new Set(node.connectedPeers())
  const known = await node.libp2p.peerStore.all()
  return known.every(peer => connected.has(peer.id.toString()))
}

/** A peer by id over the data plane (when its data address is known), and the origin. */
export function agentSources (node: SwarmNode, client: DataClient, origin: Origin | undefined): PullSources {
  return {
    origin: origin != null ? originSource(origin) : undefined,
    peer (peerId, relay): ChunkSource | undefined {
      const address = node.control.dataAddressOf(peerId)
      if (address == null) return undefined
      return peerSource(client, { peerId, host: address.host, port: address.port }, relay === true)
    }
  }
}

/** Connected peers and DHT providers, asked for a manifest over the data plane. */
export function agentManifestPeers (node: SwarmNode, client: DataClient): ManifestPeers {
  return {
    async candidates (manifestCid, options) {
      const candidates = new Set(node.connectedPeers())
      try {
        for await (const peer of node.router.lookup(manifestCid, { signal: options.signal })) {
          candidates.add(peer.peerId)
          await node.control.dial(peer, { signal: options.signal }).catch(() => {})
          if (candidates.size >= options.max) break
        }
      } catch {}
      // a peer whose data address is not known cannot be asked
      return [...candidates].filter(peerId => node.control.dataAddressOf(peerId) != null)
    },
    async fetchManifest (peerId, manifestCid, options) {
      const address = node.control.dataAddressOf(peerId)
      if (address == null) throw new Error('no data address')
      return await client.fetch({ peerId, ...address }, { cid: manifestCid, size: Math.min(MANIFEST_LIMITS.maxManifestBytes, MAX_CHUNK_SIZE) }, options)
    }
  }
}
