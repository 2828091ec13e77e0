/**
 * Ownership and the origin: which chunks this node takes from the origin, how many at once, and how long it waits for their owners first.
 *
 * ## Who takes what from the origin
 *
 * N nodes pulling the same model at once should make the origin serve about one copy of it,
 * with no coordinator. Of the nodes pulling the manifest (the "pullers", itself included), the
 * few that rank first for the model are its origin *fetchers* (`originFetchers`, 16 by
 * default; with fewer pullers, all of them), and every node ranks those for each chunk by
 * rendezvous hashing of (chunk CID, peer id). The top-ranked fetcher with room *owns* the chunk
 * (owners are bounded by bytes, see `pullers.ts`): it is the only one that fetches it from the
 * origin right away. Everyone else waits for the chunk to show up at a peer (a bitfield or
 * "have") and takes it from there. Because every node computes the same ranking from the same
 * fetchers, each chunk leaves the origin once, and the fetchers share the origin's work evenly.
 * Agreeing on a few fetchers takes knowing those few, not the whole fleet: peers name them to
 * each other (`@swarm/pull`'s session).
 *
 * Owners can leave or stall, and views of the set are never perfectly in step, so two safety
 * nets keep chunks moving:
 *
 * - When the owner leaves the set, the next-ranked puller becomes the owner and fetches the
 *   chunk from the origin (if no peer has it yet) once `TAKEOVER_WAIT_MS` has passed, or
 *   `originFallbackMs` when the previous owner is still pulling; the others restart their wait.
 *   The pause lets views of the fetchers settle: right after a fetcher leaves, each node that saw
 *   it go picks a replacement from what it knows, often itself, and taken at once the chunk left
 *   the origin once per such node. In bench/sim at 1,000 nodes knowing their neighbours, with
 *   10 % leaving, 78 origin requests for 32 chunks and 1.27 × M; with a 2 s pause, 38 and
 *   1.19 × M; waiting longer where the previous owner stays, 35 and 1.08 × M, p99 2.21 × T*
 *   against 2.22.
 * - A non-owner falls back to the origin when no peer has produced the chunk within
 *   wait × (1 + ⌊q / c⌋) × tier, counted from when the chunk became wanted under its current
 *   owner. The wait is `originFallbackMs`, or twice as long as owners are seen to take if that
 *   is longer: this node's own origin requests (their recent average, or the age of the oldest
 *   still outstanding) and the time from a chunk becoming wanted to its first appearance at a
 *   peer. Owners fetch over the same origin at the same time, so a slow origin makes slow
 *   owners, not failed ones. Until any chunk has come in from anywhere, the wait grows with the
 *   time since the pull started, up to twice `SILENT_FLEET_WAIT_MS`. c is how many origin requests each node keeps outstanding (below), and
 *   q is the chunk's place in its owner's origin queue:
 *   owners fetch what they own in chunk order, at most c at a time, so with
 *   few pullers (each owning a long list) the wait grows with the owner's queue instead of
 *   triggering duplicate fetches; with many pullers q is 0. The tier is 1 for the runner-up
 *   (second in the ranking), 2 for the other origin fetchers and `NON_FETCHER_FALLBACK_TIER` (4)
 *   for every other puller, so when an owner stalls silently the runner-up alone fetches the
 *   chunk, and the rest find it at the runner-up before their own deadline; only if both stall
 *   do the other fetchers go to the origin, and the rest of a large fleet only after them. In a
 *   fleet of hundreds a chunk also comes late when its owner's request gets a small share of a
 *   busy origin's link; with one tier for all non-owners, every puller that had not yet seen
 *   the runner-up's copy fell back at the same moment (bench/sim, 1,000 nodes knowing their
 *   neighbours, a tenth leaving at half of T*: 9 requests for one chunk within 0.25 s). With up
 *   to 16 pullers every puller is a fetcher and the tiers are 1 and 2. The formula assumes the
 *   fleet shares one configuration.
 *
 * The fleet keeps about `fleetInflightOrigin` requests outstanding at the origin in all: each
 * node c = ⌈fleetInflightOrigin / pullers⌉ (at least 1, at most `maxInflightOrigin`), where
 * pullers is at least `expectedPullers` for the first `EXPECTED_PULLERS_MS`: nodes start their
 * pulls seconds apart, and the first to start sees itself alone and believes it owns everything. The
 * origin's bandwidth is shared by every request on it, so a few at a time make chunks land one
 * after another, early enough for peers to pass them on while the origin sends the rest; every
 * owner asking for all it owns at once would make every chunk land only at the end. An origin
 * request is cancelled after `requestTimeoutMs`, or three times this node's usual origin request
 * time if that is longer.
 *
 * Within that share, a node that is not pulling alone keeps only as many origin requests as land
 * within `originLandingMs` (the pull engine gives `DEFAULT_ORIGIN_LANDING_MS`): one at first, one
 * more for each that lands within half of it, fewer after one that took longer. A handful of
 * pullers each take up to 8 of the fleet's 16; on a saturated origin each chunk then took a
 * dozen times its own transfer time, and the dozen outstanding at the end all landed at once,
 * to be passed on only after the origin had gone quiet. In bench/fanout (2 and 4 nodes, 50
 * Mbit/s) p99 went from 1.41 and 1.44 × T* to 1.26 and 1.39, and the origin sent 1.04 and 1.02 ×
 * M instead of 1.13 and 1.03. On an origin whose GETs each run at their own rate the chunks land
 * fast and the limit never binds; alone, nobody waits for a chunk and only the rate counts.
 *
 * ## Owners that finish early
 *
 * Ownership is balanced by bytes only within a slack (`pullers.ts`), and whole chunks do not
 * split evenly: with 2 pullers one owned 75 MB of a 136 MB model and the other 61. The lighter
 * one ran out of its own chunks seconds before the other, which then fetched the rest alone with
 * one request at a time, sharing its downlink with the chunks its peer passed it: the origin's
 * link ran at half its rate for the last 4 s (bench/fanout). So a fetcher with origin room and
 * none of its own chunks left to take (each held, seen at a peer or under way) takes, as their
 * runner-up, the chunk deepest in a busier owner's queue: the last of that owner's chunks seen
 * nowhere. Work stealing from the back of a queue: the owner works from the front and finds the
 * chunk at this node before it gets there. Guards: only the runner-up takes a chunk, so two idle
 * fetchers never take the same one; only from an owner this node is connected to, which sees the
 * copy's "have"; and only a chunk with at least this node's origin requests at once plus
 * `STEAL_MARGIN` of the owner's unseen chunks before it, since the owner may reach it while the
 * copy is on its way. The scan is O(chunks), at most every `STEAL_SCAN_MS`. In bench/fanout at
 * 2 nodes the first run with it gave p99 1.18 × T* with the origin's link busy to the end
 * (1.26–1.32 in the two before); later runs with the changes after it gave 1.21–1.33.
 *
 * ## The origin window
 *
 * Requests at the origin share its link, so owners that all start at once make every chunk land
 * together at about M / origin rate, and peers have nothing to pass on until then: the origin's
 * phase and the peers' run one after the other instead of overlapping. Owners therefore fetch
 * chunk i only once i − `originWindow` + 1 chunks are seen anywhere (here or at a connected
 * peer): chunks then land one after another in index order, each passed on while the origin
 * sends the next. Nodes see different peers, so an owner may see fewer chunks than a non-owner;
 * a non-owner falls back only for chunks within half the window, and its wait for a chunk counts
 * from when it entered that half. The window must cover how long a landed chunk takes to become
 * visible (a hop or two of peer transfers) in chunks of origin time, or the origin idles.
 *
 * The window is off once a node knows more pullers than the model has chunks. Each owner then
 * owns a chunk or two, so there is no queue for a window to order, and views of a large fleet
 * disagree on owners: with a window, every node that believes it owns one of the first chunks
 * asks for it at the same moment, and non-owners whose owner never fetches (it believes
 * someone else owns it) fall back in step. In bench/sim at 1,000 nodes with partial views the
 * window made p99 7.5 × T* and the origin send 5.9 × M; off past that point, 5.1 × T* and 3.8 ×
 * M, with no change at 2 to 16 nodes (64 chunks). With the few fetchers agreed on, the count
 * that turns it off is still the pullers a node ranks (at most 64), not the fetchers: at 1,000
 * nodes with every node knowing every puller, 32 chunks and 16 fetchers, a window kept on made
 * p99 2.9 × T* and 1.13 × M against 2.6 × and 1.03 × off.
 *
 * An owner also prefers a peer: it goes to the origin only for chunks no usable peer holds.
 * While the origin is paused (`pauseOrigin`: the session saw it fail again and again while peers
 * held every missing chunk), a chunk a peer turned away (a busy data server) waits for that
 * peer's retry instead of going to the origin; only chunks no peer holds are asked of it.
 * Until the set of pullers is known (`pullers` in init or {@link ChunkScheduler.setPullers}) a
 * node would believe it owns everything, so until then it takes nothing from the origin as an
 * owner; only the fallback applies.
 *
 * ## Limits
 *
 * - Ownership is only as consistent as the views of the fetchers. Over the whole set of
 *   pullers, a node that knew k of N believed it owned about 1/(k+1) of the chunks, and the
 *   origin saw about N/(k+1) copies of what such nodes owned (bench/sim, 1,000 nodes, each
 *   knowing its neighbours and pullers gossip brought: 3.6 × M, p99 5.0 × T*). Over the few
 *   fetchers named from peer to peer: 1.06 × M and 2.5 × T*, the same as with every node knowing
 *   every puller.
 * - A puller that joins mid-pull takes over about 1/N of the chunks. An old owner gives up its
 *   origin requests for chunks it no longer owns (a fallback request stays: it was made because
 *   an owner did not deliver), so the origin's link is not shared with requests the new owner
 *   repeats. In a large fleet views fill in over the first seconds, and before this every node
 *   that had believed itself an owner kept its request: in bench/sim at 1,000 nodes with partial
 *   views about 700 origin requests shared the link at once, all timed out at 30 s, and p99 was
 *   5.1 × T* with 3.8 × M from the origin; giving them up, 4.1 × T* and 2.6 × M.
 *   A node still among the fetchers keeps a request it started at least `TAKEOVER_WAIT_MS` ago:
 *   its heir waits that long (5 s when, as here, the old owner still pulls) before asking, and
 *   starts from nothing. When a fetcher leaves, the fetcher promoted in its place outranks others
 *   for some of their chunks; at 1,000 nodes with a tenth leaving at half of T*, owners gave up
 *   five requests under way for 6.5–11.5 s, much of each chunk already sent, and fetched them again.
 * - Each node ranks its fetchers for every chunk when they change (O(fetchers × chunks)), and
 *   keeps only the best-ranked pullers it hears of, so neither grows with the fleet.
 */

