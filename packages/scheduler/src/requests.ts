/**
 * Requests: what one is, and the accounting of those in flight. A request starts in a free slot
 * (per peer, at the origin, in all), is indexed by id and by chunk, and ends one of four ways:
 * its chunk arrives, it fails, it times out, or the scheduler cancels it (another copy won, the
 * peer left, the chunk's owner changed, the pull is done). Whatever the way, the slot is freed,
 * and the chunk, if still missing and with no other request, goes back to the idle pool.
 *
 * A delivered request also says how long the next ones will take: the origin's and the peers'
 * moving averages (what timeouts, fallback waits and duplicates are measured against), and the
 * landing-time limits on how many requests are outstanding at once (`LandingLimit` in
 * @swarm/interface). A small chunk lands in a round trip whatever the link, so only chunks of at
 * least 1 / `LANDING_SAMPLE_FRACTION` of the largest move those limits.
 */

import { LANDING_SAMPLE_FRACTION } from './constants.js'
import { InvalidFailureReasonError } from './errors.js'
import { clearIdle, dropArriving, setFailed, setIdle } from './holdings.js'
import type { PeerState } from './holdings.js'
import { timeoutOf } from './origin.js'
import type { Scheduler } from './scheduler.js'

/** Where a request goes. */
export type RequestSource = { kind: 'peer', peerId: string } | { kind: 'origin' }

/** A request for one chunk from one source. The same object is returned when it is cancelled. */
export interface Request {
  /** unique within this scheduler, increasing */
  readonly id: number
  /** index into the manifest's unique chunk list */
  readonly chunk: number
  readonly cid: string
  readonly size: number
  readonly source: RequestSource
  /** a second (or third) request for a chunk already being fetched: a hedge or an endgame duplicate */
  readonly duplicate: boolean
  /** asked of a peer that is still receiving the chunk and relays it as it arrives (see `fillFromArriving` in `peers.ts`) */
  readonly relay?: true
}

/**
 * How a request ended without delivering its chunk. `bad-data`: the bytes did not match the CID,
 * and the peer is banned for the rest of the pull. `cancelled`: the caller gave it up itself.
 * `busy`: the peer turned it away for want of an upload slot; like `error` it is asked again only
 * at its retry time or when no other holder is left, but it still counts as a holder when this
 * node decides what to take from the origin, since its slot will free up.
 */
export type FailureReason = 'error' | 'timeout' | 'bad-data' | 'cancelled' | 'busy'

/** A request in flight. */
export interface Outstanding {
  readonly request: Request
  /** undefined: the origin */
  readonly peer: PeerState | undefined
  readonly startedAt: number
  /** already duplicated once, or itself a duplicate: never hedged (again) */
  hedged: boolean
  /** an origin request this node made as the chunk's owner (not a fallback) */
  readonly asOwner: boolean
}

const ORIGIN: RequestSource = Object.freeze({ kind: 'origin' })
const FAILURE_REASONS = new Set<string>(['error', 'timeout', 'bad-data', 'cancelled', 'busy'])

export function checkFailureReason (reason: FailureReason): void {
  if (!FAILURE_REASONS.has(reason)) {
    throw new InvalidFailureReasonError(reason)
  }
}

/**
 * room for one more peer request: within `maxInflightTotal`, and within what lands in time
 * (`peerLimit`). Relays do not count against the second: one lands at the pace its source
 * receives the chunk, not at this node's link's, and would read as a slow peer.
 */
export function peerSlotFree (s: Scheduler): boolean {
  return s.outstanding.size < s.maxTotal && s.outstanding.size - s.originInflight - s.relayInflight < s.peerLimit.limit
}

/** room for one more relay: within `maxInflightTotal` alone */
export function relaySlotFree (s: Scheduler): boolean {
  return s.outstanding.size < s.maxTotal
}

