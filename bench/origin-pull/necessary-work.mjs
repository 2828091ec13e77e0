// The "necessary work" of a pull from an origin, and nothing else: the very GETs `swarm pull`
// makes (same objects, same URLs as the plain client), SHA-256 of every chunk checked against its
// CID's digest, positional writes into files created at full size with ftruncate (as the store
// creates its content files), fdatasync of the written files, group-committed as the store does
// (writes that land while a sync runs go into the next one). The chunks are spread over
// `threads` worker threads, each with its own connections and `inflight / threads` requests in
// flight, taking the next chunk from one shared counter. The GETs go through the HTTP client the
// S3 origin uses for object bodies (`@swarm/http-in-place`: each body read straight into its
// chunk's buffer), so the transport is the same bytes and the same copies. No manifest
// handling, no journal, no scheduler, no retries, no progress: what Swarm's byte path cannot avoid
// doing.
//
//   node necessary-work.mjs PLAN.json   prints one JSON line: { seconds, bytes, threads: [{ name, userSeconds, systemSeconds }] }
//
// PLAN.json: { threads, inflight, files: [{ path, size }], chunks: [{ url, size, sha256, slots: [{ file, offset }] }] }
// (sha256 in hex; a chunk that fills several slots is fetched once and written to each).
import { createHash } from 'node:crypto'
import { open, readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { InPlaceGets } from '../../packages/http-in-place/dist/index.js'
import { cpuOfThisThread, groupCommit } from '../lib/common.mjs'

if (isMainThread) {
  const plan = JSON.parse(await readFile(process.argv[2], 'utf8'))
  const started = performance.now()
  for (const f of plan.files) {
    const handle = await open(f.path, 'w')
    await handle.truncate(f.size)
    await handle.close()
  }
  const next = new Int32Array(new SharedArrayBuffer(4))
  const perThread = Array.from({ length: plan.threads }, (_, i) => Math.floor(plan.inflight / plan.threads) + (i < plan.inflight % plan.threads ? 1 : 0))
  const results = await Promise.all(perThread.map((inflight, i) => new Promise((resolve, reject) => {
    const worker = new Worker(fileURLToPath(import.meta.url), { name: `worker-${i}`, workerData: { plan, inflight, next, name: `worker-${i}` } })
    worker.once('message', resolve)
    worker.once('error', reject)
    worker.once('exit', code => { if (code !== 0) reject(new Error(`worker-${i} exited with ${code}`)) })
  })))
  const seconds = (performance.now() - started) / 1000
  const bytes = results.reduce((sum, r) => sum + r.bytes, 0)
  process.stdout.write(JSON.stringify({ seconds, bytes, threads: [cpuOfThisThread('main'), ...results.map(r => r.cpu)] }) + '\n')
} else {
  const { plan, inflight, next, name } = workerData
  const gets = new InPlaceGets({ maxConnections: inflight, keepAliveMs: 30_000, timeoutMs: 30_000, maxErrorBodyBytes: 4096 })
  const handles = await Promise.all(plan.files.map(f => open(f.path, 'r+')))
  const commits = groupCommit()
  let bytes = 0
  const largest = Math.max(...plan.chunks.map(c => c.size))
  await Promise.all(Array.from({ length: inflight }, async () => {
    // one buffer per request slot, reused: the write of a chunk completes before the next GET
    const slab = Buffer.allocUnsafe(largest)
    for (let i = Atomics.add(next, 0, 1); i < plan.chunks.length; i = Atomics.add(next, 0, 1)) {
      const chunk = plan.chunks[i]
      const url = new URL(chunk.url)
      const endpoint = { protocol: url.protocol, hostname: url.hostname, port: url.port === '' ? undefined : Number(url.port), host: url.host }
      // the slab is the one buffer this slot reads into, lent again for every GET
      const res = await gets.get(endpoint, `${url.pathname}${url.search}`, { into: (status, _headers, size) => status === 200 ? slab.subarray(0, size) : undefined })
      if (res.status !== 200) throw new Error(`GET ${chunk.url}: ${res.status}`)
      const buf = res.body
      if (buf.byteLength !== chunk.size) throw new Error(`GET ${chunk.url}: ${buf.byteLength} of ${chunk.size} bytes`)
      if (createHash('sha256').update(buf).digest('hex') !== chunk.sha256) throw new Error(`GET ${chunk.url}: SHA-256 does not match`)
      // durability is what the pull owes at its end, so the next GET does not wait for the sync
      for (const slot of chunk.slots) {
        await handles[slot.file].write(buf, 0, buf.length, slot.offset)
        commits.written(handles[slot.file])
      }
      bytes += chunk.size
    }
  }))
  await commits.drain()
  await Promise.all(handles.map(h => h.close()))
  await gets.close()
  parentPort.postMessage({ bytes, cpu: cpuOfThisThread(name) })
}
