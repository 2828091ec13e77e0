import { ChunkUnavailableError, DiskFullError, OriginUnavailableError, uniqueChunks } from '@swarm/interface'
import { fetcher } from '@swarm/fetcher'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { blockDigests, encodeManifest } from '@swarm/manifest'
import { pullerSet } from '@swarm/scheduler'
import { MAX_FETCHER_HOPS, PullSession, SessionStartedError } from '../src/index.js'
import { CHUNK, harness, holdsModel, makeModel, ScriptedPeers, scriptedSource } from './helpers.js'
import type { Harness, Model } from './helpers.js'
import type { ChunkRequest, ChunkSource, ChunkStore, SourceKind } from '@swarm/interface'
import type { PullSessionInit } from '../src/index.js'

/** Peers whose data plane relays chunks as they arrive: they hear what the session begins receiving. */
class RelayingPeers extends ScriptedPeers {
  readonly began: number[] = []
  readonly withdrawn: number[] = []
  arriving (indices: number[]): void { this.began.push(...indices) }
  notArriving (indices: number[]): void { this.withdrawn.push(...indices) }
}

describe('PullSession', () => {
  let h: Harness

  beforeEach(async () => { h = await harness() })
  afterEach(async () => { await h.close() })

  async function session (model: Model, init: Partial<PullSessionInit> = {}): Promise<PullSession> {
    await h.store.addManifest(model.cid, model.manifest)
    return new PullSession({ manifestCid: model.cid, manifest: model.manifest, store: h.store, fetcher: h.fetcher, sources: { peer: () => undefined }, settleMs: 20, ...init })
  }

  it('completes from the origin alone, counting every byte once', async () => {
    const model = makeModel(12)
    const origin = scriptedSource('origin', 'origin', model)
    const bytes: Record<string, number> = {}
    const progress: number[] = []
    const s = await session(model, { sources: { origin, peer: () => undefined }, onBytes: (kind, n) => { bytes[kind] = (bytes[kind] ?? 0) + n } })
    const result = await s.run({ onProgress: p => progress.push(p.doneBytes) })
    expect(result.progress).toMatchObject({ totalBytes: model.bytes, doneBytes: model.bytes, totalChunks: 12, doneChunks: 12, bytesBySource: { origin: model.bytes, peer: 0, local: 0 } })
    expect(bytes).toEqual({ origin: model.bytes })
    expect(result.originRequests).toBe(12)
    expect(origin.calls).toHaveLength(12)
    expect(progress.at(-1)).toBe(model.bytes)
    expect(progress).toEqual([...progress].sort((a, b) => a - b))
    expect(await holdsModel(h.store, model)).toBe(true)
    await expect(s.run()).rejects.toBeInstanceOf(SessionStartedError)
  })

  it('completes from peers without the origin, announcing each chunk once', async () => {
    const model = makeModel(10)
    const peers = new ScriptedPeers()
    const a = scriptedSource('peer:a', 'peer', model)
    const b = scriptedSource('peer:b', 'peer', model)
    peers.add('12D3KooWpeerA', model)
    const s = await session(model, { peers, sources: { peer: id => id === '12D3KooWpeerA' ? a : id === '12D3KooWpeerB' ? b : undefined } })
    const running = s.run()
    // one joins during the pull, and is used too
    setTimeout(() => { peers.add('12D3KooWpeerB', model) }, 5)
    const result = await running
    expect(result.progress.bytesBySource).toEqual({ peer: model.bytes, origin: 0, local: 0 })
    expect(result.originRequests).toBe(0)
    expect([...peers.haves].sort((x, y) => x - y)).toEqual([...Array(10).keys()])
    expect(peers.joins).toEqual([{ pulling: true, count: 10 }, { pulling: false, count: 10 }])
    expect(peers.listeners).toBe(0)
    expect(await holdsModel(h.store, model)).toBe(true)
  })

  it('bans a peer whose bytes fail verification and fetches its chunks elsewhere', async () => {
    const model = makeModel(8)
    const peers = new ScriptedPeers()
    const liar = scriptedSource('peer:liar', 'peer', model, { lie: true })
    const honest = scriptedSource('peer:honest', 'peer', model, { delayMs: 20 })
    peers.add('12D3KooWliar', model)
    peers.add('12D3KooWhonest', model)
    const rejected: string[] = []
    const s = await session(model, { peers, sources: { peer: id => id === '12D3KooWliar' ? liar : honest }, onRejected: (peer, cid) => rejected.push(`${peer} ${cid}`) })
    const result = await s.run()
    expect(liar.calls.length).toBeGreaterThan(0)
    // banned at its first bad chunk: whatever it was asked at once is all it was asked
    expect(peers.rejectedPeers.every(p => p === '12D3KooWliar')).toBe(true)
    expect(peers.rejectedPeers.length).toBeGreaterThan(0)
    expect(rejected.length).toBe(peers.rejectedPeers.length)
    const askedAfterBan = s.stats?.bannedPeers
    expect(askedAfterBan).toBe(1)
    expect(result.progress.bytesBySource.peer).toBe(model.bytes)
    expect(await holdsModel(h.store, model)).toBe(true)
  })

  it('waits for a peer that turned its chunks away as busy instead of taking them from the origin, and not for one whose connection failed', async () => {
    const model = makeModel(6)
    const pull = async (behaviour: Parameters<typeof scriptedSource>[3]): Promise<{ originRequests: number, peerCalls: number, fromPeers: number }> => {
      const peers = new ScriptedPeers()
      peers.add('12D3KooWholder', model)
      const holder = scriptedSource('peer:holder', 'peer', model, behaviour)
      const origin = scriptedSource('origin', 'origin', model, { delayMs: 5 })
      // alone among pullers: it owns every chunk, so only a usable holder keeps it off the origin
      const s = await session(model, { peers, sources: { origin, peer: () => holder }, scheduler: { pullers: [], retryAfterMs: 20 } })
      const result = await s.run()
      expect(await holdsModel(h.store, model)).toBe(true)
      return { originRequests: result.originRequests, peerCalls: holder.calls.length, fromPeers: result.progress.bytesBySource.peer }
    }
    const busy = await pull({ busyFirst: () => true })
    expect(busy).toEqual({ originRequests: 0, peerCalls: 12, fromPeers: model.bytes })
    await h.close()
    h = await harness()
    const reset = await pull({ failFirst: () => true, delayMs: 20 })
    expect(reset.originRequests).toBeGreaterThan(0)
  })

  it('ends with a clear error when the origin fails again and again', async () => {
    const model = makeModel(6)
    const origin = scriptedSource('origin', 'origin', model, { fail: true })
    const s = await session(model, { sources: { origin, peer: () => undefined }, maxOriginFailures: 3 })
    const err = await s.run().catch((e: Error) => e)
    expect(err).toBeInstanceOf(OriginUnavailableError)
    expect((err as Error).message).toMatch(/origin failed 3 times in a row: origin: connection reset/)
    expect(h.store.missingChunks(model.cid)).toHaveLength(6)
  })

  it('keeps pulling from peers that hold every missing chunk while the origin is down, and still fails fast when they do not', async () => {
    const model = makeModel(12)
    const peers = new ScriptedPeers()
    // the only peer holds everything but turns the first request for each chunk away, as a busy data server does
    const busy = scriptedSource('peer:busy', 'peer', model, { failFirst: () => true, delayMs: 4 })
    const origin = scriptedSource('origin', 'origin', model, { fail: true })
    peers.add('12D3KooWbusy', model)
    const s = await session(model, { peers, sources: { origin, peer: () => busy }, maxOriginFailures: 3, scheduler: { retryAfterMs: 10 } })
    const result = await s.run()
    // a turned-away chunk went to the origin, which failed as often as it may; the peer then brought everything
    expect(origin.failed).toBeGreaterThanOrEqual(3)
    expect(result.progress.bytesBySource).toEqual({ peer: model.bytes, origin: 0, local: 0 })
    expect(await holdsModel(h.store, model)).toBe(true)

    // a chunk no peer holds: the origin's error ends the pull as before
    const other = makeModel(6)
    const partialPeers = new ScriptedPeers()
    partialPeers.add('12D3KooWpartial', other, [true, true, true, false, true, true])
    const partial = scriptedSource('peer:partial', 'peer', other)
    const down = scriptedSource('origin', 'origin', other, { fail: true })
    const s2 = await session(other, { peers: partialPeers, sources: { origin: down, peer: () => partial }, maxOriginFailures: 3, scheduler: { retryAfterMs: 10 } })
    const err = await s2.run().catch((e: Error) => e)
    expect(err).toBeInstanceOf(OriginUnavailableError)
    expect(h.store.missingChunks(other.cid).map(c => c.cid)).toContain(other.manifest.files[0]!.chunks[3]!.cid)
  })

  it('ends when nothing arrives for the stall timeout', async () => {
    const model = makeModel(4)
    const peers = new ScriptedPeers()
    // the only peer holds chunk 0, and there is no origin
    peers.add('12D3KooWpartial', model, [true, false, false, false])
    const started = performance.now()
    const s = await session(model, { peers, sources: { peer: () => scriptedSource('peer:partial', 'peer', model) }, stallTimeoutMs: 300 })
    const err = await s.run().catch((e: Error) => e)
    expect(err).toBeInstanceOf(ChunkUnavailableError)
    expect((err as Error).message).toMatch(/no progress for 0 s: no peer holds the missing chunks and the origin is not used/)
    expect(performance.now() - started).toBeGreaterThanOrEqual(290)
    expect(h.store.missingChunks(model.cid)).toHaveLength(3)
    expect(peers.listeners).toBe(0)
  })

  it('acts at once when a shared set of pullers changes: origin requests for chunks it no longer owns are given up', async () => {
    const model = makeModel(8)
    const chunks = uniqueChunks(model.manifest)
    const set = pullerSet(chunks, ['self'])
    const aborted: string[] = []
    const slow = scriptedSource('origin', 'origin', model, { delayMs: 60_000 })
    const origin = { ...slow, async fetch (request: Parameters<typeof slow.fetch>[0], options: Parameters<typeof slow.fetch>[1] = {}) {
      options.signal?.addEventListener('abort', () => { aborted.push(request.cid) }, { once: true })
      return await slow.fetch(request, options)
    } }
    const stop = new AbortController()
    // a long poll: only pullersChanged() can make the session look again before its requests time out
    const s = await session(model, { sources: { origin, peer: () => undefined }, scheduler: { pullerSet: set, fleetInflightOrigin: 64 }, maxInflightOrigin: 8, pollMs: 60_000 })
    let failure: unknown
    const running = s.run({ signal: stop.signal }).catch(err => { failure = err })
    await vi.waitFor(() => { expect(slow.calls.length, String(failure)).toBe(8) }, { timeout: 5000, interval: 10 })
    for (let i = 0; i < 7; i++) set.add(`12D3KooWother${i}`)
    const lost = chunks.filter(c => set.owner(chunks.indexOf(c)) !== 'self').map(c => c.cid)
    expect(lost.length).toBeGreaterThan(0)
    expect(aborted).toEqual([])
    s.pullersChanged()
    await vi.waitFor(() => { expect(aborted).toHaveLength(lost.length) }, { timeout: 5000, interval: 10 })
    expect(aborted.sort()).toEqual(lost.sort())
    stop.abort()
    await running
  })

  /** An origin that answers nothing for a minute, and what was asked of it and given up. */
  function stalledOrigin (model: Model): { slow: ReturnType<typeof scriptedSource>, aborted: string[], origin: ChunkSource } {
    const slow = scriptedSource('origin', 'origin', model, { delayMs: 60_000 })
    const aborted: string[] = []
    const origin = { ...slow, async fetch (request: Parameters<typeof slow.fetch>[0], opts: Parameters<typeof slow.fetch>[1] = {}) {
      opts.signal?.addEventListener('abort', () => { aborted.push(request.cid) }, { once: true })
      return await slow.fetch(request, opts)
    } }
    return { slow, aborted, origin }
  }

  /** A pull where two pullers fetch from the origin and non-owners never fall back: what it asks the origin shows whom it takes for a fetcher. */
  async function twoFetcherPull (model: Model, peers: ScriptedPeers, origin: ChunkSource): Promise<{ stop: AbortController, running: Promise<unknown> }> {
    const stop = new AbortController()
    const s = await session(model, {
      peers,
      sources: { origin, peer: () => undefined },
      // every chunk it owns at once (no landing limit), so what it owns shows in what it asks for
      scheduler: { originFetchers: 2, fleetInflightOrigin: 64, originWindow: Infinity, maxInflightTotal: 64, originLandingMs: 0 },
      maxInflightOrigin: 16,
      originFallbackMs: 600_000,
      pollMs: 60_000
    })
    return { stop, running: s.run({ signal: stop.signal }).catch(() => {}) }
  }

  it('takes the origin fetchers peers name as pullers, names its own, and lets go of those no longer named', async () => {
    const model = makeModel(16)
    const chunks = uniqueChunks(model.manifest)
    const done = '12D3KooWdone'
    // two fetchers: a named puller this node has never met ranks among them, beside us, and the
    // peer that names it does not (the chunks are random, so are the ranks: pick the names to fit)
    const options = { fetchers: 2 }
    const candidates = Array.from({ length: 40 }, (_, k) => `12D3KooWpuller${k}`)
    const [self, named] = pullerSet(chunks, candidates, options).fetchers() as [string, string]
    const ownedIn = (ids: string[]): string[] => {
      const set = pullerSet(chunks, ids, options)
      return chunks.filter((_c, i) => set.owner(i) === self).map(c => c.cid)
    }
    const relay = candidates.find(r => r !== self && r !== named && ownedIn([self, r, named]).some(cid => !ownedIn([self, r]).includes(cid)))!
    expect(relay).toBeDefined()
    const { slow, aborted, origin } = stalledOrigin(model)
    const peers = new ScriptedPeers(self)
    const empty = new Uint8Array(2)
    // a peer that is done, and one still pulling that names it and a puller we are not connected to
    peers.joinAs({ peerId: done, pulling: false, bitfield: empty })
    peers.joinAs({ peerId: relay, pulling: true, bitfield: empty, fetchers: [{ peerId: named, hops: 1 }, { peerId: done, hops: 1 }] })
    const { stop, running } = await twoFetcherPull(model, peers, origin)
    // the named puller counts and the done peer does not: we ask the origin for what we own among them
    const withNamed = ownedIn([self, relay, named])
    expect(withNamed).not.toEqual(ownedIn([self, relay]))
    await vi.waitFor(() => { expect([...slow.calls].sort()).toEqual([...withNamed].sort()) }, { timeout: 5000, interval: 10 })
    // and we name the fetchers as we know them, best-ranked first, each with how far away we heard of it
    const hopsOf = (id: string): number => id === self ? 0 : id === relay ? 1 : 2
    const fetchers = pullerSet(chunks, [self, relay, named], options).fetchers().map(id => ({ peerId: id, hops: hopsOf(id) }))
    await vi.waitFor(() => { expect(peers.named.at(-1)).toEqual(fetchers) }, { timeout: 5000, interval: 10 })

    // the relay names nobody now: the named puller is no puller any more, and what we asked for as
    // the owner of chunks that go back to the relay is given up
    peers.joinAs({ peerId: relay, pulling: true, bitfield: empty, fetchers: [] })
    const withoutNamed = ownedIn([self, relay])
    const lost = withNamed.filter(cid => !withoutNamed.includes(cid))
    expect(lost.length).toBeGreaterThan(0)
    await vi.waitFor(() => { expect([...aborted].sort()).toEqual([...lost].sort()) }, { timeout: 5000, interval: 10 })
    await vi.waitFor(() => { expect(peers.named.at(-1)).toEqual(pullerSet(chunks, [self, relay], options).fetchers().map(id => ({ peerId: id, hops: hopsOf(id) }))) }, { timeout: 5000, interval: 10 })
    stop.abort()
    await running
  })

  it('does not take a fetcher named from too far, so a gone one stops echoing between nodes that name it', async () => {
    const model = makeModel(16)
    const chunks = uniqueChunks(model.manifest)
    const self = '12D3KooWself'
    const options = { fetchers: 2 }
    // a puller that, as a fetcher, would take chunks from us
    const far = Array.from({ length: 200 }, (_, k) => `12D3KooWfar${k}`).find(id => pullerSet(chunks, [self, id], options).ownedBy(self) < 16)!
    const { slow, aborted, origin } = stalledOrigin(model)
    const peers = new ScriptedPeers()
    const empty = new Uint8Array(2)
    // two neighbours that are not pulling name it: one from too far, one from near enough
    peers.joinAs({ peerId: '12D3KooWa', pulling: false, bitfield: empty, fetchers: [{ peerId: far, hops: MAX_FETCHER_HOPS }] })
    peers.joinAs({ peerId: '12D3KooWb', pulling: false, bitfield: empty, fetchers: [{ peerId: far, hops: MAX_FETCHER_HOPS - 2 }] })
    const { stop, running } = await twoFetcherPull(model, peers, origin)
    const mine = chunks.filter((_c, i) => pullerSet(chunks, [self, far], options).owner(i) === self).map(c => c.cid)
    await vi.waitFor(() => { expect([...slow.calls].sort()).toEqual([...mine].sort()) }, { timeout: 5000, interval: 10 })
    // we name it one hop further than the nearer name
    await vi.waitFor(() => { expect(peers.named.at(-1)).toContainEqual({ peerId: far, hops: MAX_FETCHER_HOPS - 1 }) }, { timeout: 5000, interval: 10 })
    // the name comes back one hop further (it echoed through a node that had it from us): at the
    // limit it is still taken, but no longer passed on
    peers.joinAs({ peerId: '12D3KooWb', pulling: false, bitfield: empty, fetchers: [{ peerId: far, hops: MAX_FETCHER_HOPS - 1 }] })
    await vi.waitFor(() => { expect(peers.named.at(-1)).toEqual([{ peerId: self, hops: 0 }]) }, { timeout: 5000, interval: 10 })
    expect(slow.calls).toHaveLength(mine.length)
    // one hop further still, and it is no puller: what it owned comes back to us
    peers.joinAs({ peerId: '12D3KooWb', pulling: false, bitfield: empty, fetchers: [{ peerId: far, hops: MAX_FETCHER_HOPS }] })
    await vi.waitFor(() => { expect(slow.calls).toHaveLength(16) }, { timeout: 5000, interval: 10 })
    expect(peers.named.at(-1)).toEqual([{ peerId: self, hops: 0 }])
    expect(aborted).toEqual([])
    stop.abort()
    await running
  })

  it('stops at once when its signal is aborted, leaving nothing running', async () => {
    const model = makeModel(6)
    const peers = new ScriptedPeers()
    const origin = scriptedSource('origin', 'origin', model, { delayMs: 10_000 })
    const s = await session(model, { peers, sources: { origin, peer: () => undefined }, settleMs: 0 })
    const controller = new AbortController()
    const running = s.run({ signal: controller.signal })
    await new Promise(resolve => setTimeout(resolve, 50))
    expect(origin.calls.length).toBeGreaterThan(0)
    const started = performance.now()
    controller.abort(new Error('stop now'))
    await expect(running).rejects.toThrow('stop now')
    // not after the origin's 10 s answer
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(s.finished).toBe(true)
    expect(peers.listeners).toBe(0)
    expect(peers.joins.at(-1)).toEqual({ pulling: false, count: 6 })
    expect(h.store.missingChunks(model.cid)).toHaveLength(6)
  })

  it('ends at once on a full disk, keeping what was stored', async () => {
    const model = makeModel(10)
    let stored = 0
    // the store as the fetcher writes to it: full after three chunks
    const full = Object.create(h.store) as ChunkStore
    full.putChunk = async (cid, bytes, options) => {
      if (stored >= 3) throw new DiskFullError(h.dir, bytes.byteLength, 0, 'no space left on the device')
      stored++
      return await h.store.putChunk(cid, bytes, options)
    }
    full.hasChunk = cid => h.store.hasChunk(cid)
    const origin = scriptedSource('origin', 'origin', model)
    const s = await session(model, { fetcher: fetcher({ store: full, sources: [] }), sources: { origin, peer: () => undefined }, maxInflightOrigin: 1, scheduler: { fleetInflightOrigin: 1 } })
    const err = await s.run().catch((e: Error) => e)
    expect(err).toBeInstanceOf(DiskFullError)
    // a full disk is nobody's failure: nothing was retried
    expect(origin.calls).toHaveLength(4)
    expect(h.store.missingChunks(model.cid)).toHaveLength(7)
  })

  it('retries a fetch that fails mid-chunk and records nothing twice', async () => {
    const model = makeModel(8)
    const [first, second] = uniqueChunks(model.manifest).map(c => c.cid)
    const origin = scriptedSource('origin', 'origin', model, { delayMs: 10, failFirst: cid => cid === first || cid === second })
    const counted: Array<[SourceKind, number]> = []
    const s = await session(model, { sources: { origin, peer: () => undefined }, onBytes: (kind, n) => counted.push([kind, n]) })
    const result = await s.run()
    expect(origin.failed).toBe(2)
    expect(origin.calls).toHaveLength(10)
    expect(result.progress).toMatchObject({ doneBytes: model.bytes, doneChunks: 8, bytesBySource: { origin: model.bytes, peer: 0, local: 0 } })
    expect(counted).toEqual(new Array(8).fill(['origin', CHUNK]))
    expect(s.stats?.failures).toBe(2)
    expect(s.stats?.chunksDone).toBe(8)
    expect(await holdsModel(h.store, model)).toBe(true)
  })

  it('tells peers what it begins receiving and withdraws what a failed transfer did not bring, where the peers relay', async () => {
    const model = makeModel(8)
    const cids = uniqueChunks(model.manifest).map(c => c.cid)
    const origin = scriptedSource('origin', 'origin', model, { delayMs: 10, failFirst: cid => cid === cids[0] })
    const peers = new RelayingPeers()
    // a fetcher that sees bytes begin as soon as it asks
    const fetcher = { fetch: async (request: ChunkRequest, options: Parameters<typeof h.fetcher.fetch>[1] & { onReceiving?: () => void }) => { options.onReceiving?.(); return await h.fetcher.fetch(request, options) } }
    const s = await session(model, { peers, fetcher, sources: { origin, peer: () => undefined } })
    await s.run()
    // every chunk announced when its transfer began, chunk 0 again for its second attempt
    expect([...peers.began].sort((x, y) => x - y)).toEqual([0, 0, 1, 2, 3, 4, 5, 6, 7])
    // and withdrawn once, when its first attempt failed; the others arrived
    expect(peers.withdrawn).toEqual([0])
    expect([...peers.haves].sort((x, y) => x - y)).toEqual([...Array(8).keys()])
  })

  it('asks a peer that is receiving chunks nobody holds, as relays', async () => {
    const model = makeModel(6)
    const peers = new ScriptedPeers()
    const relay = scriptedSource('peer:r', 'peer', model)
    const s = await session(model, { peers, sources: { peer: id => id === '12D3KooWrelay' ? relay : undefined } })
    const running = s.run()
    await vi.waitFor(() => { expect(peers.listeners).toBe(1) })
    peers.joinAs({ peerId: '12D3KooWrelay', pulling: true, bitfield: new Uint8Array(1) })
    peers.emit(events => { events.arriving('12D3KooWrelay', [...Array(6).keys()]) })
    const result = await running
    expect(result.progress.bytesBySource).toEqual({ peer: model.bytes, origin: 0, local: 0 })
    expect(relay.calls).toHaveLength(6)
    expect(s.stats?.relayRequests).toBe(6)
    expect(await holdsModel(h.store, model)).toBe(true)
  })

  it('shares a chunk as it arrives (asks with its block digests) only while a connected peer lacks it', async () => {
    const BLOCK = 16 * 1024
    /** `model` as a version 3 manifest, whose chunks carry block digests */
    const withBlocks = (base: Model): Model => {
      const manifest = { ...base.manifest, version: 3 as const, blockSize: BLOCK, files: base.manifest.files.map(f => ({ ...f, chunks: f.chunks.map(c => ({ ...c, blocks: blockDigests(base.chunks.get(c.cid)!, BLOCK) })) })) }
      return { ...base, manifest, cid: encodeManifest(manifest).cid }
    }
    const asked: Array<{ cid: string, blocks: boolean }> = []
    const recording = { fetch: async (request: ChunkRequest, options: Parameters<typeof h.fetcher.fetch>[1]) => { asked.push({ cid: request.cid, blocks: request.blocks !== undefined }); return await h.fetcher.fetch(request, options) } }

    // from a seeder alone: nobody connected lacks anything, so nothing is shared while it arrives
    const seeded = withBlocks(makeModel(4))
    const seeders = new ScriptedPeers()
    seeders.add('12D3KooWseed', seeded)
    const fromSeed = scriptedSource('peer:seed', 'peer', seeded)
    await (await session(seeded, { peers: seeders, fetcher: recording, sources: { peer: id => id === '12D3KooWseed' ? fromSeed : undefined } })).run()
    expect(fromSeed.calls).toHaveLength(4)
    const byCid = (a: { cid: string }, b: { cid: string }): number => a.cid.localeCompare(b.cid)
    expect(asked.sort(byCid)).toEqual(uniqueChunks(seeded.manifest).map(c => ({ cid: c.cid, blocks: false })).sort(byCid))
    expect(await holdsModel(h.store, seeded)).toBe(true)

    // the same with a connected puller that holds nothing: every chunk may be asked of us as it arrives
    asked.length = 0
    const shared = withBlocks(makeModel(4))
    const both = new ScriptedPeers()
    both.add('12D3KooWseed', shared)
    both.joinAs({ peerId: '12D3KooWpuller', pulling: true, bitfield: new Uint8Array(1) })
    const fromSeedAgain = scriptedSource('peer:seed', 'peer', shared)
    await (await session(shared, { peers: both, fetcher: recording, sources: { peer: id => id === '12D3KooWseed' ? fromSeedAgain : undefined } })).run()
    expect(asked.sort(byCid)).toEqual(uniqueChunks(shared.manifest).map(c => ({ cid: c.cid, blocks: true })).sort(byCid))
    expect(await holdsModel(h.store, shared)).toBe(true)
  })

  it('ignores peers and haves that do not fit the manifest, and survives a handler that throws', async () => {
    const model = makeModel(4)
    const peers = new ScriptedPeers()
    const origin = scriptedSource('origin', 'origin', model, { delayMs: 5 })
    const errors: string[] = []
    const s = await session(model, { peers, sources: { origin, peer: () => { throw new Error('no such peer') } }, onHandlerError: handler => errors.push(handler) })
    const running = s.run()
    // once it listens (after the store's local copies)
    while (peers.listeners === 0) await new Promise(resolve => setTimeout(resolve, 1))
    peers.emit(events => { events.joined({ peerId: '12D3KooWodd', pulling: true, bitfield: new Uint8Array(7) }) })
    peers.emit(events => { events.have('12D3KooWodd', [0, 99]) })
    peers.emit(events => { events.have('12D3KooWodd', null as unknown as number[]) })
    // a peer whose source cannot be made: its requests fail at once, and the origin serves
    peers.emit(events => { events.joined({ peerId: '12D3KooWodd2', pulling: false, bitfield: Uint8Array.from([0xf0]) }) })
    // an event the scheduler refuses throws inside the session's handler: counted, not thrown
    peers.emit(events => { events.joined({ peerId: '', pulling: false, bitfield: Uint8Array.from([0xf0]) }) })
    const started = performance.now()
    const result = await running
    // not after the scheduler's 30 s request timeout
    expect(performance.now() - started).toBeLessThan(20_000)
    expect(result.progress.doneBytes).toBe(model.bytes)
    expect(errors).toEqual(['peer:joined'])
    expect(await holdsModel(h.store, model)).toBe(true)
  })

  it('copies chunks another held model has instead of fetching them', async () => {
    const model = makeModel(4)
    const origin = scriptedSource('origin', 'origin', model)
    await (await session(model, { sources: { origin, peer: () => undefined } })).run()
    // the same chunks under another manifest
    const twin = { ...model, manifest: { ...model.manifest, files: [{ ...model.manifest.files[0]!, path: 'copy.bin' }] } }
    const { encodeManifest } = await import('@swarm/manifest')
    twin.cid = encodeManifest(twin.manifest).cid
    const again = scriptedSource('origin', 'origin', model)
    const result = await (await session(twin, { sources: { origin: again, peer: () => undefined } })).run()
    expect(again.calls).toHaveLength(0)
    expect(result.progress.doneBytes).toBe(model.bytes)
  })
})
