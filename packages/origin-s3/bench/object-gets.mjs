// Compares the two ways s3Origin fetches objects, against a running S3 server:
//   objectGets 'sdk'       — GetObject through @aws-sdk/client-s3
//   objectGets 'presigned' — presigned URLs fetched with an undici pool (the default)
// Usage (after `npx tsc -b packages/origin-s3` and `scripts/s3-server.sh up`):
//   node packages/origin-s3/bench/object-gets.mjs [chunks=64] [chunkMiB=4] [inFlight=16] [passes=3]
// Reports medians of MB/s and CPU seconds per GB, the client's and (for the local RGW) the server's.
// Both run in one process, pass after pass, so background load hits both alike.
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { cidForBytes } from '@swarm/chunker'
import { s3Origin } from '../dist/index.js'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const [chunks = 64, chunkMiB = 4, inFlight = 16, passes = 3] = process.argv.slice(2).map(Number)
const endpoint = process.env.SWARM_TEST_S3_ENDPOINT ?? 'http://127.0.0.1:7480'
const bucket = process.env.SWARM_TEST_S3_BUCKET ?? 'swarm-test'
const credentials = {
  accessKeyId: process.env.SWARM_TEST_S3_ACCESS_KEY_ID ?? 'test',
  secretAccessKey: process.env.SWARM_TEST_S3_SECRET_ACCESS_KEY ?? 'testsecret'
}
const url = `s3://${bucket}/bench/object-gets-${chunkMiB}mib`
const rgwPidFile = `${process.env.SWARM_S3_DIR ?? '/tmp/swarm-s3'}/run/client.rgw.swarm.pid`

/** CPU seconds the local gateway has used, or undefined when it is not ours to see */
function serverCpuSeconds () {
  try {
    const pid = readFileSync(rgwPidFile, 'utf8').trim()
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return undefined
  }
}

// reuses the chunks an earlier run left, and tops them up
const writer = s3Origin({ url, endpoint, credentials })
const cids = []
for await (const cid of writer.listChunks()) {
  if (cids.length < chunks) cids.push(cid)
}
while (cids.length < chunks) {
  const bytes = new Uint8Array(randomBytes(chunkMiB * 1024 * 1024))
  const cid = cidForBytes(bytes)
  await writer.putChunk(cid, bytes)
  cids.push(cid)
}
await writer.close()

const origins = {
  sdk: s3Origin({ url, endpoint, credentials, objectGets: 'sdk' }),
  presigned: s3Origin({ url, endpoint, credentials, objectGets: 'presigned' })
}
// warm both: connections, JIT, the presigner's URL shape
for (const origin of Object.values(origins)) await Promise.all(cids.slice(0, inFlight).map(cid => origin.getChunk(cid)))

const results = { sdk: [], presigned: [] }
for (let pass = 0; pass < passes; pass++) {
  for (const [name, origin] of Object.entries(origins)) {
    let next = 0
    let bytes = 0
    const cpu = process.cpuUsage()
    const serverCpu = serverCpuSeconds()
    const started = performance.now()
    await Promise.all(Array.from({ length: inFlight }, async () => {
      while (next < cids.length) {
        const got = await origin.getChunk(cids[next++])
        bytes += got.byteLength
      }
    }))
    const seconds = (performance.now() - started) / 1000
    const used = process.cpuUsage(cpu)
    const serverUsed = serverCpu === undefined ? undefined : serverCpuSeconds() - serverCpu
    const gb = bytes / 1e9
    results[name].push({ userPerGb: used.user / 1e6 / gb, sysPerGb: used.system / 1e6 / gb, mbps: bytes / 1e6 / seconds, clientCpuPerGb: (used.user + used.system) / 1e6 / gb, serverCpuPerGb: serverUsed === undefined ? undefined : serverUsed / gb })
  }
}
for (const origin of Object.values(origins)) await origin.close()

const fmt = (n) => n === undefined ? 'n/a' : n.toFixed(2)
const median = (values) => values.includes(undefined) ? undefined : [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
for (const [name, runs] of Object.entries(results)) {
  const mid = (key) => median(runs.map(r => r[key]))
  console.log(`${name.padEnd(9)} ${runs.map(r => r.mbps.toFixed(0)).join(' / ')} MB/s (median ${mid('mbps').toFixed(0)}); ` +
    `client CPU ${fmt(mid('clientCpuPerGb'))} s/GB (user ${fmt(mid('userPerGb'))}, sys ${fmt(mid('sysPerGb'))}); server CPU ${fmt(mid('serverCpuPerGb'))} s/GB`)
}
console.log(`${chunks} × ${chunkMiB} MiB, ${inFlight} in flight, ${passes} passes each, ${endpoint}`)
