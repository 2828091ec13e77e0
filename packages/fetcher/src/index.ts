/**
 * @packageDocumentation
 *
 * The fetcher gets chunks from whichever sources can give them (peers, the origin), the way
 * Helia's block brokers do: sources are tried in order of preference and hedged — when the
 * preferred one has not answered within `hedgeAfterMs`, the next one starts too — and the first
 * copy that verifies wins, while the losers are aborted. Verification and write-through happen in
 * one place, `store.putChunk`, which hashes the bytes against the CID before anything is written
 * or recorded; a source whose bytes fail is reported through `onBadSource` and not used again for
 * that chunk.
 *
 * Concurrent requests for one CID share one fetch (a FUSE read and a background pull of the
 * same chunk cost one download). The shared fetch is aborted only when every waiter has gone.
 *
 * A full disk (`DiskFullError` from `putChunk`) is no source's fault: the fetch ends with it at
 * once, without trying other sources, and a pull ends with it.
 *
 * Once `putChunk` has settled (the bytes are stored or refused) or an attempt is abandoned, the
 * bytes go back to their source through `release`, so a source that pools buffers reads the next
 * chunk into the same memory. Between their verification and that point they may be lent to a
 * reader waiting for the chunk (`landing`): the store says when they have matched the CID
 * (`putChunk`'s `onVerified`), so nothing is hashed twice and nothing unverified is lent.
 *
 * Given a pool of byte workers (`workers`, see @swarm/workers) and a store that plans writes, an
 * attempt on a source that can be described to a worker (`ChunkSource.remote`) runs there as a
 * whole: the worker fetches, verifies, writes and syncs, and this thread only records the chunk
 * (`store.recordWritten`) once the worker says it is verified and durable. Hedging, shared
 * fetches, `onBadSource` and DiskFullError work as on the in-thread path; a worker that died
 * mid-chunk has recorded nothing, and the attempt runs once more on its replacement.
 *
 * Given a registry of arriving chunks (`arrivals`, see `arrivals.ts`), an attempt whose chunk has
 * block digests registers the chunk as its first bytes land, so the data servers can pass checked
 * blocks on while the rest arrives, and tells the caller (`onReceiving`): an attempt on this
 * thread with its own buffer, one in a byte worker with the memory the worker shares (see
 * @swarm/workers' shared-arrival.ts).
 *
 * @example
 *
 * ```ts
 * import { fetcher } from '@swarm/fetcher'
 *
 * const f = fetcher({ store, sources: () => [...peerSources, originSource(origin)] })
 * const result = await f.fetch({ cid, size }, { signal })
 * // a whole model: `@swarm/pull`'s PullSession, which calls fetch for each chunk
 * ```
 */

import { AbortError, ChunkUnavailableError, ChunkVerificationError, DiskFullError, silentLogger } from '@swarm/interface'
import { settleSharedArrival } from '@swarm/workers'
import { DEFAULT_HEDGE_AFTER_MS, DEFAULT_SOURCE_TIMEOUT_MS, WORKER_TRIES } from './constants.js'
import { SourceTimeoutError } from './errors.js'
import type { ArrivingChunks, Arrival } from './arrivals.js'
import type { AbortOptions, ChunkFetchOptions, ChunkRequest, ChunkSource, ChunkStore, CidString, Logger, OnChunkData, Origin, PutResult, RemoteSource, SourceKind } from '@swarm/interface'
import type { ChunkWorkers, SharedArrival } from '@swarm/workers'

export * from './arrivals.js'
export * from './constants.js'
export * from './errors.js'

/** A store that lets a chunk be written elsewhere and recorded here (`@swarm/store` does). */
export interface WritePlanner {
  planWrite(cid: CidString): { readonly cid: CidString, readonly size: number, readonly dir?: string, readonly slots: ReadonlyArray<{ readonly path: string, readonly offset: number }> }
  recordWritten(plan: ReturnType<WritePlanner['planWrite']>, options?: AbortOptions & { source?: string }): Promise<PutResult>
}

