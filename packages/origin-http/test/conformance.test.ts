import { mkdir, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { randomUUID } from 'node:crypto'
import { originConformanceTests } from '@swarm/origin-conformance'
import { fileOrigin } from '@swarm/origin-file'
import { afterAll, beforeAll } from 'vitest'
import { startNginx } from '../../../test/helpers/nginx.mjs'
import { httpOrigin } from '../src/index.js'

let nginx: Awaited<ReturnType<typeof startNginx>>

beforeAll(async () => {
  nginx = await startNginx({ tls: true })
})

afterAll(async () => {
  await nginx?.stop()
})

// the file origin writes the served directory; the HTTP origin reads it through nginx
for (const scheme of ['http', 'https'] as const) {
  originConformanceTests(`httpOrigin (${scheme}, nginx)`, async () => {
    const prefix = `models-${randomUUID()}`
    const dir = join(nginx.root, prefix)
    await mkdir(dir)
    const base = scheme === 'https' ? nginx.httpsUrl as string : nginx.url
    const origin = httpOrigin({ url: `${base}/${prefix}`, ...(scheme === 'https' ? { ca: nginx.ca?.ca } : {}) })
    const writer = fileOrigin({ url: pathToFileURL(dir) })
    return {
      origin,
      writer,
      teardown: async () => {
        await origin.close()
        await writer.close()
        await rm(dir, { recursive: true, force: true })
      }
    }
  })
}
