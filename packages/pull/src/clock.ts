/** Time for a pull: the process's monotonic clock in the agent, virtual time in the simulator. */
export interface PullClock {
  /** milliseconds on a monotonic scale */
  now(): number
  /** calls `fn` once after `ms`; the timer must not keep the process alive */
  setTimer(ms: number, fn: () => void): unknown
  clearTimer(timer: unknown): void
}

/** `performance.now()` and unref'd `setTimeout`. */
export const systemClock: PullClock = {
  now: () => performance.now(),
  setTimer (ms, fn) {
    const timer = setTimeout(fn, ms)
    timer.unref()
    return timer
  },
  clearTimer (timer) {
    clearTimeout(timer as NodeJS.Timeout)
  }
}
