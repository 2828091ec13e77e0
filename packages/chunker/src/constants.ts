const MiB = 1024 * 1024

/** The chunk size files are cut with unless a caller picks another. */
export const DEFAULT_CHUNK_SIZE = 4 * MiB

/** Smaller chunks would make manifests and per-chunk bookkeeping dominate transfers. */
export const MIN_CHUNK_SIZE = 1 * MiB

/** A chunk is verified as one unit, so it is held whole in memory: keep that bounded. */
export const MAX_CHUNK_SIZE = 64 * MiB

/** The reference safetensors implementation refuses larger headers. */
export const MAX_SAFETENSORS_HEADER = 100 * MiB

/**
 * A tensor (with the padding after it) at least this fraction of the chunk size always
 * starts its own chunk; smaller ones are packed together. See `plan.ts`.
 */
export const LARGE_TENSOR_FRACTION = 1 / 4

/**
 * Small tensors are grouped like content-defined chunking with a mean group of about this
 * fraction of the chunk size. See `plan.ts`.
 */
export const SMALL_GROUP_MEAN_FRACTION = 1 / 2
