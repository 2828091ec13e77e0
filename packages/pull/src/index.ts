/**
 * @packageDocumentation
 *
 * One pull of one manifest, whoever runs it: the agent (peers over libp2p and the TLS data
 * plane, then the origin), `swarm pull --no-agent` (the origin alone) and the fleet simulator
 * (simulated peers in virtual time) all drive this `PullSession`. The pure scheduler
 * (`@swarm/scheduler`) decides; the session turns its decisions into fetches through small
 * interfaces it defines (`PullPeers`, `PullSources`, `PullFetcher`, the store, a `PullClock`).
 * The design notes are at the top of `session.ts`.
 *
 * Also here: the one way to have a manifest by CID (`resolveManifest`: store, origin, peers).
 *
 * @example
 *
 * ```ts
 * import { PullSession, resolveManifest } from '@swarm/pull'
 * import { fetcher, originSource } from '@swarm/fetcher'
 *
 * const manifest = await resolveManifest(manifestCid, { store, origin })
 * await store.addManifest(manifestCid, manifest)
 * const session = new PullSession({
 *   manifestCid,
 *   manifest,
 *   store,
 *   fetcher: fetcher({ store, sources: [] }),
 *   sources: { origin: originSource(origin), peer: () => undefined }
 * })
 * const { progress } = await session.run({ signal, onProgress: p => bar.update(p.doneBytes) })
 * ```
 */

export * from './constants.js'
export * from './errors.js'
export { systemClock } from './clock.js'
export type { PullClock } from './clock.js'
export { PullSession, guarded } from './session.js'
export type { NamedFetcher, PullFetcher, PullPeer, PullPeerEvents, PullPeers, PullSessionInit, PullSources, PullStore, RunOptions, SessionResult } from './session.js'
export { resolveManifest } from './resolver.js'
export type { ManifestPeers, ResolveManifestInit } from './resolver.js'
