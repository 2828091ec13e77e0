/**
 * Model references: `name[:tag]`.
 *
 * A name is one or more `/`-separated components of lowercase letters, digits, `.`, `_` and
 * `-`, each starting with a letter or digit (`llama-3-8b`, `meta/llama-3-70b`), at most 200
 * characters. The origin stores refs at `refs/<name>/<tag>`, and these rules keep a name from
 * ever spelling `..`, an absolute path or an empty key. A tag is 1 to 128 of `A-Z a-z 0-9 . _ -`,
 * not starting with `.` or `-`; without one, the tag is `latest`.
 */

import { InvalidRefError, type ModelRef } from '@swarm/interface'
import { DEFAULT_TAG, MAX_REF_NAME_LENGTH, MAX_TAG_LENGTH } from './constants.js'

const NAME_CHARACTER = /^[a-z0-9._/-]$/
const NAME_COMPONENT = /^[a-z0-9][a-z0-9._-]*$/
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/

/** Why `name` is not a valid model name, or undefined when it is. */
function nameProblem (name: string): string | undefined {
  if (name.length === 0) return 'the name is empty'
  if (name.length > MAX_REF_NAME_LENGTH) return `the name is ${name.length} characters long; the limit is ${MAX_REF_NAME_LENGTH}`
  for (const character of name) {
    if (NAME_CHARACTER.test(character)) continue
    if (character !== character.toLowerCase()) return 'the name must be lowercase'
    return `the name contains ${JSON.stringify(character)}; names use a-z, 0-9, ".", "_", "-" and "/"`
  }
  for (const component of name.split('/')) {
    if (component === '') return 'the name has an empty component (a leading, trailing or doubled "/")'
    if (!NAME_COMPONENT.test(component)) return `the name component ${JSON.stringify(component)} must start with a letter or digit`
  }
  return undefined
}

/** Why `tag` is not a valid tag, or undefined when it is. */
function tagProblem (tag: string): string | undefined {
  if (tag.length === 0) return `the tag is empty (leave out the ":" to mean "${DEFAULT_TAG}")`
  if (tag.length > MAX_TAG_LENGTH) return `the tag is ${tag.length} characters long; the limit is ${MAX_TAG_LENGTH}`
  if (!TAG.test(tag)) return `the tag ${JSON.stringify(tag)} must be letters, digits, ".", "_" and "-", not starting with "." or "-"`
  return undefined
}

/** Parses `name[:tag]`; the tag defaults to `latest`. Throws InvalidRefError saying what is wrong. */
export function parseRef (text: string): ModelRef {
  if (typeof text !== 'string') throw new InvalidRefError(`a model reference must be a string, got ${typeof text}`)
  if (text.length === 0) throw new InvalidRefError('the model reference is empty; expected name[:tag], e.g. meta/llama-3-70b:latest')
  const colon = text.indexOf(':')
  const name = colon === -1 ? text : text.slice(0, colon)
  const tag = colon === -1 ? DEFAULT_TAG : text.slice(colon + 1)
  const problem = nameProblem(name) ?? tagProblem(tag)
  if (problem !== undefined) throw new InvalidRefError(`invalid model reference ${JSON.stringify(text)}: ${problem}`)
  return { name, tag }
}

/** `name:tag`, after checking both parts as `parseRef` would. */
export function formatRef (ref: ModelRef): string {
  const problem = nameProblem(ref.name) ?? tagProblem(ref.tag)
  if (problem !== undefined) throw new InvalidRefError(`invalid model reference ${JSON.stringify(ref)}: ${problem}`)
  return `${ref.name}:${ref.tag}`
}
