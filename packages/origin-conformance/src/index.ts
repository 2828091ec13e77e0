/**
 * @packageDocumentation
 *
 * The behaviour every {@link Origin} must have, as one vitest `describe` block that each
 * implementation runs against a real backend (a directory, an S3 server). Each test gets a fresh,
 * empty origin from `setup` and hands it back to the matching `teardown`.
 *
 * What it holds implementations to: byte-identical round trips of multi-MiB chunks; NotFoundError
 * for every kind of missing object; idempotent puts; listings that return exactly what was put,
 * with chunks and manifests kept apart; nested ref names, and tags that move; clear errors for
 * CIDs and refs that could escape the layout; calls with an aborted signal rejecting with its
 * reason and writing nothing; many concurrent reads.
 *
 * Capabilities: an origin that cannot enumerate its chunks (a registry lists no blobs) says so
 * with `capabilities.listChunks: false`. The suite then holds it to refusing `listChunks` with
 * UnsupportedOperationError, never answering with a wrong (empty) list, and checks what the
 * listing would have shown through `hasChunk` instead.
 *
 * An origin that only reads (a web server serving a directory) comes with a
 * `writer`, another origin on the same backend (the file origin on the served directory). Every
 * test then puts through the writer and reads through the origin under test, so the read path is
 * held to the same tests, and one more test holds every write through the read-only origin to
 * {@link OriginReadOnlyError} with nothing changed. Argument checks and aborts still come first:
 * a bad CID is a TypeError and an aborted call rejects with its reason, read-only or not.
 *
 * @example
 *
 * ```ts
 * import { originConformanceTests } from '@swarm/origin-conformance'
 * import { fileOrigin } from '../src/index.js'
 *
 * originConformanceTests('fileOrigin', async () => {
 *   const dir = await mkdtemp(join(tmpdir(), 'origin-'))
 *   return {
 *     origin: fileOrigin({ url: pathToFileURL(dir) }),
 *     teardown: async () => { await rm(dir, { recursive: true }) }
 *   }
 * })
 * ```
 */

import { randomBytes } from 'node:crypto'
import { cidForBytes } from '@swarm/chunker'
import { InvalidRefError, NotFoundError, OriginReadOnlyError, UnsupportedOperationError } from '@swarm/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { CidString, Origin, RefEntry } from '@swarm/interface'

export interface OriginUnderTest {
  /** empty when handed over */
  origin: Origin
  /**
   * For an origin that only reads: a writable origin on the same backend, through which the
   * tests put what the origin under test must then read. Its presence makes the suite hold every
   * write through `origin` to OriginReadOnlyError.
   */
  writer?: Origin
  /** closes the origin and removes what the test left */
  teardown(): Promise<void>
}

const MiB = 1024 * 1024
/** the json codec: manifests are CIDv1 json, chunks CIDv1 raw */
const JSON_CODEC = 0x0200

export interface TestObject {
  cid: CidString
  bytes: Uint8Array
}

/** Random bytes and their CID; random so that no two tests (or runs) share an object by accident. */
export function randomChunk (size: number, codec?: number): TestObject {
  const bytes = new Uint8Array(randomBytes(size))
  return { cid: cidForBytes(bytes, codec), bytes }
}

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

function byRef (a: RefEntry, b: RefEntry): number {
  const x = `${a.name}:${a.tag}`
  const y = `${b.name}:${b.tag}`
  return x < y ? -1 : x > y ? 1 : 0
}

/** Equality without vitest's element-by-element diff of multi-MiB arrays. */
function expectSameBytes (actual: Uint8Array, expected: Uint8Array): void {
  expect(actual).toBeInstanceOf(Uint8Array)
  expect(actual.byteLength).toBe(expected.byteLength)
  expect(Buffer.compare(Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength), Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))).toBe(0)
}

/**
 * Checks that the origin lists exactly `expected` as its chunks, or, where it cannot list chunks,
 * that it refuses to and holds each expected chunk.
 */
async function expectListedChunks (origin: Origin, expected: CidString[]): Promise<void> {
  if (origin.capabilities?.listChunks === false) {
    await expect(collect(origin.listChunks())).rejects.toBeInstanceOf(UnsupportedOperationError)
    for (const cid of expected) expect(await origin.hasChunk(cid)).toBe(true)
    return
  }
  expect((await collect(origin.listChunks())).sort()).toEqual([...expected].sort())
}

