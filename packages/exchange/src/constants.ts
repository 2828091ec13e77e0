/** ALPN protocol id; its suffix is the wire protocol version. */
export const PROTOCOL = 'swarm-data/1'

/** The largest chunk a request may ask for. */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024

/** The longest CID string a request may carry (a CIDv1 sha2-256 in base32 is 59 characters). */
export const MAX_CID_LENGTH = 128

/** Request bodies are tiny; anything longer is an attack or a bug. */
export const MAX_REQUEST_BODY_LENGTH = 1024

/** ERROR responses carry a UTF-8 message of at most this many bytes. */
export const MAX_ERROR_MESSAGE_LENGTH = 1024

export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 0

/**
 * Total concurrent uploads a server runs; more requests get BUSY. A holder uploading to every
 * requester at once splits its uplink among all of them, so none has the chunk early enough to
 * pass it on; a few uploads at a time finish fast, the peers that got the chunk serve it too, and
 * BUSY sends the rest to them (bench/sim: 1.6× faster fan-out at 100–1,000 nodes than 64 slots).
 */
export const DEFAULT_MAX_UPLOADS = 8

/**
 * Concurrent relays a server runs, beside its `DEFAULT_MAX_UPLOADS` upload slots: GETs answered
 * as their chunk arrives here, paced by its source (see `slotGranted` in slots.ts for why apart).
 * In bench/sim at 200 nodes, 8 gave p99 1.52 × T* where 4 gave 1.79, 6 1.65, 10 1.54, 12 1.59
 * and 16 1.68: fewer keep chunks from spreading while they arrive, more split the uplink among
 * so many relays that none lands soon.
 */
export const DEFAULT_MAX_RELAYS = 8

/**
 * How long an upload should take to land, for an agent's data server (`uploadLandingMs`).
 * Uploads at once follow it, from `MIN_UPLOADS` up to `maxUploads` (see `LandingLimit` in
 * @swarm/interface): uploads share this node's uplink, and the peer passes a chunk on only once
 * it has landed whole, so on a slow uplink fewer at once let each land sooner; on one fast
 * enough it never binds.
 */
export const DEFAULT_UPLOAD_LANDING_MS = 1_000

/**
 * A GET that asks for at most this many bytes takes no upload slot: its answer costs the uplink
 * a few packets, not a share of it for a second. Slots bound how many chunks share the uplink
 * so each lands soon; answering a small one BUSY only sent it round again. Tensor-aligned
 * cutting leaves such chunks (headers, small tensors, configs): in bench/fanout at 4 nodes the
 * last node finished waiting for a 2 KiB chunk its holders had answered BUSY three times.
 */
export const SMALL_ANSWER_LENGTH = 16 * 1024

/** Small answers (see `SMALL_ANSWER_LENGTH`) a server runs at once, beyond its upload slots; more get BUSY. */
export const MAX_SMALL_ANSWERS = 64

/** Uploads at once, at least (and at first), when they follow how long they take to land */
export const MIN_UPLOADS = 2

/** Concurrent uploads one peer may hold, so one greedy peer cannot take every slot. */
export const DEFAULT_MAX_UPLOADS_PER_PEER = 4

/**
 * Free upload slots that only a peer holding none may take, at most; a server keeps
 * `min(this, maxUploads / 4)`. Without them two peers at their per-peer share fill a server with
 * the default 8 slots and every other peer gets BUSY for as long as they hold on.
 */
export const DEFAULT_RESERVED_UPLOADS = 2

/**
 * Authenticated and handshaking data connections a server holds in all; more are closed as they
 * are accepted, before TLS starts. Each costs a file descriptor and TLS buffers; 128 peers at
 * the client's pool size of 4 fit.
 */
export const DEFAULT_MAX_CONNECTIONS = 512

/**
 * Data connections one peer may hold on a server; more are closed right after authentication,
 * before any byte is read. Twice the client's pool, so a peer reconnecting while its old
 * connections wind down is not refused.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_PEER = 8

/**
 * How long a server waits for a peer to take a response it has started writing (the socket's
 * write buffer to drain) before it closes the connection and frees the upload slots held there.
 * Equal to the client's request timeout: a response the peer cannot take in that time is one
 * its fetch has already given up on. A payload of the largest chunk size must move at 2.2 MB/s.
 */
export const DEFAULT_WRITE_TIMEOUT_MS = 30_000

/**
 * A server connection with nothing in flight and no byte received for this long is closed;
 * longer than the client's own idle timeout, so an honest client closes first.
 */
export const DEFAULT_SERVER_IDLE_TIMEOUT_MS = 120_000

export const DEFAULT_CONNECTIONS_PER_PEER = 4
export const DEFAULT_MAX_INFLIGHT_PER_CONNECTION = 8

/** A fetch, from the call to the last payload byte, including any wait for a connection. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** A relay's timeout starts again when bytes come, at most this often. */
export const RELAY_TIMEOUT_REFRESH_MS = 1_000

/**
 * TLS handshake plus certificate verification, on both sides, counted from the TCP accept or
 * dial as one deadline (not as inactivity, which a peer trickling bytes could stretch forever).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000

/**
 * The form of a peer id a request names: libp2p's string form (base58btc: `12D3KooW…` for
 * Ed25519 keys, `Qm…` and `16Uiu2…` for others). A form check only; the certificate proves the rest.
 */
export const PEER_ID_FORM = /^[1-9A-HJ-NP-Za-km-z]{40,100}$/

/** certificates whose check a thread remembers (see identity.ts): a few per peer, for a large fleet */
export const VERIFIED_CERTIFICATES = 4096

/** How long a peer whose new connection failed is not dialled again while other connections to it work. */
export const RECONNECT_BACKOFF_MS = 1_000

/**
 * Payloads up to this size go out in one write together with their header (one TLS record
 * instead of two); larger ones are written as they are, because a gathered write makes Node's
 * TLS copy the whole payload into one buffer.
 */
export const COALESCE_PAYLOAD_LENGTH = 16 * 1024

/** With an upload rate limit, payloads are paced in slices of this size. */
export const RATE_LIMIT_SLICE_LENGTH = 64 * 1024

/** Responses a server queues on one connection before it stops reading that connection's requests. */
export const MAX_QUEUED_RESPONSES = 64

/** Cancelled requests whose late response a client connection still expects and drops. */
export const MAX_CANCELLED_PER_CONNECTION = 1024

/** A client connection with nothing in flight for this long is closed. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000


/** Bytes of a skipped payload (a cancelled request's late answer) read at a time. */
export const SKIP_BUFFER_LENGTH = 64 * 1024