import {
  EXPECTED_PULLERS_MS,
  NON_FETCHER_FALLBACK_TIER,
  ORIGIN_TIMEOUT_FACTOR,
  ORIGIN_WAIT_FACTOR,
  PEER_RESERVED_SLOTS,
  SILENT_FLEET_WAIT_MS,
  STEAL_MARGIN,
  STEAL_SCAN_MS,
  TAKEOVER_WAIT_MS
} from './constants.js'
import { freshHolders } from './peers.js'
import type { Outstanding, Request } from './requests.js'
import type { Scheduler } from './scheduler.js'

/**
 * Chunks no usable peer holds: the ones this node owns at once, in chunk order (others count
 * on that order, see the notes at the top), then those whose fallback deadline has passed.
 */
export function fillFromOrigin (s: Scheduler, now: number, start: Request[]): void {
  if (!s.useOrigin) return
  const ownsNow = s.pullersKnown
  const wait = originWait(s, now)
  const fallbacks: number[] = []
  // chunks past the window wait for the ones before them to land somewhere (see the notes at the top)
  const windowEnd = s.seenCount + originWindow(s)
  const fallbackEnd = fallbackWindowEnd(s)
  const paused = now < s.originPausedUntil
  const fetcher = !s.pullersKnown || s.pullers.isFetcher(s.selfId)
  // With no room, nothing idle is asked for, and the wait is for room, not for a deadline.
  if (s.idleCount > 0 && !originHasRoom(s)) {
    s.nextFallbackAt = Infinity
    return
  }
  // Only idle chunks that no peer holds, or that a holder failed, can go to the origin: one held
  // by a peer in good standing is skipped without a look, so a scan costs the chunks it may ask
  // for, not every idle chunk (with a seeder holding all 35,000 chunks of a 140 GB model, a scan
  // of them all on every tick cost 8.5 s of the main thread over the pull).
  for (let w = 0; w < s.words; w++) {
    let word = (s.idleWords[w]! & (~s.heldWords[w]! | s.failedWords[w]!)) >>> 0
    while (word !== 0) {
      const low = word & -word
      word = (word ^ low) >>> 0
      const i = (w << 5) + 31 - Math.clz32(low)
      if (i >= windowEnd) break
      if (freshHolders(s, i) > 0) continue
      if (paused && s.holders[i]! > 0) {
        // the origin is down and a peer holds it: that peer is asked again at its retry time
        s.nextRetryAt = Math.min(s.nextRetryAt, s.originPausedUntil)
        continue
      }
      const retryAt = s.originRetryAt[i]!
      if (retryAt > now) {
        s.nextRetryAt = Math.min(s.nextRetryAt, retryAt)
        continue
      }
      if (ownsNow && s.pullers.owner(i) === s.selfId) {
        const takeAt = s.takeOverAt[i]!
        if (now < takeAt) {
          s.nextFallbackAt = Math.min(s.nextFallbackAt, takeAt)
        } else {
          s.startRequest(i, undefined, now, start)
          // out of room with idle chunks left: nothing more is asked for, as above
          if (!originHasRoom(s) && idleAfter(s, i)) {
            s.nextFallbackAt = Infinity
            return
          }
        }
        continue
      }
      if (i >= fallbackEnd) continue
      const deadline = fallbackAt(s, i, wait, fetcher)
      if (now >= deadline) fallbacks.push(i)
      else s.nextFallbackAt = Math.min(s.nextFallbackAt, deadline)
    }
  }
  for (const i of fallbacks) {
    if (!originHasRoom(s)) {
      s.nextFallbackAt = Infinity
      return
    }
    s.startRequest(i, undefined, now, start)
  }
  if (!paused) takeFromBusiestOwners(s, now, windowEnd, start)
}

