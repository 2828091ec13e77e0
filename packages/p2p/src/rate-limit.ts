/**
 * A token bucket that refuses instead of making the taker wait: a control message past a peer's
 * rate is dropped (and scored), not queued, so a flooding peer costs no memory.
 */

export class TokenBucket {
  readonly #perSecond: number
  readonly #burst: number
  readonly #now: () => number
  #tokens: number
  #last: number

  constructor (perSecond: number, burst: number, now: () => number = () => performance.now()) {
    this.#perSecond = perSecond
    this.#burst = burst
    this.#now = now
    this.#tokens = burst
    this.#last = now()
  }

  /** Takes `amount` tokens if the bucket holds them; otherwise takes none and returns false. */
  tryTake (amount = 1): boolean {
    const now = this.#now()
    this.#tokens = Math.min(this.#burst, this.#tokens + Math.max(0, now - this.#last) * this.#perSecond / 1000)
    this.#last = now
    if (this.#tokens < amount) {
      return false
    }
    this.#tokens -= amount
    return true
  }
}
