/**
 * Name resolution for the view: a path to what it names (the root, `by-cid`, a namespace
 * directory, a link, a model's directory or file), and the names and manifests behind it.
 *
 * ## Layout
 *
 * - `/by-cid/<manifest cid>/<file path>`: a model's files and directories, exactly as its
 *   manifest lists them. A manifest CID names immutable content, so everything below it can be
 *   cached by the kernel for as long as it likes (pages and attributes alike).
 * - `/<name>` and `/<name>@<tag>`: relative symbolic links to `by-cid/<cid>`, the model the name
 *   means now (see namespace.ts for names with `/`). Names move when a new version is pulled or
 *   pushed; a link is resolved at every path walk (libfuse 2 does not let the kernel cache link
 *   targets), so a moved name is seen at once while the content it led to stays cached.
 *
 * Names come from the store (models held, and the names they were pulled under), from the
 * resolver's list (names the origin knows) and, for a name looked up but listed nowhere, from the
 * resolver (the origin). Looking up `/by-cid/<cid>` of a model not held asks the resolver to add
 * its manifest to the store, without pulling a byte of its files; reads then fetch what they need.
 */

import { AbortError, NotFoundError } from '@swarm/interface'
import { formatRef, isManifestCid, parseRef } from '@swarm/manifest'
import { LRUCache } from 'lru-cache'
import { BY_CID, HELD_TTL_MS, TREE_CACHE_SIZE } from './constants.js'
import { buildNamespace, lookupNamespace, refFromComponents } from './namespace.js'
import { buildTree } from './tree.js'
import type { ModelFsInit } from './model-fs.js'
import type { NamespaceDirectory } from './namespace.js'
import type { ModelTree } from './tree.js'
import type { ChunkStore, CidString, Logger, Manifest, ModelRef, RefEntry } from '@swarm/interface'

/** What a path names. */
export type Target =
  | { kind: 'root' }
  | { kind: 'by-cid' }
  | { kind: 'namespace', node: NamespaceDirectory }
  | { kind: 'alias', cid: CidString, depth: number }
  | { kind: 'model-dir', cid: CidString, tree: ModelTree, dir: string }
  | { kind: 'model-file', cid: CidString, manifest: Manifest, index: number }

/** How long names and manifests are waited for and remembered; see ModelFsInit. */
export interface NameTimes {
  resolveTimeoutMs: number
  negativeTtlMs: number
  refsTtlMs: number
}

export class Names {
  private readonly store: ChunkStore
  private readonly resolveTimeoutMs: number
  private readonly negativeTtlMs: number
  private readonly refsTtlMs: number
  private readonly trees = new LRUCache<CidString, ModelTree>({ max: TREE_CACHE_SIZE })
  private held: RefEntry[] = []
  private heldKey = ''
  private heldAt = -Infinity
  private known: RefEntry[] = []
  private knownAt = -Infinity
  private knownRefresh?: Promise<void>
  private root?: NamespaceDirectory
  /** name:tag → what the resolver said, until when */
  private readonly resolved = new Map<string, { cid?: CidString, until: number }>()
  /** manifest CID → the name it was reached through, recorded with it when it is added */
  private readonly refOf = new Map<CidString, string>()
  private readonly adding = new Map<CidString, Promise<Manifest>>()
  private readonly unavailable = new Map<CidString, { error: Error, until: number }>()

  constructor (private readonly init: ModelFsInit, private readonly log: Logger, times: NameTimes) {
    this.store = init.store
    this.resolveTimeoutMs = times.resolveTimeoutMs
    this.negativeTtlMs = times.negativeTtlMs
    this.refsTtlMs = times.refsTtlMs
  }

  /** What `path` names; NotFoundError when nothing. */
  async resolve (path: string, signal?: AbortSignal): Promise<Target> {
    const parts = components(path)
    if (parts.length === 0) return { kind: 'root' }
    if (parts[0] === BY_CID) {
      if (parts.length === 1) return { kind: 'by-cid' }
      return await this.modelTarget(parts[1] as string, parts.slice(2), path, signal)
    }
    const root = await this.namespace(signal)
    const found = lookupNamespace(root, parts)
    if (found.kind === 'namespace') return { kind: 'namespace', node: found.node }
    if (found.kind === 'alias') {
      if (!this.isHeld(found.node.cid)) this.refOf.set(found.node.cid, formatRef(found.node.ref))
      if (found.rest.length === 0) return { kind: 'alias', cid: found.node.cid, depth: found.depth }
      // a caller that does not follow links itself (the kernel does): go on inside the model
      return await this.modelTarget(found.node.cid, found.rest, path, signal)
    }
    const ref = refFromComponents(parts.slice(0, found.at + 1))
    if (ref === undefined) throw new NotFoundError(`${path} does not exist`)
    const cid = await this.resolveRef(ref, signal)
    if (found.at === parts.length - 1) return { kind: 'alias', cid, depth: found.at }
    return await this.modelTarget(cid, parts.slice(found.at + 1), path, signal)
  }

  private async modelTarget (cid: string, rest: string[], path: string, signal?: AbortSignal): Promise<Target> {
    if (!isManifestCid(cid)) throw new NotFoundError(`${path} does not exist: ${cid} is not a manifest CID`)
    const manifest = await this.manifest(cid, signal)
    let tree = this.trees.get(cid)
    if (tree === undefined) {
      tree = buildTree(manifest)
      this.trees.set(cid, tree)
    }
    const relative = rest.join('/')
    if (tree.dirs.has(relative)) return { kind: 'model-dir', cid, tree, dir: relative }
    const index = tree.files.get(relative)
    if (index !== undefined) return { kind: 'model-file', cid, manifest, index }
    throw new NotFoundError(`${path} does not exist`)
  }

