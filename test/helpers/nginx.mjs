/**
 * A real nginx (Debian's package) serving a directory on 127.0.0.1, for the HTTP origin's tests
 * and bench: its own config, a free port, its own pid, log and temp paths in a temp dir, JSON
 * directory listings (`autoindex_format json`), and optionally TLS with a certificate signed by
 * a test CA made here with openssl. Plain JavaScript so the benches can use it as well as the tests.
 */

import { execFile, spawn } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { stopServer } from './processes.mjs'

const run = promisify(execFile)
const NGINX = process.env.SWARM_TEST_NGINX ?? '/usr/sbin/nginx'
const START_TIMEOUT_MS = 15_000

/** A port free now: bound, then released. */
export async function freePort () {
  const server = createServer()
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  await new Promise(resolve => server.close(resolve))
  return port
}

async function accepts (port) {
  return await new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => { resolve(false) })
  })
}

/**
 * A CA and a server certificate for 127.0.0.1 and localhost it signed, in `dir`.
 * @returns {Promise<{ caFile: string, ca: string, certFile: string, keyFile: string }>}
 */
export async function makeTestCa (dir) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
  const caKey = join(dir, 'ca.key')
  const caFile = join(dir, 'ca.pem')
  const keyFile = join(dir, 'server.key')
  const csr = join(dir, 'server.csr')
  const certFile = join(dir, 'server.pem')
  const ext = join(dir, 'server.ext')
  await run('openssl', ['req', '-x509', ...ec, '-keyout', caKey, '-out', caFile, '-days', '2', '-subj', '/CN=Swarm test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'])
  await run('openssl', ['req', ...ec, '-keyout', keyFile, '-out', csr, '-subj', '/CN=127.0.0.1'])
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n')
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-CAcreateserial', '-out', certFile, '-days', '2', '-extfile', ext])
  return { caFile, ca: await readFile(caFile, 'utf8'), certFile, keyFile }
}

/**
 * Starts nginx serving `root` (created if missing) at http://127.0.0.1:<port>, and with `tls` also
 * at https://127.0.0.1:<tlsPort> with a certificate from a fresh test CA.
 * @param {{ root?: string, tls?: boolean, extraLocations?: string }} [options]
 */
export async function startNginx (options = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-nginx-'))
  const root = options.root ?? join(dir, 'root')
  await mkdir(root, { recursive: true })
  await mkdir(join(dir, 'temp'), { recursive: true })
  const port = await freePort()
  const tlsPort = options.tls === true ? await freePort() : undefined
  const ca = options.tls === true ? await makeTestCa(dir) : undefined
  // as root the workers would drop to nobody, who cannot read a private temp dir
  const user = process.getuid?.() === 0 ? 'user root;' : ''
  const temp = name => `${name}_temp_path ${join(dir, 'temp', name)};`
  const config = `${user}
worker_processes 2;
daemon off;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 1024; }
http {
  access_log ${join(dir, 'access.log')};
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
    ${tlsPort !== undefined ? `listen 127.0.0.1:${tlsPort} ssl;\n    ssl_certificate ${ca.certFile};\n    ssl_certificate_key ${ca.keyFile};` : ''}
    root ${root};
    location / {
      autoindex on;
      autoindex_format json;
    }
    ${options.extraLocations ?? ''}
  }
}
`
  const configFile = join(dir, 'nginx.conf')
  await writeFile(configFile, config)
  const child = spawn(NGINX, ['-p', dir, '-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', d => { stderr += d })
  const exited = new Promise(resolve => child.once('exit', code => { resolve(code) }))
  const started = Date.now()
  while (!(await accepts(port)) || (tlsPort !== undefined && !(await accepts(tlsPort)))) {
    if (child.exitCode !== null || Date.now() - started > START_TIMEOUT_MS) {
      child.kill('SIGKILL')
      const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')
      await rm(dir, { recursive: true, force: true })
      throw new Error(`nginx did not start on 127.0.0.1:${port} (${NGINX}; Debian: apt-get install nginx): ${stderr}${log}`)
    }
    await sleep(50)
  }
  return {
    root,
    dir,
    url: `http://127.0.0.1:${port}`,
    httpsUrl: tlsPort !== undefined ? `https://127.0.0.1:${tlsPort}` : undefined,
    ca,
    /** stops nginx (fast shutdown) and removes its temp dir, the served root included when it made it */
    async stop () {
      await stopServer(child, exited, dir)
    }
  }
}
