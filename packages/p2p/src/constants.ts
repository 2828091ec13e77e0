/** The control protocol: peers tell each other which chunks of which manifests they hold. */
export const CONTROL_PROTOCOL = '/swarm/control/1.0.0'

/** Our own DHT protocol, so a Swarm node never joins (or answers) the public IPFS DHT. */
export const DHT_PROTOCOL = '/swarm/kad/1.0.0'

export const DEFAULT_LISTEN = ['/ip4/0.0.0.0/tcp/0']

/** Largest control message accepted or sent, in bytes (the frame body, without its 4-byte length). */
export const MAX_MESSAGE_BYTES = 16 * 1024 * 1024

/** Largest bitfield accepted, in bytes: 64 Mi chunks. */
export const MAX_BITFIELD_BYTES = 8 * 1024 * 1024

export const MAX_CHUNK_COUNT = MAX_BITFIELD_BYTES * 8

/** How long `have` indices wait to be coalesced into one message per manifest. */
export const HAVE_FLUSH_DELAY_MS = 20

/** Indices per outgoing `have` message; bigger batches are split. */
export const MAX_HAVE_INDICES_PER_MESSAGE = 65_536

/**
 * A peer that lets this many bytes of our control messages pile up unread loses its stream;
 * the next message opens a fresh one that starts with our full state.
 */
export const MAX_QUEUED_BYTES = 64 * 1024 * 1024

/** Manifests one peer may have joined at once; more is a protocol violation. */
export const MAX_PEER_MANIFESTS = 4_096

/** Bytes of bitfields one peer may make us hold. */
export const MAX_PEER_STATE_BYTES = 64 * 1024 * 1024

/** Control streams per connection and direction; one is used, a few more cover reopening. */
export const MAX_CONTROL_STREAMS = 4

export const OPEN_STREAM_TIMEOUT_MS = 10_000

export const DIAL_TIMEOUT_MS = 10_000

/** How often bootstrap entries are re-resolved and re-dialled. */
export const BOOTSTRAP_INTERVAL_MS = 30_000

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
