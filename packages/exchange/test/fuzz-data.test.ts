/**
 * Generated and mutated request streams (./frames.ts) from a real peer: an admitted identity with
 * a peer-id-bound certificate that finishes the TLS handshake and then writes raw bytes. For each
 * stream the reference reading says what the server must do: close the connection when the stream
 * breaks the protocol, else answer every GET once, correctly, and stay in step for the next frame.
 * All the while an honest client on its own connections keeps fetching chunks and checks every
 * byte.
 *
 * SWARM_FUZZ_RUNS sets the number of streams (default 2000), SWARM_FUZZ_SEED replays a run (a
 * failure's message names it), and SWARM_FUZZ_REPORT names a JSON file for the summary
 * (bench/fuzz-data runs many more this way).
 */
import { writeFileSync } from 'node:fs'
import tls from 'node:tls'
import { generateCertificate } from '@libp2p/tls/utils'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { PROTOCOL, dataClient } from '../src/index.js'
import { get, parseRequests, parseResponses, requestStream, splits } from './frames.js'
import { admittingServer, cleanupsAfterEach, identity, randomChunk } from './helpers.js'
import type { ModelRequest, ModelResponse } from './frames.js'

const RUNS = Number(process.env.SWARM_FUZZ_RUNS ?? 2000)
const SEED = process.env.SWARM_FUZZ_SEED != null ? Number(process.env.SWARM_FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31)
/** streams in flight at once, each run of fast-check on its own connections with seed SEED + i */
const CONCURRENCY = 4
/** how long the server may take to answer or close; far above what it needs */
const PATIENCE_MS = 5000
const Status = { OK: 0, NOT_FOUND: 1, BUSY: 2, ERROR: 3, CANCELLED: 4 }

const cleanups = cleanupsAfterEach()

interface Session {
  socket: tls.TLSSocket
  received: Buffer[]
  closed: boolean
  /** runs the waiting check on every byte and on close */
  changed?: () => void
}

async function connect (port: number, certificate: { cert: string, key: string }): Promise<Session> {
  const socket = tls.connect({ host: '127.0.0.1', port, ...certificate, rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: [PROTOCOL] })
  socket.setNoDelay(true)
  const session: Session = { socket, received: [], closed: false }
  socket.on('error', () => {})
  socket.on('data', (chunk: Buffer) => {
    session.received.push(chunk)
    session.changed?.()
  })
  socket.once('close', () => {
    session.closed = true
    session.changed?.()
  })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => { resolve() })
    socket.once('close', () => { reject(new Error('closed before the handshake finished')) })
  })
  return session
}

/** Resolves once `done` holds, checked on every change; rejects after PATIENCE_MS. */
async function until (session: Session, done: () => boolean, what: string): Promise<void> {
  if (done()) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      session.changed = undefined
      reject(new Error(`${what} did not happen within ${PATIENCE_MS} ms`))
    }, PATIENCE_MS)
    session.changed = () => {
      if (!done()) return
      clearTimeout(timer)
      session.changed = undefined
      resolve()
    }
  })
}

