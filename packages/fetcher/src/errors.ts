export class SourceTimeoutError extends Error {
  static override name = 'SourceTimeoutError'
  readonly code = 'ERR_SOURCE_TIMEOUT'
  constructor (source: string, ms: number) {
    super(`${source} did not deliver within ${ms} ms`)
    this.name = 'SourceTimeoutError'
  }
}

export class ManifestNotHeldError extends Error {
  static override name = 'ManifestNotHeldError'
  readonly code = 'ERR_MANIFEST_NOT_HELD'
  constructor (manifestCid: string) {
    super(`manifest ${manifestCid} is not held by the local store; add it before pulling`)
    this.name = 'ManifestNotHeldError'
  }
}
