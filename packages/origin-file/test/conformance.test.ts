import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { originConformanceTests } from '@swarm/origin-conformance'
import { fileOrigin } from '../src/index.js'

originConformanceTests('fileOrigin', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-origin-file-'))
  const origin = fileOrigin({ url: pathToFileURL(dir) })
  return {
    origin,
    teardown: async () => {
      await origin.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
})
