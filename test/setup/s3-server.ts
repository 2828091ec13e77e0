/**
 * Vitest global setup: a real S3 server for the tests that need one (`inject('s3')`).
 *
 * With SWARM_TEST_S3_ENDPOINT set, that server is used as it is (SWARM_TEST_S3_ACCESS_KEY_ID,
 * …_SECRET_ACCESS_KEY, …_REGION, …_BUCKET default to the values below) and the bucket is created
 * if missing. Otherwise `scripts/s3-server.sh up --lease <pid>` starts a local Ceph RGW (about
 * 15 s) or joins the one running, and teardown releases the lease. The script stops the server
 * only if a test run started it and no other run still holds a lease, so overlapping runs
 * share one server and none pulls it from under another; a server started by hand
 * (`scripts/s3-server.sh up`) is left running.
 *
 * The same values are exported as SWARM_TEST_S3_* for child processes the tests start.
 */

import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { TestProject } from 'vitest/node'

export interface S3TestServer {
  endpoint: string
  accessKeyId: string
  secretAccessKey: string
  region: string
  bucket: string
}

declare module 'vitest' {
  interface ProvidedContext {
    s3: S3TestServer
  }
}

const SCRIPT = fileURLToPath(new URL('../../scripts/s3-server.sh', import.meta.url))
/** what scripts/s3-server.sh creates */
const LOCAL_SERVER = {
  accessKeyId: 'test',
  secretAccessKey: 'testsecret',
  region: 'us-east-1',
  bucket: 'swarm-test'
}
const UP_TIMEOUT_MS = 180_000

const run = promisify(execFile)

async function script (...args: string[]): Promise<{ ok: boolean, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(SCRIPT, args, { timeout: UP_TIMEOUT_MS, encoding: 'utf8' })
    return { ok: true, stdout, stderr }
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string, message: string }
    return { ok: false, stdout: e.stdout ?? '', stderr: e.stderr ?? e.message }
  }
}

/** A server given from outside may lack the bucket; creating it is idempotent. */
async function ensureBucket (server: S3TestServer): Promise<void> {
  const { S3Client, CreateBucketCommand, HeadBucketCommand } = await import('@aws-sdk/client-s3')
  const client = new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey }
  })
  try {
    await client.send(new HeadBucketCommand({ Bucket: server.bucket }))
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 404) {
      throw new Error(`S3 test server ${server.endpoint} (SWARM_TEST_S3_ENDPOINT) does not answer for bucket ${server.bucket}: ${(err as Error).name} ${(err as Error).message}`)
    }
    await client.send(new CreateBucketCommand({ Bucket: server.bucket }))
  } finally {
    client.destroy()
  }
}

export default async function setup (project: TestProject): Promise<() => Promise<void>> {
  // the SDK warns once per process that its 2027 releases need Node 22: in every test worker that is noise
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  let server: S3TestServer
  let leased = false
  const given = process.env.SWARM_TEST_S3_ENDPOINT
  if (given !== undefined && given !== '') {
    server = {
      endpoint: given,
      accessKeyId: process.env.SWARM_TEST_S3_ACCESS_KEY_ID ?? LOCAL_SERVER.accessKeyId,
      secretAccessKey: process.env.SWARM_TEST_S3_SECRET_ACCESS_KEY ?? LOCAL_SERVER.secretAccessKey,
      region: process.env.SWARM_TEST_S3_REGION ?? LOCAL_SERVER.region,
      bucket: process.env.SWARM_TEST_S3_BUCKET ?? LOCAL_SERVER.bucket
    }
    await ensureBucket(server)
  } else {
    const up = await script('up', '--lease', String(process.pid))
    if (!up.ok) throw new Error(`could not start the S3 test server (scripts/s3-server.sh up):\n${up.stderr.trim()}`)
    leased = true
    const endpoint = up.stdout.trim().split('\n').at(-1)
    if (endpoint === undefined || !endpoint.startsWith('http')) throw new Error(`scripts/s3-server.sh up printed no endpoint: ${up.stdout}`)
    server = { endpoint, ...LOCAL_SERVER }
  }

  process.env.SWARM_TEST_S3_ENDPOINT = server.endpoint
  process.env.SWARM_TEST_S3_ACCESS_KEY_ID = server.accessKeyId
  process.env.SWARM_TEST_S3_SECRET_ACCESS_KEY = server.secretAccessKey
  process.env.SWARM_TEST_S3_REGION = server.region
  process.env.SWARM_TEST_S3_BUCKET = server.bucket
  project.provide('s3', server)

  return async () => {
    if (!leased) return
    const release = await script('release', String(process.pid))
    if (!release.ok) throw new Error(`could not release the S3 test server (scripts/s3-server.sh release):\n${release.stderr.trim()}`)
  }
}
