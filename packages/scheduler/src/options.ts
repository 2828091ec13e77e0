/**
 * A scheduler's options ({@link SchedulerInit}) and their checks. Every option is checked when the
 * scheduler is made, and a bad one throws `InvalidSchedulerInitError` naming it, so a scheduler
 * that exists has settings it can work with.
 */

import { LandingLimit, validateBitfield } from '@swarm/interface'
import type { Logger } from '@swarm/interface'
import {
  DEFAULT_HEDGE_AFTER_MS,
  DEFAULT_MAX_INFLIGHT_ORIGIN,
  DEFAULT_MAX_INFLIGHT_PER_PEER,
  DEFAULT_MAX_INFLIGHT_TOTAL,
  MIN_PEER_INFLIGHT,
  DEFAULT_FLEET_INFLIGHT_ORIGIN,
  DEFAULT_ORIGIN_FALLBACK_MS,
  DEFAULT_ORIGIN_WINDOW,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRY_AFTER_MS
} from './constants.js'
import { InvalidSchedulerInitError } from './errors.js'
import { PullerSet } from './pullers.js'
import type { Scheduler } from './scheduler.js'

export interface SchedulerInit {
  /** this node's peer id; it is always one of the pullers */
  selfId: string
  /** the manifest's unique chunks in file order; a chunk's index is its position here */
  chunks: ReadonlyArray<{ cid: string, size: number }>
  /** what is already local: a bitfield (see `encodeBitfield`) or one flag per chunk */
  have?: Uint8Array | ArrayLike<boolean>
  /** a seeded PRNG returning numbers in [0, 1), e.g. `seededRandom(seed)` */
  random: () => number
  /**
   * the other nodes pulling this manifest. Give it (even empty) once known; until it is known
   * (here or through `setPullers`) nothing is taken from the origin as an owner.
   */
  pullers?: Iterable<string>
  /**
   * instead of `pullers`: a set shared with other schedulers in this process that see the same
   * pullers (a simulator's nodes). Changes made through any of them, or to the set itself, apply
   * to all.
   */
  pullerSet?: PullerSet
  /** when the pull starts; defaults to the time of the first event */
  now?: number
  maxInflightPerPeer?: number
  maxInflightOrigin?: number
  /** origin requests the fleet keeps outstanding in all, shared out among the fetchers (default 16) */
  fleetInflightOrigin?: number
  /**
   * how many pullers fetch from the origin: the best-ranked for this model (default 16, see
   * `pullers.ts`); Infinity: every puller
   */
  originFetchers?: number
  /**
   * how far ahead of the chunks seen anywhere owners fetch from the origin (default 8): chunk i
   * is fetched once i − window + 1 chunks are seen at this node or its peers (see `origin.ts`);
   * Infinity: none
   */
  originWindow?: number
  /**
   * How many nodes may be pulling, this one included, as far as this node can tell before their
   * joins arrive (e.g. the nodes it is connected to). Until that many pullers are known, its
   * share of the fleet's origin requests assumes them: a node that starts a moment before the
   * others sees itself alone, believes it owns every chunk, and would otherwise ask the origin
   * for many that their owners are about to fetch too. Holds for `EXPECTED_PULLERS_MS` from the
   * first event, so a node pulling alone among many idle ones is held back only that long. Default 1.
   */
  expectedPullers?: number
  maxInflightTotal?: number
  /**
   * how long a chunk from a peer should take to land, in ms: peer requests at once follow it,
   * from `MIN_PEER_INFLIGHT` up to `maxInflightTotal` (see `LandingLimit` in @swarm/interface). Default 0: always
   * `maxInflightTotal`; the pull engine (`@swarm/pull`) gives `DEFAULT_PEER_LANDING_MS`
   */
  peerLandingMs?: number
  /**
   * how long a chunk from the origin should take to land, in ms, while other pullers wait to be
   * passed it: origin requests at once follow it, from 1 up to this node's share (see
   * `originCap` in `origin.ts`). Default 0: always the share; the pull engine gives
   * `DEFAULT_ORIGIN_LANDING_MS`
   */
  originLandingMs?: number
  /** Infinity: a non-owner never falls back to the origin */
  originFallbackMs?: number
  requestTimeoutMs?: number
  /** Infinity: no hedging */
  hedgeAfterMs?: number
  retryAfterMs?: number
  /** duplicate the last outstanding requests to other holders (default true) */
  endgame?: boolean
  /** false: peers only, e.g. pulling by CID while the origin is down (default true) */
  useOrigin?: boolean
  logger?: Logger
}

