/**
 * Our side of the control state: per manifest we joined, the chunk state we tell peers about,
 * checked and copied when it is handed to the channel.
 */

import { bitfieldLength } from '@swarm/interface'
import { MAX_CHUNK_COUNT, MAX_FETCHER_HOPS, MAX_JOIN_FETCHERS } from './constants.js'
import { InvalidChunkStateError, InvalidManifestCidError } from './errors.js'
import { canonicalCid, isPeerIdText } from './messages.js'
import type { ChunkState } from './control.js'
import type { ControlMessage, NamedFetcher } from './messages.js'

export interface LocalManifest {
  chunkCount: number
  pulling: boolean
  bitfield: Uint8Array
  fetchers: readonly NamedFetcher[]
  /** present locally but not yet announced with `have` */
  pending: Set<number>
}

/** A manifest's state as we keep it; throws {@link InvalidChunkStateError} when it does not fit itself. */
export function localManifest (state: ChunkState): LocalManifest {
  const { chunkCount, bitfield, pulling } = state
  if (!Number.isSafeInteger(chunkCount) || chunkCount < 0 || chunkCount > MAX_CHUNK_COUNT) {
    throw new InvalidChunkStateError(`chunk count ${chunkCount} is not an integer from 0 to ${MAX_CHUNK_COUNT}`)
  }
  if (bitfield.length !== bitfieldLength(chunkCount)) {
    throw new InvalidChunkStateError(`a bitfield for ${chunkCount} chunks is ${bitfieldLength(chunkCount)} bytes, not ${bitfield.length}`)
  }
  const fetchers = (state.fetchers ?? []).map(({ peerId, hops }) => ({ peerId, hops }))
  if (fetchers.length > MAX_JOIN_FETCHERS) {
    throw new InvalidChunkStateError(`${fetchers.length} fetchers, at most ${MAX_JOIN_FETCHERS} travel with a join`)
  }
  for (const { peerId, hops } of fetchers) {
    if (typeof peerId !== 'string' || !isPeerIdText(peerId)) throw new InvalidChunkStateError(`fetcher ${JSON.stringify(peerId)} is not a peer id`)
    if (!Number.isInteger(hops) || hops < 0 || hops > MAX_FETCHER_HOPS) throw new InvalidChunkStateError(`fetcher ${peerId} is ${hops} hops away, expected an integer from 0 to ${MAX_FETCHER_HOPS}`)
  }
  const local: LocalManifest = { chunkCount, pulling, bitfield: Uint8Array.from(bitfield), fetchers, pending: new Set() }
  clearSpareBits(local)
  return local
}

export function joinMessage (cid: string, local: LocalManifest): ControlMessage {
  return { type: 'join', manifest: cid, chunkCount: local.chunkCount, pulling: local.pulling, bitfield: local.bitfield, ...(local.fetchers.length > 0 ? { fetchers: [...local.fetchers] } : {}) }
}

function clearSpareBits (local: LocalManifest): void {
  const spare = local.bitfield.length * 8 - local.chunkCount
  if (spare > 0) {
    const last = local.bitfield.length - 1
    local.bitfield[last] = (local.bitfield[last] ?? 0) & (0xff << spare)
  }
}

export function manifestKey (value: string): string {
  const cid = canonicalCid(value)
  if (cid == null) {
    throw new InvalidManifestCidError(value)
  }
  return cid
}