export function originConformanceTests (name: string, setup: () => Promise<OriginUnderTest>): void {
  describe(`${name}: Origin conformance`, () => {
    let subject: OriginUnderTest
    let origin: Origin
    /** where puts go: the origin itself, or the writer of a read-only one */
    let writer: Origin

    beforeEach(async () => {
      subject = await setup()
      origin = subject.origin
      writer = subject.writer ?? origin
    })

    afterEach(async () => {
      await subject?.teardown()
    })

    it('has a url for logs', () => {
      expect(typeof origin.url).toBe('string')
      expect(origin.url.length).toBeGreaterThan(0)
    })

    it('round-trips chunks byte for byte, several MiB included', async () => {
      const chunks = [randomChunk(1), randomChunk(64 * 1024 + 3), randomChunk(6 * MiB + 17)]
      for (const { cid } of chunks) expect(await origin.hasChunk(cid)).toBe(false)
      for (const { cid, bytes } of chunks) await writer.putChunk(cid, bytes)
      for (const { cid, bytes } of chunks) {
        expect(await origin.hasChunk(cid)).toBe(true)
        expectSameBytes(await origin.getChunk(cid), bytes)
      }
    })

    it('rejects with NotFoundError for a missing chunk, manifest or ref', async () => {
      const missing = randomChunk(16)
      await expect(origin.getChunk(missing.cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(origin.getManifest(randomChunk(16, JSON_CODEC).cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(origin.resolveRef({ name: 'org/absent', tag: 'latest' })).rejects.toBeInstanceOf(NotFoundError)
      expect(await origin.hasChunk(missing.cid)).toBe(false)
    })

    it('keeps chunks and manifests apart', async () => {
      const manifest = randomChunk(2048, JSON_CODEC)
      const chunk = randomChunk(2048)
      await writer.putManifest(manifest.cid, manifest.bytes)
      await writer.putChunk(chunk.cid, chunk.bytes)
      expectSameBytes(await origin.getManifest(manifest.cid), manifest.bytes)
      await expect(origin.getChunk(manifest.cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(origin.getManifest(chunk.cid)).rejects.toBeInstanceOf(NotFoundError)
      expect(await origin.hasChunk(manifest.cid)).toBe(false)
      await expectListedChunks(origin, [chunk.cid])
    })

    it('treats a second put of the same chunk or manifest as a no-op', async () => {
      const chunk = randomChunk(300 * 1024)
      const manifest = randomChunk(512, JSON_CODEC)
      await writer.putChunk(chunk.cid, chunk.bytes)
      await writer.putChunk(chunk.cid, chunk.bytes)
      await writer.putManifest(manifest.cid, manifest.bytes)
      await writer.putManifest(manifest.cid, manifest.bytes)
      expectSameBytes(await origin.getChunk(chunk.cid), chunk.bytes)
      expectSameBytes(await origin.getManifest(manifest.cid), manifest.bytes)
      await expectListedChunks(origin, [chunk.cid])
    })

    it('lists exactly the chunks put', async () => {
      await expectListedChunks(origin, [])
      const chunks = Array.from({ length: 12 }, (_, i) => randomChunk(100 + i))
      await Promise.all(chunks.map(async ({ cid, bytes }) => { await writer.putChunk(cid, bytes) }))
      await expectListedChunks(origin, chunks.map(c => c.cid))
    })

    it('puts, resolves and lists refs with nested names, and moves a tag', async () => {
      const [a, b, c] = [randomChunk(64, JSON_CODEC), randomChunk(65, JSON_CODEC), randomChunk(66, JSON_CODEC)]
      if (a === undefined || b === undefined || c === undefined) throw new Error('unreachable')
      expect(await collect(origin.listRefs())).toEqual([])
      await writer.putRef({ name: 'org/model', tag: 'tag' }, a.cid)
      await writer.putRef({ name: 'org/model', tag: 'v2' }, b.cid)
      await writer.putRef({ name: 'org/team/model', tag: 'latest' }, c.cid)
      await writer.putRef({ name: 'solo', tag: 'v1.0_rc-1' }, a.cid)

      expect(await origin.resolveRef({ name: 'org/model', tag: 'tag' })).toBe(a.cid)
      expect(await origin.resolveRef({ name: 'org/team/model', tag: 'latest' })).toBe(c.cid)
      expect(await origin.resolveRef({ name: 'solo', tag: 'v1.0_rc-1' })).toBe(a.cid)
      // a prefix of a name is not a name
      await expect(origin.resolveRef({ name: 'org', tag: 'model' })).rejects.toBeInstanceOf(NotFoundError)

      expect((await collect(origin.listRefs())).sort(byRef)).toEqual([
        { name: 'org/model', tag: 'tag', cid: a.cid },
        { name: 'org/model', tag: 'v2', cid: b.cid },
        { name: 'org/team/model', tag: 'latest', cid: c.cid },
        { name: 'solo', tag: 'v1.0_rc-1', cid: a.cid }
      ])

      await writer.putRef({ name: 'org/model', tag: 'tag' }, c.cid)
      expect(await origin.resolveRef({ name: 'org/model', tag: 'tag' })).toBe(c.cid)
      const moved = (await collect(origin.listRefs())).filter(r => r.name === 'org/model' && r.tag === 'tag')
      expect(moved).toEqual([{ name: 'org/model', tag: 'tag', cid: c.cid }])
      // refs are not chunks
      await expectListedChunks(origin, [])
      expect(await origin.hasChunk(a.cid)).toBe(false)
    })

    it('refuses CIDs and refs that could name anything outside the layout', async () => {
      const { cid, bytes } = randomChunk(8)
      for (const bad of ['../escape', 'chunks/x', '', 'b/../../etc', 'bafy ' + cid]) {
        await expect(origin.getChunk(bad)).rejects.toBeInstanceOf(TypeError)
        await expect(origin.putChunk(bad, bytes)).rejects.toBeInstanceOf(TypeError)
        await expect(origin.getManifest(bad)).rejects.toBeInstanceOf(TypeError)
      }
      for (const ref of [{ name: '../escape', tag: 'x' }, { name: 'org//model', tag: 'x' }, { name: '/abs', tag: 'x' }, { name: 'org/model', tag: '../x' }, { name: 'org/model', tag: 'a/b' }, { name: 'org/model', tag: '' }]) {
        await expect(origin.putRef(ref, cid)).rejects.toBeInstanceOf(InvalidRefError)
        await expect(origin.resolveRef(ref)).rejects.toBeInstanceOf(InvalidRefError)
      }
      await expect(origin.putRef({ name: 'org/model', tag: 'x' }, 'not a cid')).rejects.toBeInstanceOf(TypeError)
      expect(await collect(origin.listRefs())).toEqual([])
      await expectListedChunks(origin, [])
      expect(await origin.hasChunk(cid)).toBe(false)
    })

    it('rejects at once with the reason of an already-aborted signal, and writes nothing', async () => {
      const stored = randomChunk(1024)
      await writer.putChunk(stored.cid, stored.bytes)
      const fresh = randomChunk(1024)
      const reason = new Error('stop now')
      const signal = AbortSignal.abort(reason)
      const started = performance.now()
      await expect(origin.getChunk(stored.cid, { signal })).rejects.toBe(reason)
      await expect(origin.hasChunk(stored.cid, { signal })).rejects.toBe(reason)
      await expect(origin.putChunk(fresh.cid, fresh.bytes, { signal })).rejects.toBe(reason)
      await expect(origin.getManifest(fresh.cid, { signal })).rejects.toBe(reason)
      await expect(origin.putManifest(fresh.cid, fresh.bytes, { signal })).rejects.toBe(reason)
      await expect(origin.putRef({ name: 'org/model', tag: 'x' }, fresh.cid, { signal })).rejects.toBe(reason)
      await expect(origin.resolveRef({ name: 'org/model', tag: 'x' }, { signal })).rejects.toBe(reason)
      await expect(collect(origin.listChunks({ signal }))).rejects.toBe(reason)
      await expect(collect(origin.listRefs({ signal }))).rejects.toBe(reason)
      // nothing above may have waited on the network or disk
      expect(performance.now() - started).toBeLessThan(1000)

      expect(await origin.hasChunk(fresh.cid)).toBe(false)
      await expect(origin.getManifest(fresh.cid)).rejects.toBeInstanceOf(NotFoundError)
      expect(await collect(origin.listRefs())).toEqual([])
      // a plain AbortController's reason is an AbortError
      const controller = new AbortController()
      controller.abort()
      await expect(origin.getChunk(stored.cid, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' })
    })

    it('takes writes, or, when it only reads, refuses every one with OriginReadOnlyError and changes nothing', async () => {
      const chunk = randomChunk(4096)
      const manifest = randomChunk(256, JSON_CODEC)
      if (subject.writer === undefined) {
        // a writable origin: the same calls land
        await origin.putChunk(chunk.cid, chunk.bytes)
        await origin.putManifest(manifest.cid, manifest.bytes)
        await origin.putRef({ name: 'org/model', tag: 'v1' }, manifest.cid)
        expect(await origin.resolveRef({ name: 'org/model', tag: 'v1' })).toBe(manifest.cid)
        return
      }
      await expect(origin.putChunk(chunk.cid, chunk.bytes)).rejects.toBeInstanceOf(OriginReadOnlyError)
      await expect(origin.putManifest(manifest.cid, manifest.bytes)).rejects.toBeInstanceOf(OriginReadOnlyError)
      await expect(origin.putRef({ name: 'org/model', tag: 'v1' }, manifest.cid)).rejects.toMatchObject({ code: 'ERR_ORIGIN_READ_ONLY', message: expect.stringContaining(origin.url) })
      expect(await origin.hasChunk(chunk.cid)).toBe(false)
      await expect(origin.getManifest(manifest.cid)).rejects.toBeInstanceOf(NotFoundError)
      await expect(origin.resolveRef({ name: 'org/model', tag: 'v1' })).rejects.toBeInstanceOf(NotFoundError)
      expect(await collect(origin.listRefs())).toEqual([])
    })

    it('serves 32 concurrent gets correctly', async () => {
      const chunks = Array.from({ length: 8 }, (_, i) => randomChunk(512 * 1024 + i))
      await Promise.all(chunks.map(async ({ cid, bytes }) => { await writer.putChunk(cid, bytes) }))
      const reads = Array.from({ length: 32 }, (_, i) => chunks[(i * 5) % chunks.length] as TestObject)
      const results = await Promise.all(reads.map(async ({ cid }) => await origin.getChunk(cid)))
      for (const [i, bytes] of results.entries()) expectSameBytes(bytes, (reads[i] as TestObject).bytes)
    })
  })
}
