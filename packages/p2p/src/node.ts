/**
 * The Swarm libp2p node: TCP + Noise + Yamux, optionally inside a pre-shared-key private
 * network, with a LAN DHT for routing and the control protocol for chunk state.
 *
 * LAN DHT settings: server mode from the start (a node with only private addresses would
 * otherwise never answer queries), only private addresses kept in DHT records, and our own
 * protocol id so a Swarm node never takes part in the public IPFS DHT. libp2p's default limit
 * of 5 inbound connections per second per host is raised: a fleet on one host, or a whole
 * cluster dialling the same seed after a rollout, would otherwise be refused.
 *
 * Peers discovered by mDNS are dialled; peers the DHT mentions are not (that would make every
 * node dial every other): the control channel dials the peers a lookup returns when needed.
 *
 * Fleet gossip (`fleet.ts`) runs on gossipsub restricted to its one topic, with frames of at most
 * FLEET_MAX_RPC_BYTES, and never falls back to floodsub.
 *
 * Bans (`peer-score.ts`): the node's peer scores are consulted by libp2p's connection gater, so a
 * banned peer is neither dialled nor accepted, and a ban hangs up the peer's open connections.
 */

import { noise } from '@chainsafe/libp2p-noise'
import { gossipsub } from '@libp2p/gossipsub'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import { kadDHT, removePublicAddressesMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { silentLogger } from '@swarm/interface'
import { createLibp2p } from 'libp2p'
import { Bootstrapper, parseBootstrapEntry } from './bootstrap.js'
import { fleetFastMessageId } from './fleet.js'
import {
  DEFAULT_LISTEN,
  DHT_PROTOCOL,
  DIAL_TIMEOUT_MS,
  FLEET_MAX_RPC_BYTES,
  FLEET_GOSSIP_LAZY_PEERS,
  FLEET_MESH_DEGREE,
  FLEET_TOPIC,
  PING_TIMEOUT_MS,
  INBOUND_CONNECTION_THRESHOLD,
  MAX_CONNECTIONS,
  MAX_INCOMING_PENDING_CONNECTIONS,
  PROVIDER_VALIDITY_MS
} from './constants.js'
import { parseMultiaddr, parsePeerId } from './control-address.js'
import { DefaultControlChannel } from './control.js'
import { DefaultFleetGossip } from './fleet.js'
import { parseSwarmKey } from './keys.js'
import { peerScores } from './peer-score.js'
import { DhtRouter } from './router.js'
import type { ControlChannel, ControlLimits } from './control.js'
import type { FleetGossip, FleetLimits, FleetLocalState } from './fleet.js'
import type { GossipSub } from '@libp2p/gossipsub'
import type { PeerBannedEvent, PeerScoreInit, PeerScores } from './peer-score.js'
import type { DataAddress } from './messages.js'
import type { Router } from './router.js'
import type { Identify } from '@libp2p/identify'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Libp2p, PeerDiscovery, PeerId, PeerInfo, PrivateKey } from '@libp2p/interface'
import type { Ping } from '@libp2p/ping'
import type { AbortOptions, Logger } from '@swarm/interface'

export interface SwarmNodeInit {
  /** the node's identity; generated when absent (agents persist theirs with `loadOrCreateKey`) */
  privateKey?: PrivateKey
  /** multiaddrs to listen on; default `/ip4/0.0.0.0/tcp/0` */
  listen?: string[]
  /** multiaddrs (with `/p2p/<id>` where known) or `dns:<name>:<port>`; all are dialled and kept dialled */
  bootstrap?: string[]
  /** how often bootstrap entries are re-resolved and re-dialled, ms */
  bootstrapInterval?: number
  /** contents of a pnet swarm key file: only nodes holding the same key can connect */
  swarmKey?: Uint8Array
  /** find peers on the local link with mDNS */
  mdns?: boolean
  /** where this node's data server listens; read when announcing, so it may change */
  dataAddress?: () => DataAddress | undefined
  /** how long provider records live on other peers, ms; bounds how long a withdrawn key is still found */
  providerValidity?: number
  maxConnections?: number
  /** peer scoring and bans (ban length, threshold, weights); see `peer-score.ts` */
  peerScore?: PeerScoreInit
  /** the control channel's rate limits, message size and state budgets */
  controlLimits?: Partial<ControlLimits>
  /** what this node publishes to the fleet, read at each publish (see `fleet.ts`) */
  fleetState?: () => FleetLocalState
  /** the fleet table's budget, rates and timings */
  fleetLimits?: Partial<FleetLimits>
  /** default true */
  start?: boolean
  logger?: Logger
}

