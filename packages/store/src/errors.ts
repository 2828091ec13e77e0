import { SwarmError } from '@swarm/interface'

/** Another live process holds the store's directory. */
export class StoreLockedError extends SwarmError {
  override readonly code = 'ERR_STORE_LOCKED'
  constructor (readonly dir: string, readonly pid: number | undefined, readonly lockPath: string) {
    super(pid === undefined
      ? `store ${dir} is locked by another opener (${lockPath})`
      : `store ${dir} is in use by process ${pid} (${lockPath}); stop that process, or delete the lock file if no Swarm agent is running`)
  }
}

/** models.json exists but is not a valid list of held models. */
export class CorruptModelsFileError extends SwarmError {
  override readonly code = 'ERR_CORRUPT_MODELS_FILE'
  constructor (readonly path: string, readonly reason: string, options?: { cause?: unknown }) {
    super(`${path} is corrupt: ${reason}; restore it or delete it (held models are then forgotten and their content reclaimed)`, options)
  }
}

/** The store was used after close(). */
export class StoreClosedError extends SwarmError {
  override readonly code = 'ERR_STORE_CLOSED'
  constructor (readonly dir: string) {
    super(`store ${dir} is closed`)
  }
}

/** remove() of a model that something still holds a lease on (a pull in flight, a file open in the view). */
export class ModelLeasedError extends SwarmError {
  override readonly code = 'ERR_MODEL_LEASED'
  constructor (readonly manifestCid: string, readonly holders: string[]) {
    super(`model ${manifestCid} is in use (${holders.join(', ')}); it can be removed once they are done`)
  }
}

/**
 * A manifest lists a chunk with another size than a held manifest does. A CID fixes its bytes,
 * so one of the two lies; the one held first stays, and the newcomer is refused before it can
 * make the other's chunks fail to store.
 */
export class ManifestConflictError extends SwarmError {
  override readonly code = 'ERR_MANIFEST_CONFLICT'
  constructor (readonly manifestCid: string, readonly heldManifestCid: string, readonly chunkCid: string, readonly size: number, readonly heldSize: number) {
    super(`manifest ${manifestCid} lists chunk ${chunkCid} as ${size} bytes, but held manifest ${heldManifestCid} lists it as ${heldSize}; one of them is wrong, so ${manifestCid} is refused`)
  }
}

/**
 * fdatasync of a content file failed. The kernel may have dropped the pages written through that
 * descriptor and reports the failure only once, so a later fdatasync on it would succeed without
 * those bytes: the chunks written through it are not recorded, and the descriptor is reopened.
 */
export class ContentSyncError extends SwarmError {
  override readonly code = 'ERR_CONTENT_SYNC'
  constructor (readonly path: string, options?: { cause?: unknown }) {
    super(`fdatasync of ${path} failed (${(options?.cause as Error | undefined)?.message ?? 'unknown error'}); the chunks written through that descriptor are not recorded and will be fetched again`, options)
  }
}