/** whether any chunk after `chunk` is idle */
function idleAfter (s: Scheduler, chunk: number): boolean {
  const w = chunk >>> 5
  const bit = chunk & 31
  // the bits above `chunk` in its word (none when it is the word's last)
  if (bit < 31 && (s.idleWords[w]! >>> (bit + 1)) !== 0) return true
  for (let k = w + 1; k < s.words; k++) if (s.idleWords[k]! !== 0) return true
  return false
}

/**
 * A fetcher with origin room and nothing of its own left to fetch takes, as runner-up, the chunk
 * deepest in a still busier owner's origin queue (see "Owners that finish early" at the top).
 */
function takeFromBusiestOwners (s: Scheduler, now: number, windowEnd: number, start: Request[]): void {
  if (!s.pullersKnown || s.pullers.size < 2 || now < s.nextStealScanAt || !originHasRoom(s)) return
  s.nextStealScanAt = now + STEAL_SCAN_MS
  // each owner's chunks not seen anywhere, in index order, so far in the scan
  const ahead = new Map<string, number>()
  let best = -1
  let bestDepth = -1
  const margin = originCap(s) + STEAL_MARGIN
  for (let i = 0; i < s.chunkCount && i < windowEnd; i++) {
    if (s.seen[i] !== 0) continue // held here (or seen at a peer)
    const owner = s.pullers.owner(i)
    if (owner === undefined) continue
    // its own chunks come first: one not yet taken means it is not done
    if (owner === s.selfId) {
      if (s.byChunk[i] === undefined) return
      continue
    }
    const depth = ahead.get(owner) ?? 0
    ahead.set(owner, depth + 1)
    // only the runner-up takes a chunk, so no two idle fetchers take the same one; only from an
    // owner it is connected to, which then sees the chunk here before it reaches it
    if (depth < margin || depth <= bestDepth || s.byChunk[i] !== undefined) continue
    if (s.pullers.backup(i) !== s.selfId || !s.peers.has(owner) || s.originRetryAt[i]! > now) continue
    best = i
    bestDepth = depth
  }
  if (best >= 0) {
    s.counters.originSteals++
    s.startRequest(best, undefined, now, start)
  }
}

