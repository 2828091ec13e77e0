import { SwarmError } from '@swarm/interface'

export class SourceTimeoutError extends SwarmError {
  override readonly code = 'ERR_SOURCE_TIMEOUT'
  constructor (source: string, ms: number) {
    super(`${source} did not deliver within ${ms} ms`)
  }
}

export class ManifestNotHeldError extends SwarmError {
  override readonly code = 'ERR_MANIFEST_NOT_HELD'
  constructor (manifestCid: string) {
    super(`manifest ${manifestCid} is not held by the local store; add it before pulling`)
  }
}
