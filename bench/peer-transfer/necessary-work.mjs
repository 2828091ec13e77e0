// The "necessary work" of moving a model from one peer to another, and nothing else: TLS 1.3
// over loopback (both sides present a certificate and check the other's, Node's default cipher),
// the sender preads each chunk from its file and writes it length-prefixed, the receiver
// SHA-256-hashes each chunk against its digest and pwrites it into a file created at full size
// with ftruncate, with fdatasync group-committed as the store does. No requests, no control
// messages, no scheduler: connection k carries chunks k, k + C, k + 2C, … in order, so a length
// prefix is all the framing either side needs.
//
// The C connections are spread over `threads` worker threads on both sides: sender thread t
// listens on its own port and serves the connections k with k % threads == t; receiver thread t
// dials those. Node cannot hand an accepted socket to a worker thread, hence a port per thread.
//
//   node necessary-work.mjs sender PLAN.json     prints {"ports":[…]} when listening, then { cpuSeconds, threads }
//   node necessary-work.mjs receiver PLAN.json   prints one JSON line: { seconds, bytes, cipher, cpuSeconds, threads: [{ name, userSeconds, systemSeconds }] }
//
// CPU is counted from the moment both sides' threads are up (the sender listening, the
// receiver's threads started) to the end, as the agents' is counted around a pull: process and
// thread start-up are not part of moving bytes. cpuSeconds is the whole process (libuv's pool,
// V8's helpers included); threads are each thread's own.
//
// PLAN.json: { threads, connections, cert, key (PEM file paths), ports (receiver only),
//   files: [{ source, target, size }], chunks: [{ file, offset, size, sha256 }] }
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { open, readFile } from 'node:fs/promises'
import { connect, createServer } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { cpuOfThisThread, groupCommit } from '../lib/common.mjs'

const SERVERNAME = 'swarm-bench'

/** Chunks connection k carries, in order. */
const chunksOf = (plan, k) => plan.chunks.filter((_, i) => i % plan.connections === k)
/** Connections thread t handles. */
const connectionsOf = (plan, t) => Array.from({ length: plan.connections }, (_, k) => k).filter(k => k % plan.threads === t)

async function tlsOptions (plan) {
  const [cert, key] = await Promise.all([readFile(plan.cert), readFile(plan.key)])
  return { cert, key, ca: [cert], minVersion: 'TLSv1.3', rejectUnauthorized: true }
}

