/**
 * A pool of worker threads that run jobs for the main thread.
 *
 * The pool knows nothing of what the jobs do: it starts `size` threads from a script URL with
 * one `workerData`, hands each job to the least-loaded worker (a worker runs many jobs at once:
 * they wait on the network and the disk far more than they compute), and answers with what the
 * worker answered. Jobs and answers are structured-cloned; a job that carries large buffers names
 * them in `transfer`, so they move rather than being copied.
 *
 * An affinity key bounds how many workers see one kind of job: jobs with the same key go only to
 * `spread` workers chosen by the key's hash. The chunk byte path uses it so that a peer sees at
 * most that many client connections from this node, whatever the pool's size.
 *
 * Aborting a job rejects it at once and tells the worker, which aborts its own work (a GET, a
 * peer request). A worker that exits (a crash, `process.exit`, `terminate`) fails every job it
 * held with WorkerDiedError, which says the job may run again, and a replacement starts at once;
 * a worker that keeps dying before finishing anything is restarted with a growing delay and,
 * after MAX_CONSECUTIVE_CRASHES, given up on.
 *
 * Threads start at the first job, or earlier with `start()`: a process that never moves a byte
 * through the pool pays nothing for it, and one that is about to (an agent, a pull still
 * resolving its manifest) starts them at once, so their start (a second of CPU or so each, mostly
 * loading their clients) is not paid during its first chunks.
 *
 * A worker may also ask the main thread something (`askMain` in its script: the data server it
 * hosts asks for upload slots and where a chunk lies) and tell it something (`tellMain`: its
 * counters); the pool hands both to `answer` and `told` with the asking worker's slot, and says
 * when a worker has gone (`gone`), so that what the main thread holds for it can be let go.
 *
 * CPU time is counted per thread (`process.threadCpuUsage()`, Node ≥ 23.9): each worker reports
 * its own on request, and the time of workers that died is carried into their replacement's slot
 * so the per-slot counters never go backwards. Memory is reported per worker too
 * (`threadReports`): each isolate's heap and buffers as it counts them, beside what the worker's
 * script says of itself (what it loaded, how many syncs its chunks took), since a process's RSS
 * alone cannot tell a worker's share from the main thread's.
 */
import { Worker } from 'node:worker_threads'
import { AbortError, silentLogger } from '@swarm/interface'
import { CPU_REPORT_TIMEOUT_MS, MAX_CONSECUTIVE_CRASHES, RESTART_DELAY_MS, defaultPoolSize } from './constants.js'
import { PoolClosedError, WorkerDiedError, WorkerJobError } from './errors.js'
import { serializeError } from './worker.js'
import type { AbortOptions, Logger } from '@swarm/interface'
import type { ResourceLimits, TransferListItem } from 'node:worker_threads'

export interface WorkerPoolInit {
  /** the worker's entry script (it calls `serveJobs`) */
  script: URL
  /** handed to every worker as `workerData`; must be structured-cloneable */
  workerData?: unknown
  /** threads in the pool (default: `os.availableParallelism()`) */
  size?: number
  /** thread names are `<name>-<i>` (default `worker`) */
  name?: string
  /** each worker's heap limits (e.g. a small young generation: see CHUNK_WORKER_YOUNG_GENERATION_MB) */
  resourceLimits?: ResourceLimits
  /** turns an error a worker reported back into an Error of the right class */
  decodeError?(error: SerializedError): Error
  /** answers a worker's `askMain`; `worker` is its slot (0 … size - 1). Absent: every ask fails */
  answer?(message: unknown, worker: number): unknown
  /** takes a worker's `tellMain` */
  told?(message: unknown, worker: number): void
  /** the worker in this slot exited (it is started again unless the pool is closed) */
  gone?(worker: number): void
  logger?: Logger
}

export interface RunOptions extends AbortOptions {
  /** buffers in the job to move to the worker rather than copy */
  transfer?: readonly TransferListItem[]
  /** jobs with one key run on at most `spread` workers, chosen by the key */
  affinity?: { key: string, spread: number }
  /** takes what the job says while it runs (the `progress` a job handler is given) */
  onProgress?(message: unknown): void
}

/** An error as it crosses from a worker: its name, message, code and any plain fields. */
export interface SerializedError {
  name: string
  message: string
  code?: string
  fields?: Record<string, unknown>
}

export interface ThreadCpu {
  /** `main`, or `<name>-<i>` for the pool's i-th thread */
  name: string
  userSeconds: number
  systemSeconds: number
}

