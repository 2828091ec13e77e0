import { ACCOUNT_PATTERN, BLOB_HOST_SUFFIXES, CONTAINER_PATTERN, DEFAULT_BLOB_HOST_SUFFIX } from './constants.js'

export interface ParsedAzureUrl {
  account: string
  container: string
  /** '' or ending in '/' */
  prefix: string
  /** the account's blob service, e.g. `https://acct.blob.core.windows.net` */
  serviceUrl: string
  /** the URL without a SAS, for logs and errors */
  display: string
  /** a SAS token found in the URL's query (`?sv=…&sig=…`), without the `?` */
  sasToken?: string
}

const EXAMPLE = 'az://account/container/prefix or https://account.blob.core.windows.net/container/prefix'

/** Whether `url` is an https URL of Azure Blob Storage (any of Azure's clouds). */
export function isAzureBlobUrl (url: string | URL): boolean {
  try {
    const parsed = new URL(String(url))
    if (parsed.protocol === 'az:') return true
    return parsed.protocol === 'https:' && BLOB_HOST_SUFFIXES.some(suffix => parsed.hostname.endsWith(`.${suffix}`))
  } catch {
    return false
  }
}

/**
 * `az://account/container[/prefix]` or `https://account.blob.core.windows.net/container[/prefix]`
 * (a SAS in the query is taken and removed). Never echoes input that is not a URL: it may hold a secret.
 */
export function parseAzureUrl (value: string | URL): ParsedAzureUrl {
  let url: URL
  try {
    url = new URL(String(value))
  } catch {
    throw new TypeError(`invalid Azure origin URL: not a URL; expected ${EXAMPLE}`)
  }
  const sasToken = url.search.length > 1 ? url.search.slice(1) : undefined
  url.search = ''
  if (url.username !== '' || url.password !== '') throw new TypeError(`invalid Azure origin URL ${url.protocol}//${url.host}${url.pathname}: credentials do not go in the URL; use a SAS (?sv=…), AZURE_STORAGE_KEY or SWARM_AZURE_ACCOUNT_KEY`)
  if (url.hash !== '' || url.port !== '') throw new TypeError(`invalid Azure origin URL ${url.href}: expected ${EXAMPLE} without a port or fragment`)
  let account: string
  let serviceUrl: string
  if (url.protocol === 'az:') {
    account = url.hostname
    serviceUrl = `https://${account}.${DEFAULT_BLOB_HOST_SUFFIX}`
  } else if (url.protocol === 'https:') {
    const suffix = BLOB_HOST_SUFFIXES.find(s => url.hostname.endsWith(`.${s}`))
    if (suffix === undefined) throw new TypeError(`invalid Azure origin URL ${url.href}: the host is not <account>.${BLOB_HOST_SUFFIXES.join(' or <account>.')}`)
    account = url.hostname.slice(0, -suffix.length - 1)
    serviceUrl = url.origin
  } else {
    throw new TypeError(`invalid Azure origin URL ${url.href}: expected ${EXAMPLE}`)
  }
  if (!ACCOUNT_PATTERN.test(account)) throw new TypeError(`invalid Azure origin URL ${url.href}: "${account}" is not a storage account name (3–24 lowercase letters and digits)`)
  const path = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/+$/, '')
  const [container = '', ...rest] = path === '' ? [] : path.split('/')
  if (!CONTAINER_PATTERN.test(container)) {
    throw new TypeError(`invalid Azure origin URL ${url.href}: ${container === '' ? 'no container' : `"${container}" is not a container name (3–63 lowercase letters, digits and single hyphens)`}; expected ${EXAMPLE}`)
  }
  if (rest.some(part => part === '' || part === '.' || part === '..')) {
    throw new TypeError(`invalid Azure origin URL ${url.href}: the prefix has an empty, "." or ".." component`)
  }
  const prefix = rest.length === 0 ? '' : `${rest.join('/')}/`
  const display = url.protocol === 'az:' ? `az://${account}/${container}${prefix === '' ? '' : `/${prefix.slice(0, -1)}`}` : `${serviceUrl}/${container}${prefix === '' ? '' : `/${prefix.slice(0, -1)}`}`
  return { account, container, prefix, serviceUrl, display, ...(sasToken !== undefined ? { sasToken } : {}) }
}