async function sender (plan, t) {
  const tls = await tlsOptions(plan)
  const handles = await Promise.all(plan.files.map(f => open(f.source, 'r')))
  const mine = connectionsOf(plan, t)
  const largest = Math.max(...plan.chunks.map(c => c.size))
  let served = 0
  let done
  const finished = new Promise((resolve, reject) => { done = { resolve, reject } })
  const server = createServer({ ...tls, requestCert: true }, socket => {
    socket.once('error', done.reject)
    // called once the handshake is done and the client's certificate checked
    void (async () => {
      try {
        let hello = socket.read(4)
        while (hello == null) {
          if (socket.readableEnded || socket.destroyed) throw new Error('a connection closed before naming itself')
          await once(socket, 'readable')
          hello = socket.read(4)
        }
        const k = hello.readUInt32BE(0)
        if (!mine.includes(k)) throw new Error(`connection ${k} is not thread ${t}'s`)
        // one buffer, reused once the socket has handed all of it to TLS (the write's callback)
        const slab = Buffer.allocUnsafe(4 + largest)
        for (const chunk of chunksOf(plan, k)) {
          slab.writeUInt32BE(chunk.size, 0)
          const { bytesRead } = await handles[chunk.file].read(slab, 4, chunk.size, chunk.offset)
          if (bytesRead !== chunk.size) throw new Error(`short read of ${plan.files[chunk.file].source} at ${chunk.offset}`)
          await new Promise((resolve, reject) => socket.write(slab.subarray(0, 4 + chunk.size), err => err == null ? resolve() : reject(err)))
        }
        await new Promise(resolve => socket.end(resolve))
        if (++served === mine.length) done.resolve()
      } catch (err) {
        done.reject(err)
      }
    })()
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: server.address().port,
    async finished () {
      if (mine.length > 0) await finished
      server.close()
      await Promise.all(handles.map(h => h.close()))
    }
  }
}

async function receiver (plan, t) {
  const tls = await tlsOptions(plan)
  const handles = await Promise.all(plan.files.map(f => open(f.target, 'r+')))
  const commits = groupCommit()
  let bytes = 0
  let cipher = null
  await Promise.all(connectionsOf(plan, t).map(async k => {
    const socket = connect({ ...tls, host: '127.0.0.1', port: plan.ports[k % plan.threads], servername: SERVERNAME })
    await new Promise((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
    cipher = socket.getCipher().standardName
    const hello = Buffer.alloc(4)
    hello.writeUInt32BE(k, 0)
    socket.write(hello)
    const chunks = chunksOf(plan, k)
    const slab = Buffer.allocUnsafe(Math.max(...chunks.map(c => c.size), 0))
    const header = Buffer.alloc(4)
    let index = 0
    let headerAt = 0
    let at = 0
    let size = -1
    for await (const piece of socket) {
      let p = 0
      while (p < piece.length) {
        if (size < 0) {
          const take = Math.min(4 - headerAt, piece.length - p)
          piece.copy(header, headerAt, p, p + take)
          headerAt += take
          p += take
          if (headerAt === 4) {
            size = header.readUInt32BE(0)
            headerAt = 0
            if (index >= chunks.length || size !== chunks[index].size) throw new Error(`connection ${k}: chunk ${index} of ${size} bytes is not in the plan`)
          }
          continue
        }
        const take = Math.min(size - at, piece.length - p)
        piece.copy(slab, at, p, p + take)
        at += take
        p += take
        if (at === size) {
          const chunk = chunks[index++]
          const body = slab.subarray(0, size)
          if (createHash('sha256').update(body).digest('hex') !== chunk.sha256) throw new Error(`connection ${k}: chunk at ${chunk.offset} does not match its SHA-256`)
          // the socket is not read while the write runs, which is the backpressure
          await handles[chunk.file].write(body, 0, size, chunk.offset)
          commits.written(handles[chunk.file])
          bytes += size
          at = 0
          size = -1
        }
      }
    }
    if (index !== chunks.length || size >= 0) throw new Error(`connection ${k} ended after ${index} of ${chunks.length} chunks`)
  }))
  await commits.drain()
  await Promise.all(handles.map(h => h.close()))
  return { bytes, cipher }
}

/** CPU of this thread since `before` (a cpuOfThisThread). */
function cpuSince (before) {
  const now = cpuOfThisThread(before.name)
  return { name: before.name, userSeconds: now.userSeconds - before.userSeconds, systemSeconds: now.systemSeconds - before.systemSeconds }
}

/** CPU of the whole process (every thread, libuv's pool included) since `before` (a process.cpuUsage()). */
const processCpuSince = before => { const u = process.cpuUsage(before); return (u.user + u.system) / 1e6 }

if (isMainThread) {
  const [role, planFile] = process.argv.slice(2)
  if (!['sender', 'receiver'].includes(role)) throw new Error(`role ${role}: expected sender or receiver`)
  const plan = JSON.parse(await readFile(planFile, 'utf8'))
  if (role === 'receiver') {
    for (const f of plan.files) {
      const handle = await open(f.target, 'w')
      await handle.truncate(f.size)
      await handle.close()
    }
  }
  const workers = Array.from({ length: plan.threads }, (_, t) => new Worker(fileURLToPath(import.meta.url), { name: `worker-${t}`, workerData: { role, plan, t } }))
  const messages = workers.map(w => {
    const queue = []
    const waiting = []
    w.on('message', m => { const next = waiting.shift(); if (next) next.resolve(m); else queue.push(m) })
    w.once('error', err => { for (const next of waiting.splice(0)) next.reject(err) })
    return () => queue.length > 0 ? Promise.resolve(queue.shift()) : new Promise((resolve, reject) => waiting.push({ resolve, reject }))
  })
  if (role === 'sender') {
    const ports = await Promise.all(messages.map(next => next().then(m => m.port)))
    const [cpuBefore, mainBefore] = [process.cpuUsage(), cpuOfThisThread('main')]
    process.stdout.write(JSON.stringify({ ports }) + '\n')
    const results = await Promise.all(messages.map(next => next()))
    process.stdout.write(JSON.stringify({ cpuSeconds: processCpuSince(cpuBefore), threads: [cpuSince(mainBefore), ...results.map(r => r.cpu)] }) + '\n')
    // the work is done and counted; the servers' last sockets need not be waited for
    process.exit(0)
  } else {
    // the agents' threads are running before a pull starts, so these start before the clock
    await Promise.all(messages.map(next => next()))
    const [cpuBefore, mainBefore] = [process.cpuUsage(), cpuOfThisThread('main')]
    const started = performance.now()
    for (const w of workers) w.postMessage('go')
    const results = await Promise.all(messages.map(next => next()))
    const seconds = (performance.now() - started) / 1000
    process.stdout.write(JSON.stringify({
      seconds,
      bytes: results.reduce((sum, r) => sum + r.bytes, 0),
      cipher: results.find(r => r.cipher != null)?.cipher,
      cpuSeconds: processCpuSince(cpuBefore),
      threads: [cpuSince(mainBefore), ...results.map(r => r.cpu)]
    }) + '\n')
  }
} else {
  const { role, plan, t } = workerData
  const name = `worker-${t}`
  if (role === 'sender') {
    const s = await sender(plan, t)
    const before = cpuOfThisThread(name)
    parentPort.postMessage({ port: s.port })
    await s.finished()
    parentPort.postMessage({ cpu: cpuSince(before) })
  } else {
    parentPort.postMessage({ ready: true })
    await once(parentPort, 'message')
    const before = cpuOfThisThread(name)
    const r = await receiver(plan, t)
    parentPort.postMessage({ ...r, cpu: cpuSince(before) })
  }
}