/**
 * Chunks below which a non-owner may fall back to the origin: half the owners' window, since an
 * owner may see fewer chunks than this node does and so start its own later.
 */
export function fallbackWindowEnd (s: Scheduler): number {
  return s.seenCount + Math.ceil(originWindow(s) / 2)
}

/** A chunk is seen for the first time: the origin window moves one chunk on (see the notes at the top). */
export function markSeen (s: Scheduler, chunk: number, now: number): void {
  if (s.seen[chunk] === 1) return
  s.seen[chunk] = 1
  s.seenCount++
  // chunks entering the window: their owners start them only now, so a non-owner's wait for them starts now too
  if (Number.isFinite(now)) {
    const end = Math.min(s.chunkCount, fallbackWindowEnd(s))
    for (let i = s.windowEnd; i < end; i++) s.eligibleSince[i] = now
    s.windowEnd = Math.max(s.windowEnd, end)
  }
  s.dirty = true
}

/** The origin window in force: none once more pullers are known than there are chunks (see the notes at the top). */
function originWindow (s: Scheduler): number {
  return s.pullersKnown && s.pullers.size > s.chunkCount ? Infinity : s.originWindow
}

function originHasRoom (s: Scheduler): boolean {
  // with peers around, a few slots stay theirs: a node owning many chunks still takes the rest from peers meanwhile
  const reserved = s.peers.size > 0 ? Math.min(PEER_RESERVED_SLOTS, s.maxTotal - 1) : 0
  return s.originInflight < Math.min(originCap(s), s.maxTotal - reserved) && s.outstanding.size < s.maxTotal
}

