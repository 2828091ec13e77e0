/**
 * The main thread's side of serving peers from the byte workers (see ../worker-serving.ts): the
 * node's one gate answers every worker's questions (a connection, a peer, a GET), the store says
 * where a chunk's bytes lie, a worker that goes away gives back what its connections held, and
 * the counters of the workers' servers add up, with the main thread's, to the node's.
 *
 * The main thread keeps its own data server listening until every worker listens on the port
 * too, then stops taking connections there: a worker that cannot listen leaves the node served
 * as before rather than not at all.
 */
import type { Located, ServingNote, ServingQuestion } from '../worker-serving.js'
import type { ByteWorkerReport } from '../byte-worker.js'
import type { DataServer, DataServerStats, UploadGate } from '@swarm/exchange'
import type { ArrivingChunks } from '@swarm/fetcher'
import type { Logger } from '@swarm/interface'
import type { Store } from '@swarm/store'
import type { ChunkWorkerReport, WorkerPool } from '@swarm/workers'

/** The counters a server keeps (the rest of DataServerStats is the gate's). */
type Counters = Pick<DataServerStats, 'bytesServed' | 'requests' | 'rejectedPeers' | 'busy' | 'relays' | 'relaysCut' | 'notFound' | 'errors' | 'protocolErrors' | 'timeouts' | 'refusedConnections'>

/** The node's data server figures, and the bytes each thread's server sent. */
export type ServedStats = DataServerStats & { bytesByThread: Record<string, number> }

export interface ServedByWorkersInit {
  gate: UploadGate
  store: Pick<Store, 'locateChunk' | 'getManifestBytes' | 'hasChunk'>
  /** the chunks arriving at this node; those arriving in shared memory are relayed by the workers too */
  arrivals?: Pick<ArrivingChunks, 'share'>
  /** the workers there are; once all of them listen, `everyWorkerListens` runs */
  workers: number
  everyWorkerListens(): void
  logger: Logger
}

export class ServedByWorkers {
  private readonly listening = new Set<number>()
  /** each worker's counters as last reported; a worker that went away keeps its last in `gone` */
  private readonly reported = new Map<number, Counters>()
  private departed: Counters = zero()
  private readonly allListening = Promise.withResolvers<void>()
  private asking: Promise<ServedStats> | undefined

  constructor (private readonly init: ServedByWorkersInit) {}

  /** resolves once every worker listens on the port, or after `timeoutMs` */
  async everyWorkerListening (timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<void>(resolve => { timer = setTimeout(() => {
      this.init.logger.warn({ listening: this.listening.size, workers: this.init.workers, timeoutMs }, 'not every byte worker serves the data port yet; the main thread serves too')
      resolve()
    }, timeoutMs) })
    await Promise.race([this.allListening.promise, late])
    clearTimeout(timer)
  }

  /** the pool's `answer` */
  answer (question: unknown, worker: number): unknown {
    const q = question as ServingQuestion
    const { gate } = this.init
    switch (q.serving) {
      case 'open': return gate.connectionOpened(worker)
      case 'peer': return gate.peerConnected(q.peer, worker)
      case 'begin': return gate.begin(q.peer, q.small, { holder: worker, relay: q.relay === true })
      case 'locate': return this.locate(q.cid)
      case 'arriving': return this.init.store.hasChunk(q.cid) ? undefined : this.init.arrivals?.share(q.cid)
      default: throw new Error(`a byte worker asked something this agent does not answer: ${JSON.stringify(question)}`)
    }
  }

  /** the pool's `told` */
  told (note: unknown, worker: number): void {
    const n = note as ServingNote
    const { gate } = this.init
    switch (n.serving) {
      case 'closed': gate.connectionClosed(worker); return
      case 'left': gate.peerDisconnected(n.peer, worker); return
      case 'end': gate.end(n.peer, n.small, n.landedAfterMs, { holder: worker, relay: n.relay === true }); return
      case 'listening':
        this.listening.add(worker)
        if (this.listening.size === this.init.workers) {
          this.init.everyWorkerListens()
          this.allListening.resolve()
        }
        return
      default: this.init.logger.warn({ worker, note }, 'a byte worker said something this agent does not know')
    }
  }

  /** the pool's `gone`: what the worker held goes back to the gate, its counters stay counted */
  gone (worker: number): void {
    this.init.gate.release(worker)
    const last = this.reported.get(worker)
    if (last !== undefined) this.departed = add(this.departed, last)
    this.reported.delete(worker)
  }

  /**
   * The node's data server figures: the main thread's server's, every worker's, and the gate's;
   * `bytesByThread`: the bytes each thread's server sent. Asked while an answer is on its way,
   * it gives that answer: a scrape's metrics ask all at once, and the workers are asked once.
   */
  async stats (main: DataServer, pool: WorkerPool): Promise<ServedStats> {
    this.asking ??= this.collect(main, pool).finally(() => { this.asking = undefined })
    return await this.asking
  }

  private async collect (main: DataServer, pool: WorkerPool): Promise<ServedStats> {
    for (const report of await pool.threadReports()) {
      const served = (report.info as ChunkWorkerReport | undefined)?.sources as ByteWorkerReport | undefined
      if (served?.served === undefined) continue
      const worker = Number(report.name.slice(report.name.lastIndexOf('-') + 1))
      if (Number.isInteger(worker)) this.reported.set(worker, counters(served.served))
    }
    const own = counters(main.stats)
    let total = add(own, this.departed)
    const bytesByThread: Record<string, number> = { main: own.bytesServed }
    for (const [worker, c] of [...this.reported].sort((a, b) => a[0] - b[0])) {
      total = add(total, c)
      bytesByThread[`worker-${worker}`] = c.bytesServed
    }
    const counts = this.init.gate.counts
    return { ...total, connections: counts.peerConnections, uploads: counts.uploads, smallAnswers: counts.smallAnswers, uploadLimit: counts.uploadLimit, bytesByThread }
  }

  private locate (cid: string): Located {
    const chunk = this.init.store.locateChunk(cid)
    if (chunk !== undefined) return { kind: 'chunk', ...chunk }
    const bytes = this.init.store.getManifestBytes(cid)
    return bytes !== undefined ? { kind: 'manifest', bytes } : { kind: 'none' }
  }
}

function zero (): Counters {
  return { bytesServed: 0, requests: 0, rejectedPeers: 0, busy: 0, relays: 0, relaysCut: 0, notFound: 0, errors: 0, protocolErrors: 0, timeouts: { write: 0, idle: 0, handshake: 0 }, refusedConnections: { total: 0, perPeer: 0 } }
}

function counters (s: Readonly<DataServerStats>): Counters {
  return add(zero(), s)
}

function add (a: Counters, b: Counters): Counters {
  return {
    bytesServed: a.bytesServed + b.bytesServed,
    requests: a.requests + b.requests,
    rejectedPeers: a.rejectedPeers + b.rejectedPeers,
    busy: a.busy + b.busy,
    relays: a.relays + b.relays,
    relaysCut: a.relaysCut + b.relaysCut,
    notFound: a.notFound + b.notFound,
    errors: a.errors + b.errors,
    protocolErrors: a.protocolErrors + b.protocolErrors,
    timeouts: { write: a.timeouts.write + b.timeouts.write, idle: a.timeouts.idle + b.timeouts.idle, handshake: a.timeouts.handshake + b.timeouts.handshake },
    refusedConnections: { total: a.refusedConnections.total + b.refusedConnections.total, perPeer: a.refusedConnections.perPeer + b.refusedConnections.perPeer }
  }
}
