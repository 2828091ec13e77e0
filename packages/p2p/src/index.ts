/**
 * @packageDocumentation
 *
 * Swarm's libp2p adapter: a node in a private swarm (pre-shared key), DHT routing of manifest
 * CIDs (advertise / lookup / withdraw, kept apart from serving, as in Spegel) and the control
 * protocol peers use to tell each other which chunks they hold and where their data server
 * listens. Chunk bytes never travel over libp2p; they go over the data server's TLS.
 *
 * Node 20 lacks `Promise.withResolvers`, which libp2p needs: importing this package installs it.
 *
 * @example
 *
 * ```ts
 * import { createSwarmNode, loadOrCreateKey, createBitfield } from '@swarm/p2p'
 *
 * const node = await createSwarmNode({
 *   privateKey: await loadOrCreateKey('/var/lib/swarm/node.key'),
 *   swarmKey: await readFile('/etc/swarm/swarm.key'),
 *   bootstrap: ['dns:swarm-headless.swarm.svc.cluster.local:4001'],
 *   dataAddress: () => ({ port: dataServer.port })
 * })
 *
 * node.control.addEventListener('peer:have', ({ detail }) => scheduler.peerHas(detail.peerId, detail.indices))
 * node.control.join(manifestCid, { bitfield: createBitfield(chunkCount), chunkCount, pulling: true })
 * await node.router.advertise(manifestCid)
 * for await (const peer of node.router.lookup(manifestCid, { signal })) {
 *   await node.control.dial(peer, { signal })
 * }
 * // as chunks land
 * node.control.have(manifestCid, [index])
 * for (const peer of node.control.peersFor(manifestCid)) { ... peer.bitfield, peer.dataAddress ... }
 * ```
 */

import './polyfill.js'

export * from './bitfield.js'
export * from './constants.js'
export * from './errors.js'
export { generateSwarmKey, loadOrCreateKey, parseSwarmKey } from './keys.js'
export type { LoadOrCreateKeyOptions } from './keys.js'
export { createSwarmNode } from './node.js'
export type { SwarmNode, SwarmNodeInit, SwarmServices } from './node.js'
export type { AdvertiseOptions, Router } from './router.js'
export type {
  ChunkState,
  ControlChannel,
  ControlEvents,
  DataAddress,
  ManifestPeer,
  PeerAddress,
  PeerDataAddressEvent,
  PeerDisconnectedEvent,
  PeerHaveEvent,
  PeerJoinedEvent,
  PeerLeftEvent,
  ResolvedDataAddress
} from './control.js'
export { parseBootstrapEntry } from './bootstrap.js'
export type { BootstrapEntry } from './bootstrap.js'
export { FrameDecoder, decodeMessage, encodeMessage, PROTOCOL_VERSION } from './messages.js'
export type { ControlMessage } from './messages.js'