/** One thread's memory, in bytes, as its own isolate counts it (`process.memoryUsage()` less `rss`, which is the process's). */
export interface ThreadMemory {
  heapTotal: number
  heapUsed: number
  external: number
  arrayBuffers: number
}

export interface ThreadReport {
  /** `<name>-<i>` */
  name: string
  memory: ThreadMemory
  /** what the worker's `describe` returned; undefined without one */
  info: unknown
}

export interface WorkerPoolStats {
  size: number
  /** jobs running now */
  running: number
  jobsDone: number
  jobsFailed: number
  /** workers started again after exiting */
  restarts: number
}

export interface WorkerPool {
  readonly size: number
  run<T = unknown>(job: unknown, options?: RunOptions): Promise<T>
  /** starts every thread now rather than at the first job (idempotent) */
  start(): void
  /** hands `message` to every live worker's control handler (e.g. drop a peer's connections) */
  broadcast(message: unknown): void
  /** CPU time of the main thread and each worker slot so far */
  threadCpu(): Promise<ThreadCpu[]>
  /** each live worker's heap and what its script says of itself (`serveJobs`' `describe`) */
  threadReports(options?: AbortOptions): Promise<ThreadReport[]>
  readonly stats: Readonly<WorkerPoolStats>
  /** terminates every worker; running jobs fail with PoolClosedError */
  close(): Promise<void>
}

/** main → worker */
export type ToWorker =
  | { t: 'job', id: number, job: unknown }
  | { t: 'abort', id: number }
  | { t: 'cpu', id: number }
  | { t: 'report', id: number }
  | { t: 'control', message: unknown }
  | { t: 'answer', id: number, value?: unknown, error?: SerializedError }

/** worker → main */
export type FromWorker =
  | { t: 'done', id: number, value: unknown }
  | { t: 'fail', id: number, error: SerializedError }
  | { t: 'cpu', id: number, user: number, system: number }
  | { t: 'report', id: number, memory: ThreadMemory, info: unknown }
  | { t: 'ask', id: number, message: unknown }
  | { t: 'tell', message: unknown }
  | { t: 'progress', id: number, message: unknown }

interface Job {
  readonly message: ToWorker
  readonly transfer?: readonly TransferListItem[]
  readonly onProgress?: (message: unknown) => void
  resolve(value: unknown): void
  reject(err: Error): void
  slot: Slot
}

interface Slot {
  readonly index: number
  readonly name: string
  worker?: Worker
  jobs: Map<number, Job>
  crashes: number
  /** CPU microseconds of this slot's earlier workers, and the latest report of the current one */
  baseUser: number
  baseSystem: number
  lastUser: number
  lastSystem: number
  cpuWaiters: Map<number, (cpu: { user: number, system: number } | undefined) => void>
  reportWaiters: Map<number, (report: { memory: ThreadMemory, info: unknown }) => void>
  restartTimer?: NodeJS.Timeout
  gaveUp: boolean
}

export function workerPool (init: WorkerPoolInit): WorkerPool {
  return new ThreadPool(init)
}

class ThreadPool implements WorkerPool {
  readonly size: number
  private readonly slots: Slot[]
  private readonly log: Logger
  private readonly decodeError: (error: SerializedError) => Error
  private nextId = 0
  private closed = false
  private readonly counters: WorkerPoolStats

