/**
 * How many chunk transfers to run at once on one link, so that each lands soon enough to be
 * passed on.
 *
 * A chunk moves between peers store-and-forward: a node passes it on only once it has landed
 * whole and been verified. Transfers sharing a link share its rate, so k of them at once each
 * land after k × chunk / rate. On a fast link that is milliseconds whatever k is; on a slow one
 * it is the time every hop of a fan-out takes. At 50 Mbit/s with 4 MiB chunks, 8 transfers at
 * once land each after 5.4 s, 2 after 1.3 s, for the same bytes per second through the link.
 * In bench/sim at 1,000 nodes (every node knowing every puller), 8 downloads and 8 uploads per
 * node finished the fleet's p99 at 2.56 × T*; 2 and 2 at 2.19 ×; 1 and 1 at 2.04 ×. Fewer at
 * once only on one side did worse (8 uploads, 2 downloads: 3.2 ×): the other side's link is
 * shared the same way.
 *
 * A limit that follows how long transfers take to land. It starts at `min`, so the first chunks
 * of a pull land as soon as they can. A transfer that lands within half of `targetMs` raises it
 * by one, so a fast link opens up to `max` within a few chunks. That holds whether the limit
 * was reached or not: a data server on a fast link answers each request in a few ms and rarely
 * holds two at once, though its peers would ask for more (with the limit reached as the rule, a
 * loopback transfer stayed at 2 uploads and ran at 0.42 × the necessary work instead of 0.82 ×).
 * One that takes longer than `targetMs` brings the limit down to what would have landed in time
 * at the same rate (concurrent × targetMs / took, not below `min`).
 * The limit never binds on links fast enough to land `max` chunks at once within the target.
 *
 * An agent keeps one for its data server's uploads (`uploadLandingMs`) and one per pull for its
 * peer requests (the scheduler's `peerLandingMs`, which the pull engine gives). A holder that
 * turns a request away as busy still counts as a holder when a node decides what to take from
 * the origin (the scheduler's `busy` failure): with the limits on and without that, at 1,000
 * simulated nodes knowing only their neighbours, the origin sent 1.21 × M instead of 1.00.
 */

export interface LandingLimitInit {
  /** transfers at once, at least (and at first) */
  min: number
  /** transfers at once, at most */
  max: number
  /** how long a transfer should take to land, in ms; 0 holds the limit at `max` */
  targetMs: number
}

export class LandingLimit {
  private current: number
  readonly min: number
  readonly max: number
  readonly targetMs: number

  constructor (init: LandingLimitInit) {
    const { min, max, targetMs } = init
    if (!Number.isInteger(min) || min < 1) throw new RangeError(`min must be a whole number of transfers, 1 or more (got ${String(min)})`)
    if (!Number.isInteger(max) || max < min) throw new RangeError(`max must be a whole number of transfers, at least min (${min}) (got ${String(max)})`)
    if (!Number.isFinite(targetMs) || targetMs < 0) throw new RangeError(`targetMs must be 0 (off) or a positive number of milliseconds (got ${String(targetMs)})`)
    this.min = min
    this.max = max
    this.targetMs = targetMs
    this.current = targetMs === 0 ? max : min
  }

  /** transfers to run at once now */
  get limit (): number {
    return this.current
  }

  /**
   * A transfer landed after `tookMs`, with `concurrent` transfers running on the link when it
   * ended (itself included).
   */
  landed (tookMs: number, concurrent: number): void {
    if (this.targetMs === 0 || !(tookMs >= 0)) return
    if (tookMs > this.targetMs) {
      const fits = Math.floor(Math.max(1, concurrent) * this.targetMs / tookMs)
      this.current = Math.max(this.min, Math.min(this.current, fits))
    } else if (tookMs <= this.targetMs / 2) {
      this.current = Math.min(this.max, this.current + 1)
    }
  }
}