export interface FetcherInit {
  store: ChunkStore & Partial<WritePlanner>
  /**
   * byte workers: attempts on sources with a `remote` descriptor run whole in a worker thread
   * (needs a store with planWrite/recordWritten); absent: every byte passes through this thread
   */
  workers?: ChunkWorkers
  /** sources in order of preference; a function is asked again for every chunk (peers come and go) */
  sources: ChunkSource[] | ((request: ChunkRequest) => ChunkSource[])
  hedgeAfterMs?: number
  sourceTimeoutMs?: number
  /** a source sent bytes that failed verification (e.g. disconnect that peer) */
  onBadSource?(source: ChunkSource, cid: CidString): void
  /**
   * A chunk's bytes have just matched its CID and the store is about to write them (attempts on
   * this thread only: a worker's bytes never reach it). A reader waiting for the chunk may take
   * them from memory (`ModelFs.landing`); the function returned is called once the store has
   * settled them, stored or refused, before the bytes go back to their source.
   */
  landing?(cid: CidString, bytes: Uint8Array): (() => void) | undefined
  /**
   * chunks with block digests are registered here as they arrive, for the data servers to pass
   * on: attempts on this thread, and those in byte workers, which share the arriving bytes
   */
  arrivals?: ArrivingChunks
  logger?: Logger
}

export interface FetchResult {
  /** the source whose copy was stored, or `local` when it was already present */
  source: string
  kind: SourceKind
  bytes: number
}

export interface FetchOptions extends AbortOptions {
  /** overrides the fetcher's sources for this request */
  sources?: ChunkSource[]
  /** the chunk was registered as arriving here (see `arrivals`): peers may be told */
  onReceiving?: () => void
}

export interface Fetcher {
  /** gets one chunk into the store (a no-op when it is already there) */
  fetch(request: ChunkRequest, options?: FetchOptions): Promise<FetchResult>
}

interface InFlight {
  promise: Promise<FetchResult>
  controller: AbortController
  waiters: number
  /** whether an attempt registered the chunk as arriving, and the waiters still to tell when one does */
  receiving: { started: boolean, untold: Array<() => void> }
}

class ChunkFetcher implements Fetcher {
  private readonly store: ChunkStore
  private readonly planner?: WritePlanner
  private readonly workers?: ChunkWorkers
  private readonly sources: (request: ChunkRequest) => ChunkSource[]
  private readonly hedgeAfterMs: number
  private readonly sourceTimeoutMs: number
  private readonly onBadSource?: (source: ChunkSource, cid: CidString) => void
  private readonly landing?: (cid: CidString, bytes: Uint8Array) => (() => void) | undefined
  private readonly arrivals?: ArrivingChunks
  private readonly log: Logger
  private readonly inFlight = new Map<CidString, InFlight>()

  constructor (init: FetcherInit) {
    this.store = init.store
    const { planWrite, recordWritten } = init.store
    if (init.workers !== undefined && init.workers.size > 0 && planWrite !== undefined && recordWritten !== undefined) {
      this.workers = init.workers
      this.planner = { planWrite: planWrite.bind(init.store), recordWritten: recordWritten.bind(init.store) }
    }
    const sources = init.sources
    this.sources = typeof sources === 'function' ? sources : () => sources
    this.hedgeAfterMs = init.hedgeAfterMs ?? DEFAULT_HEDGE_AFTER_MS
    this.sourceTimeoutMs = init.sourceTimeoutMs ?? DEFAULT_SOURCE_TIMEOUT_MS
    this.onBadSource = init.onBadSource
    this.landing = init.landing
    this.arrivals = init.arrivals
    this.log = (init.logger ?? silentLogger).child({ component: 'fetcher' })
  }

