/**
 * Peer picking: which idle chunk is asked for next, and of which peer.
 *
 * ## Among peers
 *
 * - Rarest first: of the chunks some peer with a free slot holds and nobody is fetching, the one
 *   the fewest connected peers hold goes first. Ties go in chunk order from a random start (one
 *   draw of the seeded PRNG per scheduler), so nodes spread over the chunks instead of all
 *   asking for chunk 0, while each node still fills whole stretches of files.
 * - The chosen chunk goes to the least-loaded holder, scanning from a random position.
 * - Limits: per peer, at the origin, and in all. Origin picks are made before peer picks,
 *   because other nodes are waiting for the chunks this node owns; while peers are connected the
 *   origin leaves `PEER_RESERVED_SLOTS` to them, so a node that owns many chunks still takes the
 *   others' meanwhile. The limit in all is small (8): every outstanding request shares this
 *   node's downlink, and an owner's origin request, which the fleet waits on, should not get a
 *   thirtieth of it.
 * - A failed or timed-out request frees its slot and the chunk goes back to the pool, but that
 *   peer is not asked for that chunk again while any other holder exists (and then only after
 *   `retryAfterMs`). A peer that sent bytes that failed verification is banned for the rest of
 *   the pull: its holdings stop counting and its requests are cancelled.
 *
 * ## Peers still receiving a chunk (cut-through)
 *
 * A peer may say it has begun receiving a chunk and relays it as it arrives (`peerArriving`).
 * Such a chunk is asked of it only when no connected peer holds it (so never in place of a
 * holder), as a relay: one per chunk, within `maxInflightTotal` and the peer's slots but not
 * the landing-time limit, and with the origin's timeout, since it lands at the pace its source
 * receives it. An arriving peer is not a holder: rarest-first, the origin's decisions and their
 * waits do not count it, so a relay that never comes only delays what a holder or the origin
 * would have brought anyway. A relay that fails is not asked again until the peer says it is
 * receiving the chunk anew; a peer that says it no longer is (`peerNotArriving`) is not asked.
 * In `bench/sim` (`SIM_CUT_THROUGH`) announcing arriving chunks as `have`s, which the engine
 * counted as holdings and nothing withdrew, made a churned fleet of 1,000 wait for holders that
 * never were (p99 4.41 × T*).
 */

import type { PeerState } from './holdings.js'
import { relaySlotFree } from './requests.js'
import type { Request } from './requests.js'
import type { Scheduler } from './scheduler.js'

/** Rarest first among idle chunks that some peer with a free slot holds. */
export function fillFromPeers (s: Scheduler, now: number, start: Request[]): void {
  if (!s.peerSlotFree() || s.idleCount === 0) return
  const available = availablePeers(s)
  if (available.length === 0) return
  const candidates = idleAt(s, available, 'bits')

  while (s.peerSlotFree() && available.length > 0) {
    const best = rarest(s, candidates)
    if (best < 0) return
    candidates[best >>> 5] = candidates[best >>> 5]! & ~(1 << (best & 31))
    const chosen = choosePeer(s, best, available, now, true)
    if (chosen < 0) continue
    const peer = available[chosen]!
    s.startRequest(best, peer, now, start)
    if (peer.inflight >= s.maxPerPeer) removeAt(available, chosen)
  }
}

/** Relays (see "Peers still receiving a chunk" at the top): idle chunks no connected peer holds, from peers receiving them. */
export function fillFromArriving (s: Scheduler, now: number, start: Request[]): void {
  if (s.arrivingCount === 0 || s.idleCount === 0 || !relaySlotFree(s)) return
  const available = availablePeers(s)
  if (available.length === 0) return
  const candidates = idleAt(s, available, 'arriving')
  for (let w = 0; w < s.words; w++) candidates[w] = candidates[w]! & ~s.heldWords[w]!
  while (relaySlotFree(s) && available.length > 0) {
    const chunk = rarest(s, candidates)
    if (chunk < 0) return
    candidates[chunk >>> 5] = candidates[chunk >>> 5]! & ~(1 << (chunk & 31))
    const chosen = chooseRelay(s, chunk, available)
    if (chosen < 0) continue
    const peer = available[chosen]!
    s.startRequest(chunk, peer, now, start, false, true)
    if (peer.inflight >= s.maxPerPeer) removeAt(available, chosen)
  }
}

/** Idle chunks that some peer in `available` holds (`bits`) or is receiving (`arriving`), in `s.scratch`. */
function idleAt (s: Scheduler, available: PeerState[], which: 'bits' | 'arriving'): Uint32Array {
  const candidates = s.scratch
  candidates.fill(0)
  for (const peer of available) {
    const words = peer[which]
    for (let w = 0; w < s.words; w++) candidates[w] = candidates[w]! | words[w]!
  }
  for (let w = 0; w < s.words; w++) candidates[w] = candidates[w]! & s.idleWords[w]!
  return candidates
}

