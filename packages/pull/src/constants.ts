/** How long a pull waits for other pullers' joins before it takes chunks from the origin as their owner. */
export const DEFAULT_SETTLE_MS = 500

/**
 * The least time between two joins that only tell peers of a changed list of origin fetchers:
 * lists settle within a few exchanges, and each join carries the whole bitfield.
 */
export const FETCHERS_ANNOUNCE_MS = 250

/**
 * An origin fetcher named from further than this many hops is not taken (see the session's
 * notes). Random graphs of a few dozen peers per node reach a million nodes in four hops.
 */
export const MAX_FETCHER_HOPS = 4

/** Origin fetchers one join names at most (the best-ranked): the control channel carries no more. */
export const MAX_NAMED_FETCHERS = 64

/** With no chunk arriving for this long, a pull ends. */
export const DEFAULT_STALL_TIMEOUT_MS = 120_000

/** Consecutive origin failures (timeouts not counted) that end a pull. */
export const DEFAULT_MAX_ORIGIN_FAILURES = 3

/** The longest a pull sleeps without an event before it asks the scheduler again (and checks for a stall). */
export const DEFAULT_POLL_MS = 1_000

/**
 * When a running pull looks up the manifest's providers again, counted from its start: pullers
 * that started with us published their records after our first lookup ran. A lookup finds only
 * nodes we are not connected to (connected ones joined on the control channel), so the agent
 * skips these while it is connected to every node it knows of: in a fleet small enough to be
 * fully connected, four lookups again were about a tenth of the agents' CPU in bench/fanout at
 * 8 nodes, and could find no one new.
 */
export const REDISCOVER_AFTER_MS: readonly number[] = [2_000, 5_000, 10_000, 20_000]

/** Peers asked for a manifest the store and the origin could not give. */
export const MANIFEST_PEER_CANDIDATES = 8

/** How long the provider lookup for a manifest may take. */
export const MANIFEST_LOOKUP_TIMEOUT_MS = 3_000

/** How long one peer may take to send a manifest. */
export const MANIFEST_PEER_TIMEOUT_MS = 10_000
/**
 * How long the origin is left alone after `maxOriginFailures` failures in a row while peers hold
 * every missing chunk; it is tried again after (it may be back, and a chunk whose holders left
 * needs it).
 */
export const ORIGIN_PAUSE_MS = 30_000
