/**
 * The worker side of the pool: `serveJobs(handler)` in a worker's entry script answers the
 * pool's jobs with what `handler` resolves, aborts a job's signal when the pool aborts it, and
 * reports the thread's CPU time when asked. `askMain` and `tellMain` go the other way: a question
 * the pool's `answer` settles, and a note for its `told`.
 */
import { parentPort } from 'node:worker_threads'
import type { FromWorker, SerializedError, ToWorker } from './pool.js'
import type { AbortOptions } from '@swarm/interface'

const asked = new Map<number, { resolve(value: unknown): void, reject(err: Error): void }>()
let nextAsk = 0
let listening = false

/** the thread's port to the pool; throws outside a pool's worker */
function mainPort (): NonNullable<typeof parentPort> {
  if (parentPort === null) throw new Error('only a worker thread of a pool talks to the main thread')
  return parentPort
}

function listenForAnswers (): void {
  if (listening) return
  listening = true
  mainPort().on('message', (message: ToWorker) => {
    if (message.t !== 'answer') return
    const waiter = asked.get(message.id)
    if (waiter === undefined) return
    asked.delete(message.id)
    if (message.error !== undefined) waiter.reject(Object.assign(new Error(message.error.message), { name: message.error.name, code: message.error.code }))
    else waiter.resolve(message.value)
  })
}

/** Asks the main thread (the pool's `answer`); rejects with what it threw. */
export async function askMain<T = unknown> (message: unknown): Promise<T> {
  const port = mainPort()
  listenForAnswers()
  const id = nextAsk++
  return await new Promise<T>((resolve, reject) => {
    asked.set(id, { resolve: resolve as (value: unknown) => void, reject })
    port.postMessage({ t: 'ask', id, message } satisfies FromWorker)
  })
}

/** Tells the main thread something that needs no answer (the pool's `told`). */
export function tellMain (message: unknown): void {
  mainPort().postMessage({ t: 'tell', message } satisfies FromWorker)
}

/** What a job handler is given beside its job: the job's signal, and `progress`, which the pool's `onProgress` for the job takes. */
export interface JobOptions extends Required<AbortOptions> {
  progress(message: unknown): void
}

export type JobHandler = (job: any, options: JobOptions) => Promise<unknown>

/**
 * Answers the pool's jobs in this worker (and its broadcasts with `onControl`, its reports with
 * what `describe` returns, which must be structured-cloneable); returns a function that stops answering.
 */
export function serveJobs (handler: JobHandler, onControl?: (message: unknown) => void, describe?: () => unknown): () => void {
  const port = parentPort
  if (port === null) throw new Error('serveJobs runs in a worker thread of a pool')
  const running = new Map<number, AbortController>()
  const onMessage = (message: ToWorker): void => {
    if (message.t === 'answer') return
    if (message.t === 'abort') {
      running.get(message.id)?.abort()
      return
    }
    if (message.t === 'control') {
      onControl?.(message.message)
      return
    }
    if (message.t === 'cpu') {
      const { user, system } = process.threadCpuUsage()
      port.postMessage({ t: 'cpu', id: message.id, user, system } satisfies FromWorker)
      return
    }
    if (message.t === 'report') {
      const { heapTotal, heapUsed, external, arrayBuffers } = process.memoryUsage()
      port.postMessage({ t: 'report', id: message.id, memory: { heapTotal, heapUsed, external, arrayBuffers }, info: describe?.() } satisfies FromWorker)
      return
    }
    const controller = new AbortController()
    running.set(message.id, controller)
    const id = message.id
    const progress = (note: unknown): void => { if (running.has(id)) port.postMessage({ t: 'progress', id, message: note } satisfies FromWorker) }
    handler(message.job, { signal: controller.signal, progress }).then(value => {
      port.postMessage({ t: 'done', id: message.id, value } satisfies FromWorker)
    }, (err: unknown) => {
      port.postMessage({ t: 'fail', id: message.id, error: serializeError(err) } satisfies FromWorker)
    }).finally(() => { running.delete(message.id) })
  }
  port.on('message', onMessage)
  return () => { port.off('message', onMessage) }
}

/** name, message, code and the plain fields an Error carries, for the other side to rebuild it */
export function serializeError (err: unknown): SerializedError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) }
  const fields: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(err)) {
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value
  }
  const code = (err as { code?: unknown }).code
  return { name: err.name, message: err.message, ...(typeof code === 'string' ? { code } : {}), fields }
}
