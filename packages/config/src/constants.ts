export const DEFAULT_CONFIG_FILE = '/etc/swarm/config.yaml'
export const DEFAULT_DATA_DIR_ROOT = '/var/lib/swarm'
export const DEFAULT_CHUNK_SIZE = 4 * 1024 * 1024
/** Block digests `swarm push` lists per chunk (manifest version 3), as @swarm/manifest's DEFAULT_BLOCK_SIZE. */
export const DEFAULT_BLOCK_SIZE = 256 * 1024
export const DEFAULT_CONCURRENCY = 16
export const DEFAULT_P2P_PORT = 4001
export const DEFAULT_DATA_PORT = 4002
export const DEFAULT_METRICS_PORT = 9464

/** Concurrent uploads an agent serves (see `DEFAULT_MAX_UPLOADS` in `@swarm/exchange` for why few). */
export const DEFAULT_UPLOAD_SLOTS = 8

/** How long a peer that misbehaves is banned the first time, in seconds (repeat offenders longer); 0 never bans. */
export const DEFAULT_PEER_BAN_SECONDS = 600
