import type { S3ClientConfig } from '@aws-sdk/client-s3'

export interface ParsedS3Url {
  bucket: string
  /** '' or ending in '/' */
  prefix: string
  /** `s3://bucket/prefix`, without credentials */
  display: string
  credentials?: S3ClientConfig['credentials']
}

/** Userinfo in a URL, taken as `ACCESS_KEY_ID:SECRET`; the URL comes back without it. */
function takeCredentials (url: URL): S3ClientConfig['credentials'] | undefined {
  if (url.username === '' && url.password === '') return undefined
  const credentials = { accessKeyId: decodeURIComponent(url.username), secretAccessKey: decodeURIComponent(url.password) }
  url.username = ''
  url.password = ''
  if (credentials.accessKeyId === '' || credentials.secretAccessKey === '') {
    throw new TypeError(`invalid credentials in ${url.href}: expected ACCESS_KEY_ID:SECRET@`)
  }
  return credentials
}

function toUrl (value: string | URL, what: string, example: string): URL {
  try {
    // a copy: credentials are removed from it
    return new URL(String(value))
  } catch {
    // the input may hold a secret: never echo it
    throw new TypeError(`invalid ${what}: not a URL; expected e.g. ${example}`)
  }
}

export function parseS3Url (value: string | URL): ParsedS3Url {
  const url = toUrl(value, 'S3 origin URL', 's3://bucket/prefix')
  const credentials = takeCredentials(url)
  if (url.protocol !== 's3:') throw new TypeError(`invalid S3 origin URL ${url.href}: expected the s3: scheme, e.g. s3://bucket/prefix`)
  const bucket = url.hostname
  if (bucket === '') throw new TypeError(`invalid S3 origin URL ${url.href}: no bucket; expected s3://bucket/prefix`)
  if (url.port !== '' || url.search !== '' || url.hash !== '') {
    throw new TypeError(`invalid S3 origin URL ${url.href}: expected s3://bucket/prefix without a port, query or fragment`)
  }
  const path = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/+$/, '')
  if (path.split('/').some(part => part === '.' || part === '..' || (part === '' && path !== ''))) {
    throw new TypeError(`invalid S3 origin URL ${url.href}: the prefix has an empty, "." or ".." component`)
  }
  return {
    bucket,
    prefix: path === '' ? '' : `${path}/`,
    display: `s3://${bucket}${path === '' ? '' : `/${path}`}`,
    ...(credentials !== undefined ? { credentials } : {})
  }
}

export interface ParsedEndpoint {
  /** without credentials */
  endpoint: string
  credentials?: S3ClientConfig['credentials']
}

export function parseEndpoint (value: string | URL): ParsedEndpoint {
  const url = toUrl(value, 'S3 endpoint', 'http://127.0.0.1:7480')
  const credentials = takeCredentials(url)
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`invalid S3 endpoint ${url.href}: expected an http: or https: URL`)
  }
  if (url.search !== '' || url.hash !== '') throw new TypeError(`invalid S3 endpoint ${url.href}: no query or fragment allowed`)
  return {
    endpoint: url.href.replace(/\/+$/, ''),
    ...(credentials !== undefined ? { credentials } : {})
  }
}
