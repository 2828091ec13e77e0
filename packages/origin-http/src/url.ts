export interface ParsedHttpOriginUrl {
  /** `https://host:port`, the server */
  origin: string
  /** the path every object path starts with: `/` or `/prefix/` */
  basePath: string
  /** the URL without credentials, for logs and errors */
  display: string
  /** `Basic …`, from userinfo */
  authorization?: string
}

/** Checks an HTTP origin URL and takes credentials out of it. Never echoes input that is not a URL (it may hold a secret). */
export function parseHttpOriginUrl (value: string | URL): ParsedHttpOriginUrl {
  let url: URL
  try {
    url = new URL(String(value))
  } catch {
    throw new TypeError('invalid HTTP origin URL: not a URL; expected e.g. https://models.example.com/prefix')
  }
  let authorization: string | undefined
  if (url.username !== '' || url.password !== '') {
    authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`
    url.username = ''
    url.password = ''
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new TypeError(`invalid HTTP origin URL ${url.href}: expected the http: or https: scheme, e.g. https://models.example.com/prefix`)
  }
  if (url.search !== '' || url.hash !== '') {
    throw new TypeError(`invalid HTTP origin URL ${url.origin}${url.pathname}: an HTTP origin takes no query or fragment`)
  }
  const path = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/+$/, '')
  const parts = path === '' ? [] : path.split('/')
  if (parts.some(part => part === '' || part === '.' || part === '..')) {
    throw new TypeError(`invalid HTTP origin URL ${url.href}: the prefix has an empty, "." or ".." component`)
  }
  const basePath = parts.length === 0 ? '/' : `/${parts.map(encodeURIComponent).join('/')}/`
  return {
    origin: url.origin,
    basePath,
    display: `${url.origin}${basePath === '/' ? '' : basePath.slice(0, -1)}`,
    ...(authorization !== undefined ? { authorization } : {})
  }
}
