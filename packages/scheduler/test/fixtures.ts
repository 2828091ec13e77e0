import { chunkScheduler, pullerSet, seededRandom } from '../src/index.js'
import type { ChunkScheduler, Request, SchedulerInit } from '../src/index.js'

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** Strings shaped like CIDv1 raw/sha2-256 (bafkrei + 52 base32 characters), from a seed. */
export function fakeCids (count: number, seed: number): string[] {
  const random = seededRandom(seed)
  return Array.from({ length: count }, () => {
    let cid = 'bafkrei'
    for (let i = 0; i < 52; i++) cid += BASE32[Math.floor(random() * 32)]
    return cid
  })
}

/** Strings shaped like libp2p Ed25519 peer ids. */
export function peerIds (count: number, prefix = ''): string[] {
  return Array.from({ length: count }, (_, i) => `12D3KooW${prefix}${String(i).padStart(6, '0')}Peer`)
}

export function chunkList (count: number, seed = 1, size = 1000): Array<{ cid: string, size: number }> {
  return fakeCids(count, seed).map(cid => ({ cid, size }))
}

/** Indices 0..n-1. */
export function range (n: number): number[] {
  return Array.from({ length: n }, (_, i) => i)
}

/** A binary min-heap ordered by (time, insertion order), so equal times pop first-in first-out. */
export class EventQueue<T> {
  private readonly items: Array<{ time: number, seq: number, value: T }> = []
  private seq = 0

  get size (): number {
    return this.items.length
  }

  push (time: number, value: T): void {
    const items = this.items
    items.push({ time, seq: this.seq++, value })
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }

  peekTime (): number | undefined {
    return this.items[0]?.time
  }

  pop (): { time: number, value: T } | undefined {
    const items = this.items
    const top = items[0]
    if (top === undefined) return undefined
    const last = items.pop()!
    if (items.length > 0) {
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < items.length && before(items[l]!, items[m]!)) m = l
        if (r < items.length && before(items[r]!, items[m]!)) m = r
        if (m === i) break
        ;[items[i], items[m]] = [items[m]!, items[i]!]
        i = m
      }
    }
    return top
  }
}

function before (a: { time: number, seq: number }, b: { time: number, seq: number }): boolean {
  return a.time < b.time || (a.time === b.time && a.seq < b.seq)
}

export interface SwarmOptions {
  nodes: number
  chunks: number
  seed: number
  /** virtual ms an origin request takes */
  originLatency?: number
  /** virtual ms a peer request takes */
  peerLatency?: number
  /** who each node is connected to (symmetric); default everyone */
  neighbours?: (node: number, nodes: number) => number[]
  init?: Partial<SchedulerInit>
  /** nodes that never act: no requests, no answers, no announcements */
  stalled?: number[]
  /** one puller set shared by every scheduler instead of one each */
  sharedPullers?: boolean
  /** chunks each node holds at the start */
  have?: (node: number) => number[]
  /** stop at this virtual time */
  until?: number
}

export interface SwarmResult {
  schedulers: ChunkScheduler[]
  cids: string[]
  /** origin requests started for each chunk */
  originFetches: number[]
  /** who first asked the origin for each chunk */
  originBy: Array<string | undefined>
  /** virtual time each node finished, or Infinity */
  finishedAt: number[]
  /** events processed */
  events: number
}

/**
 * A discrete-event swarm: every node runs a scheduler, requests complete after a fixed virtual
 * latency, and a completed chunk is announced ("have") to every neighbour at once.
 */
export function runSwarm (options: SwarmOptions): SwarmResult {
  const { nodes, seed } = options
  const originLatency = options.originLatency ?? 10
  const peerLatency = options.peerLatency ?? 2
  const until = options.until ?? 1e9
  const ids = peerIds(nodes, 'sim')
  const indexOf = new Map(ids.map((id, i) => [id, i]))
  const chunks = chunkList(options.chunks, seed)
  const neighbours = range(nodes).map(i => options.neighbours?.(i, nodes) ?? range(nodes).filter(j => j !== i))
  const holds = ids.map((_, i) => {
    const flags = new Uint8Array(chunks.length)
    for (const chunk of options.have?.(i) ?? []) flags[chunk] = 1
    return flags
  })
  const shared = options.sharedPullers === true ? pullerSet(chunks, ids) : undefined
  const schedulers = ids.map((selfId, i) => chunkScheduler({
    selfId,
    chunks,
    have: Array.from(holds[i]!, flag => flag === 1),
    random: seededRandom(seed * 1000 + i),
    ...(shared === undefined ? { pullers: ids.filter(id => id !== selfId) } : { pullerSet: shared }),
    now: 0,
    ...options.init
  }))
  const originFetches = new Array<number>(chunks.length).fill(0)
  const originBy = new Array<string | undefined>(chunks.length).fill(undefined)
  const stalled = new Set(options.stalled ?? [])
  const finishedAt = new Array<number>(nodes).fill(Infinity)
  const active = new Set<number>()
  type Event = { kind: 'done', node: number, request: Request } | { kind: 'wake', node: number }
  const queue = new EventQueue<Event>()
  const requestKey = (node: number, request: Request): number => request.id * nodes + node

  for (let i = 0; i < nodes; i++) {
    for (const j of neighbours[i]!) {
      schedulers[i]!.peerJoined(ids[j]!, 0)
      schedulers[i]!.peerHas(ids[j]!, schedulers[j]!.bitfield(), 0)
    }
  }

  let now = 0
  let events = 0
  let touched = new Set(range(nodes))
  for (;;) {
    for (const i of [...touched].sort((a, b) => a - b)) {
      if (stalled.has(i)) continue
      const scheduler = schedulers[i]!
      const { start, cancel, wakeAt } = scheduler.tick(now)
      for (const request of cancel) active.delete(requestKey(i, request))
      for (const request of start) {
        if (request.source.kind === 'origin') {
          originFetches[request.chunk]!++
          originBy[request.chunk] ??= ids[i]
          queue.push(now + originLatency, { kind: 'done', node: i, request })
        } else {
          const from = indexOf.get(request.source.peerId)!
          if (holds[from]![request.chunk] !== 1) throw new Error(`node ${i} asked node ${from} for chunk ${request.chunk}, which it does not hold`)
          queue.push(now + peerLatency, { kind: 'done', node: i, request })
        }
        active.add(requestKey(i, request))
      }
      if (wakeAt !== undefined) queue.push(wakeAt, { kind: 'wake', node: i })
      if (scheduler.done && finishedAt[i] === Infinity) finishedAt[i] = now
    }
    touched = new Set()
    const next = queue.peekTime()
    if (next === undefined || next > until) break
    now = next
    while (queue.peekTime() === now) {
      const event = queue.pop()!.value
      events++
      const i = event.node
      touched.add(i)
      if (event.kind === 'wake') continue
      if (!active.delete(requestKey(i, event.request))) continue
      const chunk = event.request.chunk
      const fresh = holds[i]![chunk] === 0
      schedulers[i]!.chunkArrived(chunk, now, event.request.id)
      if (!fresh) continue
      holds[i]![chunk] = 1
      for (const j of neighbours[i]!) {
        schedulers[j]!.peerHas(ids[i]!, [chunk], now)
        touched.add(j)
      }
    }
  }
  return { schedulers, cids: chunks.map(c => c.cid), originFetches, originBy, finishedAt, events }
}
