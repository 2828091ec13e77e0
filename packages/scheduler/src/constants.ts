/** Requests one peer may have outstanding from us; a few keep its link busy without hogging its upload. */
export const DEFAULT_MAX_INFLIGHT_PER_PEER = 4

/** Requests outstanding at the origin at once. */
export const DEFAULT_MAX_INFLIGHT_ORIGIN = 8

/**
 * Origin requests the whole fleet of pullers keeps outstanding at once, shared out evenly: each
 * node takes ⌈this / pullers⌉ at a time (at least 1, at most its own origin limit). Every request
 * on the origin shares its bandwidth: if each of hundreds of owners asked for eight chunks at
 * once, every chunk would take hundreds of times its own transfer time, none would reach a peer
 * early, and the nodes waiting on owners would give up and ask the origin themselves. A few at a
 * time, chunks leave the origin one after another and peers pass each on as soon as it lands.
 */
export const DEFAULT_FLEET_INFLIGHT_ORIGIN = 16

/**
 * Pullers that fetch from the origin, at most: the best-ranked for the model (see `pullers.ts`).
 * Everyone must agree on who owns what, and in a large fleet nobody knows every puller; a
 * few, known to all, can be agreed on. As many as the fleet's origin requests, so each fetcher
 * keeps one outstanding.
 */
export const DEFAULT_ORIGIN_FETCHERS = 16

/**
 * How many chunks beyond those already seen (here or at any connected peer) owners fetch from
 * the origin: chunk i waits until i − window + 1 chunks are seen. Origin requests share its
 * link, so owners all fetching at once make every chunk land at the very end, and peers have
 * nothing to pass on meanwhile; a window makes chunks land one after another while the link
 * stays full. It must cover how long a landed chunk takes to become visible across the fleet
 * (a hop or two of peer transfers) in chunks of origin time, or the origin idles in between.
 * In bench/sim (128 MiB, 50 Mbit/s links, with byte-balanced ownership) a window of 16 cut p99
 * by 2–11 % at 100 and 1,000 nodes and 1–10 % at 4–16 nodes, with 1–4 MiB chunks, and kept
 * origin egress within 1.1 × M; 8 left the origin idle while chunks became visible, and one as
 * wide as the chunk count is no window. Infinity turns it off.
 */
export const DEFAULT_ORIGIN_WINDOW = 16

/**
 * A non-owner waits for an owner at least this many times as long as its own origin requests
 * take (measured, see `originFallbackMs`): owners fetch over the same origin at the same time,
 * so a slow origin makes a slow owner, not a failed one.
 */
export const ORIGIN_WAIT_FACTOR = 2

/**
 * Until a first chunk has come in from anywhere (no owner has delivered, nor has this node), a
 * non-owner's wait grows with the time since the pull started, up to twice this: nothing at all
 * arriving says the origin is slow for everyone; only chunks arriving while one owner's do not
 * say that owner stalled.
 */
export const SILENT_FLEET_WAIT_MS = 30_000

/**
 * How long `expectedPullers` holds down a node's share of the fleet's origin requests: long enough
 * for pulls released together to reach every node (resolving the name and the manifest at a busy
 * origin took up to 8 s in bench/fanout), short for a node that pulls alone.
 */
export const EXPECTED_PULLERS_MS = 10_000

/** An origin request is cancelled only after this many times as long as this node's origin requests usually take. */
export const ORIGIN_TIMEOUT_FACTOR = 3

/**
 * Requests outstanding in all, peers and origin together. They share this node's downlink: with
 * dozens outstanding, an owner's origin request (which other nodes wait on) gets a dozenth of the
 * link and every chunk lands late. A few keep a link busy.
 */
export const DEFAULT_MAX_INFLIGHT_TOTAL = 8

/**
 * How long a chunk from a peer should take to land, in the pull engine (`peerLandingMs`;
 * off in a bare scheduler). Peer requests at once follow it (from `MIN_PEER_INFLIGHT` up to `maxInflightTotal`,
 * see `LandingLimit` in @swarm/interface): a chunk is passed on only once landed, so on a slow
 * link fewer at once make every hop of a fan-out shorter; on a link fast enough it never binds.
 */
export const DEFAULT_PEER_LANDING_MS = 1_000