  constructor (private readonly init: WorkerPoolInit) {
    const size = init.size ?? defaultPoolSize()
    if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`a worker pool needs a positive integer size, got ${size}`)
    this.size = size
    this.log = (init.logger ?? silentLogger).child({ component: 'workers' })
    this.decodeError = init.decodeError ?? (e => new WorkerJobError(e.name, e.message, e.code))
    this.counters = { size, running: 0, jobsDone: 0, jobsFailed: 0, restarts: 0 }
    const name = init.name ?? 'worker'
    this.slots = Array.from({ length: size }, (_, index) => ({
      index,
      name: `${name}-${index}`,
      jobs: new Map(),
      crashes: 0,
      baseUser: 0,
      baseSystem: 0,
      lastUser: 0,
      lastSystem: 0,
      cpuWaiters: new Map(),
      reportWaiters: new Map(),
      gaveUp: false
    }))
  }

  get stats (): Readonly<WorkerPoolStats> {
    return { ...this.counters, running: this.slots.reduce((sum, slot) => sum + slot.jobs.size, 0) }
  }

  private started = false

  start (): void {
    if (this.started || this.closed) return
    this.started = true
    for (const slot of this.slots) this.spawn(slot)
  }

  private spawn (slot: Slot): void {
    const worker = new Worker(this.init.script, { workerData: this.init.workerData, name: slot.name, ...(this.init.resourceLimits !== undefined ? { resourceLimits: this.init.resourceLimits } : {}) })
    slot.worker = worker
    worker.on('message', (message: FromWorker) => { this.onMessage(slot, message) })
    worker.on('error', err => { this.log.error({ worker: slot.name, err }, 'worker failed') })
    worker.on('exit', code => { this.onExit(slot, worker, code) })
    // jobs given to the slot while it was restarting
    for (const job of slot.jobs.values()) worker.postMessage(job.message, job.transfer)
  }

  private onMessage (slot: Slot, message: FromWorker): void {
    if (message.t === 'cpu') {
      slot.lastUser = message.user
      slot.lastSystem = message.system
      slot.cpuWaiters.get(message.id)?.({ user: message.user, system: message.system })
      return
    }
    if (message.t === 'report') {
      slot.reportWaiters.get(message.id)?.({ memory: message.memory, info: message.info })
      return
    }
    if (message.t === 'ask') {
      this.onAsk(slot, message.id, message.message)
      return
    }
    if (message.t === 'tell') {
      try {
        this.init.told?.(message.message, slot.index)
      } catch (err) {
        this.log.error({ worker: slot.name, err }, 'a message from a worker failed on the main thread')
      }
      return
    }
    const job = slot.jobs.get(message.id)
    if (job === undefined) return
    if (message.t === 'progress') {
      try {
        job.onProgress?.(message.message)
      } catch (err) {
        this.log.error({ worker: slot.name, err }, 'a job\'s progress failed on the main thread')
      }
      return
    }
    slot.jobs.delete(message.id)
    if (message.t === 'done') {
      slot.crashes = 0
      this.counters.jobsDone++
      job.resolve(message.value)
    } else {
      this.counters.jobsFailed++
      job.reject(this.decodeError(message.error))
    }
  }

  private onAsk (slot: Slot, id: number, message: unknown): void {
    const worker = slot.worker
    const reply = (answer: ToWorker): void => { if (slot.worker === worker) worker?.postMessage(answer) }
    const fail = (err: unknown): void => { reply({ t: 'answer', id, error: serializeError(err) }) }
    const answer = this.init.answer
    if (answer === undefined) {
      fail(new WorkerJobError('UnsupportedOperationError', 'this pool answers no questions from its workers', undefined))
      return
    }
    try {
      const value = answer(message, slot.index)
      if (value instanceof Promise) value.then(v => { reply({ t: 'answer', id, value: v }) }, fail)
      else reply({ t: 'answer', id, value })
    } catch (err) {
      fail(err)
    }
  }

  private onExit (slot: Slot, worker: Worker, code: number): void {
    if (slot.worker !== worker) return
    slot.worker = undefined
    try {
      this.init.gone?.(slot.index)
    } catch (err) {
      this.log.error({ worker: slot.name, err }, 'letting go of what a worker held failed')
    }
    slot.baseUser += slot.lastUser
    slot.baseSystem += slot.lastSystem
    slot.lastUser = 0
    slot.lastSystem = 0
    for (const resolve of slot.cpuWaiters.values()) resolve(undefined)
    slot.cpuWaiters.clear()
    const jobs = [...slot.jobs.values()]
    slot.jobs.clear()
    for (const job of jobs) {
      this.counters.jobsFailed++
      job.reject(this.closed ? new PoolClosedError() : new WorkerDiedError(slot.name, `exit code ${code}`))
    }
    if (this.closed) return
    slot.crashes++
    if (slot.crashes > MAX_CONSECUTIVE_CRASHES) {
      slot.gaveUp = true
      this.log.error({ worker: slot.name, crashes: slot.crashes }, 'worker keeps exiting; not starting it again')
      return
    }
    this.counters.restarts++
    this.log.warn({ worker: slot.name, code, failedJobs: jobs.length }, 'worker exited; starting a new one')
    // the first restart is immediate: a single crash should cost nothing
    const delay = slot.crashes <= 1 ? 0 : RESTART_DELAY_MS * 2 ** (slot.crashes - 2)
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined
      if (!this.closed) this.spawn(slot)
    }, delay)
  }

  private pick (affinity: RunOptions['affinity']): Slot | undefined {
    let candidates = this.slots
    if (affinity !== undefined) {
      const spread = Math.max(1, Math.min(this.size, Math.floor(affinity.spread)))
      const first = hash(affinity.key) % this.size
      candidates = Array.from({ length: spread }, (_, k) => this.slots[(first + k) % this.size] as Slot)
    }
    let best: Slot | undefined
    for (const slot of candidates) {
      if (slot.gaveUp) continue
      if (best === undefined || slot.jobs.size < best.jobs.size) best = slot
    }
    return best
  }

  async run<T = unknown>(job: unknown, options: RunOptions = {}): Promise<T> {
    if (this.closed) throw new PoolClosedError()
    options.signal?.throwIfAborted()
    this.start()
    const slot = this.pick(options.affinity)
    if (slot === undefined) throw new PoolClosedError('every worker of the pool kept exiting at start; the pool gave up on them')
    const id = this.nextId++
    return await new Promise<T>((resolve, reject) => {
      const signal = options.signal
      const onAbort = (): void => {
        if (!slot.jobs.delete(id)) return
        slot.worker?.postMessage({ t: 'abort', id } satisfies ToWorker)
        reject(new AbortError())
      }
      const done = (): void => { signal?.removeEventListener('abort', onAbort) }
      const message: ToWorker = { t: 'job', id, job }
      slot.jobs.set(id, {
        slot,
        message,
        transfer: options.transfer,
        ...(options.onProgress !== undefined ? { onProgress: options.onProgress } : {}),
        resolve: value => { done(); resolve(value as T) },
        reject: err => { done(); reject(err) }
      })
      signal?.addEventListener('abort', onAbort, { once: true })
      if (slot.worker === undefined) return // restarting: posted once it is back
      slot.worker.postMessage(message, options.transfer)
    })
  }

  broadcast (message: unknown): void {
    for (const slot of this.slots) slot.worker?.postMessage({ t: 'control', message } satisfies ToWorker)
  }

  async threadCpu (): Promise<ThreadCpu[]> {
    const main = process.threadCpuUsage()
    const out: ThreadCpu[] = [{ name: 'main', userSeconds: main.user / 1e6, systemSeconds: main.system / 1e6 }]
    await Promise.all(this.slots.map(async slot => {
      const worker = slot.worker
      if (worker !== undefined) {
        const id = this.nextId++
        await new Promise<void>(resolve => {
          const timer = setTimeout(() => { slot.cpuWaiters.delete(id); resolve() }, CPU_REPORT_TIMEOUT_MS)
          slot.cpuWaiters.set(id, () => { clearTimeout(timer); slot.cpuWaiters.delete(id); resolve() })
          worker.postMessage({ t: 'cpu', id } satisfies ToWorker)
        })
      }
    }))
    for (const slot of this.slots) {
      out.push({ name: slot.name, userSeconds: (slot.baseUser + slot.lastUser) / 1e6, systemSeconds: (slot.baseSystem + slot.lastSystem) / 1e6 })
    }
    return out
  }

  async threadReports (options: AbortOptions = {}): Promise<ThreadReport[]> {
    const reports = await Promise.all(this.slots.map(async slot => {
      const worker = slot.worker
      if (worker === undefined) return undefined
      const id = this.nextId++
      return await new Promise<ThreadReport | undefined>((resolve, reject) => {
        const finish = (report: ThreadReport | undefined, err?: Error): void => {
          clearTimeout(timer)
          slot.reportWaiters.delete(id)
          options.signal?.removeEventListener('abort', onAbort)
          if (err !== undefined) reject(err)
          else resolve(report)
        }
        const onAbort = (): void => { finish(undefined, new AbortError()) }
        const timer = setTimeout(() => { finish(undefined) }, CPU_REPORT_TIMEOUT_MS)
        options.signal?.addEventListener('abort', onAbort, { once: true })
        slot.reportWaiters.set(id, ({ memory, info }) => { finish({ name: slot.name, memory, info }) })
        worker.postMessage({ t: 'report', id } satisfies ToWorker)
      })
    }))
    return reports.filter(r => r !== undefined)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const slot of this.slots) clearTimeout(slot.restartTimer)
    await Promise.all(this.slots.map(async slot => { await slot.worker?.terminate() }))
  }
}

/** FNV-1a: stable across runs, so a key keeps its workers */
function hash (key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
