/**
 * libp2p modules call `Promise.withResolvers` (ES2024), which Node 20 lacks. This module
 * installs it when missing; it must be evaluated before any libp2p module, so every module
 * here that imports libp2p imports this one first.
 */

if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> (): PromiseWithResolvers<T> {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => {
        resolve = res
        reject = rej
      })
      return { promise, resolve, reject }
    }
  })
}

export {}
