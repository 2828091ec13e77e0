import { describe, expect, it } from 'vitest'
import { InvalidRefError } from '@swarm/interface'
import { DEFAULT_TAG, formatRef, parseRef } from '../src/index.js'

describe('parseRef', () => {
  it('splits name and tag, defaulting the tag to latest', () => {
    expect(parseRef('llama')).toEqual({ name: 'llama', tag: DEFAULT_TAG })
    expect(DEFAULT_TAG).toBe('latest')
    expect(parseRef('meta/llama-3-70b:v2')).toEqual({ name: 'meta/llama-3-70b', tag: 'v2' })
    expect(parseRef('org/team/qwen2.5_7b:2024-06-01.rc1')).toEqual({ name: 'org/team/qwen2.5_7b', tag: '2024-06-01.rc1' })
    expect(parseRef('0day:_x')).toEqual({ name: '0day', tag: '_x' })
    expect(parseRef('m:Latest')).toEqual({ name: 'm', tag: 'Latest' })
  })

  it('accepts names and tags at their length limits', () => {
    const name = 'a'.repeat(200)
    const tag = 'T'.repeat(128)
    expect(parseRef(`${name}:${tag}`)).toEqual({ name, tag })
  })

  const rejections: Array<[string, string]> = [
    ['', 'the model reference is empty; expected name[:tag], e.g. meta/llama-3-70b:latest'],
    [':v1', 'invalid model reference ":v1": the name is empty'],
    ['Meta/Llama', 'invalid model reference "Meta/Llama": the name must be lowercase'],
    ['llama 3', 'invalid model reference "llama 3": the name contains " "; names use a-z, 0-9, ".", "_", "-" and "/"'],
    ['llama@sha256', 'invalid model reference "llama@sha256": the name contains "@"; names use a-z, 0-9, ".", "_", "-" and "/"'],
    ['/llama', 'invalid model reference "/llama": the name has an empty component (a leading, trailing or doubled "/")'],
    ['meta//llama', 'invalid model reference "meta//llama": the name has an empty component (a leading, trailing or doubled "/")'],
    ['meta/', 'invalid model reference "meta/": the name has an empty component (a leading, trailing or doubled "/")'],
    ['meta/../x', 'invalid model reference "meta/../x": the name component ".." must start with a letter or digit'],
    ['-llama', 'invalid model reference "-llama": the name component "-llama" must start with a letter or digit'],
    ['meta/_x', 'invalid model reference "meta/_x": the name component "_x" must start with a letter or digit'],
    ['a'.repeat(201), `invalid model reference "${'a'.repeat(201)}": the name is 201 characters long; the limit is 200`],
    ['llama:', 'invalid model reference "llama:": the tag is empty (leave out the ":" to mean "latest")'],
    ['llama:.hidden', 'invalid model reference "llama:.hidden": the tag ".hidden" must be letters, digits, ".", "_" and "-", not starting with "." or "-"'],
    ['llama:-x', 'invalid model reference "llama:-x": the tag "-x" must be letters, digits, ".", "_" and "-", not starting with "." or "-"'],
    ['llama:v1:v2', 'invalid model reference "llama:v1:v2": the tag "v1:v2" must be letters, digits, ".", "_" and "-", not starting with "." or "-"'],
    ['llama:a/b', 'invalid model reference "llama:a/b": the tag "a/b" must be letters, digits, ".", "_" and "-", not starting with "." or "-"'],
    [`llama:${'t'.repeat(129)}`, `invalid model reference "llama:${'t'.repeat(129)}": the tag is 129 characters long; the limit is 128`]
  ]
  for (const [text, message] of rejections) {
    it(`rejects ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)}`, () => {
      expect(() => parseRef(text)).toThrow(InvalidRefError)
      expect(() => parseRef(text)).toThrow(message)
    })
  }

  it('rejects input that is not a string', () => {
    expect(() => parseRef(42 as unknown as string)).toThrow('a model reference must be a string, got number')
  })
})

describe('formatRef', () => {
  it('writes name:tag and round-trips through parseRef', () => {
    for (const text of ['llama:latest', 'meta/llama-3-70b:v2', 'a.b_c-d/e:X.Y_z-1']) {
      expect(formatRef(parseRef(text))).toBe(text)
    }
    expect(formatRef(parseRef('llama'))).toBe('llama:latest')
  })

  it('refuses refs parseRef would refuse', () => {
    expect(() => formatRef({ name: 'Llama', tag: 'latest' })).toThrow(InvalidRefError)
    expect(() => formatRef({ name: 'llama', tag: '' })).toThrow(/the tag is empty/)
  })
})
