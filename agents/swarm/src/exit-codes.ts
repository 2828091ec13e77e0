import { ChunkUnavailableError, ChunkVerificationError } from '@swarm/interface'
import type { Manifest } from '@swarm/interface'

/**
 * Exit codes, in one place, so scripts can tell "no such model" from "the network is down".
 * Errors are matched by their stable `code` (or name), never by message.
 */

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  notFound: 3,
  corrupt: 4,
  unavailable: 5,
  interrupted: 130
} as const

const BY_CODE: Record<string, number> = {
  ERR_CONFIG: EXIT.usage,
  ERR_SWARM_KEY_REQUIRED: EXIT.usage,
  ERR_KEY_FILE_EXISTS: EXIT.usage,
  ERR_UNSAFE_TARGET: EXIT.usage,
  ERR_INVALID_REF: EXIT.usage,
  ERR_NO_ORIGIN: EXIT.usage,
  ERR_PUSH_SOURCE: EXIT.usage,
  ERR_INVALID_CHUNK_SIZE: EXIT.usage,
  ERR_INVALID_SAFETENSORS: EXIT.usage,
  ERR_NOT_FOUND: EXIT.notFound,
  ERR_MODEL_NOT_HELD: EXIT.notFound,
  ERR_INVALID_MANIFEST: EXIT.corrupt,
  ERR_MANIFEST_CID_MISMATCH: EXIT.corrupt,
  ERR_CHUNK_VERIFICATION: EXIT.corrupt,
  ERR_MANIFEST_CONFLICT: EXIT.corrupt,
  ERR_VERIFY_FAILED: EXIT.corrupt,
  ERR_ORIGIN_UNAVAILABLE: EXIT.unavailable,
  ERR_CHUNK_UNAVAILABLE: EXIT.unavailable,
  ERR_AGENT_UNAVAILABLE: EXIT.unavailable,
  ERR_MANIFEST_UNAVAILABLE: EXIT.unavailable,
  ERR_FUSE_UNAVAILABLE: EXIT.unavailable,
  ABORT_ERR: EXIT.interrupted
}

export function exitCodeFor (err: unknown): number {
  const code = (err as { code?: unknown })?.code
  if (typeof code === 'string' && BY_CODE[code] != null) return BY_CODE[code]
  if ((err as Error)?.name === 'AbortError') return EXIT.interrupted
  return EXIT.failure
}

/** Where in the model a chunk sits, so an error names files rather than hashes alone. */
function locateChunk (manifest: Manifest | undefined, cid: string): string {
  const places: string[] = []
  for (const file of manifest?.files ?? []) {
    for (const chunk of file.chunks) {
      if (chunk.cid === cid) places.push(`${file.path} at offset ${chunk.offset}`)
    }
  }
  return places.length > 0 ? ` (${places.slice(0, 3).join(', ')}${places.length > 3 ? ', …' : ''})` : ''
}

/** A message for people and an exit code for scripts, for any error a command can meet. */
export function describeError (err: unknown, manifest?: Manifest): { message: string, code: string, exitCode: number } {
  if (err instanceof ChunkUnavailableError) {
    const corrupt = err.causes.length > 0 && err.causes.every(c => c.error instanceof ChunkVerificationError)
    const where = locateChunk(manifest, err.cid)
    return {
      message: corrupt
        ? `chunk ${err.cid}${where} failed verification from ${err.causes.map(c => c.source).join(', ')}: the bytes served do not match the chunk's hash; nothing was written`
        : `chunk ${err.cid}${where} could not be fetched: ${err.causes.map(c => `${c.source}: ${c.error.message}`).join('; ')}`,
      code: corrupt ? 'ERR_CHUNK_VERIFICATION' : err.code,
      exitCode: corrupt ? EXIT.corrupt : EXIT.unavailable
    }
  }
  if (err instanceof ChunkVerificationError) {
    return { message: `chunk ${err.cid}${locateChunk(manifest, err.cid)} failed verification from ${err.source}: the bytes served do not match the chunk's hash; nothing was written`, code: err.code, exitCode: EXIT.corrupt }
  }
  const code = (err as { code?: unknown })?.code
  return { message: (err as Error)?.message ?? String(err), code: typeof code === 'string' ? code : 'ERR_UNKNOWN', exitCode: exitCodeFor(err) }
}