/**
 * The least-loaded peer in `available` receiving `chunk` (an idle chunk: nobody is asked for it
 * yet). One that failed a relay of it is not receiving it as far as we know (`noteFailure` drops
 * that) until it says so again.
 */
function chooseRelay (s: Scheduler, chunk: number, available: PeerState[]): number {
  const word = chunk >>> 5
  const mask = 1 << (chunk & 31)
  let best = -1
  let bestLoad = Infinity
  const count = available.length
  const offset = Math.floor(s.draw() * count)
  for (let k = 0; k < count; k++) {
    const j = offset + k < count ? offset + k : offset + k - count
    const peer = available[j]!
    if ((peer.arriving[word]! & mask) === 0) continue
    if (peer.inflight < bestLoad) {
      best = j
      bestLoad = peer.inflight
    }
  }
  return best
}

/**
 * The candidate with the fewest holders, ties going to the lowest tie-break. Scanned in
 * tie-break order (chunk order from `tiebreakStart`, wrapping), the first candidate with one
 * holder is the answer: nothing has fewer, and no one-holder chunk after it comes first. With a
 * seeder holding every chunk that is the first idle one, where a scan of every candidate for
 * every request made a pull's picks grow with the square of its chunks (1 s of the main thread
 * for a 140 GB model's 35,000).
 */
export function rarest (s: Pick<Scheduler, 'chunkCount' | 'words' | 'tiebreakStart' | 'holders' | 'tiebreak'>, candidates: Uint32Array): number {
  const n = s.chunkCount
  const words = s.words
  const start = s.tiebreakStart
  const first = start >>> 5
  const from = start & 31
  let best = -1
  let bestKey = Infinity
  // the start's word from its bit, the words after it, around to the start's word below its bit
  for (let step = 0; step <= words; step++) {
    const w = (first + step) % words
    let word = candidates[w]!
    if (step === 0) word &= -1 << from
    else if (step === words) word &= ~(-1 << from)
    word >>>= 0
    while (word !== 0) {
      const low = word & -word
      word = (word ^ low) >>> 0
      const i = (w << 5) + 31 - Math.clz32(low)
      const holders = s.holders[i]!
      const key = holders * n + s.tiebreak[i]!
      if (key < bestKey) {
        if (holders <= 1) return i
        bestKey = key
        best = i
      }
    }
  }
  return best
}

/**
 * The least-loaded peer in `available` that holds `chunk` and is not already asked for it,
 * scanning from a random position. A peer that failed this chunk is used only when no other
 * connected holder is left, and not before its retry time.
 */
export function choosePeer (s: Scheduler, chunk: number, available: PeerState[], now: number, allowFailed: boolean): number {
  const count = available.length
  if (count === 0) return -1
  const word = chunk >>> 5
  const mask = 1 << (chunk & 31)
  const asked = s.byChunk[chunk]
  const failed = s.failedPeers[chunk]
  let best = -1
  let bestLoad = Infinity
  let fallback = -1
  let fallbackLoad = Infinity
  const offset = Math.floor(s.draw() * count)
  for (let k = 0; k < count; k++) {
    const j = offset + k < count ? offset + k : offset + k - count
    const peer = available[j]!
    if ((peer.bits[word]! & mask) === 0) continue
    if (asked?.some(o => o.peer === peer) === true) continue
    if (failed?.has(peer.id) === true) {
      if (peer.inflight < fallbackLoad) {
        fallback = j
        fallbackLoad = peer.inflight
      }
    } else if (peer.inflight < bestLoad) {
      best = j
      bestLoad = peer.inflight
    }
  }
  if (best >= 0 || fallback < 0 || !allowFailed || freshHolders(s, chunk, false) > 0) return best
  const retryAt = s.peerRetryAt[chunk]!
  if (now >= retryAt) return fallback
  s.nextRetryAt = Math.min(s.nextRetryAt, retryAt)
  return -1
}

export function availablePeers (s: Scheduler): PeerState[] {
  const available: PeerState[] = []
  for (const peer of s.peers.values()) {
    if (peer.inflight < s.maxPerPeer) available.push(peer)
  }
  return available
}

/**
 * Connected, unbanned holders of a chunk that have not failed it. `busyCounts`: a holder that
 * only turned it away as busy still counts (for the origin's decisions: its slot will free up);
 * not for choosing whom to ask next.
 */
export function freshHolders (s: Scheduler, chunk: number, busyCounts = true): number {
  let holders = s.holders[chunk]!
  if (holders === 0) return 0
  const failed = s.failedPeers[chunk]
  if (failed === undefined) return holders
  for (const [id, busy] of failed) {
    // a peer that was only busy will have a slot again: it still holds the chunk for us
    if (busy && busyCounts) continue
    const peer = s.peers.get(id)
    if (peer !== undefined && (peer.bits[chunk >>> 5]! & (1 << (chunk & 31))) !== 0) holders--
  }
  return holders
}

/** Removes `items[index]` without keeping the order. */
export function removeAt<T> (items: T[], index: number): void {
  items[index] = items[items.length - 1]!
  items.pop()
}
