/**
 * Secrets never reach an output or a log. Credentials travel in URLs more often than anywhere
 * else: userinfo (`s3://KEY:SECRET@bucket`, `https://user:token@host`) and signed query strings
 * (S3 presigned URLs, Azure SAS tokens). Text is scanned rather than parsed, because the URL may
 * sit inside an error message or a log field, not alone.
 */

const MASK = '***'

// scheme://userinfo@ : the password half always goes; a lone user name is kept (an access key
// id names the key, it does not unlock it)
const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#@]*)@/gi

// parameters that authorize the request that carries them
const SECRET_PARAMS = /([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token|api[-_]?key|password|secret)=)[^&#\s"']*/gi

/** `text` with every credential in a URL masked. */
export function redactSecrets (text: string): string {
  return text.replace(USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:${MASK}@`).replace(SECRET_PARAMS, `$1${MASK}`)
}

/** Plain data (a log record, a JSON event) with `redactSecrets` applied to every string in it. */
export function redactDeep<T> (value: T, depth = 0): T {
  if (typeof value === 'string') return redactSecrets(value) as T
  if (value == null || typeof value !== 'object' || depth > 8) return value
  if (value instanceof Error) {
    const copy = new Error(redactSecrets(value.message))
    copy.name = value.name
    if (value.stack != null) copy.stack = redactSecrets(value.stack)
    for (const [key, field] of Object.entries(value)) (copy as unknown as Record<string, unknown>)[key] = redactDeep(field, depth + 1)
    return copy as T
  }
  if (Array.isArray(value)) return value.map(item => redactDeep(item, depth + 1)) as T
  if (Object.getPrototypeOf(value) !== Object.prototype) return value
  const out: Record<string, unknown> = {}
  for (const [key, field] of Object.entries(value)) out[key] = redactDeep(field, depth + 1)
  return out as T
}