export function startRequest (s: Scheduler, chunk: number, peer: PeerState | undefined, now: number, start: Request[], duplicate = false, relay = false): void {
  const request: Request = {
    id: s.nextRequestId++,
    chunk,
    cid: s.cids[chunk]!,
    size: s.sizes[chunk]!,
    source: peer?.source ?? ORIGIN,
    duplicate,
    ...(relay && peer !== undefined ? { relay: true as const } : {})
  }
  const asOwner = peer === undefined && s.pullersKnown && s.pullers.owner(chunk) === s.selfId
  const outstanding: Outstanding = { request, peer, startedAt: now, hedged: duplicate, asOwner }
  s.outstanding.set(request.id, outstanding)
  let list = s.byChunk[chunk]
  if (list === undefined) {
    list = []
    s.byChunk[chunk] = list
  }
  list.push(outstanding)
  clearIdle(s, chunk)
  if (peer === undefined) {
    s.originInflight++
    s.counters.originRequests++
    if (!asOwner) s.counters.originFallbacks++
  } else {
    peer.inflight++
    s.counters.peerRequests++
    if (duplicate) s.counters.duplicateRequests++
    if (request.relay === true) {
      s.relayInflight++
      s.counters.relayRequests++
    }
  }
  start.push(request)
}

export function endRequest (s: Scheduler, outstanding: Outstanding): void {
  const { request, peer } = outstanding
  if (!s.outstanding.delete(request.id)) return
  const list = s.byChunk[request.chunk]
  if (list !== undefined) {
    const at = list.indexOf(outstanding)
    if (at >= 0) list.splice(at, 1)
    if (list.length === 0) {
      s.byChunk[request.chunk] = undefined
      if (!s.has(request.chunk)) setIdle(s, request.chunk)
    }
  }
  if (peer === undefined) s.originInflight--
  else {
    peer.inflight--
    if (request.relay === true) s.relayInflight--
  }
  s.dirty = true
}

/** Ends a request of ours; the next `tick` tells the caller to cancel it. */
export function cancelRequest (s: Scheduler, outstanding: Outstanding): void {
  endRequest(s, outstanding)
  s.counters.cancelled++
  s.pendingCancels.push(outstanding.request)
}

/** Ends a request that brought its chunk, and learns from how long it took. */
export function requestDelivered (s: Scheduler, delivered: Outstanding, now: number): void {
  endRequest(s, delivered)
  const took = Math.max(0, now - delivered.startedAt)
  // a small chunk lands in a round trip whatever the link: it says nothing of how long the next large one takes
  const sample = delivered.request.size * LANDING_SAMPLE_FRACTION >= s.largestChunk
  if (delivered.peer === undefined) {
    s.originMs = s.originSamples === 0 ? took : 0.7 * s.originMs + 0.3 * took
    s.originSamples++
    if (sample) s.originLimit.landed(took, s.originInflight + 1)
  } else if (delivered.request.relay === true) {
    // it came at its source's pace: it says nothing of how long a peer that holds a chunk takes
  } else if (delivered.request.size > 0) {
    if (sample) s.peerLimit.landed(took, s.outstanding.size - s.originInflight - s.relayInflight + 1)
    const perByte = took / delivered.request.size
    s.peerMsPerByte = s.peerSamples === 0 ? perByte : 0.8 * s.peerMsPerByte + 0.2 * perByte
    s.peerSamples++
  }
}

/** Ends the requests outstanding past their timeout, adding them to `cancel`. */
export function expireRequests (s: Scheduler, now: number, cancel: Request[]): void {
  let expired: Outstanding[] | undefined
  for (const outstanding of s.outstanding.values()) {
    if (now - outstanding.startedAt >= timeoutOf(s, outstanding)) (expired ??= []).push(outstanding)
  }
  for (const outstanding of expired ?? []) {
    endRequest(s, outstanding)
    s.counters.timeouts++
    noteFailure(s, outstanding, now)
    cancel.push(outstanding.request)
  }
}

/** A request failed: its source is asked for the chunk again only after `retryAfterMs` (a peer: only when no other holder is left). */
export function noteFailure (s: Scheduler, outstanding: Outstanding, now: number, busy = false): void {
  const chunk = outstanding.request.chunk
  if (outstanding.peer === undefined) {
    s.originRetryAt[chunk] = now + s.retryAfterMs
    return
  }
  setFailed(s, chunk, outstanding.peer.id, busy)
  s.peerRetryAt[chunk] = now + s.retryAfterMs
  // a relay that failed is not asked again until the peer says it is receiving the chunk anew
  if (outstanding.request.relay === true) dropArriving(s, outstanding.peer, chunk)
}