/** The manifest's chunks, checked (see the fields of `Scheduler`). */
export type ChunkList = Pick<Scheduler, 'cids' | 'sizes' | 'totalBytes' | 'largestChunk'>

/** The limits and times a scheduler works to, from its options and their defaults (see the fields of `Scheduler`). */
export type Settings = Pick<Scheduler, 'maxPerPeer' | 'maxOrigin' | 'fleetOrigin' | 'originWindow' | 'expectedPullers' | 'maxTotal' | 'peerLimit' | 'originLimit' | 'originFallbackMs' | 'requestTimeoutMs' | 'hedgeAfterMs' | 'retryAfterMs' | 'endgameEnabled' | 'useOrigin'>

/** The options a scheduler cannot be made without. */
export function checkRequired (init: SchedulerInit): void {
  if (init == null || typeof init !== 'object') throw new InvalidSchedulerInitError('init must be an object')
  if (typeof init.selfId !== 'string' || init.selfId === '') throw new InvalidSchedulerInitError('selfId must be a non-empty string')
  if (typeof init.random !== 'function') throw new InvalidSchedulerInitError('random must be a function returning numbers in [0, 1)')
  if (!Array.isArray(init.chunks)) throw new InvalidSchedulerInitError('chunks must be an array')
}

export function chunkList (chunks: SchedulerInit['chunks']): ChunkList {
  const n = chunks.length
  const cids = new Array<string>(n)
  const sizes = new Float64Array(n)
  const seen = new Set<string>()
  let totalBytes = 0
  let largest = 0
  for (let i = 0; i < n; i++) {
    const chunk = chunks[i]
    if (chunk == null || typeof chunk.cid !== 'string' || chunk.cid === '') {
      throw new InvalidSchedulerInitError(`chunk ${i} has no CID`)
    }
    if (!Number.isSafeInteger(chunk.size) || chunk.size < 0) {
      throw new InvalidSchedulerInitError(`chunk ${i} has size ${String(chunk.size)}, expected a non-negative integer`)
    }
    if (seen.has(chunk.cid)) throw new InvalidSchedulerInitError(`chunk ${i} repeats CID ${chunk.cid}; chunks must be unique`)
    seen.add(chunk.cid)
    cids[i] = chunk.cid
    sizes[i] = chunk.size
    totalBytes += chunk.size
    largest = Math.max(largest, chunk.size)
  }
  return { cids, sizes, totalBytes, largestChunk: largest }
}

