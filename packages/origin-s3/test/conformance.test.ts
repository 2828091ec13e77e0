import { originConformanceTests } from '@swarm/origin-conformance'
import { s3Origin } from '../src/index.js'
import { deletePrefix, s3, uniquePrefix } from './helpers.js'

for (const objectGets of ['presigned', 'sdk'] as const) {
  originConformanceTests(`s3Origin (objectGets: ${objectGets})`, async () => {
    const prefix = uniquePrefix(`conformance-${objectGets}`)
    const origin = s3Origin({
      url: `s3://${s3.bucket}/${prefix}`,
      endpoint: s3.endpoint,
      region: s3.region,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      objectGets
    })
    return {
      origin,
      teardown: async () => {
        await origin.close()
        await deletePrefix(prefix)
      }
    }
  })
}
