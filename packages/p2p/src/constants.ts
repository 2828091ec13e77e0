import { MANIFEST_LIMITS } from '@swarm/manifest'

/** The control protocol: peers tell each other which chunks of which manifests they hold. */
export const CONTROL_PROTOCOL = '/swarm/control/1.0.0'

/** Our own DHT protocol, so a Swarm node never joins (or answers) the public IPFS DHT. */
export const DHT_PROTOCOL = '/swarm/kad/1.0.0'

export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0']

/**
 * Most chunks a manifest may have (the manifest schema's own limit): a bitfield or chunk index
 * from a peer is never bigger than a manifest this node could hold.
 */
export const MAX_CHUNK_COUNT = MANIFEST_LIMITS.maxTotalChunks

/** Largest bitfield accepted, in bytes (1.25 MB for 10 M chunks). */
export const MAX_BITFIELD_BYTES = Math.ceil(MAX_CHUNK_COUNT / 8)

/**
 * Origin fetchers a `join` may name (peer ids): the scheduler ranks at most 4 × its fetchers
 * (16 by default), and tells peers the fetchers among them.
 */
export const MAX_JOIN_FETCHERS = 64

/** What one fetcher a peer named counts against the control-state budgets, beside its peer id. */
export const FETCHER_ENTRY_BYTES = 8

/** The largest hop count a named fetcher may carry (the pull passes on far fewer). */
export const MAX_FETCHER_HOPS = 64

/** Indices per outgoing `have` message; bigger batches are split, and peers send no more. */
export const MAX_HAVE_INDICES_PER_MESSAGE = 65_536

/**
 * CID strings whose canonical form is remembered (see `canonicalCid`). Every control message
 * names its manifest, and parsing that CID again for each one was a third of handling a message
 * in bench/fanout's profiles; a fleet pulls a handful of manifests at once. When full the memo
 * starts over, so a peer that names ever new strings costs us no more than parsing them did.
 */
export const CANONICAL_CID_MEMO_ENTRIES = 1024

/**
 * Largest control message accepted or sent, in bytes (the frame body, without its 4-byte
 * length): a `join` with the largest bitfield in base64 and room to spare. A message this size
 * takes a few milliseconds to parse, so no single message holds the event loop for long.
 */
export const MAX_MESSAGE_BYTES = 2 * 1024 * 1024

/** How long `have` indices wait to be coalesced into one message per manifest. */
export const HAVE_FLUSH_DELAY_MS = 20

/**
 * A peer that lets this many bytes of our control messages pile up unread loses its stream;
 * the next message opens a fresh one that starts with our full state.
 */
export const MAX_QUEUED_BYTES = 64 * 1024 * 1024

/**
 * Manifests one peer may have joined at once. Only joins for manifests this node holds are
 * kept, so an honest peer stays far below this.
 */
export const MAX_PEER_MANIFESTS = 1_024

/**
 * Joins for manifests this node does not hold that one peer may have set aside, and their bytes.
 * They are kept only so that a pull or a read that starts a moment later sees the peer at once
 * instead of a round trip later; the oldest go first, and an evicted one costs only that round
 * trip (our own join makes the peer send it again).
 */
export const MAX_PEER_ASIDE_MANIFESTS = 64
export const MAX_PEER_ASIDE_BYTES = 2 * 1024 * 1024

/** What one joined manifest costs in control state besides its bitfield (map entry, CID string). */
export const MANIFEST_ENTRY_BYTES = 256

/** Bytes of control state (bitfields and joins) one peer may make us hold. */
export const MAX_PEER_STATE_BYTES = 8 * 1024 * 1024

/** Bytes of control state all peers together may make us hold; joins past it are dropped. */
export const MAX_TOTAL_STATE_BYTES = 256 * 1024 * 1024

/**
 * Control messages one peer may send per second, sustained, and in one burst. An honest peer
 * sends a `have` per manifest it pulls every {@link HAVE_FLUSH_DELAY_MS} at most, and a `join`
 * per manifest it holds when its stream opens.
 */
export const PEER_MESSAGES_PER_SECOND = 500
export const PEER_MESSAGE_BURST = 2_000

/** Control message bytes one peer may send per second, sustained, and in one burst. */
export const PEER_BYTES_PER_SECOND = 8 * 1024 * 1024
export const PEER_BYTE_BURST = 32 * 1024 * 1024

/**
 * Peer scoring (see `peer-score.ts`): what each offence weighs, the score at which a peer is
 * banned, how fast scores decay, and how long a first ban lasts (each later ban of the same
 * peer lasts twice as long as the one before, up to {@link MAX_BAN_MULTIPLIER} times).
 */
