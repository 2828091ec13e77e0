/**
 * Node labels and selectors, as Kubernetes writes them: labels `pool=a`, selectors of
 * comma-separated equality requirements `pool=a,zone!=b` (`==` is `=`). Every requirement must
 * hold; `k!=v` also holds for a node without the label `k`, as in Kubernetes. An empty selector
 * selects every node. Keys and values follow Kubernetes' syntax, so labels from the downward API
 * pass unchanged, and nothing else does.
 */

import { InvalidSelectorError } from './errors.js'

export interface Requirement {
  key: string
  op: '=' | '!='
  value: string
}

export type Selector = readonly Requirement[]

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const PREFIX = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/
const VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/

/** Throws {@link InvalidSelectorError} unless `key` is a Kubernetes label key (`[prefix/]name`). */
export function checkLabelKey (key: string): string {
  const slash = key.indexOf('/')
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined
  const name = slash >= 0 ? key.slice(slash + 1) : key
  if (!NAME.test(name) || (prefix != null && !PREFIX.test(prefix))) {
    throw new InvalidSelectorError(`not a label key: ${JSON.stringify(key)} (letters, digits, '-', '_', '.', up to 63, optionally after a DNS prefix and '/')`)
  }
  return key
}

export function checkLabelValue (value: string): string {
  if (!VALUE.test(value)) {
    throw new InvalidSelectorError(`not a label value: ${JSON.stringify(value)} (letters, digits, '-', '_', '.', up to 63, starting and ending alphanumeric)`)
  }
  return value
}

/** `k=v,k2=v2` (or a list of `k=v`) to labels; a repeated key takes the last value. */
export function parseLabels (input: string | readonly string[]): Record<string, string> {
  const items = typeof input === 'string' ? input.split(',') : input.flatMap(i => i.split(','))
  const labels: Record<string, string> = {}
  for (const raw of items) {
    const item = raw.trim()
    if (item === '') continue
    const eq = item.indexOf('=')
    if (eq <= 0) throw new InvalidSelectorError(`not a label: ${JSON.stringify(item)} (expected key=value)`)
    labels[checkLabelKey(item.slice(0, eq).trim())] = checkLabelValue(item.slice(eq + 1).trim())
  }
  return labels
}

export function parseSelector (input: string): Selector {
  const requirements: Requirement[] = []
  for (const raw of input.split(',')) {
    const item = raw.trim()
    if (item === '') continue
    const match = /^([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)$/.exec(item)
    if (match == null) throw new InvalidSelectorError(`not a selector requirement: ${JSON.stringify(item)} (expected key=value or key!=value)`)
    requirements.push({ key: checkLabelKey(match[1] ?? ''), op: match[2] === '!=' ? '!=' : '=', value: checkLabelValue(match[3] ?? '') })
  }
  return requirements
}

export function matchesSelector (selector: Selector, labels: Readonly<Record<string, string>>): boolean {
  return selector.every(({ key, op, value }) => op === '=' ? labels[key] === value : labels[key] !== value)
}

export function formatSelector (selector: Selector): string {
  return selector.map(r => `${r.key}${r.op}${r.value}`).join(',')
}
