import { describe, expect, it } from 'vitest'
import { RetriesExhaustedError, isTransientNetworkError, isUnreachable, networkErrorCode, retrying } from '../src/index.js'
import type { RetryPolicy } from '../src/index.js'

class Passing extends Error {}

function policy (retries: number, waits: number[] = []): RetryPolicy {
  return { retries, baseDelayMs: 5, maxDelayMs: 20, transient: err => err instanceof Passing, onRetry: ({ delayMs }) => { waits.push(delayMs) } }
}

describe('retrying', () => {
  it('tries a transient failure again, waiting less than the cap each time, until it passes', async () => {
    const waits: number[] = []
    let calls = 0
    const value = await retrying(async () => { if (++calls < 4) throw new Passing('not yet'); return 'done' }, policy(5, waits))
    expect(value).toBe('done')
    expect(calls).toBe(4)
    expect(waits).toHaveLength(3)
    for (const [i, wait] of waits.entries()) expect(wait).toBeLessThanOrEqual(Math.min(20, 5 * 2 ** i))
  })

  it('fails at once on anything else, and with RetriesExhaustedError after the last retry', async () => {
    let calls = 0
    const refused = new Error('refused')
    await expect(retrying(async () => { calls++; throw refused }, policy(5))).rejects.toBe(refused)
    expect(calls).toBe(1)
    calls = 0
    const err = await retrying(async () => { calls++; throw new Passing(`try ${calls}`) }, policy(2)).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RetriesExhaustedError)
    expect(err).toMatchObject({ attempts: 3, last: expect.objectContaining({ message: 'try 3' }) })
    expect(calls).toBe(3)
  })

  it('ends a wait with the signal\'s reason when aborted', async () => {
    const controller = new AbortController()
    const slow: RetryPolicy = { ...policy(3), baseDelayMs: 60_000, maxDelayMs: 60_000, transient: () => true }
    const started = Date.now()
    const run = retrying(async () => { throw new Passing('again') }, slow, { signal: controller.signal })
    setTimeout(() => { controller.abort(new Error('stopped')) }, 20)
    await expect(run).rejects.toThrow('stopped')
    expect(Date.now() - started).toBeLessThan(5_000)
  })
})

describe('network failures, alike for every origin', () => {
  const withCode = (code: string): Error => Object.assign(new Error(code), { code })

  it('reads the code of the error or of its cause, and tells failures worth another try from the rest', () => {
    const wrapped = new TypeError('fetch failed', { cause: withCode('ECONNRESET') })
    expect(networkErrorCode(wrapped)).toBe('ECONNRESET')
    expect(isTransientNetworkError(wrapped)).toBe(true)
    expect(isTransientNetworkError(withCode('ERR_BODY_LENGTH'))).toBe(true)
    expect(isTransientNetworkError(Object.assign(new Error('slow'), { name: 'TimeoutError' }))).toBe(true)
    expect(isTransientNetworkError(withCode('CERT_HAS_EXPIRED'))).toBe(false)
    expect(isTransientNetworkError(new Error('no code'))).toBe(false)
  })

  it('says which of them mean the endpoint was never reached', () => {
    expect(isUnreachable(withCode('ECONNREFUSED'))).toBe(true)
    expect(isUnreachable(new Error('x', { cause: withCode('ENOTFOUND') }))).toBe(true)
    expect(isUnreachable(withCode('ECONNRESET'))).toBe(false)
  })
})