export const PEER_OFFENCE_WEIGHTS = Object.freeze({
  /**
   * chunk bytes that failed verification: over TLS they can only be a lie or a peer serving a
   * corrupt store, and either way it is banned at once
   */
  'bad-data': 100,
  /** a frame whose length is over {@link MAX_MESSAGE_BYTES} */
  'too-large': 50,
  /** not JSON, not a valid message, or a stream that does not start with hello */
  malformed: 25,
  /** a join whose bitfield does not fit its chunk count */
  bitfield: 25,
  /** a join whose chunk count is not the manifest's */
  'chunk-count': 25,
  /** a have naming a chunk the manifest does not have */
  'index-out-of-range': 25,
  /** more than {@link MAX_PEER_MANIFESTS} manifests joined */
  'too-many-manifests': 25,
  /** more than {@link MAX_PEER_STATE_BYTES} of control state */
  'peer-over-budget': 25,
  /** a message past the peer's rate limit */
  'rate-limited': 10,
  /** a have for a manifest the peer has not joined (one can cross a dropped join: weighs little) */
  'peer-not-joined': 2,
  /** a join for a manifest this node does not hold: set aside, not used; joins go to every peer, so this is normal */
  'not-joined': 0,
  /** all peers together are over {@link MAX_TOTAL_STATE_BYTES}: not this peer's doing */
  'over-budget': 0
})

export const PEER_BAN_THRESHOLD = 100

export const PEER_SCORE_HALF_LIFE_MS = 60_000

export const PEER_BAN_MS = 10 * 60_000

export const MAX_BAN_MULTIPLIER = 16

/** Peers whose score the node remembers; past this the longest-quiet unbanned ones are forgotten. */
export const MAX_SCORED_PEERS = 10_000

/** Control streams per connection and direction; one is used, a few more cover reopening. */
export const MAX_CONTROL_STREAMS = 4

export const OPEN_STREAM_TIMEOUT_MS = 10_000

export const DIAL_TIMEOUT_MS = 10_000

/** How often bootstrap entries are re-resolved and re-dialled. */
export const BOOTSTRAP_INTERVAL_MS = 30_000

/**
 * After a round in which a bootstrap dial failed, the next round comes this soon, then twice as
 * late each time another fails, up to the interval: a node that starts before its seed, or whose
 * first dial timed out on a busy host, joins within seconds instead of a whole interval later.
 */
export const BOOTSTRAP_RETRY_MS = 1_000

/**
 * How long a provider record lives on the peers that store it. Records of an advertised key are
 * re-published before they expire; a withdrawn key stops being found by other peers within
 * about this long (plus one cleanup interval).
 */
export const PROVIDER_VALIDITY_MS = 60 * 60_000

/** libp2p's default of 5 inbound connections per second per host breaks bootstrap of 10+ nodes on one host. */
export const INBOUND_CONNECTION_THRESHOLD = 1_000

export const MAX_INCOMING_PENDING_CONNECTIONS = 256

export const MAX_CONNECTIONS = 300

/**
 * A connection whose heartbeat ping takes longer than this is closed (libp2p's default is 5 s).
 * A node busy loading a model shares its link and CPU with the transfer: pings queue behind
 * megabytes of chunk data, and closing the connection then costs the peer its place in the
 * pull (its data-plane admission, its share of the origin's chunks). A dead peer's connection
 * ends with TCP long before this; a silent one is caught within a heartbeat of it.
 */
export const PING_TIMEOUT_MS = 30_000

/** Length of the random part of a pre-shared swarm key, in bytes. */
export const SWARM_KEY_BYTES = 32

/**
 * Fleet gossip (see `fleet.ts`): one gossipsub topic carries each node's compact state (labels,
 * per-manifest progress) and preheat requests.
 */
export const FLEET_TOPIC = '/swarm/fleet/1'

/**
 * The fleet topic's gossipsub mesh: each node relays every message to about this many peers
 * (gossipsub's `D`, with `Dlo` one below and `Dhi` two above), and publishes its own to its
 * mesh only, not to every peer it is connected to (`floodPublish` off). Each node receives a
 * message about once per mesh peer, and every copy costs the libp2p stack (private-network
 * cipher, Noise, yamux, the RPC's decoding) before it is recognised as a copy. With gossipsub's
 * defaults (6, 4, 12, flood publishing) a shaped fan-out of 8 spent about a quarter of the agents'
 * busy samples on fleet gossip. Four still reaches 10,000 nodes in seven relays, keeps gossipsub's
 * own rule for outbound mesh peers (its default `Dout` of 2 is below `Dlo` and at most half of
 * `D`), and the lazy gossip (message ids offered to `FLEET_GOSSIP_LAZY_PEERS` others each
 * heartbeat) repairs what a smaller mesh drops.
 */
