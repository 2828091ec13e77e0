/** Another live process holds the store's directory. */
export class StoreLockedError extends Error {
  static override name = 'StoreLockedError'
  readonly code = 'ERR_STORE_LOCKED'
  constructor (readonly dir: string, readonly pid: number | undefined, readonly lockPath: string) {
    super(pid === undefined
      ? `store ${dir} is locked by another opener (${lockPath})`
      : `store ${dir} is in use by process ${pid} (${lockPath}); stop that process, or delete the lock file if no Swarm agent is running`)
    this.name = 'StoreLockedError'
  }
}

/** models.json exists but is not a valid list of held models. */
export class CorruptModelsFileError extends Error {
  static override name = 'CorruptModelsFileError'
  readonly code = 'ERR_CORRUPT_MODELS_FILE'
  constructor (readonly path: string, readonly reason: string, options?: { cause?: unknown }) {
    super(`${path} is corrupt: ${reason}; restore it or delete it (held models are then forgotten and their content reclaimed)`, options)
    this.name = 'CorruptModelsFileError'
  }
}

/** The store was used after close(). */
export class StoreClosedError extends Error {
  static override name = 'StoreClosedError'
  readonly code = 'ERR_STORE_CLOSED'
  constructor (readonly dir: string) {
    super(`store ${dir} is closed`)
    this.name = 'StoreClosedError'
  }
}

/** remove() of a model that something still holds a lease on (a pull in flight, a file open in the view). */
export class ModelLeasedError extends Error {
  static override name = 'ModelLeasedError'
  readonly code = 'ERR_MODEL_LEASED'
  constructor (readonly manifestCid: string, readonly holders: string[]) {
    super(`model ${manifestCid} is in use (${holders.join(', ')}); it can be removed once they are done`)
    this.name = 'ModelLeasedError'
  }
}

/**
 * A manifest lists a chunk with another size than a held manifest does. A CID fixes its bytes,
 * so one of the two lies; the one held first stays, and the newcomer is refused before it can
 * make the other's chunks fail to store.
 */
export class ManifestConflictError extends Error {
  static override name = 'ManifestConflictError'
  readonly code = 'ERR_MANIFEST_CONFLICT'
  constructor (readonly manifestCid: string, readonly heldManifestCid: string, readonly chunkCid: string, readonly size: number, readonly heldSize: number) {
    super(`manifest ${manifestCid} lists chunk ${chunkCid} as ${size} bytes, but held manifest ${heldManifestCid} lists it as ${heldSize}; one of them is wrong, so ${manifestCid} is refused`)
    this.name = 'ManifestConflictError'
  }
}
