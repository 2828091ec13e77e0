/**
 * Registry credentials and challenges.
 *
 * Credentials come from the origin's init, else the URL's userinfo, else Docker's config file
 * (`$DOCKER_CONFIG/config.json`, default `~/.docker/config.json`, as `docker login` writes it):
 * `auths.<registry>.auth` (base64 `user:password`) or `username`/`password`, or a credential helper
 * (`credHelpers.<registry>`, else `credsStore`) run as `docker-credential-<helper> get`. The file is
 * validated; a malformed one is an error naming it, never a silent anonymous pull.
 *
 * A registry says how it wants to be spoken to in the `WWW-Authenticate` of a 401: `Basic` (send
 * the credentials with every request) or `Bearer realm=…,service=…,scope=…` (ask the token server
 * at `realm` for a token for that scope, with the credentials if there are any, anonymously if not).
 */

import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { OciCredentialsError } from './errors.js'

export interface RegistryCredentials {
  username: string
  password: string
}

export interface Challenge {
  scheme: 'basic' | 'bearer'
  params: Record<string, string>
}

const DockerConfigSchema = z.object({
  auths: z.record(z.string(), z.object({
    auth: z.string().optional(),
    username: z.string().optional(),
    password: z.string().optional()
  }).loose()).optional(),
  credHelpers: z.record(z.string(), z.string().regex(/^[\w.-]+$/, 'a helper name')).optional(),
  credsStore: z.string().regex(/^[\w.-]+$/, 'a helper name').optional()
}).loose()

const HelperAnswerSchema = z.object({ Username: z.string(), Secret: z.string() })

/** `https://host:port/v1/` and `host:port` name the same registry in Docker's config. */
function registryKey (key: string): string {
  return key.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '').toLowerCase()
}

export function dockerConfigPath (env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== '' ? env.DOCKER_CONFIG : join(homedir(), '.docker')
  return join(dir, 'config.json')
}

/** The credentials Docker's config file holds for `registry` (`host[:port]`), or undefined. */
export async function dockerCredentials (registry: string, env: NodeJS.ProcessEnv = process.env): Promise<RegistryCredentials | undefined> {
  const path = dockerConfigPath(env)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new OciCredentialsError(`cannot read the Docker config ${path}: ${(err as Error).message}`)
  }
  let parsed: z.infer<typeof DockerConfigSchema>
  try {
    parsed = DockerConfigSchema.parse(JSON.parse(text))
  } catch (err) {
    const detail = err instanceof z.ZodError ? err.issues.map(i => `${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message
    throw new OciCredentialsError(`the Docker config ${path} is not valid: ${detail}`)
  }
  const wanted = registryKey(registry)
  const helper = Object.entries(parsed.credHelpers ?? {}).find(([key]) => registryKey(key) === wanted)?.[1] ?? parsed.credsStore
  const entry = Object.entries(parsed.auths ?? {}).find(([key]) => registryKey(key) === wanted)?.[1]
  if (entry?.auth !== undefined && entry.auth !== '') {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon <= 0) throw new OciCredentialsError(`the Docker config ${path}: auths.${registry}.auth is not base64 of user:password`)
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) }
  }
  if (entry?.username !== undefined && entry.password !== undefined) return { username: entry.username, password: entry.password }
  if (helper !== undefined) return await helperCredentials(helper, registry, env)
  return undefined
}

async function helperCredentials (helper: string, registry: string, env: NodeJS.ProcessEnv): Promise<RegistryCredentials | undefined> {
  const program = `docker-credential-${helper}`
  const output = await new Promise<string | undefined>((resolve, reject) => {
    const child = execFile(program, ['get'], { env, timeout: 30_000, maxBuffer: 1024 * 1024 }, (err, stdout) => {
      if (err == null) { resolve(stdout); return }
      // helpers exit 1 with "credentials not found in native keychain" when they hold none
      if (/not found/i.test(stdout) || /not found/i.test(String((err as { stderr?: string }).stderr ?? ''))) { resolve(undefined); return }
      reject(new OciCredentialsError(`credential helper ${program} failed for ${registry}: ${err.message}`))
    })
    child.stdin?.end(registry)
  })
  if (output === undefined) return undefined
  let answer: z.infer<typeof HelperAnswerSchema>
  try {
    answer = HelperAnswerSchema.parse(JSON.parse(output))
  } catch {
    throw new OciCredentialsError(`credential helper ${program} gave no {Username, Secret} for ${registry}`)
  }
  return { username: answer.Username, password: answer.Secret }
}

/** The first challenge of a `WWW-Authenticate` header that this client can answer. */
export function parseChallenge (header: string | undefined): Challenge | undefined {
  if (header === undefined) return undefined
  const match = /^\s*(basic|bearer)\b(.*)$/i.exec(header)
  if (match == null) return undefined
  const params: Record<string, string> = {}
  for (const [, key, quoted, bare] of (match[2] ?? '').matchAll(/([a-z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/gi)) {
    if (key !== undefined) params[key.toLowerCase()] = quoted !== undefined ? quoted.replace(/\\(.)/g, '$1') : bare ?? ''
  }
  return { scheme: (match[1] as string).toLowerCase() as 'basic' | 'bearer', params }
}

export const TokenAnswerSchema = z.object({
  token: z.string().min(1).optional(),
  access_token: z.string().min(1).optional(),
  expires_in: z.number().positive().optional()
}).loose().refine(a => a.token !== undefined || a.access_token !== undefined, 'no token in the answer')

export function basicAuthorization (credentials: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`
}
