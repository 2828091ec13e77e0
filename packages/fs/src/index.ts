/**
 * @packageDocumentation
 *
 * The read-only file system of models, without FUSE: paths, attributes, listings and reads over
 * the local store, fetching missing chunks on demand (peers first, origin after, through the same
 * fetcher as a pull) and prefetching ahead of readers in a way that suits model loaders
 * (sequential read-ahead growing to 256 MiB, safetensors headers and tensors in file order,
 * whole-file prefetch for mmap-style scattered reads). An adapter (`@swarm/fuse-native`) mounts
 * it; errors thrown here are the ones it maps to errno.
 *
 * Layout: `/<name>` and `/<name>@<tag>` are links to `/by-cid/<manifest cid>/`, where a model's
 * files and directories are, as its manifest lists them.
 *
 * @example
 *
 * ```ts
 * import { modelFs } from '@swarm/fs'
 *
 * const view = modelFs({ store, fetcher, sourcesFor: (cid, chunk) => [...peersWith(cid, chunk), origin], resolver, logger })
 * await view.readdir('/')                        // ['by-cid', 'llama', 'org', …]
 * await view.readlink('/llama')                  // 'by-cid/bafy…'
 * const fh = await view.open('/by-cid/bafy…/model.safetensors', 0)
 * const n = await view.read(fh, buffer, 0)       // fetches the chunks it needs first
 * // fetcher({ store, sources, landing: (cid, bytes) => view.landing(cid, bytes) }) lets reads take verified bytes before they are written
 * await view.release(fh)
 * await view.close()
 * ```
 */

export { modelFs } from './model-fs.js'
export { errnoOf } from './errno.js'
export { checkFuseDevice, clearStaleMount, mountedAt } from './mount-table.js'
export type { FuseCheck, MountEntry } from './mount-table.js'
export type {
  Attributes,
  ChunkArrival,
  ChunkFetcher,
  FileContent,
  FileIdentity,
  FsStatistics,
  ModelFs,
  ModelFsInit,
  ModelResolver,
  NodeKind,
  OpenOptions,
  ViewStats
} from './model-fs.js'
export { Prefetcher } from './prefetcher.js'
// the chunk holding an offset: `@swarm/interface`'s, with the rest of the chunk index space
export { chunkAt } from '@swarm/interface'
export type { PrefetchFile, PrefetchStats, PrefetchStream, PrefetcherInit, ReadAheadOptions, StreamMode } from './prefetcher.js'
export { buildNamespace, linkTarget, lookupNamespace, refFromComponents } from './namespace.js'
export type { AliasNode, NamespaceDirectory, NamespaceLookup } from './namespace.js'
export { buildTree } from './tree.js'
export type { ModelTree } from './tree.js'
export * from './constants.js'
export * from './errors.js'
