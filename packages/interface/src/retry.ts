/**
 * One retry loop for the origins' requests: an attempt that fails in a way that may pass
 * (`transient`) is tried again after a wait, up to `retries` more times; anything else fails at
 * once. Waits are exponential with full jitter (uniform in [0, min(max, base × 2^(n − 1))]), which
 * spreads a burst of clients that all failed at once. An abort ends the attempt and the wait with
 * the signal's reason. What each origin counts as transient, and what it makes of a failure that
 * outlasted the retries ({@link RetriesExhaustedError}), is its own.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { SwarmError } from './errors.js'
import type { AbortOptions } from './index.js'

export interface RetryPolicy {
  /** attempts after the first */
  retries: number
  baseDelayMs: number
  maxDelayMs: number
  /** whether a failure may pass on another attempt */
  transient(err: unknown): boolean
  /** told before each wait (for a debug log) */
  onRetry?(retry: { attempt: number, delayMs: number, error: unknown }): void
}

/** A transient failure that was still failing after the last retry; `last` is what it threw. */
export class RetriesExhaustedError extends SwarmError {
  override readonly code = 'ERR_RETRIES_EXHAUSTED'
  constructor (readonly attempts: number, readonly last: unknown) {
    super(`failed ${attempts} times; last: ${(last as Error | undefined)?.message ?? String(last)}`, { cause: last })
  }
}

/** Runs `attempt` under `policy`. */
export async function retrying<T> (attempt: (signal: AbortSignal | undefined) => Promise<T>, policy: RetryPolicy, { signal }: AbortOptions = {}): Promise<T> {
  signal?.throwIfAborted()
  for (let tries = 1; ; tries++) {
    try {
      return await attempt(signal)
    } catch (err) {
      if (signal?.aborted === true) throw signal.reason
      if (!policy.transient(err)) throw err
      if (tries > policy.retries) throw new RetriesExhaustedError(tries, err)
      const delayMs = Math.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (tries - 1))
      policy.onRetry?.({ attempt: tries, delayMs, error: err })
      await sleep(delayMs, undefined, { signal }).catch(() => { throw signal?.reason })
    }
  }
}
