/**
 * A token bucket shared by every connection of a server (uploads) or a client (downloads).
 * Takers may overdraw it: a take of n bytes always succeeds at once and the taker then waits
 * until the debt is paid back, so later takers queue behind earlier ones in proportion to what
 * they took, and pieces larger than the burst need no special case.
 */

import { AbortError } from '@swarm/interface'
import type { AbortOptions } from '@swarm/interface'

export class TokenBucket {
  private tokens: number
  private last: number
  private readonly burst: number

  /** `bytesPerSecond` > 0; the bucket holds a tenth of a second's worth, at least 64 KiB. */
  constructor (private readonly bytesPerSecond: number) {
    this.burst = Math.max(64 * 1024, bytesPerSecond / 10)
    this.tokens = this.burst
    this.last = performance.now()
  }

  /** Takes `bytes` and returns how many ms the taker should wait before using them. */
  consume (bytes: number): number {
    const now = performance.now()
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.bytesPerSecond / 1000)
    this.last = now
    this.tokens -= bytes
    return this.tokens >= 0 ? 0 : -this.tokens * 1000 / this.bytesPerSecond
  }

  /** Takes `bytes` and waits until they are paid for. */
  async take (bytes: number, options: AbortOptions = {}): Promise<void> {
    const delay = this.consume(bytes)
    if (delay > 0) await sleep(delay, options)
  }
}

export async function sleep (ms: number, { signal }: AbortOptions = {}): Promise<void> {
  if (signal?.aborted === true) throw new AbortError()
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new AbortError())
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