/** Origin requests this node keeps outstanding: its share of the fleet's; see the notes at the top. */
function originCap (s: Scheduler): number {
  if (!s.pullersKnown) return s.maxOrigin
  const fetchers = s.expectedPullersLapsed ? s.pullers.fetcherCount : Math.max(expectedFetchers(s), s.pullers.fetcherCount)
  const share = Math.min(s.maxOrigin, Math.max(1, Math.ceil(s.fleetOrigin / fetchers)))
  // alone, only the rate counts; with others waiting for each chunk, one that lands sooner is passed on sooner
  return s.pullers.size > 1 ? Math.min(share, s.originLimit.limit) : share
}

/** Of the pullers this node expects, how many will fetch from the origin. */
function expectedFetchers (s: Scheduler): number {
  return Math.min(s.expectedPullers, s.pullers.fetcherLimit)
}

/** Until when `expectedPullers` holds down this node's origin share (Infinity once it no longer does). */
export function expectedUntil (s: Scheduler): number {
  if (s.expectedPullersLapsed || expectedFetchers(s) <= s.pullers.fetcherCount || s.startedAt === undefined) return Infinity
  return s.startedAt + EXPECTED_PULLERS_MS
}

/** How long a non-owner waits for an owner per round: see the notes at the top. */
function originWait (s: Scheduler, now: number): number {
  let estimate = Math.max(s.originMs, s.deliveryMs)
  for (const outstanding of s.outstanding.values()) {
    if (outstanding.peer === undefined) estimate = Math.max(estimate, now - outstanding.startedAt)
  }
  // nothing has come in from anyone yet: the origin is slow for all, not an owner stalled
  if (s.deliveries === 0 && s.originSamples === 0) estimate = Math.max(estimate, Math.min(now - (s.startedAt ?? now), SILENT_FLEET_WAIT_MS))
  return Math.max(s.originFallbackMs, ORIGIN_WAIT_FACTOR * estimate)
}