describe('the data server under fuzzed frames from an authenticated peer', () => {
  it('stays up, answers or closes as the specification says, and keeps serving byte-identical chunks', async () => {
    // enough slots and connections that a correct server never answers BUSY or refuses here
    const s = await admittingServer(cleanups, { maxUploads: 64, maxUploadsPerPeer: 64, maxConnectionsPerPeer: 64 })
    const fuzzer = await identity()
    const honestId = await identity()
    s.admitted.add(fuzzer.peerId)
    s.admitted.add(honestId.peerId)
    const server = { ...s, fuzzer, honest: honestId }
    const chunks = new Map<string, Uint8Array>()
    for (const size of [1, 3000, 70_000]) {
      const chunk = await randomChunk(size)
      chunks.set(chunk.cid, chunk.bytes)
      server.store.chunks.set(chunk.cid, chunk.bytes)
    }
    const cids = [...chunks.keys()]
    const probeCid = cids[1] as string
    const certificate = await generateCertificate(server.fuzzer.privateKey)

    // the honest peer, on its own connections, all through the run
    const client = dataClient({ privateKey: server.honest.privateKey })
    cleanups.push(async () => { await client.close() })
    const peer = { peerId: server.id.peerId, host: '127.0.0.1', port: server.port }
    const honest = { fetched: 0, failures: [] as string[], running: true }
    const honestLoop = (async () => {
      for (let i = 0; honest.running; i++) {
        const cid = cids[i % cids.length] as string
        const expected = chunks.get(cid) as Uint8Array
        try {
          const got = await client.fetch(peer, { cid, size: expected.length })
          if (Buffer.compare(got, expected) !== 0) honest.failures.push(`${cid}: different bytes`)
          client.release(got)
          honest.fetched++
        } catch (err) {
          honest.failures.push(`${cid}: ${(err as Error).message}`)
        }
        // a steady trickle of fetches, so the fuzzed connections get most of the one thread
        await new Promise(resolve => setTimeout(resolve, 5))
      }
    })()

    /** The statuses (and payloads) a GET may be answered with. */
    const allowed = (request: Extract<ModelRequest, { type: 'get' }>, cancelled: boolean, response: ModelResponse): boolean => {
      if (response.status === Status.CANCELLED) return cancelled && response.payload.length === 0
      const held = chunks.get(request.cid)
      if (held === undefined) return response.status === Status.NOT_FOUND && response.payload.length === 0
      if (held.length > request.maxSize) return response.status === Status.ERROR && response.payload.length <= 1024
      return response.status === Status.OK && Buffer.compare(response.payload, held) === 0
    }

    /**
     * One stream on `worker`'s connection. A connection that ends a stream in step (every GET and
     * the probe answered, nothing left over) carries the next stream, as a peer's would; any other
     * is closed, and the next stream dials anew.
     */
    const runCase = async (worker: { session?: Session }, bytes: Buffer, cuts: number[]): Promise<void> => {
      const model = parseRequests(bytes)
      const gets = model.requests.filter((r): r is Extract<ModelRequest, { type: 'get' }> => r.type === 'get')
      const ids = new Set(model.requests.map(r => r.id))
      // a reused id is refused only while the first request is in flight, which timing decides
      const ambiguous = new Set(gets.map(r => r.id)).size !== gets.length
      const session = worker.session?.closed === false ? worker.session : await connect(server.port, certificate)
      worker.session = undefined
      let inStep = false
      try {
        for (const [from, to] of splits(bytes.length, cuts)) session.socket.write(bytes.subarray(from, to))
        // where the stream ends between frames, one more GET must be read as a frame of its own
        let probe: number | undefined
        if (!model.error && !model.partial) {
          probe = 0
          while (ids.has(probe)) probe++
          session.socket.write(get(probe, probeCid, 1 << 20))
        }
        const answers = (): ModelResponse[] => parseResponses(Buffer.concat(session.received)).responses
        if (model.error) {
          await until(session, () => session.closed, 'closing a connection that broke the protocol')
        } else if (ambiguous) {
          await until(session, () => session.closed || answers().length >= gets.length + (probe !== undefined ? 1 : 0), 'an answer to every GET, or a close')
        } else {
          await until(session, () => session.closed || answers().length >= gets.length + (probe !== undefined ? 1 : 0), 'an answer to every GET')
          expect(session.closed, 'the server closed a connection that kept to the protocol').toBe(false)
        }
        const { responses, rest } = parseResponses(Buffer.concat(session.received))
        // a frame cut short only by a close the stream earned
        if (!model.error && !ambiguous) expect(rest).toBe(0)
        const answered = new Map<number, number>()
        for (const response of responses) {
          answered.set(response.id, (answered.get(response.id) ?? 0) + 1)
          if (response.id === probe) {
            expect(response.status).toBe(Status.OK)
            expect(Buffer.compare(response.payload, chunks.get(probeCid) as Uint8Array)).toBe(0)
            continue
          }
          const candidates = gets.filter(r => r.id === response.id)
          expect(candidates.length, `an answer to request ${response.id}, which was never asked`).toBeGreaterThan(0)
          const cancelled = model.requests.some(r => r.type === 'cancel' && r.id === response.id)
          expect(candidates.some(r => allowed(r, cancelled, response)), `answer ${response.status} of ${response.payload.length} bytes to request ${response.id}`).toBe(true)
        }
        for (const [id, count] of answered) {
          expect(count, `answers to request ${id}`).toBeLessThanOrEqual(gets.filter(r => r.id === id).length + (id === probe ? 1 : 0))
        }
        inStep = !model.error && !ambiguous && probe !== undefined && !session.closed
      } finally {
        if (inStep) {
          session.received.length = 0
          worker.session = session
        } else {
          session.socket.destroy()
        }
      }
    }

    const started = performance.now()
    const results = await Promise.all(Array.from({ length: CONCURRENCY }, async (_, i) => {
      const worker: { session?: Session } = {}
      try {
        const property = fc.asyncProperty(requestStream(cids), fc.array(fc.nat(), { maxLength: 4 }), async (bytes, cuts) => { await runCase(worker, bytes, cuts) })
        return await fc.check(property, { numRuns: Math.ceil(RUNS / CONCURRENCY), seed: SEED + i })
      } finally {
        worker.session?.socket.destroy()
      }
    }))
    honest.running = false
    await honestLoop
    const result = results.find(r => r.failed) ?? results[0] as (typeof results)[number]
    const cases = results.reduce((sum, r) => sum + r.numRuns, 0)
    const summary = {
      cases,
      failed: results.filter(r => r.failed).length,
      seed: SEED,
      failedSeed: result.failed ? result.seed : null,
      counterexample: result.counterexample?.map(v => Buffer.isBuffer(v) ? v.toString('hex') : v) ?? null,
      error: result.errorInstance != null ? String(result.errorInstance) : null,
      honestFetches: honest.fetched,
      honestFailures: honest.failures.length,
      protocolErrors: server.server.stats.protocolErrors,
      seconds: (performance.now() - started) / 1000
    }
    if (process.env.SWARM_FUZZ_REPORT != null) writeFileSync(process.env.SWARM_FUZZ_REPORT, JSON.stringify(summary) + '\n')
    expect(result.failed, `SWARM_FUZZ_SEED=${SEED}: ${fc.defaultReportMessage(result) ?? ''}`).toBe(false)
    expect(cases).toBeGreaterThanOrEqual(RUNS)
    expect(honest.failures).toEqual([])
    expect(honest.fetched).toBeGreaterThan(0)
    // the streams did break the protocol, and the server is still whole after all of them
    expect(server.server.stats.protocolErrors).toBeGreaterThan(RUNS / 20)
    const after = await client.fetch(peer, { cid: probeCid, size: 3000 })
    expect(Buffer.compare(after, chunks.get(probeCid) as Uint8Array)).toBe(0)
    expect(server.server.stats.uploads).toBe(0)
  }, 600_000)
})