  async fetch (request: ChunkRequest, options: FetchOptions = {}): Promise<FetchResult> {
    options.signal?.throwIfAborted()
    if (this.store.hasChunk(request.cid)) {
      return { source: 'local', kind: 'local', bytes: 0 }
    }
    let flight = this.inFlight.get(request.cid)
    if (flight == null) {
      const controller = new AbortController()
      const sources = options.sources ?? this.sources(request)
      const receiving: InFlight['receiving'] = { started: false, untold: [] }
      const promise = this.race(request, sources, controller.signal, () => {
        receiving.started = true
        for (const tell of receiving.untold.splice(0)) tell()
      }).finally(() => { this.inFlight.delete(request.cid) })
      flight = { promise, controller, waiters: 0, receiving }
      this.inFlight.set(request.cid, flight)
    }
    if (options.onReceiving !== undefined) {
      if (flight.receiving.started) options.onReceiving()
      else flight.receiving.untold.push(options.onReceiving)
    }
    return await this.wait(flight, options.signal)
  }

  /** Waits for a shared fetch; aborting abandons only this waiter, and the fetch itself once no waiter is left. */
  private async wait (flight: InFlight, callerSignal?: AbortSignal): Promise<FetchResult> {
    flight.waiters++
    // Callers share one long-lived signal among many fetches (a pull's chunks, a mount's reads):
    // a listener each on it would pile up with concurrency. A signal of its own follows the
    // caller's without adding a listener to it.
    const signal = callerSignal != null ? AbortSignal.any([callerSignal]) : undefined
    return await new Promise<FetchResult>((resolve, reject) => {
      const onAbort = (): void => {
        if (--flight.waiters === 0) flight.controller.abort()
        reject(new AbortError())
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      flight.promise.then(result => {
        signal?.removeEventListener('abort', onAbort)
        resolve(result)
      }, (err: unknown) => {
        signal?.removeEventListener('abort', onAbort)
        reject(err)
      })
    })
  }

  /**
   * Tries sources in order, starting the next one when the current has failed or has been
   * silent for `hedgeAfterMs`. Resolves with the first copy the store accepts.
   */
  private async race (request: ChunkRequest, sources: ChunkSource[], signal: AbortSignal, receiving: () => void): Promise<FetchResult> {
    const causes: Array<{ source: string, error: Error }> = []
    const attempts = new Set<AbortController>()
    let next = 0
    let settled = false

    return await new Promise<FetchResult>((resolve, reject) => {
      let hedgeTimer: NodeJS.Timeout | undefined
      const finish = (err: Error | undefined, result?: FetchResult): void => {
        if (settled) return
        settled = true
        clearTimeout(hedgeTimer)
        signal.removeEventListener('abort', onAbort)
        for (const attempt of attempts) attempt.abort()
        if (err != null) reject(err)
        else resolve(result as FetchResult)
      }
      const onAbort = (): void => { finish(new AbortError()) }
      signal.addEventListener('abort', onAbort, { once: true })

      const startNext = (): void => {
        clearTimeout(hedgeTimer)
        if (settled) return
        const source = sources[next++]
        if (source == null) {
          if (attempts.size === 0) finish(new ChunkUnavailableError(request.cid, causes))
          return
        }
        const attempt = new AbortController()
        attempts.add(attempt)
        hedgeTimer = setTimeout(startNext, this.hedgeAfterMs)
        // the attempt's own deadline aborts it with the timeout as reason: one timer, no signal
        // combined per attempt (AbortSignal.any and .timeout cost the main thread per chunk)
        const deadline = setTimeout(() => { attempt.abort(new SourceTimeoutError(source.name, this.sourceTimeoutMs)) }, this.sourceTimeoutMs)
        deadline.unref?.()
        this.attempt(request, source, attempt.signal, receiving)
          .finally(() => { clearTimeout(deadline) })
          .then(result => {
            attempts.delete(attempt)
            finish(undefined, result)
          })
          .catch((error: Error) => {
            attempts.delete(attempt)
            if (settled) return
            // our own disk is full: no other source can help, and this one did nothing wrong
            if (error instanceof DiskFullError) {
              finish(error)
              return
            }
            causes.push({ source: source.name, error })
            if (error instanceof ChunkVerificationError) {
              this.log.warn({ cid: request.cid, source: source.name }, 'bytes failed verification')
              this.onBadSource?.(source, request.cid)
            } else {
              this.log.debug({ cid: request.cid, source: source.name, err: error.message }, 'source failed')
            }
            startNext()
          })
      }
      startNext()
    })
  }

  private async attempt (request: ChunkRequest, source: ChunkSource, signal: AbortSignal, receiving: () => void): Promise<FetchResult> {
    if (this.workers !== undefined && this.planner !== undefined && source.remote !== undefined) {
      return await this.attemptInWorker(request, source, source.remote, this.workers, this.planner, signal, receiving)
    }
    const arrival = this.arrivalFor(request, signal, receiving)
    let bytes: Uint8Array
    try {
      bytes = await source.fetch(request, { signal, ...(arrival !== undefined ? { onData: arrival.onData } : {}) } satisfies ChunkFetchOptions)
    } catch (err) {
      arrival?.end({ reason: `${source.name} failed` })
      throw timedOut(signal) ?? err
    }
    // once the store has settled the bytes, they go back to their source; while the chunk is
    // arriving, after the data server's last reader of them too
    const release = (): void => { source.release?.(bytes) }
    let stored: FetchResult
    try {
      stored = await this.storeBytes(request, source, bytes, signal)
    } catch (err) {
      arrival?.end({ reason: err instanceof ChunkVerificationError ? `${source.name} sent bytes that failed verification` : 'it was not stored' })
      release()
      throw err
    }
    if (arrival !== undefined) arrival.end({ bytes, free: release })
    else release()
    return stored
  }

  /**
   * The chunk's arrival, registered with the first bytes an attempt on it reports, where the
   * fetcher keeps a registry and the chunk has block digests; undefined otherwise.
   */
  private arrivalFor (request: ChunkRequest, signal: AbortSignal, receiving: () => void): { onData: OnChunkData, end: Arrival['end'] } | undefined {
    const arrivals = this.arrivals
    const blocks = request.blocks
    if (arrivals === undefined || blocks === undefined) return undefined
    let arrival: Arrival | undefined
    let declined = false
    let ended: Parameters<Arrival['end']>[0] | undefined
    // an attempt given up (a lost hedge, a timeout) stops its readers at once: its source may reuse the buffer
    const onAbort = (): void => { end({ reason: 'its transfer was given up' }) }
    const end = (outcome: Parameters<Arrival['end']>[0]): void => {
      if (ended !== undefined) return
      ended = outcome
      signal.removeEventListener('abort', onAbort)
      if (arrival !== undefined) arrival.end(outcome)
      // never registered (no bytes reported, or another attempt's): nobody reads the buffer
      else if ('free' in outcome) outcome.free()
    }
    signal.addEventListener('abort', onAbort, { once: true })
    return {
      onData: (buffer, filled) => {
        if (arrival === undefined) {
          if (declined || ended !== undefined) return
          arrival = arrivals.begin(request.cid, request.size, blocks)
          if (arrival === undefined) {
            declined = true
            return
          }
          receiving()
        }
        if (ended === undefined) arrival.land(buffer, filled)
      },
      end
    }
  }

  /** checks the bytes' length and has the store verify and write them (lent to a waiting reader meanwhile, see `landing`) */
  private async storeBytes (request: ChunkRequest, source: ChunkSource, bytes: Uint8Array, signal: AbortSignal): Promise<FetchResult> {
    let landed: (() => void) | undefined
    const landing = this.landing
    try {
      signal.throwIfAborted()
      if (bytes.byteLength !== request.size) {
        throw new ChunkVerificationError(request.cid, source.name, `chunk ${request.cid} from ${source.name} has ${bytes.byteLength} bytes, expected ${request.size}`)
      }
      try {
        await this.store.putChunk(request.cid, bytes, { signal, ...(landing !== undefined ? { onVerified: () => { landed = landing(request.cid, bytes) } } : {}) })
      } catch (err) {
        if (err instanceof ChunkVerificationError) throw new ChunkVerificationError(request.cid, source.name)
        throw err
      }
    } finally {
      // putChunk has settled: the reader they were lent to is done with them
      landed?.()
    }
    return { source: source.name, kind: source.kind, bytes: bytes.byteLength }
  }

  /**
   * the whole attempt in a worker; this thread records the chunk once the worker has made it
   * durable. Where this fetcher keeps a registry of arriving chunks and the chunk has block
   * digests, the worker shares the chunk as it lands (see @swarm/workers' shared-arrival.ts) and
   * it is registered here until recorded, as an attempt on this thread registers its own.
   */
  private async attemptInWorker (request: ChunkRequest, source: ChunkSource, remote: RemoteSource, workers: ChunkWorkers, planner: WritePlanner, signal: AbortSignal, receiving: () => void): Promise<FetchResult> {
    const arrivals = this.arrivals
    const blocks = arrivals !== undefined ? request.blocks : undefined
    for (let tries = 1; ; tries++) {
      // the held manifests say how large the chunk is (the store refuses two sizes for one CID);
      // the worker checks the bytes against the CID, so a source is blamed only for its bytes
      const plan = planner.planWrite(request.cid)
      if (plan.slots.length === 0) return { source: 'local', kind: 'local', bytes: 0 }
      let adopted: { end(failed?: boolean): void } | undefined
      const onArriving = (shared: SharedArrival): void => {
        if (adopted !== undefined || signal.aborted || arrivals === undefined) {
          // handed out by nobody here: the worker need not wait for this thread to record it
          settleSharedArrival(shared)
          return
        }
        adopted = arrivals.adopt(request.cid, shared)
        if (adopted !== undefined) receiving()
      }
      try {
        await workers.fetchChunk({ cid: request.cid, size: plan.size, source: remote, sourceName: source.name, slots: plan.slots, dataDir: plan.dir, ...(blocks !== undefined ? { blocks } : {}) },
          { signal, ...(blocks !== undefined ? { onArriving } : {}) })
      } catch (err) {
        // a worker that died cannot fail its readers itself
        adopted?.end(true)
        const timeout = timedOut(signal)
        if (timeout !== undefined) throw timeout
        // written meanwhile by another writer (a local copy, a put): the file may even be sealed
        if (!(err instanceof DiskFullError) && !(err instanceof ChunkVerificationError) && this.store.hasChunk(request.cid)) {
          return { source: 'local', kind: 'local', bytes: 0 }
        }
        // nothing was recorded; the pool has started a replacement
        if ((err as { retryable?: unknown }).retryable === true && tries < WORKER_TRIES) {
          this.log.warn({ cid: request.cid, source: source.name, err: (err as Error).message }, 'byte worker died mid-chunk; fetching the chunk again')
          continue
        }
        throw err
      }
      // verified and durable: recorded even when the caller gave up meanwhile (a hedge lost, a
      // pull cancelled), so the bytes on disk are never fetched again; a relay asked for meanwhile
      // is still answered as the chunk arrives, then from the store
      try {
        await planner.recordWritten(plan, { source: source.name })
      } finally {
        adopted?.end()
      }
      // a deadline that passed while the chunk was being recorded is no failure: it is stored
      if (timedOut(signal) === undefined) signal.throwIfAborted()
      return { source: source.name, kind: source.kind, bytes: plan.size }
    }
  }
}

/** the timeout an attempt's signal was aborted with by its deadline, if that is why it ended */
function timedOut (signal: AbortSignal): SourceTimeoutError | undefined {
  return signal.aborted && signal.reason instanceof SourceTimeoutError ? signal.reason : undefined
}

export function fetcher (init: FetcherInit): Fetcher {
  return new ChunkFetcher(init)
}

/** The origin as a chunk source: the last resort, always tried after peers. */
export function originSource (origin: Origin): ChunkSource {
  return {
    name: 'origin',
    kind: 'origin',
    // an origin that cannot be opened again elsewhere, nor say where its chunks lie, is read on this thread only
    remote: origin.reopenable === false && origin.chunkLocation === undefined ? undefined : { kind: 'origin' },
    async fetch (request: ChunkRequest, options?: AbortOptions): Promise<Uint8Array> {
      return await origin.getChunk(request.cid, options)
    },
    // the origin may read a later chunk into the same memory
    release (bytes: Uint8Array): void {
      origin.release?.(bytes)
    }
  }
}
