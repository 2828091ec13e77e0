/**
 * @packageDocumentation
 *
 * An {@link Origin} on a directory: a local disk or an NFS share, named by a `file:///dir` URL.
 *
 * Layout: `<dir>/chunks/<cid>`, `<dir>/manifests/<cid>`, `<dir>/refs/<name>/<tag>` (a name may hold
 * `/`, so refs nest; a ref file's content is the manifest CID).
 *
 * Design:
 * - Every write goes to a temporary file in the destination directory, is flushed to stable storage,
 *   then renamed over the final name. rename(2) inside one directory is atomic on local file systems
 *   and on NFS (the server performs it), so readers see the old object or the new one, never part of
 *   one. Temporary names start with `.tmp-`, which no CID, name component or tag can, so listings
 *   skip them and a crash never leaves something that looks like an object.
 * - No locks: flock and fcntl locks are unreliable over NFS, and none are needed. Chunks and
 *   manifests are content-addressed, so two writers of one object write the same bytes, and a put of
 *   an object that already exists returns without writing. Two writers of one ref: the last rename wins.
 * - A missing root directory (an NFS share that is not mounted) is reported as
 *   {@link OriginUnavailableError}, never as an empty origin, and writes never create it.
 * - An aborted call rejects with the signal's reason and leaves no temporary file behind.
 *
 * @example
 *
 * ```ts
 * import { fileOrigin } from '@swarm/origin-file'
 *
 * const origin = fileOrigin({ url: 'file:///mnt/models' })
 * await origin.putChunk(cid, bytes)
 * await origin.putRef({ name: 'meta/llama-3-8b', tag: 'latest' }, manifestCid)
 * const target = await origin.resolveRef({ name: 'meta/llama-3-8b', tag: 'latest' })
 * ```
 */

