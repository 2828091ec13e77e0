/** A model's files as a directory tree, built once per manifest. */

import type { Manifest } from '@swarm/interface'

export interface ModelTree {
  /** directory path ('' for the model's root) → names in it, sorted */
  readonly dirs: ReadonlyMap<string, readonly string[]>
  /** file path → index in `manifest.files` */
  readonly files: ReadonlyMap<string, number>
}

export function buildTree (manifest: Manifest): ModelTree {
  const dirs = new Map<string, Set<string>>([['', new Set()]])
  const files = new Map<string, number>()
  manifest.files.forEach((file, index) => {
    files.set(file.path, index)
    const components = file.path.split('/')
    let parent = ''
    for (const component of components) {
      const path = parent === '' ? component : `${parent}/${component}`
      dirs.get(parent)?.add(component)
      if (path !== file.path && !dirs.has(path)) dirs.set(path, new Set())
      parent = path
    }
  })
  const sorted = new Map<string, string[]>()
  for (const [path, names] of dirs) sorted.set(path, [...names].sort())
  return { dirs: sorted, files }
}