/**
 * How long a chunk from the origin should take to land while other pullers wait to be passed it,
 * in the pull engine (`originLandingMs`; off in a bare scheduler). Origin requests at once follow
 * it, from 1 up to this node's share of the fleet's (see \`LandingLimit\` in @swarm/interface).
 * Requests on one origin share its link: with a dozen outstanding across the fleet, each chunk
 * takes a dozen times its own transfer time, so every chunk reaches a peer late and the last
 * dozen land together at the very end, to be passed on after the origin has gone quiet. On an
 * origin fast enough (an object store whose GETs each run at their own rate) the limit never
 * binds. A node pulling alone is not held to it: only its rate counts.
 */
export const DEFAULT_ORIGIN_LANDING_MS = 2_000

/**
 * Chunks smaller than the largest chunk divided by this do not move the landing limits (origin
 * and peer requests at once): a small one lands in a round trip however busy the link is, and
 * tensor-aligned cutting leaves many (headers, small tensors), each of which would have raised a
 * limit by one. In bench/sim on a measured fan-out's chunks, p99 at 8 and 16 nodes 34.7 and
 * 38.4 s instead of 35.3 and 40.3 with peer requests learning from them.
 */
export const LANDING_SAMPLE_FRACTION = 4

/** Peer requests at once, at least (and at first) */
export const MIN_PEER_INFLIGHT = 2

/** Of `maxInflightTotal`, slots the origin never takes while peers are connected. */
export const PEER_RESERVED_SLOTS = 2

/**
 * How long a chunk nobody holds yet waits for its owner before this node takes it from the origin,
 * per "round" of the owner's origin queue (see the design notes in `origin.ts`). It is a safety
 * net for owners that stall without leaving; leaving is noticed at once.
 */
export const DEFAULT_ORIGIN_FALLBACK_MS = 5_000

/**
 * A chunk whose owner was another puller, and that this node comes to own mid-pull (a fetcher
 * left, or the fetchers shifted), waits this long before this node takes it from the origin. Views
 * of the fetchers disagree for a moment after a change: every node that neighboured a fetcher that
 * left sees a replacement of its own, often itself, until the names peers pass on (one hop every
 * quarter second, at most four hops: `@swarm/pull`'s constants) settle on one. Taken at once, the
 * chunk left the origin once per self-appointed owner: in bench/sim at 1,000 nodes knowing their
 * neighbours, 17 nodes fetched one chunk at the same instant after 10 % left. When the previous
 * owner is still pulling (a fetcher that outranks it joined), the wait is the origin fallback
 * wait if that is longer: that owner may well have fetched the chunk already, and it is then on
 * its way through the fleet, out of this node's sight. Ownership a node has from its first look
 * is taken at once.
 */
export const TAKEOVER_WAIT_MS = 2_000

/**
 * A fetcher that has nothing of its own left to take from the origin takes a chunk from a busier
 * owner's queue only when that owner has at least its origin requests at once plus this many of
 * its own chunks to fetch before it: it reaches the chunk only after this node's copy has landed
 * and been announced, so both do not fetch it. (Views of what is seen lag a chunk or so.)
 */
export const STEAL_MARGIN = 2

/**
 * The tiers of a non-owner's fallback wait (see `origin.ts`): the chunk's runner-up waits one
 * wait, the other origin fetchers two, and every other puller this many. In a large fleet an
 * owner's chunk comes late when its origin request gets a small share of the origin's link, not
 * only when the owner stalls, and the pullers that are not fetchers are hundreds: in bench/sim
 * at 1,000 nodes with a tenth leaving early in the pull, at two waits 9 of them fetched one late
 * chunk within a quarter of a second, and the origin sent 1.15–1.45 × M over three seeds.
 */
export const NON_FETCHER_FALLBACK_TIER = 4

/** How often, at most, a fetcher with nothing of its own left looks for a busier owner's chunk to take. */
export const STEAL_SCAN_MS = 250

/** A request outstanding this long is cancelled and retried elsewhere. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000

/** A request outstanding less than this is never duplicated to another holder (see `endgame.ts`). */
export const DEFAULT_HEDGE_AFTER_MS = 3_000

/** A request is hedged once outstanding this many times as long as requests of its size take here. */
export const HEDGE_SLOWDOWN = 3

/** In endgame, a request is duplicated once outstanding this many times as long as expected. */
export const ENDGAME_SLOWDOWN = 1.5

/** After a failure, how long before the same source is asked for that chunk again (when nothing else has it). */
export const DEFAULT_RETRY_AFTER_MS = 1_000

/** In endgame and when hedging, at most this many requests for one chunk are outstanding at once: one duplicate is enough to route around a slow holder, and costs holders at most one extra upload per chunk. */
export const MAX_REQUESTS_PER_CHUNK = 2
