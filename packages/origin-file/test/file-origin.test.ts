import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { cidForBytes } from '@swarm/chunker'
import { InvalidRefError, NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { fileOrigin } from '../src/index.js'
import type { Origin } from '@swarm/interface'

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of iterable) items.push(item)
  return items
}

function chunk (text: string): { cid: string, bytes: Uint8Array } {
  const bytes = new TextEncoder().encode(text)
  return { cid: cidForBytes(bytes), bytes }
}

describe('fileOrigin', () => {
  let dir: string
  let origin: Origin

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'swarm-origin-file-'))
    origin = fileOrigin({ url: pathToFileURL(dir).href })
  })

  afterEach(async () => {
    await origin.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('stores objects in the documented layout, refs holding the manifest CID', async () => {
    const c = chunk('layout')
    await origin.putChunk(c.cid, c.bytes)
    await origin.putManifest(c.cid, c.bytes)
    await origin.putRef({ name: 'org/team/model', tag: 'v1' }, c.cid)
    expect(await readFile(join(dir, 'chunks', c.cid), 'utf8')).toBe('layout')
    expect(await readFile(join(dir, 'manifests', c.cid), 'utf8')).toBe('layout')
    expect(await readFile(join(dir, 'refs', 'org', 'team', 'model', 'v1'), 'utf8')).toBe(c.cid)
  })

  it('leaves no temporary files behind, and lists none that a crash left', async () => {
    const c = chunk('tidy')
    await origin.putChunk(c.cid, c.bytes)
    await origin.putRef({ name: 'org/model', tag: 'v1' }, c.cid)
    expect(await readdir(join(dir, 'chunks'))).toEqual([c.cid])
    expect(await readdir(join(dir, 'refs', 'org', 'model'))).toEqual(['v1'])
    // what an interrupted write leaves
    await writeFile(join(dir, 'chunks', `.tmp-${c.cid}-0123456789ab`), 'partial')
    await writeFile(join(dir, 'refs', 'org', 'model', '.tmp-v2-0123456789ab'), 'partial')
    expect(await collect(origin.listChunks())).toEqual([c.cid])
    expect(await collect(origin.listRefs())).toEqual([{ name: 'org/model', tag: 'v1', cid: c.cid }])
  })

  it('reads a ref written by hand with a trailing newline', async () => {
    const c = chunk('by hand')
    await mkdir(join(dir, 'refs', 'org', 'model'), { recursive: true })
    await writeFile(join(dir, 'refs', 'org', 'model', 'latest'), `${c.cid}\n`)
    expect(await origin.resolveRef({ name: 'org/model', tag: 'latest' })).toBe(c.cid)
  })

  it('rejects a ref file that holds no CID with InvalidRefError, and lists the rest', async () => {
    await mkdir(join(dir, 'refs', 'org', 'model'), { recursive: true })
    await writeFile(join(dir, 'refs', 'org', 'model', 'latest'), 'not a cid\n')
    await expect(origin.resolveRef({ name: 'org/model', tag: 'latest' })).rejects.toThrow(InvalidRefError)
    // listing skips it and still returns the others
    const c = chunk('intact')
    await origin.putRef({ name: 'org/model', tag: 'v1' }, c.cid)
    expect(await collect(origin.listRefs())).toEqual([{ name: 'org/model', tag: 'v1', cid: c.cid }])
  })

  it('skips files under refs/ that are not refs', async () => {
    const c = chunk('skip')
    await origin.putRef({ name: 'org/model', tag: 'v1' }, c.cid)
    await writeFile(join(dir, 'refs', 'no-name-tag'), c.cid)
    await mkdir(join(dir, 'refs', 'Upper'), { recursive: true })
    await writeFile(join(dir, 'refs', 'Upper', 'v1'), c.cid)
    expect(await collect(origin.listRefs())).toEqual([{ name: 'org/model', tag: 'v1', cid: c.cid }])
  })

  it('is empty before anything is written', async () => {
    expect(await collect(origin.listChunks())).toEqual([])
    expect(await collect(origin.listRefs())).toEqual([])
  })

  it('survives many concurrent writers of one chunk', async () => {
    const c = chunk('contended'.repeat(10_000))
    const other = fileOrigin({ url: pathToFileURL(dir) })
    await Promise.all(Array.from({ length: 16 }, async (_, i) => { await (i % 2 === 0 ? origin : other).putChunk(c.cid, c.bytes) }))
    expect(Buffer.from(await other.getChunk(c.cid)).equals(Buffer.from(c.bytes))).toBe(true)
    expect(await readdir(join(dir, 'chunks'))).toEqual([c.cid])
  })

  it('reports a missing root directory as unavailable, and never creates it', async () => {
    const gone = join(dir, 'not-mounted')
    const absent = fileOrigin({ url: pathToFileURL(gone) })
    const c = chunk('nowhere')
    await expect(absent.getChunk(c.cid)).rejects.toThrow(OriginUnavailableError)
    await expect(absent.hasChunk(c.cid)).rejects.toThrow(OriginUnavailableError)
    await expect(absent.putChunk(c.cid, c.bytes)).rejects.toThrow(/not-mounted does not exist/)
    await expect(absent.resolveRef({ name: 'org/model', tag: 'v1' })).rejects.toThrow(OriginUnavailableError)
    await expect(collect(absent.listChunks())).rejects.toThrow(OriginUnavailableError)
    await expect(collect(absent.listRefs())).rejects.toThrow(OriginUnavailableError)
    expect(await readdir(dir)).toEqual([])
  })

  it('says NotFound, not unavailable, when only the object is missing', async () => {
    await expect(origin.getChunk(chunk('absent').cid)).rejects.toThrow(NotFoundError)
    await expect(origin.getChunk(chunk('absent').cid)).rejects.toThrow(/not found at file:\/\//)
  })

  it('reads a later chunk into memory given back through release, and only into that', async () => {
    const first = chunk('a'.repeat(300_000))
    const second = chunk('b'.repeat(300_000))
    await origin.putChunk(first.cid, first.bytes)
    await origin.putChunk(second.cid, second.bytes)
    const got = await origin.getChunk(first.cid)
    expect(Buffer.compare(got, first.bytes)).toBe(0)
    origin.release?.(got)
    const again = await origin.getChunk(second.cid)
    expect(again.buffer).toBe(got.buffer)
    expect(Buffer.compare(again, second.bytes)).toBe(0)
    // lent once: bytes still held are never handed out again
    const third = await origin.getChunk(first.cid)
    expect(third.buffer).not.toBe(again.buffer)
    expect(Buffer.compare(third, first.bytes)).toBe(0)
    expect(Buffer.compare(again, second.bytes)).toBe(0)
  })

  it('says NotFound for a directory where a chunk would be', async () => {
    const { cid } = chunk('a directory')
    await mkdir(join(dir, 'chunks', cid), { recursive: true })
    await expect(origin.getChunk(cid)).rejects.toThrow(NotFoundError)
  })

  it('names itself by its file URL', () => {
    expect(origin.url).toBe(pathToFileURL(dir).href)
  })

  it('refuses URLs that are not file: URLs of a local path', () => {
    expect(() => fileOrigin({ url: 's3://bucket/prefix' })).toThrow(/expected the file: scheme/)
    expect(() => fileOrigin({ url: '/plain/path' })).toThrow(/expected file:\/\/\/dir/)
    expect(() => fileOrigin({ url: 'file://remote-host/share' })).toThrow(TypeError)
    expect(() => fileOrigin({ url: 'file:///srv/models?x=1' })).toThrow(/no query/)
  })
})