export const FLEET_MESH_DEGREE = 4
export const FLEET_GOSSIP_LAZY_PEERS = 4

/** Largest fleet message accepted or published, bytes: a node's state with every model it reports. */
export const FLEET_MAX_MESSAGE_BYTES = 16 * 1024

/**
 * Largest gossipsub frame read: one RPC may batch several messages and the mesh's control
 * lists (message ids it has, wants, no longer wants) besides; the data of each message is still
 * held to {@link FLEET_MAX_MESSAGE_BYTES} by the topic validator.
 */
export const FLEET_MAX_RPC_BYTES = 1024 * 1024

/** Models one node reports; past this, held models seen longest ago are left out. */
export const FLEET_MAX_MODELS_PER_NODE = 64

/** Labels one node may carry. */
export const FLEET_MAX_LABELS = 32

/** Longest decline or failure reason carried, characters. */
export const FLEET_MAX_REASON_CHARS = 240

/**
 * The fleet table's memory budget: each remote node costs its message's bytes plus
 * {@link FLEET_ENTRY_OVERHEAD_BYTES}. 16 MiB holds 1,000 nodes at the largest message, about
 * 8,000 at a typical one (two models, a few labels). New nodes past it are not recorded.
 */
export const FLEET_MAX_TABLE_BYTES = 16 * 1024 * 1024

/** What a table entry costs besides its message bytes (map entry, strings, parsed objects). */
export const FLEET_ENTRY_OVERHEAD_BYTES = 1024

/** Most nodes the table holds, whatever their size. */
export const FLEET_MAX_NODES = 10_000

/** A node's state is published at least this often, so a newcomer learns the fleet within it. */
export const FLEET_HEARTBEAT_MS = 5_000

/** Changes of state (a pull started, finished or failed; a preheat declined) are published at most this often. */
export const FLEET_MIN_PUBLISH_INTERVAL_MS = 1_000

/**
 * A pull's progress alone is published at most this often. Every message costs every node of
 * the fleet its checks and relays (see {@link FLEET_MESSAGES_PER_SECOND}): in a shaped fan-out
 * of 8, publishing progress every second made fleet gossip nearly all of the libp2p traffic,
 * and gossipsub's message handling a tenth of the agents' busy main-thread samples. Every 5 s keeps progress bars and
 * rates live; what a rollout waits on (a pull finishing or failing) still goes out within
 * {@link FLEET_MIN_PUBLISH_INTERVAL_MS}.
 */
export const FLEET_PROGRESS_INTERVAL_MS = 5_000

/**
 * A node not heard from for this long is dropped (also at once when its last connection to us
 * closes), or for {@link FLEET_TTL_HEARTBEATS} of the heartbeats it says it keeps, if longer.
 */
export const FLEET_NODE_TTL_MS = 20_000

/** An entry outlives this many of its node's heartbeats, so one or two lost messages do not drop it. */
export const FLEET_TTL_HEARTBEATS = 4

/**
 * State messages the whole fleet publishes per second, at most, once it is large enough that the
 * intervals above would pass it. Every node checks, stores and relays every message (signature,
 * schema, table, and forwarding to its mesh peers: milliseconds of a core each, measured in a
 * shaped fan-out), so one message a second from each of 1,000 pulling nodes would keep every node
 * of the fleet busy with gossip alone, and would pass the per-peer relay limit below, making
 * honest relays look like floods. Each node spaces its messages by the fleet size it sees: changes
 * at most every fleet size / this many seconds, heartbeats five times as far apart.
 */
export const FLEET_MESSAGES_PER_SECOND = 100

/** The longest heartbeat a node may announce (and so the longest it may stay silent): 10 minutes. */
export const FLEET_MAX_HEARTBEAT_MS = 600_000

/**
 * Fleet messages accepted per originating node, sustained and in one burst. An honest node
 * publishes about one a second while pulling and one per heartbeat otherwise.
 */
export const FLEET_ORIGIN_MESSAGES_PER_SECOND = 4
export const FLEET_ORIGIN_MESSAGE_BURST = 20

/**
 * Fleet messages accepted from one connected peer, its relays included, sustained and in one
 * burst: a mesh peer forwards a share of the whole fleet's messages.
 */
export const FLEET_SOURCE_MESSAGES_PER_SECOND = 1_000
export const FLEET_SOURCE_MESSAGE_BURST = 5_000

/** Preheat request ids remembered, so a request relayed twice is acted on once. */
export const FLEET_SEEN_PREHEATS = 1_024