export interface SwarmNode {
  readonly peerId: string
  readonly privateKey: PrivateKey
  /** the underlying libp2p node, for what this interface does not cover */
  readonly libp2p: Libp2p<SwarmServices>
  readonly router: Router
  readonly control: ControlChannel
  /** what the rest of the fleet holds and pulls, and preheat requests */
  readonly fleet: FleetGossip
  /** how peers behaved, and who is banned; shared by everything on this node that deals with peers */
  readonly peerScores: PeerScores
  /** our addresses, each ending in `/p2p/<peerId>` */
  multiaddrs(): string[]
  start(options?: AbortOptions): Promise<void>
  stop(): Promise<void>
  isStarted(): boolean
  /** Runs one bootstrap round now (resolve and dial every entry) and waits for it. */
  bootstrap(options?: AbortOptions): Promise<void>
  /** peers with an open connection */
  connectedPeers(): string[]
  /** whether the peer has an open connection to us; an invalid peer id is never connected */
  isConnected(peerId: string): boolean
}

export interface SwarmServices extends Record<string, unknown> {
  identify: Identify
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  mdns?: PeerDiscovery
}

/**
 * Creates (and, unless `start: false`, starts) a Swarm node. Bad settings (swarm key,
 * multiaddrs, bootstrap entries) throw before anything listens.
 */
