/**
 * Endgame and hedging: second requests for chunks already being fetched, from peers only.
 *
 * - Hedging: a request gets one duplicate at another holder once it is late: outstanding for
 *   `hedgeAfterMs` and for {@link HEDGE_SLOWDOWN} times as long as requests of its size have been
 *   taking here (a moving average of those delivered, per byte; the origin's apart).
 * - Endgame: once every missing chunk is being fetched, free slots duplicate requests that have
 *   been outstanding {@link ENDGAME_SLOWDOWN} times as long as expected (before anything was
 *   delivered, as a hedge would), least-duplicated chunks first, up to
 *   {@link MAX_REQUESTS_PER_CHUNK} requests per chunk. The first copy to arrive wins, and the others
 *   are cancelled. Duplicates never go to the origin.
 *
 * Why late, and not at once or after a fixed time: a peer finishes an answer it has begun (the
 * data server sends a chunk whole, and what it wrote sits in socket buffers anyway), so a
 * cancelled duplicate still takes a whole chunk of both links. On a fleet where every link is
 * busy, requests take as long as the links make them, and a fixed 3 s hedge duplicated most of
 * them: in bench/fanout peers sent 1.4–1.9 × the bytes nodes kept, and the duplicates slowed
 * the chunks they raced. Measured against what requests take here, a duplicate goes only where
 * a holder is slower than the others, which is what it is for.
 */

import { ENDGAME_SLOWDOWN, HEDGE_SLOWDOWN, MAX_REQUESTS_PER_CHUNK } from './constants.js'
import { availablePeers, choosePeer, removeAt } from './peers.js'
import type { PeerState } from './holdings.js'
import type { Outstanding, Request } from './requests.js'
import type { Scheduler } from './scheduler.js'

/** Every missing chunk is being fetched: ask other holders too, least-duplicated chunks first. */
export function fillEndgame (s: Scheduler, now: number, start: Request[]): void {
  if (!s.peerSlotFree()) return
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
        const requests = s.byChunk[i]
        if (requests?.length !== copies) continue
        if (!requests.some(r => now >= duplicateDueAt(s, r, true))) continue
        if (!s.peerSlotFree() || available.length === 0) return
        const chosen = choosePeer(s, i, available, now, false)
        if (chosen < 0) continue
        const peer = available[chosen]!
        s.startRequest(i, peer, now, start, true)
        if (peer.inflight >= s.maxPerPeer) removeAt(available, chosen)
      }
    }
  }
}

/** How long a request is expected to take, from those delivered here; undefined before the first. */
export function expectedMs (s: Scheduler, outstanding: Outstanding): number | undefined {
  if (outstanding.peer === undefined) return s.originSamples > 0 ? s.originMs : undefined
  return s.peerSamples > 0 ? s.peerMsPerByte * outstanding.request.size : undefined
}

/** When a request is late enough for a duplicate (see the notes above); Infinity: never. */
export function duplicateDueAt (s: Scheduler, outstanding: Outstanding, endgame: boolean): number {
  const expected = expectedMs(s, outstanding)
  const hedgeAt = outstanding.startedAt + Math.max(s.hedgeAfterMs, HEDGE_SLOWDOWN * (expected ?? 0))
  if (!endgame) return hedgeAt
  return Math.min(hedgeAt, expected === undefined ? Infinity : outstanding.startedAt + ENDGAME_SLOWDOWN * expected)
}

/** Late requests get one duplicate at another holder. */
export function hedge (s: Scheduler, now: number, start: Request[]): void {
  const endgame = s.endgameEnabled && inEndgame(s)
  if (!Number.isFinite(s.hedgeAfterMs) && !endgame) return
  let available: PeerState[] | undefined
  for (const outstanding of s.outstanding.values()) {
    if (outstanding.hedged || now < duplicateDueAt(s, outstanding, endgame)) continue
    if (!s.peerSlotFree()) return
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