export function settings (init: SchedulerInit): Settings {
  const maxPerPeer = count(init.maxInflightPerPeer, DEFAULT_MAX_INFLIGHT_PER_PEER, 1, 'maxInflightPerPeer')
  const maxOrigin = count(init.maxInflightOrigin, DEFAULT_MAX_INFLIGHT_ORIGIN, 0, 'maxInflightOrigin')
  const fleetOrigin = count(init.fleetInflightOrigin, DEFAULT_FLEET_INFLIGHT_ORIGIN, 1, 'fleetInflightOrigin')
  const originWindow = init.originWindow === Infinity ? Infinity : count(init.originWindow, DEFAULT_ORIGIN_WINDOW, 1, 'originWindow')
  const expectedPullers = count(init.expectedPullers, 1, 1, 'expectedPullers')
  const maxTotal = count(init.maxInflightTotal, DEFAULT_MAX_INFLIGHT_TOTAL, 1, 'maxInflightTotal')
  const landingMs = duration(init.peerLandingMs, 0, 'peerLandingMs')
  if (!Number.isFinite(landingMs)) throw new InvalidSchedulerInitError(`peerLandingMs must be 0 (off) or a finite number of milliseconds, got ${String(landingMs)}`)
  const peerLimit = new LandingLimit({ min: Math.min(MIN_PEER_INFLIGHT, maxTotal), max: maxTotal, targetMs: landingMs })
  const originLandingMs = duration(init.originLandingMs, 0, 'originLandingMs')
  if (!Number.isFinite(originLandingMs)) throw new InvalidSchedulerInitError(`originLandingMs must be 0 (off) or a finite number of milliseconds, got ${String(originLandingMs)}`)
  const originLimit = new LandingLimit({ min: 1, max: Math.max(1, maxOrigin), targetMs: originLandingMs })
  const originFallbackMs = duration(init.originFallbackMs, DEFAULT_ORIGIN_FALLBACK_MS, 'originFallbackMs')
  const requestTimeoutMs = duration(init.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeoutMs')
  const hedgeAfterMs = duration(init.hedgeAfterMs, DEFAULT_HEDGE_AFTER_MS, 'hedgeAfterMs')
  const retryAfterMs = duration(init.retryAfterMs, DEFAULT_RETRY_AFTER_MS, 'retryAfterMs')
  if (requestTimeoutMs === 0) throw new InvalidSchedulerInitError('requestTimeoutMs must be above 0')
  return {
    maxPerPeer,
    maxOrigin,
    fleetOrigin,
    originWindow,
    expectedPullers,
    maxTotal,
    peerLimit,
    originLimit,
    originFallbackMs,
    requestTimeoutMs,
    hedgeAfterMs,
    retryAfterMs,
    endgameEnabled: init.endgame ?? true,
    useOrigin: (init.useOrigin ?? true) && maxOrigin > 0
  }
}

/** The puller set a scheduler works with: the shared one it was given, or its own. */
export function pullerSetOf (init: SchedulerInit, cids: readonly string[]): PullerSet {
  if (init.pullerSet !== undefined) {
    if (init.pullers !== undefined) throw new InvalidSchedulerInitError('give pullers or pullerSet, not both')
    if (!(init.pullerSet instanceof PullerSet)) throw new InvalidSchedulerInitError('pullerSet must come from pullerSet()')
    if (!init.pullerSet.covers(cids)) throw new InvalidSchedulerInitError('pullerSet was made for other chunks')
    if (init.originFetchers !== undefined && init.originFetchers !== init.pullerSet.fetcherLimit) {
      throw new InvalidSchedulerInitError(`pullerSet has ${init.pullerSet.fetcherLimit} fetchers, originFetchers says ${init.originFetchers}`)
    }
    return init.pullerSet
  }
  const pullers = new PullerSet(init.chunks, [init.selfId], { fetchers: init.originFetchers })
  for (const id of init.pullers ?? []) pullers.add(id)
  return pullers
}

export function haveFlags (have: Uint8Array | ArrayLike<boolean>, n: number): boolean[] {
  if (have instanceof Uint8Array) {
    validateBitfield(have, n)
    const flags = new Array<boolean>(n)
    for (let i = 0; i < n; i++) flags[i] = (have[i >>> 3]! & (0x80 >>> (i & 7))) !== 0
    return flags
  }
  if (have.length !== n) throw new InvalidSchedulerInitError(`have lists ${have.length} flags for ${n} chunks`)
  return Array.from(have, flag => flag === true)
}

function count (value: number | undefined, fallback: number, min: number, name: string): number {
  if (value === undefined) return fallback
  if (!Number.isSafeInteger(value) || value < min) throw new InvalidSchedulerInitError(`${name} must be an integer of at least ${min}, got ${String(value)}`)
  return value
}

function duration (value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || Number.isNaN(value) || value < 0) {
    throw new InvalidSchedulerInitError(`${name} must be a non-negative number of milliseconds (Infinity allowed), got ${String(value)}`)
  }
  return value
}
