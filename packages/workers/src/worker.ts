/**
 * The worker side of the pool: `serveJobs(handler)` in a worker's entry script answers the
 * pool's jobs with what `handler` resolves, aborts a job's signal when the pool aborts it, and
 * reports the thread's CPU time when asked.
 */
import { parentPort } from 'node:worker_threads'
import type { FromWorker, SerializedError, ToWorker } from './pool.js'
import type { AbortOptions } from '@swarm/interface'

export type JobHandler = (job: any, options: Required<AbortOptions>) => Promise<unknown>

/**
 * Answers the pool's jobs in this worker (and its broadcasts with `onControl`, its reports with
 * what `describe` returns, which must be structured-cloneable); returns a function that stops answering.
 */
export function serveJobs (handler: JobHandler, onControl?: (message: unknown) => void, describe?: () => unknown): () => void {
  const port = parentPort
  if (port === null) throw new Error('serveJobs runs in a worker thread of a pool')
  const running = new Map<number, AbortController>()
  const onMessage = (message: ToWorker): void => {
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
    handler(message.job, { signal: controller.signal }).then(value => {
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
