// A .torrent (BitTorrent v1, BEP 3) for files already on disk, so the BitTorrent baseline seeds and
// fetches the very bytes Swarm moves. Multi-file: `info.files` lists them in the given order and
// pieces run across file boundaries, as every client expects. Only what aria2c needs is written:
// announce, info (name, piece length, pieces, files); `private` is set so a client looks for peers
// at the tracker alone (no DHT, no peer exchange), as the bench's swarm has no other source either.
import { createHash } from 'node:crypto'
import { open } from 'node:fs/promises'
import { join } from 'node:path'

/** Bencodes integers, strings/Uint8Arrays, arrays and objects (keys sorted as the spec requires). */
export function bencode (value) {
  const parts = []
  const walk = v => {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new Error(`bencode: ${v} is not an integer`)
      parts.push(Buffer.from(`i${v}e`))
    } else if (typeof v === 'string' || v instanceof Uint8Array) {
      const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v)
      parts.push(Buffer.from(`${bytes.length}:`), bytes)
    } else if (Array.isArray(v)) {
      parts.push(Buffer.from('l'))
      v.forEach(walk)
      parts.push(Buffer.from('e'))
    } else if (v != null && typeof v === 'object') {
      parts.push(Buffer.from('d'))
      const keys = Object.keys(v).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      for (const key of keys) {
        walk(key)
        walk(v[key])
      }
      parts.push(Buffer.from('e'))
    } else {
      throw new Error(`bencode: cannot encode ${typeof v}`)
    }
  }
  walk(value)
  return Buffer.concat(parts)
}

/**
 * @param {{ dir: string, name: string, files: Array<{ path: string, size: number }>, pieceLength: number, announce: string, source?: string }} init
 *   dir/name/path is each file on disk; path is relative to dir/name with "/" separators; source
 *   (info.source, as private trackers use it) gives the same files a different info hash
 * @returns {Promise<{ torrent: Buffer, infoHash: string, pieces: number }>}
 */
export async function makeTorrent ({ dir, name, files, pieceLength, announce, source }) {
  if (!Number.isInteger(pieceLength) || pieceLength < 16 * 1024 || (pieceLength & (pieceLength - 1)) !== 0) throw new Error(`piece length must be a power of two ≥ 16 KiB, got ${pieceLength}`)
  if (files.length === 0) throw new Error('a torrent needs at least one file')
  const hashes = []
  const piece = Buffer.alloc(pieceLength)
  let filled = 0
  for (const file of files) {
    const handle = await open(join(dir, name, ...file.path.split('/')), 'r')
    try {
      let offset = 0
      while (offset < file.size) {
        const { bytesRead } = await handle.read(piece, filled, Math.min(pieceLength - filled, file.size - offset), offset)
        if (bytesRead === 0) throw new Error(`${file.path} is shorter than ${file.size} bytes`)
        offset += bytesRead
        filled += bytesRead
        if (filled === pieceLength) {
          hashes.push(createHash('sha1').update(piece).digest())
          filled = 0
        }
      }
    } finally {
      await handle.close()
    }
  }
  if (filled > 0) hashes.push(createHash('sha1').update(piece.subarray(0, filled)).digest())
  const info = {
    name,
    'piece length': pieceLength,
    pieces: Buffer.concat(hashes),
    files: files.map(f => ({ length: f.size, path: f.path.split('/') })),
    private: 1,
    ...(source != null ? { source } : {})
  }
  const infoHash = createHash('sha1').update(bencode(info)).digest('hex')
  return { torrent: bencode({ announce, info }), infoHash, pieces: hashes.length }
}
