/**
 * Who holds what: the per-chunk state the deciding modules scan, kept as bitsets of 32-bit words
 * (bit i of word w = chunk 32w + i) so that a scan costs chunks / 32 words, not chunks. Kept
 * here: the chunks this node has (`haveWords`), the missing ones with no request outstanding
 * (`idleWords`), each connected peer's holdings (`PeerState.bits`) and the count of holders per
 * chunk (`holders`, with `heldWords` for the chunks it is above 0), and the peers that failed a
 * chunk (`failedPeers`, with `failedWords`). Holder counts are updated as haves arrive and as
 * peers leave, never recounted.
 */

import { bitfieldLength } from '@swarm/interface'
import { inEndgame } from './endgame.js'
import { markSeen } from './origin.js'
import type { RequestSource } from './requests.js'
import type { Scheduler } from './scheduler.js'

/** A connected peer as the scheduler sees it. */
export interface PeerState {
  readonly id: string
  readonly source: RequestSource
  /** chunk holdings as 32-bit words, bit i of word w = chunk 32w + i */
  readonly bits: Uint32Array
  /** chunks it is receiving and relays as they arrive (see `fillFromArriving` in `peers.ts`), same layout */
  readonly arriving: Uint32Array
  inflight: number
}

/** Records that `peer` holds `chunk`; new work is possible if it has room and we want the chunk. */
export function addHolding (s: Scheduler, peer: PeerState, chunk: number, hasRoom: boolean, now: number): void {
  const w = chunk >>> 5
  const mask = 1 << (chunk & 31)
  if ((peer.bits[w]! & mask) !== 0) return
  peer.bits[w] = peer.bits[w]! | mask
  dropArriving(s, peer, chunk)
  if (s.holders[chunk]! === 0 && (s.haveWords[w]! & mask) === 0) {
    // a chunk showing up for the first time: how long owners take to bring one in
    const took = Math.max(0, now - s.waitSince[chunk]!)
    s.deliveryMs = s.deliveries === 0 ? took : 0.8 * s.deliveryMs + 0.2 * took
    s.deliveries++
  }
  markSeen(s, chunk, now)
  if (s.holders[chunk]!++ === 0) s.heldWords[w] = s.heldWords[w]! | mask
  if (hasRoom && !s.dirty && (s.haveWords[w]! & mask) === 0) {
    // an idle chunk can now be asked for; in endgame, an outstanding one can be duplicated
    if ((s.idleWords[w]! & mask) !== 0 || (s.endgameEnabled && inEndgame(s))) s.dirty = true
  }
}

/** Records every chunk set in a bitfield (see `encodeBitfield`) as held by `peer`. */
export function addBitfield (s: Scheduler, peer: PeerState, bitfield: Uint8Array, hasRoom: boolean, now: number): void {
  for (let byte = 0; byte < bitfield.length; byte++) {
    let value = bitfield[byte]!
    while (value !== 0) {
      const bit = 31 - Math.clz32(value)
      value ^= 1 << bit
      addHolding(s, peer, (byte << 3) + (7 - bit), hasRoom, now)
    }
  }
}

/** A peer is gone or banned: its holdings stop counting. */
export function removeHoldings (s: Scheduler, peer: PeerState): void {
  for (let w = 0; w < s.words; w++) {
    let word = peer.bits[w]!
    while (word !== 0) {
      const low = word & -word
      word = (word ^ low) >>> 0
      const chunk = (w << 5) + 31 - Math.clz32(low)
      if (--s.holders[chunk]! === 0) s.heldWords[w] = s.heldWords[w]! & ~low
    }
  }
}

/** A chunk is local: it is seen, counted, and no longer idle. */
export function addHave (s: Scheduler, chunk: number, now: number): void {
  s.haveWords[chunk >>> 5] = s.haveWords[chunk >>> 5]! | (1 << (chunk & 31))
  s.haveCount++
  markSeen(s, chunk, now)
  s.bytesDone += s.sizes[chunk]!
  clearIdle(s, chunk)
}

/** What this node holds, as a bitfield (see `encodeBitfield`). */
export function haveBitfield (s: Scheduler): Uint8Array {
  const bytes = new Uint8Array(bitfieldLength(s.chunkCount))
  for (let i = 0; i < s.chunkCount; i++) {
    if (s.has(i)) bytes[i >>> 3] = bytes[i >>> 3]! | (0x80 >>> (i & 7))
  }
  return bytes
}

export function setIdle (s: Scheduler, chunk: number): void {
  const w = chunk >>> 5
  const mask = 1 << (chunk & 31)
  if ((s.idleWords[w]! & mask) !== 0) return
  s.idleWords[w] = s.idleWords[w]! | mask
  s.idleCount++
  s.dirty = true
}

export function clearIdle (s: Scheduler, chunk: number): void {
  const w = chunk >>> 5
  const mask = 1 << (chunk & 31)
  if ((s.idleWords[w]! & mask) === 0) return
  s.idleWords[w] = s.idleWords[w]! & ~mask
  s.idleCount--
}

/** `peerId` failed us for `chunk`; `busy`: only for want of an upload slot (see `freshHolders` in `peers.ts`). */
export function setFailed (s: Scheduler, chunk: number, peerId: string, busy: boolean): void {
  (s.failedPeers[chunk] ??= new Map()).set(peerId, busy)
  s.failedWords[chunk >>> 5] = s.failedWords[chunk >>> 5]! | (1 << (chunk & 31))
}

/** The chunk is local: the failures of its holders no longer matter. */
export function clearFailed (s: Scheduler, chunk: number): void {
  s.failedPeers[chunk] = undefined
  s.failedWords[chunk >>> 5] = s.failedWords[chunk >>> 5]! & ~(1 << (chunk & 31))
}

/**
 * Records that `peer` is receiving `chunk` and relays it as it arrives. It does not count as a
 * holder: not for rarest-first, not for what this node takes from the origin and when.
 */
export function addArriving (s: Scheduler, peer: PeerState, chunk: number): void {
  const w = chunk >>> 5
  const mask = 1 << (chunk & 31)
  if (((peer.bits[w]! | peer.arriving[w]!) & mask) !== 0) return
  peer.arriving[w] = peer.arriving[w]! | mask
  s.arrivingCount++
  if (!s.dirty && (s.idleWords[w]! & mask) !== 0 && peer.inflight < s.maxPerPeer) s.dirty = true
}

/** `peer` no longer receives `chunk` (its transfer failed or was given up, or it failed us). */
export function dropArriving (s: Scheduler, peer: PeerState, chunk: number): void {
  const w = chunk >>> 5
  const mask = 1 << (chunk & 31)
  if ((peer.arriving[w]! & mask) === 0) return
  peer.arriving[w] = peer.arriving[w]! & ~mask
  s.arrivingCount--
}

/** A peer is gone: what it was receiving stops counting. */
export function removeArriving (s: Scheduler, peer: PeerState): void {
  for (let w = 0; w < s.words; w++) {
    s.arrivingCount -= bitCount(peer.arriving[w]!)
    peer.arriving[w] = 0
  }
}

/** Set bits in a 32-bit word. */
function bitCount (word: number): number {
  let v = word - ((word >>> 1) & 0x55555555)
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333)
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24
}
