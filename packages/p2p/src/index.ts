/**
 * @packageDocumentation
 *
 * Swarm's libp2p adapter: a node in a private swarm (pre-shared key), DHT routing of manifest
 * CIDs (advertise / lookup / withdraw, kept apart from serving, as in Spegel) and the control
 * protocol peers use to tell each other which chunks they hold and where their data server
 * listens. Chunk bytes never travel over libp2p; they go over the data server's TLS.
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
 * // joins and haves reach listeners only when they fit a manifest we joined, with its chunk count
 * node.control.addEventListener('peer:have', ({ detail }) => scheduler.peerHas(detail.peerId, detail.indices))
 * node.control.join(manifestCid, { bitfield: createBitfield(chunkCount), chunkCount, pulling: true })
 * await node.router.advertise(manifestCid)
 * for await (const peer of node.router.lookup(manifestCid, { signal })) {
 *   await node.control.dial(peer, { signal })
 * }
 * // as chunks land
 * node.control.have(manifestCid, [index])
 * for (const peer of node.control.peersFor(manifestCid)) { ... peer.bitfield, peer.dataAddress ... }
 * // a peer whose chunk bytes failed verification: banned node-wide after a repeat
 * node.peerScores.penalize(peerId, 'bad-data')
 *
 * // the fleet: what every node holds and pulls (gossip; pass `fleetState` to publish ours)
 * node.fleet.changed()
 * for (const other of node.fleet.nodes()) { ... other.labels, other.models ... }
 * node.fleet.addEventListener('preheat', ({ detail }) => { if (matchesSelector(parseSelector(detail.selector), labels)) ... })
 * ```
 */


// bitfields as the control protocol carries them: `@swarm/interface`'s, one module for every package
export { bitfieldLength, countBits, createBitfield, fitsChunkCount, hasBit, setBit } from '@swarm/interface'
export * from './constants.js'
export * from './errors.js'
export { generateSwarmKey, loadOrCreateKey, parseSwarmKey } from './keys.js'
export type { LoadOrCreateKeyOptions } from './keys.js'
export { createSwarmNode } from './node.js'
export { DefaultPeerScores, PEER_OFFENCES, peerScores } from './peer-score.js'
export type { PeerBannedEvent, PeerOffence, PeerScoreEvents, PeerScoreInit, PeerScores, PeerScoreStats } from './peer-score.js'
export { CONTROL_REJECTIONS, DEFAULT_CONTROL_LIMITS } from './control.js'
export type { SwarmNode, SwarmNodeInit, SwarmServices } from './node.js'
export type { AdvertiseOptions, Router } from './router.js'
export type {
  ChunkState,
  ControlChannel,
  ControlEvents,
  ControlLimits,
  ControlRejection,
  ControlStats,
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
export { DEFAULT_FLEET_LIMITS, FLEET_REJECTIONS, encodeFleetState, fleetFastMessageId, fleetPublishSpacing } from './fleet.js'
export type { FleetChange, FleetEvents, FleetGossip, FleetLimits, FleetLocalState, FleetModelState, FleetModelStatus, FleetNodeState, FleetPublishSpacing, FleetRejection, FleetStats, GossipRpcMessage, PreheatRequest } from './fleet.js'
export { checkLabelKey, checkLabelValue, formatSelector, matchesSelector, parseLabels, parseSelector } from './selector.js'
export type { Requirement, Selector } from './selector.js'
export { TokenBucket } from './rate-limit.js'
export { parseBootstrapEntry } from './bootstrap.js'
export type { BootstrapEntry } from './bootstrap.js'
export { FrameDecoder, decodeMessage, encodeMessage, PROTOCOL_VERSION } from './messages.js'
export type { ControlMessage, NamedFetcher } from './messages.js'