/** When a non-owner gives up waiting for a chunk nobody holds; see the notes at the top. */
function fallbackAt (s: Scheduler, chunk: number, wait: number, fetcher: boolean): number {
  const since = Math.max(s.waitSince[chunk]!, s.eligibleSince[chunk]!)
  if (!s.pullersKnown) return since + wait
  const rounds = 1 + Math.floor(s.pullers.queuePosition(chunk) / originCap(s))
  const tier = s.pullers.backup(chunk) === s.selfId ? 1 : fetcher ? 2 : NON_FETCHER_FALLBACK_TIER
  return since + wait * rounds * tier
}

/**
 * Gives up the origin requests this node made as the owner of chunks it no longer owns: the new
 * owner fetches them; a fetcher keeps those it started at least `TAKEOVER_WAIT_MS` ago (see
 * the notes at the top).
 */
export function releaseLostOwnership (s: Scheduler, now: number): void {
  if (!s.pullersKnown) return
  let lost: Outstanding[] | undefined
  for (const outstanding of s.outstanding.values()) {
    if (outstanding.asOwner && s.pullers.owner(outstanding.request.chunk) !== s.selfId) (lost ??= []).push(outstanding)
  }
  if (lost === undefined) return
  // a fetcher keeps what it has had under way longer than its heir would wait before asking
  const stillFetcher = s.pullers.isFetcher(s.selfId)
  for (const outstanding of lost) {
    if (stillFetcher && now - outstanding.startedAt >= TAKEOVER_WAIT_MS) continue
    s.cancel(outstanding)
  }
}

export function timeoutOf (s: Scheduler, outstanding: Outstanding): number {
  // a relay lands when its source's own transfer does, often an origin request
  return outstanding.peer === undefined || outstanding.request.relay === true ? Math.max(s.requestTimeoutMs, ORIGIN_TIMEOUT_FACTOR * s.originMs) : s.requestTimeoutMs
}

/** Restarts the wait of every chunk whose owner changed since last looked. */
export function catchUp (s: Scheduler): void {
  const version = s.pullers.version
  if (version === s.seenVersion) return
  const changed = s.pullers.changesSince(s.seenVersion)
  s.seenVersion = version
  s.dirty = true
  const now = s.lastNow
  if (changed === undefined) for (let i = 0; i < s.chunkCount; i++) noteOwner(s, i, now)
  else for (const i of changed) noteOwner(s, i, now)
  // before the first event the clock has not started; it will set every wait then
  if (!Number.isFinite(now)) return
  if (changed === undefined) s.waitSince.fill(now)
  else for (const i of changed) s.waitSince[i] = now
}

/** Notes whether this node now owns the chunk, and, when it took it over from another owner, from when it may take it from the origin (see `TAKEOVER_WAIT_MS`). */
function noteOwner (s: Scheduler, chunk: number, now: number): void {
  if (!s.pullersKnown) return
  const owner = s.pullers.owner(chunk)
  const previous = s.lastOwner[chunk]
  if (owner === s.selfId && previous !== undefined && previous !== s.selfId && Number.isFinite(now)) {
    const stillPulling = s.pullers.has(previous)
    s.takeOverAt[chunk] = now + (stillPulling ? Math.max(TAKEOVER_WAIT_MS, s.originFallbackMs) : TAKEOVER_WAIT_MS)
  }
  if (owner !== undefined) s.lastOwner[chunk] = owner
}
