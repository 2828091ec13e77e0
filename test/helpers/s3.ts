/** The real S3 server the global setup started (see test/setup/s3-server.ts), for tests and the CLI. */

import { randomBytes } from 'node:crypto'
import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3'
import { inject } from 'vitest'

export interface S3Settings { endpoint: string, accessKeyId: string, secretAccessKey: string, region: string, bucket: string }

export function s3Settings (): S3Settings {
  return inject('s3')
}

export function uniquePrefix (name: string): string {
  return `${name}-${Date.now()}-${randomBytes(3).toString('hex')}`
}

/** The environment that points the CLI at this server (optionally through another endpoint, e.g. a proxy). */
export function cliEnv (s3: S3Settings, prefix: string, endpoint = s3.endpoint): Record<string, string> {
  return {
    SWARM_ORIGIN: `s3://${s3.bucket}/${prefix}`,
    SWARM_S3_ENDPOINT: endpoint,
    SWARM_S3_ACCESS_KEY_ID: s3.accessKeyId,
    SWARM_S3_SECRET_ACCESS_KEY: s3.secretAccessKey,
    SWARM_S3_REGION: s3.region,
    SWARM_S3_FORCE_PATH_STYLE: 'true'
  }
}

export function s3Client (s3: S3Settings): S3Client {
  return new S3Client({ endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
}

export async function listKeys (client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = []
  let token: string | undefined
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
    for (const object of page.Contents ?? []) if (object.Key != null) keys.push(object.Key)
    token = page.NextContinuationToken
  } while (token != null)
  return keys
}

export async function deletePrefix (client: S3Client, bucket: string, prefix: string): Promise<void> {
  const keys = await listKeys(client, bucket, prefix)
  for (let i = 0; i < keys.length; i += 1000) {
    await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys.slice(i, i + 1000).map(Key => ({ Key })) } }))
  }
}
