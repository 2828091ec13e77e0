/**
 * A real Azurite (Microsoft's Azure Storage emulator, npm `azurite`, a devDependency of
 * @swarm/origin-azure) serving Blob Storage on 127.0.0.1 from a temp dir, for the Azure origin's
 * tests and bench. Telemetry is off (it would try to reach the internet). Plain JavaScript so the
 * benches can use it as well as the tests.
 */

import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stopServer } from './processes.mjs'

/** Azurite's well-known development account and key (public, the same in every Azurite). */
export const AZURITE_ACCOUNT = 'devstoreaccount1'
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
const START_TIMEOUT_MS = 30_000

/**
 * Starts Azurite's blob service on a free port of 127.0.0.1.
 * @returns {Promise<{ endpoint: string, account: string, accountKey: string, stop(): Promise<void> }>}
 *   endpoint: the account's blob service URL, `http://127.0.0.1:<port>/devstoreaccount1`
 */
export async function startAzurite () {
  const require = createRequire(new URL('../../packages/origin-azure/package.json', import.meta.url))
  const main = require.resolve('azurite/dist/src/blob/main.js')
  const dir = await mkdtemp(join(tmpdir(), 'swarm-azurite-'))
  const child = spawn(process.execPath, [main, '--blobHost', '127.0.0.1', '--blobPort', '0', '--location', dir, '--disableTelemetry', '--skipApiVersionCheck', '--loose'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, AZURITE_ACCOUNTS: undefined }
  })
  let output = ''
  const exited = new Promise(resolve => child.once('exit', code => { resolve(code) }))
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`Azurite did not start within ${START_TIMEOUT_MS} ms: ${output}`)) }, START_TIMEOUT_MS)
    const onData = d => {
      output += d
      const match = /listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output)
      if (match !== null) {
        clearTimeout(timer)
        resolve(Number(match[1]))
      }
    }
    child.stdout.setEncoding('utf8').on('data', onData)
    child.stderr.setEncoding('utf8').on('data', onData)
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`Azurite exited with ${code}: ${output}`)) })
  }).catch(async err => {
    child.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
    throw err
  })
  // keep reading so a full pipe never blocks it
  child.stdout.resume()
  child.stderr.resume()
  return {
    endpoint: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
    account: AZURITE_ACCOUNT,
    accountKey: AZURITE_KEY,
    async stop () {
      await stopServer(child, exited, dir)
    }
  }
}
