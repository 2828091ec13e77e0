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
