import { MAX_CHUNK_SIZE } from '@swarm/chunker/constants'

/**
 * Bounds on what a manifest may describe. Manifests come from the origin and from peers, so
 * every count a reader would loop over or allocate for is capped before anything trusts it.
 */
export const MANIFEST_LIMITS = Object.freeze({
  maxFiles: 100_000,
  /** 1 PiB */
  maxFileSize: 2 ** 50,
  maxTotalChunks: 10_000_000,
  maxChunkSize: MAX_CHUNK_SIZE,
  /** UTF-8 bytes, as PATH_MAX counts them */
  maxPathLength: 4096,
  /** UTF-8 bytes of one path segment, as NAME_MAX counts them */
  maxPathSegmentLength: 255,
  maxManifestBytes: 256 * 1024 * 1024,
  maxTensorsPerFile: 1_000_000,
  maxMetadataEntries: 64,
  /** UTF-16 code units of one metadata value */
  maxMetadataValueLength: 1024
})

/** Metadata keys: lowercase, dotted namespaces (`huggingface.revision`); never integer-like, so canonical key order holds. */
export const METADATA_KEY_PATTERN = /^[a-z][a-z0-9_-]*(?:\.[a-z0-9_-]+)*$/
export const MAX_METADATA_KEY_LENGTH = 64

/** The tag a reference without one means. */
export const DEFAULT_TAG = 'latest'

export const MAX_REF_NAME_LENGTH = 200

export const MAX_TAG_LENGTH = 128

/** Block sizes a version 3 manifest may name: small enough to pass on early, large enough that digests stay a small part of it. */
export const MIN_BLOCK_SIZE = 16 * 1024
export const MAX_BLOCK_SIZE = MANIFEST_LIMITS.maxChunkSize
/** What `swarm push` cuts each chunk's blocks to: 512 bytes of digests per 4 MiB chunk. */
export const DEFAULT_BLOCK_SIZE = 256 * 1024
