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
import { lstat, mkdir, open, opendir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { NotFoundError, OriginUnavailableError } from '@swarm/interface'
import { ObjectStoreOrigin } from '@swarm/origin-layout'
import { FILE_MODE, TEMP_PREFIX } from './constants.js'
import type { AbortOptions, BufferPool, Logger, Origin } from '@swarm/interface'
import type { ObjectPut } from '@swarm/origin-layout'
import type { Dirent } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'

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

/** The layout's object names are paths under the root, each `/` a directory. */
class FileOrigin extends ObjectStoreOrigin {
  private readonly root: string

  constructor (init: FileOriginInit) {
    const root = parseRootUrl(init.url)
    // chunks are read into buffers lent from a pool and given back with `release`: a fresh buffer
    // per chunk left each byte worker holding tens of MB of dead ones between collections
    super({ url: pathToFileURL(root).href, logger: init.logger, pooledChunks: true })
    this.root = root
  }

  /** Where the object `name` is; the layout checks every CID and ref first, so none leaves the root. */
  private path (name: string): string {
    return join(this.root, ...name.split('/'))
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

  protected async getObject (name: string, what: string, { signal }: AbortOptions, pool?: BufferPool): Promise<Uint8Array> {
    signal?.throwIfAborted()
    const notFound = async (): Promise<never> => {
      await this.checkRoot()
      throw new NotFoundError(`${what} not found at ${this.url}`)
    }
    let handle: FileHandle
    try {
      handle = await open(this.path(name), 'r')
    } catch (err) {
      const code = errorCode(err)
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return await notFound()
      throw abortReason(err, signal)
    }
    try {
      const info = await handle.stat()
      if (!info.isFile()) return await notFound()
      const size = info.size
      const bytes = pool !== undefined ? pool.take(size) : Buffer.allocUnsafe(size)
      let filled = 0
      try {
        while (filled < size) {
          signal?.throwIfAborted()
          const { bytesRead } = await handle.read(bytes, filled, size - filled, filled)
          // objects are replaced by rename, never cut short in place; a file that shrank is read as it is now
          if (bytesRead === 0) break
          filled += bytesRead
        }
      } catch (err) {
        pool?.give(bytes)
        throw abortReason(err, signal)
      }
      if (filled === size) return bytes
      const short = Buffer.from(bytes.subarray(0, filled))
      pool?.give(bytes)
      return short
    } finally {
      await handle.close()
    }
  }

  protected async hasObject (name: string, { signal }: AbortOptions): Promise<boolean> {
    signal?.throwIfAborted()
    try {
      return (await stat(this.path(name))).isFile()
    } catch (err) {
      if (errorCode(err) !== 'ENOENT' && errorCode(err) !== 'ENOTDIR') throw err
      await this.checkRoot()
      return false
    }
  }

  /** A content-addressed object that exists already is left as it is; a ref is replaced. */
  protected async putObject (name: string, bytes: Uint8Array, { contentAddressed }: ObjectPut, { signal }: AbortOptions): Promise<void> {
    signal?.throwIfAborted()
    const path = this.path(name)
    if (contentAddressed) {
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

  protected async * listNames (dir: string, nested: boolean, { signal }: AbortOptions): AsyncIterable<string[]> {
    signal?.throwIfAborted()
    await this.checkRoot()
    if (nested) {
      yield * this.walk(dir, signal)
      return
    }
    let entries
    try {
      entries = await opendir(this.path(dir))
    } catch (err) {
      if (errorCode(err) === 'ENOENT') return
      throw err
    }
    // streamed, not read whole: an origin may hold millions of chunks
    for await (const entry of entries) {
      signal?.throwIfAborted()
      yield [`${dir}${entry.name}`]
    }
  }

  /**
   * The files under `dir` in name order, walking each directory where it stands and leaving out
   * names that start with `.` (temporary files). One file a page: refs are read one at a time.
   */
  private async * walk (dir: string, signal: AbortSignal | undefined): AsyncIterable<string[]> {
    signal?.throwIfAborted()
    const path = this.path(dir)
    let entries: Dirent[]
    try {
      entries = await readdir(path, { withFileTypes: true })
    } catch (err) {
      if (errorCode(err) === 'ENOENT' || errorCode(err) === 'ENOTDIR') return
      throw err
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue
      const kind = await entryKind(entry, join(path, entry.name))
      if (kind === 'directory') yield * this.walk(`${dir}${entry.name}/`, signal)
      else if (kind === 'file') yield [`${dir}${entry.name}`]
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
