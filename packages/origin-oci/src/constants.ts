/** Media types of the OCI image and distribution specs. */
export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
export const DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
export const DOCKER_MANIFEST_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
/** the empty config (`{}`) that artifacts without a config of their own point at */
export const OCI_EMPTY = 'application/vnd.oci.empty.v1+json'
export const OCI_EMPTY_BYTES = new TextEncoder().encode('{}')
export const OCTET_STREAM = 'application/octet-stream'

/** ModelPack (CNCF model-spec): the artifact type and config, and the prefixes of its layer media types, current and older. */
export const MODELPACK_ARTIFACT = 'application/vnd.cncf.model.manifest.v1+json'
export const MODELPACK_CONFIG = 'application/vnd.cncf.model.config.v1+json'
export const MODELPACK_PREFIXES = ['application/vnd.cncf.model.', 'application/vnd.cnai.model.'] as const

/** Layer annotations that name the file a layer holds, in the order they are consulted. */
export const FILEPATH_ANNOTATIONS = ['org.cncf.model.filepath', 'org.cnai.model.filepath', 'org.opencontainers.image.title'] as const
/** ModelPack's per-file metadata (JSON: name, mode, uid, gid, size, mtime, typeflag) */
export const FILE_METADATA_ANNOTATIONS = ['org.cncf.model.file.metadata+json', 'org.cnai.model.file.metadata+json'] as const
export const TITLE_ANNOTATION = 'org.opencontainers.image.title'

/** Swarm's chunk manifest, published as a referrer artifact of the model it was derived from. */
export const CHUNK_MANIFEST_ARTIFACT = 'application/vnd.swarm.chunk-manifest.v1'
export const CHUNK_MANIFEST_LAYER = 'application/vnd.swarm.manifest.v1+json'
/** A ref put through the generic Origin API: an artifact pointing at a manifest CID. */
export const REF_ARTIFACT = 'application/vnd.swarm.ref.v1'
export const MANIFEST_CID_ANNOTATION = 'io.swarm.manifest.cid'
export const CHUNK_SIZE_ANNOTATION = 'io.swarm.chunk-size'

/**
 * The repository under the origin's namespace that holds chunks and manifests put one by one
 * (`putChunk`, `putManifest`): a registry keeps blobs per repository, and these belong to no model.
 */
export const DEFAULT_OBJECTS_REPOSITORY = 'swarm-objects'

/** OCI distribution's grammar for repository path components and tags. */
export const REPOSITORY_COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
export const DIGEST_PATTERN = /^sha256:[a-f0-9]{64}$/

export { CID_PATTERN } from '@swarm/interface'

export const DEFAULT_MAX_SOCKETS = 64
/** Retries after the first attempt, for failures that may pass (5xx, 429, resets, timeouts). */
export const DEFAULT_RETRIES = 4
export const RETRY_BASE_DELAY_MS = 200
export const RETRY_MAX_DELAY_MS = 10_000
/** How long a connection may stay silent (connect, headers, body) before an attempt fails. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
export const KEEP_ALIVE_TIMEOUT_MS = 30_000
/** Redirects followed per request (a blob GET is usually redirected once, to blob storage). */
export const MAX_REDIRECTS = 5
/** At most this much of an error response is read. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024
/** Manifests, indexes and token answers are small; more than this is refused. */
export const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
/** Tokens are renewed this long before they expire. */
export const TOKEN_EXPIRY_MARGIN_MS = 10_000
/** a token answer without expires_in lasts 60 s (distribution's token spec) */
export const DEFAULT_TOKEN_LIFETIME_S = 60

/** Layers hashed at once while a chunk manifest is derived. */
export const DERIVE_CONCURRENCY = 4
/** Tags of a repository resolved at once while refs are listed. */
export const LIST_CONCURRENCY = 8
/** Catalog and tag list page size. */
export const LIST_PAGE_SIZE = 1000

/** Free chunk buffers kept for the next GETs. */
export const CHUNK_POOL_MAX_FREE_BYTES = 64 * 1024 * 1024
export const CHUNK_POOL_IDLE_MS = 5_000
