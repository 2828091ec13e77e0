/**
 * A real OCI registry for a test: `scripts/oci-registry.sh` (Debian's docker-registry, CNCF
 * distribution 2.8) on 127.0.0.1 with storage of its own, stopped by `stop()`. With `htpasswd` it
 * wants HTTP basic auth; with `token` it trusts bearer tokens from {@link startTokenServer}.
 */

import { spawn } from 'node:child_process'
import { createHash, createPrivateKey, randomUUID, sign, X509Certificate } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { ChildProcess } from 'node:child_process'
import type { AddressInfo } from 'node:net'

const SCRIPT = fileURLToPath(new URL('../../scripts/oci-registry.sh', import.meta.url))

export interface TestRegistry {
  /** `http://127.0.0.1:PORT` */
  endpoint: string
  /** `127.0.0.1:PORT` */
  host: string
  /** the registry's storage is under root/data */
  root: string
  stop(): Promise<void>
}

export interface RegistryAuth {
  htpasswd?: { username: string, password: string }
  token?: TokenServer
  s3?: { endpoint: string, bucket: string, accessKeyId: string, secretAccessKey: string }
}

export async function startRegistry (auth: RegistryAuth = {}): Promise<TestRegistry> {
  const args: string[] = []
  if (auth.htpasswd !== undefined) args.push('--htpasswd', `${auth.htpasswd.username}:${auth.htpasswd.password}`)
  if (auth.token !== undefined) args.push('--token', auth.token.realm, auth.token.service, auth.token.issuer, auth.token.certFile)
  if (auth.s3 !== undefined) args.push('--s3', auth.s3.endpoint, auth.s3.bucket, auth.s3.accessKeyId, auth.s3.secretAccessKey)
  const child: ChildProcess = spawn(SCRIPT, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  const line = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      out += d
      if (out.includes('\n')) resolve(out.split('\n')[0] as string)
    })
    child.on('exit', code => { reject(new Error(`scripts/oci-registry.sh exited with ${String(code)}: ${stderr}`)) })
  })
  const endpoint = /endpoint=(\S+)/.exec(line)?.[1]
  const root = /root=(\S+)/.exec(line)?.[1]
  if (endpoint === undefined || root === undefined) throw new Error(`scripts/oci-registry.sh printed ${line}`)
  return {
    endpoint,
    host: new URL(endpoint).host,
    root,
    async stop () {
      if (child.exitCode !== null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    }
  }
}

/** The path of a blob's bytes in the registry's filesystem storage. */
export function blobPath (registry: TestRegistry, digest: string): string {
  const hex = digest.replace(/^sha256:/, '')
  return join(registry.root, 'data', 'docker', 'registry', 'v2', 'blobs', 'sha256', hex.slice(0, 2), hex, 'data')
}

export interface TokenServer {
  realm: string
  service: string
  issuer: string
  /** the PEM certificate whose key signs tokens; the registry's rootcertbundle */
  certFile: string
  /** token requests seen, by the user that made them ('' when anonymous) */
  requests: Array<{ user: string, scope: string[] }>
  stop(): Promise<void>
}

/**
 * A small token server as distribution's `auth: token` expects: GET /token?service&scope with
 * HTTP basic credentials answers a JWT (RS256, the signing certificate in `x5c`) granting the
 * scopes asked for to `username`; anonymous or wrong credentials get 401.
 */
export async function startTokenServer (username: string, password: string): Promise<TokenServer> {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-oci-token-'))
  const keyFile = join(dir, 'key.pem')
  const certFile = join(dir, 'cert.pem')
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=swarm-test-token'])
  const key = createPrivateKey(await readFile(keyFile))
  const certDer = new X509Certificate(await readFile(certFile)).raw.toString('base64')
  const service = 'swarm-test-registry'
  const issuer = 'swarm-test-issuer'
  const requests: TokenServer['requests'] = []
  const b64 = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url')
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    const scopes = url.searchParams.getAll('scope')
    const given = /^Basic (.+)$/.exec(req.headers.authorization ?? '')?.[1]
    const [user, pass] = given !== undefined ? Buffer.from(given, 'base64').toString().split(':') : ['', '']
    requests.push({ user: user ?? '', scope: scopes })
    if (user !== username || pass !== password) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: 'login required' }))
      return
    }
    const now = Math.floor(Date.now() / 1000)
    const access = scopes.map(scope => {
      const [type, ...rest] = scope.split(':')
      const actions = (rest.pop() ?? '').split(',')
      return { type, name: rest.join(':'), actions }
    })
    const header = b64({ typ: 'JWT', alg: 'RS256', x5c: [certDer] })
    const claims = b64({ iss: issuer, sub: username, aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access })
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), key).toString('base64url')
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${header}.${claims}.${signature}`, expires_in: 300 }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    requests,
    async stop () {
      server.closeAllConnections()
      await new Promise(resolve => server.close(resolve))
      await rm(dir, { recursive: true, force: true })
    }
  }
}

export function sha256 (bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}
