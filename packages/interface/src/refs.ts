import { InvalidRefError, NotFoundError } from './errors.js'
import type { Logger } from './logger.js'
import type { CidString, ModelRef, RefEntry } from './index.js'

/** Ref bodies read at once while listing. */
export const REF_LIST_CONCURRENCY = 8

/**
 * Resolves refs an origin listed, a batch at a time, in listing order. A ref removed since the
 * listing (NotFoundError) is left out; so is a damaged one (InvalidRefError, logged as a
 * warning), so that one bad object never hides the others. Anything else rejects.
 */
export async function * resolveListedRefs (refs: ModelRef[], resolve: (ref: ModelRef) => Promise<CidString>, log: Logger, concurrency = REF_LIST_CONCURRENCY): AsyncIterable<RefEntry> {
  for (let i = 0; i < refs.length; i += concurrency) {
    const batch = refs.slice(i, i + concurrency)
    const cids = await Promise.all(batch.map(async ref => {
      try {
        return await resolve(ref)
      } catch (err) {
        if (err instanceof NotFoundError) return undefined
        if (err instanceof InvalidRefError) {
          log.warn({ ref: `${ref.name}:${ref.tag}` }, err.message)
          return undefined
        }
        throw err
      }
    }))
    for (const [j, ref] of batch.entries()) {
      const cid = cids[j]
      if (cid !== undefined) yield { ...ref, cid }
    }
  }
}
