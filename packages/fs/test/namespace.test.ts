import { describe, expect, it } from 'vitest'
import { buildNamespace, linkTarget, lookupNamespace, refFromComponents } from '../src/index.js'

const A = 'bafyreia'
const B = 'bafyreib'

describe('namespace', () => {
  it('latest is the bare name, other tags get @tag, and "/" makes directories', () => {
    const root = buildNamespace([
      { name: 'llama', tag: 'latest', cid: A },
      { name: 'llama', tag: 'v2', cid: B },
      { name: 'meta/llama-3', tag: 'latest', cid: B }
    ])
    expect([...root.listed].sort()).toEqual(['llama', 'llama@v2', 'meta'])
    const meta = lookupNamespace(root, ['meta'])
    expect(meta.kind === 'namespace' && [...meta.node.listed]).toEqual(['llama-3'])
    const alias = lookupNamespace(root, ['llama@latest'])
    expect(alias.kind === 'alias' && alias.node.cid).toBe(A)
    const inside = lookupNamespace(root, ['meta', 'llama-3', 'config.json'])
    expect(inside).toMatchObject({ kind: 'alias', depth: 1, rest: ['config.json'] })
    expect(lookupNamespace(root, ['meta', 'nope'])).toEqual({ kind: 'missing', at: 1 })
  })

  it('a name that is also a directory stays a directory; its latest tag is reachable as name@latest', () => {
    const root = buildNamespace([
      { name: 'org', tag: 'latest', cid: A },
      { name: 'org/model', tag: 'latest', cid: B },
      { name: 'by-cid', tag: 'latest', cid: A }
    ])
    expect([...root.listed].sort()).toEqual(['by-cid@latest', 'org', 'org@latest'])
    expect(lookupNamespace(root, ['org']).kind).toBe('namespace')
    expect(lookupNamespace(root, ['org@latest'])).toMatchObject({ kind: 'alias', node: { cid: A } })
    expect(lookupNamespace(root, ['by-cid']).kind).toBe('missing')
  })

  it('later entries win for the same name and tag', () => {
    const root = buildNamespace([{ name: 'x', tag: 'latest', cid: A }, { name: 'x', tag: 'latest', cid: B }])
    expect(lookupNamespace(root, ['x'])).toMatchObject({ kind: 'alias', node: { cid: B } })
  })

  it('paths name refs only when they are valid names', () => {
    expect(refFromComponents(['org', 'model@v1'])).toEqual({ name: 'org/model', tag: 'v1' })
    expect(refFromComponents(['model'])).toEqual({ name: 'model', tag: 'latest' })
    for (const bad of [['Model'], ['a:b'], ['.hidden'], ['x@'], ['x@-bad'], []]) expect(refFromComponents(bad), bad.join('/')).toBeUndefined()
  })

  it('link targets are relative to where the name sits', () => {
    expect(linkTarget(A, 0)).toBe(`by-cid/${A}`)
    expect(linkTarget(A, 2)).toBe(`../../by-cid/${A}`)
  })
})
