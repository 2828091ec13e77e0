/**
 * `oci://` URLs and how model refs map onto repositories and tags.
 *
 * `oci://host[:port][/namespace]` names a registry and a namespace in it; the model `name:tag`
 * is repository `namespace/name`, tag `tag`. `oci://host/team/llama-70b:v3` (or `@sha256:…`)
 * also pins one model: `llama-70b` with tag `latest` or `v3` resolves to that reference, so
 * `swarm pull llama-70b --origin oci://host/team/llama-70b:v3` pulls what the URL names; other
 * names and tags resolve in the namespace (`team`) as usual.
 *
 * Loopback registries (127.0.0.0/8, ::1, localhost) are spoken to over plain HTTP, as Docker and
 * containerd do; every other host over HTTPS unless `plainHttp` says otherwise.
 */

import { InvalidRefError } from '@swarm/interface'
import { DEFAULT_TAG, formatRef } from '@swarm/manifest'
import { DIGEST_PATTERN, REPOSITORY_COMPONENT, TAG_PATTERN } from './constants.js'
import type { ModelRef } from '@swarm/interface'

export interface OciLocation {
  /** `host[:port]`, the key credentials are filed under */
  registry: string
  /** `http(s)://host[:port]` */
  base: string
  /** repository path prefix, '' at the registry's root */
  namespace: string
  pinned?: { name: string, repository: string, reference: string }
  /** from the URL's userinfo */
  credentials?: { username: string, password: string }
  /** the URL without credentials */
  display: string
}

/** A repository and a tag or digest in it. */
export interface Target {
  repository: string
  reference: string
}

const LOOPBACK = /^(?:127(?:\.\d{1,3}){3}|localhost|\[::1\])$/

function invalid (url: string, why: string): TypeError {
  return new TypeError(`invalid origin URL ${JSON.stringify(url)}: ${why}; expected oci://registry[:port]/namespace or oci://registry/repository:tag`)
}

/** Why `path` is not a valid repository path, or undefined. */
export function repositoryProblem (path: string): string | undefined {
  if (path.length > 255) return `the repository ${JSON.stringify(path)} is longer than 255 characters`
  for (const component of path.split('/')) {
    if (!REPOSITORY_COMPONENT.test(component)) return `the repository component ${JSON.stringify(component)} is not valid in a registry (lowercase letters and digits, separated by ".", "_", "__" or "-")`
  }
  return undefined
}

export function parseOciUrl (input: string | URL, plainHttp?: boolean): OciLocation {
  const text = String(input)
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw invalid(text.replace(/\/\/[^@/]*@/, '//***@'), 'not a URL')
  }
  if (url.protocol !== 'oci:') throw invalid(url.protocol + '//' + url.host + url.pathname, 'expected the oci: scheme')
  if (url.hostname === '') throw invalid(text, 'no registry host')
  if (url.search !== '' || url.hash !== '') throw invalid(`oci://${url.host}${url.pathname}`, 'an oci: origin takes no query or fragment')
  const credentials = url.username !== '' ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) } : undefined
  const registry = url.host
  const secure = plainHttp !== undefined ? !plainHttp : !LOOPBACK.test(url.hostname)
  let path = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/+$/, '')
  let pinned: OciLocation['pinned']
  const last = path.split('/').at(-1) ?? ''
  const at = last.indexOf('@')
  const colon = last.indexOf(':')
  if (at !== -1 || colon !== -1) {
    const cut = at !== -1 ? at : colon
    const name = last.slice(0, cut)
    const reference = last.slice(cut + 1)
    if (at !== -1 ? !DIGEST_PATTERN.test(reference) : !TAG_PATTERN.test(reference)) throw invalid(`oci://${registry}/${path}`, `${JSON.stringify(reference)} is not a tag or a sha256 digest`)
    path = path.slice(0, path.length - last.length) + name
    pinned = { name, repository: path, reference }
  }
  if (path !== '') {
    const problem = repositoryProblem(path)
    if (problem !== undefined) throw invalid(`oci://${registry}/${path}`, problem)
  }
  const namespace = pinned !== undefined ? path.split('/').slice(0, -1).join('/') : path
  const display = `oci://${registry}${path !== '' ? `/${path}` : ''}${pinned !== undefined ? (at !== -1 ? '@' : ':') + pinned.reference : ''}`
  return { registry, base: `${secure ? 'https' : 'http'}://${registry}`, namespace, ...(pinned !== undefined ? { pinned } : {}), ...(credentials !== undefined ? { credentials } : {}), display }
}

/** The repository of a model name in a namespace; InvalidRefError when the registry could not hold it. */
export function repositoryOf (location: OciLocation, name: string): string {
  const repository = location.namespace !== '' ? `${location.namespace}/${name}` : name
  const problem = repositoryProblem(repository)
  if (problem !== undefined) throw new InvalidRefError(`model name ${JSON.stringify(name)} cannot be stored at ${location.display}: ${problem}`)
  return repository
}

/** Where a ref lives: the pinned reference when the URL pins this name, else `namespace/name:tag`. */
export function targetOf (location: OciLocation, ref: ModelRef): Target {
  formatRef(ref)
  const pinned = location.pinned
  if (pinned !== undefined && ref.name === pinned.name && (ref.tag === DEFAULT_TAG || ref.tag === pinned.reference)) {
    return { repository: pinned.repository, reference: pinned.reference }
  }
  return { repository: repositoryOf(location, ref.name), reference: ref.tag }
}
