/**
 * The names at the top of the view. A model name may contain `/` (`org/model`): its components
 * before the last are directories. The last component is a link to the model's immutable
 * directory under `by-cid/`: `name` for the tag `latest`, `name@tag` for any tag (`name@latest`
 * too). When a name is also the directory of longer names (`org` and `org/model`), the directory
 * wins and `org:latest` is reachable as `org@latest`. `by-cid` at the root is reserved the same way.
 */

import { InvalidRefError } from '@swarm/interface'
import { DEFAULT_TAG, parseRef } from '@swarm/manifest'
import { BY_CID, TAG_SEPARATOR } from './constants.js'
import type { CidString, ModelRef, RefEntry } from '@swarm/interface'

export interface AliasNode {
  kind: 'alias'
  ref: ModelRef
  cid: CidString
}

export interface NamespaceDirectory {
  kind: 'namespace'
  /** every name a lookup accepts */
  children: Map<string, NamespaceDirectory | AliasNode>
  /** the names a listing shows (`name@latest` is hidden when `name` is shown) */
  listed: Set<string>
}

function directory (): NamespaceDirectory {
  return { kind: 'namespace', children: new Map(), listed: new Set() }
}

/**
 * The tree of names for these refs. Later entries win over earlier ones for the same `name:tag`,
 * so pass what the origin knows first and what the store holds last.
 */
export function buildNamespace (entries: Iterable<RefEntry>): NamespaceDirectory {
  const root = directory()
  const byRef = new Map<string, RefEntry>()
  for (const entry of entries) byRef.set(`${entry.name}:${entry.tag}`, entry)

  // directories first, so a name that is also a directory never becomes a link
  for (const { name } of byRef.values()) {
    const components = name.split('/')
    let dir = root
    for (const component of components.slice(0, -1)) {
      let child = dir.children.get(component)
      if (child?.kind !== 'namespace') {
        child = directory()
        dir.children.set(component, child)
        dir.listed.add(component)
      }
      dir = child
    }
  }

  for (const entry of byRef.values()) {
    const components = entry.name.split('/')
    const leaf = components[components.length - 1] as string
    let dir = root
    for (const component of components.slice(0, -1)) dir = dir.children.get(component) as NamespaceDirectory
    const alias: AliasNode = { kind: 'alias', ref: { name: entry.name, tag: entry.tag }, cid: entry.cid }
    const tagged = `${leaf}${TAG_SEPARATOR}${entry.tag}`
    dir.children.set(tagged, alias)
    const plainFree = entry.tag === DEFAULT_TAG && dir.children.get(leaf)?.kind !== 'namespace' && !(dir === root && leaf === BY_CID)
    if (plainFree) {
      dir.children.set(leaf, alias)
      dir.listed.add(leaf)
    } else {
      dir.listed.add(tagged)
    }
  }
  return root
}

export type NamespaceLookup =
  | { kind: 'namespace', node: NamespaceDirectory }
  | { kind: 'alias', node: AliasNode, depth: number, rest: string[] }
  | { kind: 'missing', at: number }

/**
 * Walks `components` from the root: a directory, a link (with the components after it), or the
 * index of the first component not found.
 */
export function lookupNamespace (root: NamespaceDirectory, components: readonly string[]): NamespaceLookup {
  let dir = root
  for (const [i, component] of components.entries()) {
    const child = dir.children.get(component)
    if (child === undefined) return { kind: 'missing', at: i }
    if (child.kind === 'alias') return { kind: 'alias', node: child, depth: i, rest: components.slice(i + 1) }
    dir = child
  }
  return { kind: 'namespace', node: dir }
}

/**
 * The ref a path names when its last component is `name` or `name@tag`, or undefined when it
 * names none (bad characters, `..`, and so on): such a path simply does not exist.
 */
export function refFromComponents (components: readonly string[]): ModelRef | undefined {
  const last = components[components.length - 1]
  if (last === undefined) return undefined
  const separator = last.indexOf(TAG_SEPARATOR)
  const leaf = separator === -1 ? last : last.slice(0, separator)
  const tag = separator === -1 ? DEFAULT_TAG : last.slice(separator + 1)
  try {
    return parseRef(`${[...components.slice(0, -1), leaf].join('/')}:${tag}`)
  } catch (err) {
    if (err instanceof InvalidRefError) return undefined
    throw err
  }
}

/** The link a name at `depth` (0 = in the root) holds: relative, so it works wherever the view is mounted. */
export function linkTarget (cid: CidString, depth: number): string {
  return `${'../'.repeat(depth)}${BY_CID}/${cid}`
}