import { randomBytes } from 'node:crypto'
import { lstat, mkdir, opendir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { InvalidRefError, NotFoundError, OriginUnavailableError, silentLogger, checkCid } from '@swarm/interface'
import { formatRef } from '@swarm/manifest'
import { CHUNKS_DIR, CID_PATTERN, FILE_MODE, MANIFESTS_DIR, REFS_DIR, TEMP_PREFIX } from './constants.js'
import type { AbortOptions, CidString, Logger, ModelRef, Origin, RefEntry } from '@swarm/interface'
import type { Dirent } from 'node:fs'

export interface FileOriginInit {
  /** `file:///dir`: the origin's root directory, which must exist */
  url: string | URL
  logger?: Logger
}

export function fileOrigin (init: FileOriginInit): Origin {
  return new FileOrigin(init)
}

function errorCode (err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code
}


/** Rethrows the signal's reason when the signal is what ended the operation. */
function abortReason (err: unknown, signal: AbortSignal | undefined): unknown {
  return signal?.aborted === true ? signal.reason : err
}

function parseRootUrl (url: string | URL): string {
  let parsed: URL
  try {
    parsed = typeof url === 'string' ? new URL(url) : url
  } catch {
    throw new TypeError(`invalid origin URL ${JSON.stringify(String(url))}: expected file:///dir`)
  }
  if (parsed.protocol !== 'file:') {
    throw new TypeError(`invalid origin URL ${JSON.stringify(parsed.href)}: expected the file: scheme, e.g. file:///srv/models`)
  }
  if (parsed.search !== '' || parsed.hash !== '') {
    throw new TypeError(`invalid origin URL ${JSON.stringify(parsed.href)}: a file: origin takes no query or fragment`)
  }
  try {
    return fileURLToPath(parsed)
  } catch (err) {
    throw new TypeError(`invalid origin URL ${JSON.stringify(parsed.href)}: ${(err as Error).message}`)
  }
}

class FileOrigin implements Origin {
  readonly url: string
  private readonly root: string
  private readonly log: Logger

  constructor (init: FileOriginInit) {
    this.root = parseRootUrl(init.url)
    this.url = pathToFileURL(this.root).href
    this.log = (init.logger ?? silentLogger).child({ origin: this.url })
  }

  async getChunk (cid: CidString, options: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    return await this.readObject(join(this.root, CHUNKS_DIR, cid), `chunk ${cid}`, options)
  }

  async hasChunk (cid: CidString, options: AbortOptions = {}): Promise<boolean> {
    checkCid(cid)
    options.signal?.throwIfAborted()
    try {
      return (await stat(join(this.root, CHUNKS_DIR, cid))).isFile()
    } catch (err) {
      if (errorCode(err) !== 'ENOENT' && errorCode(err) !== 'ENOTDIR') throw err
      await this.checkRoot()
      return false
    }
  }

  async putChunk (cid: CidString, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    await this.writeObject(join(this.root, CHUNKS_DIR, cid), bytes, false, options)
  }

  async * listChunks (options: AbortOptions = {}): AsyncIterable<CidString> {
    yield * this.listObjects(CHUNKS_DIR, options)
  }

  async getManifest (cid: CidString, options: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    return await this.readObject(join(this.root, MANIFESTS_DIR, cid), `manifest ${cid}`, options)
  }

  async putManifest (cid: CidString, bytes: Uint8Array, options: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    await this.writeObject(join(this.root, MANIFESTS_DIR, cid), bytes, false, options)
  }

  async resolveRef (ref: ModelRef, options: AbortOptions = {}): Promise<CidString> {
    const text = formatRef(ref)
    const bytes = await this.readObject(this.refPath(ref), `ref ${text}`, options)
    const cid = new TextDecoder().decode(bytes).trim()
    if (!CID_PATTERN.test(cid)) throw new InvalidRefError(`ref ${text} at ${this.url} does not hold a CID`)
    return cid
  }

  async putRef (ref: ModelRef, cid: CidString, options: AbortOptions = {}): Promise<void> {
    formatRef(ref)
    checkCid(cid)
    await this.writeObject(this.refPath(ref), new TextEncoder().encode(cid), true, options)
  }

  async * listRefs (options: AbortOptions = {}): AsyncIterable<RefEntry> {
    options.signal?.throwIfAborted()
    await this.checkRoot()
    yield * this.walkRefs(join(this.root, REFS_DIR), [], options)
  }

  async close (): Promise<void> {}

  private refPath (ref: ModelRef): string {
    return join(this.root, REFS_DIR, ...ref.name.split('/'), ref.tag)
  }

  /** Missing root: the share is not there, which is not the same as an empty origin. */
  private async checkRoot (): Promise<void> {
    try {
      if ((await stat(this.root)).isDirectory()) return
    } catch (err) {
      if (errorCode(err) !== 'ENOENT' && errorCode(err) !== 'ENOTDIR') throw err
    }
    throw new OriginUnavailableError(`origin directory ${this.root} does not exist (${this.url})`)
  }

  private async readObject (path: string, what: string, { signal }: AbortOptions): Promise<Uint8Array> {
    signal?.throwIfAborted()
    let bytes: Buffer
    try {
      bytes = await readFile(path, { signal })
    } catch (err) {
      const code = errorCode(err)
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') {
        await this.checkRoot()
        throw new NotFoundError(`${what} not found at ${this.url}`)
      }
      throw abortReason(err, signal)
    }
    return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  private async writeObject (path: string, bytes: Uint8Array, replace: boolean, { signal }: AbortOptions): Promise<void> {
    signal?.throwIfAborted()
    if (!replace) {
      try {
        if ((await stat(path)).isFile()) return
      } catch (err) {
        if (errorCode(err) !== 'ENOENT') throw err
      }
    }
    await this.checkRoot()
    const dir = dirname(path)
    await mkdir(dir, { recursive: true })
    const temp = join(dir, `${TEMP_PREFIX}${basename(path)}-${randomBytes(6).toString('hex')}`)
    try {
      await writeFile(temp, bytes, { flag: 'wx', mode: FILE_MODE, flush: true, signal })
      signal?.throwIfAborted()
      await rename(temp, path)
    } catch (err) {
      await rm(temp, { force: true }).catch(() => {})
      throw abortReason(err, signal)
    }
    this.log.trace({ path, bytes: bytes.byteLength }, 'wrote object')
  }

  private async * listObjects (kindDir: string, { signal }: AbortOptions): AsyncIterable<CidString> {
    signal?.throwIfAborted()
    await this.checkRoot()
    let dir
    try {
      dir = await opendir(join(this.root, kindDir))
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return
      throw err
    }
    // streamed, not read whole: an origin may hold millions of chunks
    for await (const entry of dir) {
      signal?.throwIfAborted()
      if (CID_PATTERN.test(entry.name)) yield entry.name
    }
  }

  private async * walkRefs (dir: string, nameParts: string[], { signal }: AbortOptions): AsyncIterable<RefEntry> {
    signal?.throwIfAborted()
    let entries: Dirent[]
    try {
      entries = await readdir(dir, { withFileTypes: true })
    } catch (err) {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return
      throw err
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue
      const path = join(dir, entry.name)
      const kind = await entryKind(entry, path)
      if (kind === 'directory') {
        yield * this.walkRefs(path, [...nameParts, entry.name], { signal })
        continue
      }
      if (kind !== 'file' || nameParts.length === 0) continue
      const ref = { name: nameParts.join('/'), tag: entry.name }
      try {
        formatRef(ref)
      } catch {
        this.log.debug({ path }, 'skipping a file under refs/ that is not a valid ref')
        continue
      }
      let cid: string
      try {
        cid = await this.resolveRef(ref, { signal })
      } catch (err) {
        // removed between the listing and the read
        if (err instanceof NotFoundError) continue
        // one damaged ref must not hide the others
        if (err instanceof InvalidRefError) {
          this.log.warn({ path }, err.message)
          continue
        }
        throw err
      }
      yield { ...ref, cid }
    }
  }
}

/** Some file systems (NFS among them) leave the type out of directory entries; ask then. */
async function entryKind (entry: Dirent, path: string): Promise<'file' | 'directory' | 'other'> {
  if (entry.isFile()) return 'file'
  if (entry.isDirectory()) return 'directory'
  if (entry.isSymbolicLink()) return 'other'
  try {
    const stats = await lstat(path)
    return stats.isFile() ? 'file' : stats.isDirectory() ? 'directory' : 'other'
  } catch {
    return 'other'
  }
}
