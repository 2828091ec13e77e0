/**
 * @packageDocumentation
 *
 * Manifests: their schema, canonical bytes and CIDs, and the `name:tag` references that point
 * at them. Pure: nothing here reads files or the network. Anything decoded was hashed against
 * its CID first and validated in full, so callers can join its paths under a directory and
 * trust its chunk offsets.
 *
 * @example
 *
 * ```ts
 * import { decodeManifest, encodeManifest, formatRef, isManifestCid, parseRef } from '@swarm/manifest'
 *
 * const { bytes, cid } = encodeManifest({ version: 1, chunkSize, files })
 * await origin.putManifest(cid, bytes)
 * await origin.putRef(parseRef('meta/llama-3-70b:v2'), cid)
 *
 * const target = isManifestCid(text) ? text : await origin.resolveRef(parseRef(text))
 * const manifest = decodeManifest(await origin.getManifest(target), { expectedCid: target })
 * ```
 */

export * from './blocks.js'
export * from './codec.js'
export * from './constants.js'
export * from './errors.js'
export * from './refs.js'
export { formatIssue, manifestSchema, manifestShapeSchema, pathProblem, validateManifest } from './schema.js'
