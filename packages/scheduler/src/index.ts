/**
 * @packageDocumentation
 *
 * Swarm's chunk scheduler: for one manifest pulled by one node, decides which chunk to ask of
 * which peer, and which chunks this node takes from the origin, so that a fleet pulling the same
 * model at once finishes in about the time one node needs while the origin serves about one
 * copy. Pure and event-driven: no I/O, no clock, no timers; time comes in with each event and
 * randomness from a seeded PRNG, so it runs the same under a discrete-event simulator. The
 * design notes are at the top of `scheduler.ts` (events and state), `origin.ts` (ownership and
 * the origin), `peers.ts` (peer picking) and `endgame.ts` (endgame and hedging).
 *
 * @example
 *
 * ```ts
 * import { chunkScheduler, seededRandom } from '@swarm/scheduler'
 *
 * const scheduler = chunkScheduler({
 *   selfId: myPeerId,
 *   chunks: uniqueChunks,            // [{ cid, size }] in file order
 *   have: store.bitfield,            // what is already local
 *   random: seededRandom(42),
 *   pullers: otherPullerIds          // who else pulls this manifest, once known
 * })
 *
 * scheduler.peerJoined(peerId, now)
 * scheduler.peerHas(peerId, bitfield, now)
 *
 * const { start, cancel, wakeAt } = scheduler.tick(now)
 * for (const request of cancel) abort(request.id)
 * for (const request of start) {
 *   fetchChunk(request).then(
 *     () => { scheduler.chunkArrived(request.chunk, clock(), request.id); run(scheduler.tick(clock())) },
 *     (err) => { scheduler.requestFailed(request.id, clock(), isBadData(err) ? 'bad-data' : 'error'); run(scheduler.tick(clock())) }
 *   )
 * }
 * if (wakeAt !== undefined) setTimeout(() => run(scheduler.tick(clock())), wakeAt - now)
 * ```
 */

import { PullerSet } from './pullers.js'
import { Scheduler } from './scheduler.js'
import type { PullerSetOptions } from './pullers.js'
import type { ChunkScheduler, SchedulerInit } from './scheduler.js'

export type {
  Actions,
  ChunkScheduler,
  FailureReason,
  Request,
  RequestSource,
  SchedulerInit,
  SchedulerStats
} from './scheduler.js'
// bitfields are `@swarm/interface`'s, one module for every package; re-exported for the scheduler's callers
export { bitfieldLength, countBits, createBitfield, decodeBitfield, encodeBitfield, fitsChunkCount, hasBit, setBit, uniqueChunks, validateBitfield } from '@swarm/interface'
export * from './constants.js'
export * from './errors.js'
export type { PullerSet, PullerSetOptions } from './pullers.js'
export { RETAIN_FACTOR } from './pullers.js'
export { seededRandom } from './random.js'
export { keyHash, rendezvousOwner, rendezvousRanking, rendezvousScore } from './rendezvous.js'
export type { KeyHash } from './rendezvous.js'

/** A scheduler for one manifest pulled by one node. */
export function chunkScheduler (init: SchedulerInit): ChunkScheduler {
  return new Scheduler(init)
}

/**
 * The set of nodes pulling a manifest, the few of them that fetch from the origin, and each
 * chunk's rendezvous owner among those. A scheduler makes its own; a simulator whose nodes share
 * one view can make one and pass it to every scheduler as `pullerSet` (with the same `fetchers`
 * as the schedulers' `originFetchers`).
 */
export function pullerSet (chunks: ReadonlyArray<{ cid: string }>, pullers: Iterable<string> = [], options: PullerSetOptions = {}): PullerSet {
  return new PullerSet(chunks, pullers, options)
}
