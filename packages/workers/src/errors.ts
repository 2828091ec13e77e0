import { SwarmError } from '@swarm/interface'

/**
 * The worker that ran a job exited before answering. Nothing the job did is recorded (only the
 * main thread records), so running the job again is safe; the pool has started a replacement.
 */
export class WorkerDiedError extends SwarmError {
  override readonly code = 'ERR_WORKER_DIED'
  readonly retryable = true
  constructor (readonly worker: string, detail: string) {
    super(`${worker} exited before finishing the job (${detail}); nothing was recorded and the job may run again`)
  }
}

/** The pool was closed, or its workers kept crashing at start and it gave up on them. */
export class PoolClosedError extends SwarmError {
  override readonly code = 'ERR_POOL_CLOSED'
  constructor (message = 'the worker pool is closed') {
    super(message)
  }
}

/** A job failed inside a worker with an error that has no class of its own on this side. */
export class WorkerJobError extends SwarmError {
  constructor (name: string, message: string, override readonly code: string | undefined) {
    super(message)
    this.name = name
  }
}

/**
 * fdatasync of a content file failed in a worker. The kernel may have dropped the pages written
 * through that descriptor and reports that only once, so every chunk written through it fails,
 * nothing of it is recorded, and the next chunk for the file opens a fresh descriptor.
 */
export class SyncFailedError extends SwarmError {
  override readonly code = 'ERR_SYNC_FAILED'
  constructor (readonly path: string, options?: ErrorOptions) {
    super(`fdatasync of ${path} failed (${(options?.cause as Error | undefined)?.message ?? 'unknown error'}); the chunks written through that descriptor are not recorded and will be fetched again`, options)
  }
}
