/**
 * Endgame and hedging: second (and third) requests for chunks already being fetched, from peers only.
 *
 * - Hedging: a request outstanding for `hedgeAfterMs` is duplicated once to another holder.
 * - Endgame: once every missing chunk is being fetched, free slots duplicate those requests to
 *   other holders (up to {@link MAX_REQUESTS_PER_CHUNK} requests per chunk). The first copy to arrive
 *   wins, and the others are cancelled. Duplicates never go to the origin.
 */

import { MAX_REQUESTS_PER_CHUNK } from './constants.js'
import { availablePeers, choosePeer, removeAt } from './peers.js'
import type { PeerState, Request, Scheduler } from './scheduler.js'

/** Every missing chunk is being fetched: ask other holders too, least-duplicated chunks first. */
export function fillEndgame (s: Scheduler, now: number, start: Request[]): void {
  if (s.outstanding.size >= s.maxTotal) return
  const available = availablePeers(s)
  if (available.length === 0) return
  for (let copies = 1; copies < MAX_REQUESTS_PER_CHUNK; copies++) {
    for (let w = 0; w < s.words; w++) {
      let word = (~s.haveWords[w]! & ~s.idleWords[w]!) >>> 0
      if (w === s.words - 1 && (s.chunkCount & 31) !== 0) word &= (1 << (s.chunkCount & 31)) - 1
      while (word !== 0) {
        const low = word & -word
        word = (word ^ low) >>> 0
        const i = (w << 5) + 31 - Math.clz32(low)
        if (s.byChunk[i]?.length !== copies) continue
        if (s.outstanding.size >= s.maxTotal || available.length === 0) return
        const chosen = choosePeer(s, i, available, now, false)
        if (chosen < 0) continue
        const peer = available[chosen]!
        s.startRequest(i, peer, now, start, true)
        if (peer.inflight >= s.maxPerPeer) removeAt(available, chosen)
      }
    }
  }
}

/** Requests outstanding past `hedgeAfterMs` get one duplicate at another holder. */
export function hedge (s: Scheduler, now: number, start: Request[]): void {
  if (!Number.isFinite(s.hedgeAfterMs)) return
  let available: PeerState[] | undefined
  for (const outstanding of s.outstanding.values()) {
    if (outstanding.hedged || now - outstanding.startedAt < s.hedgeAfterMs) continue
    if (s.outstanding.size >= s.maxTotal) return
    const chunk = outstanding.request.chunk
    if ((s.byChunk[chunk]?.length ?? 0) >= MAX_REQUESTS_PER_CHUNK) {
      outstanding.hedged = true
      continue
    }
    available ??= availablePeers(s)
    const chosen = choosePeer(s, chunk, available, now, false)
    if (chosen < 0) continue
    const peer = available[chosen]!
    outstanding.hedged = true
    s.startRequest(chunk, peer, now, start, true)
    if (peer.inflight >= s.maxPerPeer) removeAt(available, chosen)
  }
}

export function inEndgame (s: Scheduler): boolean {
  return s.idleCount === 0 && !s.done
}
