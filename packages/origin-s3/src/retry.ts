/**
 * The one retry policy of the S3 origin (run by `retrying` from @swarm/interface): which failures
 * are worth another attempt, and how long to wait before it. The SDK's own retries are off (`maxAttempts: 1`) so that control calls and bulk
 * GETs retry the same way and the attempt count is bounded in one place.
 *
 * Retried: HTTP 5xx (but 501), 429, 408, S3's throttling codes (SlowDown, …), connection errors
 * (refused, reset, unreachable, DNS) and timeouts. Never retried: 4xx answers (404, 403, …) and
 * aborts. Backoff is exponential with full jitter (AWS's recommendation: spreads a burst of clients
 * that all failed at once).
 */

import { RETRY_BASE_DELAY_MS, RETRY_MAX_DELAY_MS } from './constants.js'
import { S3ResponseError } from './errors.js'
import { isTransientNetworkError } from '@swarm/interface'
import type { Logger, RetryPolicy } from '@swarm/interface'

/** What a failed request said, whichever client raised it. */
export interface Failure {
  status?: number
  /** S3's error code (`NoSuchKey`, `SlowDown`, …) */
  s3Code?: string
  /** system or undici error code (`ECONNREFUSED`, `UND_ERR_SOCKET`, …) */
  netCode?: string
  name?: string
}

const TRANSIENT_S3_CODES = new Set([
  'SlowDown', 'Throttling', 'ThrottlingException', 'RequestThrottled', 'RequestLimitExceeded', 'TooManyRequestsException',
  'RequestTimeout', 'RequestTimeoutException', 'InternalError', 'ServiceUnavailable', 'PriorRequestNotComplete'
])

export function describeFailure (err: unknown): Failure {
  if (err instanceof S3ResponseError) return { status: err.status, s3Code: err.s3Code, name: err.name }
  const e = err as { name?: unknown, code?: unknown, Code?: unknown, cause?: unknown, $metadata?: { httpStatusCode?: unknown } } | undefined
  if (e == null || typeof e !== 'object') return {}
  const failure: Failure = {}
  if (typeof e.name === 'string') failure.name = e.name
  const status = e.$metadata?.httpStatusCode
  if (typeof status === 'number') {
    failure.status = status
    // the SDK names an error after S3's code; a bodiless answer (HEAD) gets a generic name
    const s3Code = typeof e.Code === 'string' ? e.Code : failure.name
    if (s3Code !== undefined && !['Unknown', 'UnknownError', 'NotFound', 'Forbidden'].includes(s3Code)) failure.s3Code = s3Code
    return failure
  }
  let code = e.code
  // undici and fetch wrap the socket's error
  if (typeof code !== 'string' && typeof (e.cause as { code?: unknown } | undefined)?.code === 'string') code = (e.cause as { code: string }).code
  if (typeof code === 'string') failure.netCode = code
  return failure
}

export function isTransient (err: unknown): boolean {
  const { status, s3Code } = describeFailure(err)
  if (status !== undefined) {
    if (status === 501) return false
    return status >= 500 || status === 429 || status === 408 || (s3Code !== undefined && TRANSIENT_S3_CODES.has(s3Code))
  }
  return isTransientNetworkError(err)
}

/** One line for logs and messages: `HTTP 503 SlowDown`, `ECONNREFUSED`, … */
export function formatFailure (err: unknown): string {
  const { status, s3Code, netCode } = describeFailure(err)
  const message = (err as Error | undefined)?.message
  const detail = message !== undefined && message !== '' && message !== 'UnknownError' ? `: ${message}` : ''
  if (status !== undefined) return `HTTP ${status}${s3Code !== undefined ? ` ${s3Code}` : ''}${detail}`
  if (netCode !== undefined) return message?.includes(netCode) === true ? message : `${netCode}${detail}`
  return message ?? String(err)
}

/** The S3 origin's policy for `retrying` (@swarm/interface): what is transient, and its waits, logged. */
export function s3RetryPolicy (retries: number, log: Logger, what: string): RetryPolicy {
  return {
    retries,
    baseDelayMs: RETRY_BASE_DELAY_MS,
    maxDelayMs: RETRY_MAX_DELAY_MS,
    transient: isTransient,
    onRetry: ({ attempt, delayMs, error }) => { log.debug({ request: what, attempt, delayMs: Math.round(delayMs), error: formatFailure(error) }, 'S3 request failed; retrying') }
  }
}