  private isHeld (cid: CidString): boolean {
    return this.store.getManifest(cid) !== undefined
  }

  /** A held manifest, or one the resolver adds to the store now. */
  private async manifest (cid: CidString, signal?: AbortSignal): Promise<Manifest> {
    const held = this.store.getManifest(cid)
    if (held !== undefined) return held
    const resolver = this.init.resolver
    if (resolver === undefined) throw new NotFoundError(`model ${cid} is not held`)
    const failed = this.unavailable.get(cid)
    if (failed !== undefined && failed.until > Date.now()) throw failed.error
    let adding = this.adding.get(cid)
    if (adding === undefined) {
      adding = (async () => {
        const ref = this.refOf.get(cid)
        await resolver.addManifest(cid, { signal: AbortSignal.timeout(this.resolveTimeoutMs), ...(ref !== undefined ? { ref } : {}) })
        const manifest = this.store.getManifest(cid)
        if (manifest === undefined) throw new NotFoundError(`model ${cid} was not added to the store`)
        this.log.info({ manifestCid: cid, ref }, 'manifest added for the view')
        this.heldAt = -Infinity
        return manifest
      })()
      adding.catch((err: Error) => {
        this.log.debug({ manifestCid: cid, err: err.message }, 'manifest could not be had')
        this.unavailable.set(cid, { error: err instanceof NotFoundError ? err : new NotFoundError(`model ${cid}: ${err.message}`), until: Date.now() + this.negativeTtlMs })
      }).finally(() => { this.adding.delete(cid) })
      this.adding.set(cid, adding)
    }
    try {
      return await abortable(adding, signal)
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof AbortError) throw err
      throw new NotFoundError(`model ${cid}: ${(err as Error).message}`)
    }
  }

  private async resolveRef (ref: ModelRef, signal?: AbortSignal): Promise<CidString> {
    const key = formatRef(ref)
    const resolver = this.init.resolver
    if (resolver === undefined) throw new NotFoundError(`${key} is not held`)
    const cached = this.resolved.get(key)
    if (cached !== undefined && cached.until > Date.now()) {
      if (cached.cid === undefined) throw new NotFoundError(`${key} does not exist`)
      return cached.cid
    }
    try {
      const cid = await resolver.resolveRef(ref, { signal: withTimeout(this.resolveTimeoutMs, signal) })
      this.resolved.set(key, { cid, until: Date.now() + this.refsTtlMs })
      if (!this.isHeld(cid)) this.refOf.set(cid, key)
      return cid
    } catch (err) {
      if (signal?.aborted === true) throw new AbortError()
      this.resolved.set(key, { until: Date.now() + this.negativeTtlMs })
      if (!(err instanceof NotFoundError)) this.log.debug({ ref: key, err: (err as Error).message }, 'name could not be resolved')
      throw new NotFoundError(`${key} does not exist`)
    }
  }

  async namespace (signal?: AbortSignal): Promise<NamespaceDirectory> {
    const now = Date.now()
    if (now - this.heldAt > HELD_TTL_MS) {
      this.heldAt = now
      const held = heldEntries(this.store)
      const key = held.map(e => `${e.name}:${e.tag}=${e.cid}`).join('\n')
      if (key !== this.heldKey) {
        this.held = held
        this.heldKey = key
        this.root = undefined
      }
    }
    const listRefs = this.init.resolver?.listRefs
    if (listRefs !== undefined && now - this.knownAt > this.refsTtlMs && this.knownRefresh === undefined) {
      const first = this.knownAt === -Infinity
      this.knownRefresh = (async () => {
        try {
          this.known = await listRefs.call(this.init.resolver, { signal: AbortSignal.timeout(this.resolveTimeoutMs) })
          this.knownAt = Date.now()
        } catch (err) {
          // try again soon; meanwhile list what is held
          this.knownAt = Date.now() - this.refsTtlMs + this.negativeTtlMs
          this.log.debug({ err: (err as Error).message }, 'names could not be listed')
        }
        this.root = undefined
      })().finally(() => { this.knownRefresh = undefined })
      // only the first listing is waited for; later ones refresh behind the answer
      if (first) await abortable(this.knownRefresh, signal)
    }
    this.root ??= buildNamespace([...this.known, ...this.held])
    return this.root
  }

  /** A model left the store: the held names are read again at the next lookup. */
  evicted (): void {
    this.heldAt = -Infinity
  }
}

function components (path: string): string[] {
  if (typeof path !== 'string' || !path.startsWith('/')) throw new NotFoundError(`${String(path)} is not an absolute path`)
  const parts = path.split('/').filter(part => part !== '')
  if (parts.some(part => part === '.' || part === '..')) throw new NotFoundError(`${path} is not a normalized path`)
  return parts
}

function heldEntries (store: ChunkStore): RefEntry[] {
  const out: RefEntry[] = []
  // least recently used first: when two held models claim one name, the later use wins
  for (const model of store.models().sort((a, b) => a.lastUsed - b.lastUsed)) {
    for (const ref of model.refs) {
      const { name, tag } = parseRef(ref)
      out.push({ name, tag, cid: model.manifestCid })
    }
  }
  return out
}

function withTimeout (ms: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(ms)
  return signal == null ? timeout : AbortSignal.any([timeout, signal])
}

async function abortable<T> (promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal == null) return await promise
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(new AbortError()) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}
