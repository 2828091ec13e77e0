/**
 * The store as a fetcher writes into it, handing each chunk's bytes to the view between their
 * verification and the end of their write (`ModelFs.landing`): a reader waiting for the chunk has
 * them at once, rather than after the write, its data sync and its journal record, which take
 * longer than the download itself. The store's `putChunk` says when the bytes have matched the
 * CID (its `onVerified` option), so nothing is hashed twice and nothing unverified is handed over.
 *
 * The bytes are the fetcher's (a source may pool them and read the next chunk into the same
 * memory once `putChunk` has settled), so the view is told to let go of them before `putChunk`
 * returns.
 */

import type { ModelFs } from './model-fs.js'
import type { AbortOptions, CidString } from '@swarm/interface'

/** What `landingStore` needs of a store: a `putChunk` that calls `onVerified` between verifying and writing. */
export interface VerifyingStore<R> {
  putChunk(cid: CidString, bytes: Uint8Array, options?: AbortOptions & { onVerified?(): void }): Promise<R>
}

/**
 * `store`, but whose `putChunk` hands verified bytes to the view `viewOf` returns (undefined: to
 * none, as before the view is made). Every other property is the store's own.
 */
export function landingStore<S extends VerifyingStore<unknown>> (store: S, viewOf: () => Pick<ModelFs, 'landing'> | undefined): S {
  const putChunk: VerifyingStore<unknown>['putChunk'] = async (cid, bytes, options = {}) => {
    let done: (() => void) | undefined
    try {
      return await store.putChunk(cid, bytes, {
        ...options,
        onVerified () {
          options.onVerified?.()
          done = viewOf()?.landing(cid, bytes)
        }
      })
    } finally {
      done?.()
    }
  }
  return new Proxy(store, {
    get (target, property) {
      if (property === 'putChunk') return putChunk
      const value: unknown = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}
