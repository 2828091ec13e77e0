/**
 * One retry loop for the origins' requests: an attempt that fails in a way that may pass
 * (`transient`) is tried again after a wait, up to `retries` more times; anything else fails at
 * once. Waits are exponential with full jitter (uniform in [0, min(max, base × 2^(n − 1))]), which
 * spreads a burst of clients that all failed at once. An abort ends the attempt and the wait with
 * the signal's reason. Failures of the connection itself are classified here, alike for every
 * origin (`isTransientNetworkError`, `isUnreachable`); which answers of its service are worth
 * another try, and what a failure that outlasted the retries ({@link RetriesExhaustedError})
 * becomes, is each origin's own.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { SwarmError } from './errors.js'
import type { AbortOptions } from './index.js'

/** Failures to reach or hear from an endpoint that another attempt may pass: refused, reset, unreachable, DNS, timeouts, a body cut short (the socket's codes, undici's, the in-place client's). */
const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN',
  'ENETUNREACH', 'ENETDOWN', 'EHOSTUNREACH', 'EHOSTDOWN',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH', 'ERR_TRUNCATED_BODY', 'ERR_BODY_LENGTH'
])

/** Of those, the ones that mean the endpoint could not be reached at all, as opposed to "it answered, then broke off". */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'ENETDOWN', 'EHOSTUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT'])

/** A failure's network code: its own, or its cause's (undici and fetch wrap the socket's error). */
export function networkErrorCode (err: unknown): string | undefined {
  const e = err as { code?: unknown, cause?: { code?: unknown } } | null | undefined
  if (typeof e?.code === 'string') return e.code
  return typeof e?.cause?.code === 'string' ? e.cause.code : undefined
}

/** Whether a failure of the connection may pass on another attempt. */
export function isTransientNetworkError (err: unknown): boolean {
  const code = networkErrorCode(err)
  return (code !== undefined && TRANSIENT_NETWORK_CODES.has(code)) || (err as Error | null | undefined)?.name === 'TimeoutError'
}

/** Whether a failure means the endpoint could not be reached at all. */
export function isUnreachable (err: unknown): boolean {
  const code = networkErrorCode(err)
  return code !== undefined && UNREACHABLE_CODES.has(code)
}

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