export async function createSwarmNode (init: SwarmNodeInit = {}): Promise<SwarmNode> {
  const logger = (init.logger ?? silentLogger).child({ component: 'p2p' })
  const psk = init.swarmKey != null ? parseSwarmKey(init.swarmKey) : undefined
  const listen = init.listen ?? DEFAULT_LISTEN
  listen.forEach(address => parseMultiaddr(address))
  const bootstrapEntries = (init.bootstrap ?? []).map(parseBootstrapEntry)
  const validity = init.providerValidity ?? PROVIDER_VALIDITY_MS
  const privateKey = init.privateKey ?? await generateKeyPair('Ed25519')
  const scores = peerScores({ logger, ...init.peerScore })
  const banned = (peerId: PeerId): boolean => scores.isBanned(peerId.toString())

  const dht = kadDHT({
    protocol: DHT_PROTOCOL,
    clientMode: false,
    peerInfoMapper: removePublicAddressesMapper,
    reprovide: {
      validity,
      // re-publish once half the validity has passed; check often enough to catch that
      threshold: validity / 2,
      interval: Math.max(100, Math.min(validity / 6, 5 * 60_000))
    }
  })

  const libp2p: Libp2p<SwarmServices> = await createLibp2p({
    start: false,
    privateKey,
    addresses: { listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(psk != null ? { connectionProtector: preSharedKey({ psk }) } : {}),
    connectionManager: {
      maxConnections: init.maxConnections ?? MAX_CONNECTIONS,
      inboundConnectionThreshold: INBOUND_CONNECTION_THRESHOLD,
      maxIncomingPendingConnections: MAX_INCOMING_PENDING_CONNECTIONS,
      dialTimeout: DIAL_TIMEOUT_MS
    },
    connectionGater: {
      denyDialPeer: banned,
      denyInboundEncryptedConnection: banned,
      denyOutboundEncryptedConnection: banned
    },
    connectionMonitor: {
      pingTimeout: { minTimeout: PING_TIMEOUT_MS, maxTimeout: 2 * PING_TIMEOUT_MS }
    },
    services: {
      identify: identify(),
      ping: ping(),
      dht,
      pubsub: gossipsub({
        allowedTopics: [FLEET_TOPIC],
        allowPublishToZeroTopicPeers: true,
        fallbackToFloodsub: false,
        maxInboundDataLength: FLEET_MAX_RPC_BYTES,
        fastMsgIdFn: fleetFastMessageId,
        doPX: false,
        D: FLEET_MESH_DEGREE,
        Dlo: FLEET_MESH_DEGREE - 1,
        Dhi: FLEET_MESH_DEGREE + 2,
        Dlazy: FLEET_GOSSIP_LAZY_PEERS,
        floodPublish: false
      }),
      ...(init.mdns === true ? { mdns: mdns({ serviceTag: '_swarm._udp.local' }) } : {})
    }
  })

  const node = new DefaultSwarmNode(libp2p, privateKey, {
    logger,
    peerScores: scores,
    ...(init.controlLimits != null ? { controlLimits: init.controlLimits } : {}),
    ...(init.fleetState != null ? { fleetState: init.fleetState } : {}),
    ...(init.fleetLimits != null ? { fleetLimits: init.fleetLimits } : {}),
    bootstrapEntries,
    ...(init.bootstrapInterval != null ? { bootstrapInterval: init.bootstrapInterval } : {}),
    ...(init.dataAddress != null ? { dataAddress: init.dataAddress } : {})
  })
  if (init.start !== false) {
    await node.start()
  }
  return node
}

interface DefaultSwarmNodeInit {
  logger: Logger
  peerScores: PeerScores
  controlLimits?: Partial<ControlLimits>
  fleetState?: () => FleetLocalState
  fleetLimits?: Partial<FleetLimits>
  bootstrapEntries: ReturnType<typeof parseBootstrapEntry>[]
  bootstrapInterval?: number
  dataAddress?: () => DataAddress | undefined
}

class DefaultSwarmNode implements SwarmNode {
  readonly peerId: string
  readonly privateKey: PrivateKey
  readonly libp2p: Libp2p<SwarmServices>
  readonly router: DhtRouter
  readonly control: DefaultControlChannel
  readonly fleet: DefaultFleetGossip
  readonly peerScores: PeerScores
  readonly #bootstrapper: Bootstrapper
  readonly #log: Logger
  #started = false

  constructor (libp2p: Libp2p<SwarmServices>, privateKey: PrivateKey, init: DefaultSwarmNodeInit) {
    this.libp2p = libp2p
    this.privateKey = privateKey
    this.peerId = libp2p.peerId.toString()
    this.#log = init.logger
    this.router = new DhtRouter({ dht: libp2p.services.dht, peerId: libp2p.peerId, isStarted: () => this.#started }, { logger: init.logger })
    this.peerScores = init.peerScores
    this.control = new DefaultControlChannel(libp2p, {
      logger: init.logger,
      peerScores: init.peerScores,
      ...(init.controlLimits != null ? { limits: init.controlLimits } : {}),
      ...(init.dataAddress != null ? { dataAddress: init.dataAddress } : {})
    })
    this.fleet = new DefaultFleetGossip(libp2p, libp2p.services.pubsub, {
      logger: init.logger,
      peerScores: init.peerScores,
      ...(init.fleetState != null ? { local: init.fleetState } : {}),
      ...(init.fleetLimits != null ? { limits: init.fleetLimits } : {})
    })
    this.#bootstrapper = new Bootstrapper(libp2p, init.bootstrapEntries, {
      logger: init.logger,
      ...(init.bootstrapInterval != null ? { intervalMs: init.bootstrapInterval } : {})
    })
    this.onDiscovered = this.onDiscovered.bind(this)
    this.onBanned = this.onBanned.bind(this)
    this.peerScores.addEventListener('peer:banned', this.onBanned)
  }

  multiaddrs (): string[] {
    return this.libp2p.getMultiaddrs().map(address => address.toString())
  }

  isStarted (): boolean {
    return this.#started
  }

  async start (options: AbortOptions = {}): Promise<void> {
    if (this.#started) {
      return
    }
    // the protocol must be registered before identify runs on the first connection
    await this.control.start(options)
    try {
      await this.libp2p.start()
    } catch (err) {
      await this.control.stop()
      await Promise.resolve(this.libp2p.stop()).catch(() => {})
      throw err
    }
    this.libp2p.services.mdns?.addEventListener('peer', this.onDiscovered)
    this.fleet.start()
    this.#started = true
    this.#bootstrapper.start()
    this.#log.info({ peerId: this.peerId, addresses: this.multiaddrs() }, 'swarm node started')
  }

  async stop (): Promise<void> {
    if (!this.#started) {
      return
    }
    this.#started = false
    this.#bootstrapper.stop()
    this.libp2p.services.mdns?.removeEventListener('peer', this.onDiscovered)
    this.router.stop()
    this.fleet.stop()
    await this.control.stop()
    await this.libp2p.stop()
    this.#log.info({ peerId: this.peerId }, 'swarm node stopped')
  }

  async bootstrap (options: AbortOptions = {}): Promise<void> {
    await this.#bootstrapper.run(options)
  }

  connectedPeers (): string[] {
    return this.libp2p.getPeers().map(peer => peer.toString())
  }

  isConnected (peerId: string): boolean {
    return this.libp2p.getConnections().some(connection => connection.status === 'open' && connection.remotePeer.toString() === peerId)
  }

  private onBanned (event: CustomEvent<PeerBannedEvent>): void {
    const id = event.detail.peerId
    let peer: PeerId
    try {
      peer = parsePeerId(id)
    } catch {
      return
    }
    if (!this.#started) {
      return
    }
    this.libp2p.hangUp(peer)
      .catch(err => { this.#log.debug({ peer: id, err: (err as Error).message }, 'hanging up a banned peer failed') })
  }

  private onDiscovered (event: CustomEvent<PeerInfo>): void {
    const peer: PeerId = event.detail.id
    if (peer.equals(this.libp2p.peerId) || this.libp2p.getConnections(peer).length > 0) {
      return
    }
    this.libp2p.peerStore.merge(peer, { multiaddrs: event.detail.multiaddrs })
      .then(async () => await this.libp2p.dial(peer, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }))
      .catch(err => { this.#log.debug({ peer: peer.toString(), err: (err as Error).message }, 'could not dial a peer found by mDNS') })
  }
}
