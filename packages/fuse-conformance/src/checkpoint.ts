/**
 * A checkpoint of many small files in nested directories, the shape orbax, zarr and
 * tensorstore write (thousands of files of a few KiB each), and a reader that reads every file
 * of a tree, for the tests and the bench that hold the FUSE view to it. Kept apart from the
 * suites so a bench can use it without vitest.
 */

import { createCipheriv, createHash } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

export interface CheckpointShape {
  /** files besides the top-level `checkpoint` metadata file (default 4000) */
  files?: number
  /** smallest and largest file, bytes (default 2 KiB and 64 KiB) */
  minBytes?: number
  maxBytes?: number
  seed?: string
}

export interface WrittenCheckpoint {
  /** relative paths, sorted */
  files: string[]
  bytes: number
  /** SHA-256 of every file's bytes in `files` order, one after another */
  sha256: string
}

/** Writes `<dir>/state/layer_<l>/param_<p>/shard_<i>.zarr` files of pseudo-random sizes and bytes. */
export async function writeCheckpoint (dir: string, shape: CheckpointShape = {}): Promise<WrittenCheckpoint> {
  const count = shape.files ?? 4000
  const min = shape.minBytes ?? 2048
  const max = shape.maxBytes ?? 64 * 1024
  const key = createHash('sha256').update(shape.seed ?? 'checkpoint').digest()
  const stream = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32))
  const written: Array<[string, Buffer]> = []
  for (let i = 0; i < count; i++) {
    const path = `state/layer_${i % 40}/param_${Math.floor(i / 40) % 10}/shard_${i}.zarr`
    const bytes = stream.update(Buffer.alloc(min + ((i * 2654435761) >>> 0) % (max - min + 1)))
    await mkdir(join(dir, path, '..'), { recursive: true })
    await writeFile(join(dir, path), bytes)
    written.push([path, bytes])
  }
  const meta = Buffer.from(JSON.stringify({ step: 1, files: count }))
  await writeFile(join(dir, 'checkpoint'), meta)
  written.push(['checkpoint', meta])
  written.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)
  const hash = createHash('sha256')
  for (const [, bytes] of written) hash.update(bytes)
  return { files: written.map(([path]) => path), bytes: written.reduce((sum, [, b]) => sum + b.length, 0), sha256: hash.digest('hex') }
}

/**
 * Python: walks argv[1], reads every regular file in sorted path order (open, read, close), and
 * prints one JSON line: files, bytes, seconds, the SHA-256 of all bytes in that order, and the
 * slowest single file in seconds. A reader stuck in the kernel never prints; callers time it out.
 */
export const READ_ALL_FILES = `
import hashlib, json, os, sys, time
root = sys.argv[1]
started = time.monotonic()
paths = []
for d, dirs, names in os.walk(root):
    paths.extend(os.path.join(d, n) for n in names)
paths.sort(key=lambda p: os.path.relpath(p, root))
h = hashlib.sha256()
total = 0
slowest = 0.0
for p in paths:
    t = time.monotonic()
    with open(p, 'rb', buffering=0) as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
            total += len(b)
    slowest = max(slowest, time.monotonic() - t)
print(json.dumps({'files': len(paths), 'bytes': total, 'seconds': time.monotonic() - started, 'sha256': h.hexdigest(), 'slowest': slowest}))
`
