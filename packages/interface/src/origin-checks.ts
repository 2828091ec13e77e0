/**
 * Argument checks every origin makes the same way, so each names a bad value alike: a CID that
 * could escape an origin's key layout is refused before it becomes a key, a path or a URL.
 */

import type { CidString } from './index.js'

/** A CIDv1 in base32, as the chunker makes them: safe as a key, a path segment and a URL segment. */
export const CID_PATTERN = /^b[a-z2-7]{8,200}$/

/** Throws TypeError unless `cid` is a CIDv1 in base32. */
export function checkCid (cid: CidString): void {
  if (typeof cid !== 'string' || !CID_PATTERN.test(cid)) {
    throw new TypeError(`invalid CID ${JSON.stringify(cid)}: expected a CIDv1 in base32 (b…)`)
  }
}

/** An integer setting of at least `min`, or `fallback` when unset; TypeError naming it otherwise. */
export function integerSetting (value: number | undefined, fallback: number, name: string, min = 1): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < min) throw new TypeError(`${name} must be an integer ≥ ${min}, got ${value}`)
  return value
}
