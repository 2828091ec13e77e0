/**
 * Block digests of a version 3 manifest: the SHA-256 of each `blockSize` bytes of a chunk (the
 * last block shorter), concatenated, in base64 in the manifest. They let a node check a chunk
 * block by block while it arrives, and pass the checked blocks on (see @swarm/fetcher's
 * `ArrivingChunks`); the chunk's CID still checks it whole before it is stored. Decoded for each
 * chunk request by `uniqueChunks` (@swarm/interface).
 */

import { createHash } from 'node:crypto'
import { BLOCK_DIGEST_BYTES } from '@swarm/interface'

/** The digests of `bytes` cut in blocks of `blockSize`, as a version 3 manifest writes them. */
export function blockDigests (bytes: Uint8Array, blockSize: number): string {
  if (!Number.isInteger(blockSize) || blockSize < 1) throw new RangeError(`blockSize must be a positive integer, not ${blockSize}`)
  const blocks = Math.ceil(bytes.byteLength / blockSize)
  const digests = Buffer.allocUnsafe(blocks * BLOCK_DIGEST_BYTES)
  for (let k = 0; k < blocks; k++) {
    createHash('sha256').update(bytes.subarray(k * blockSize, (k + 1) * blockSize)).digest().copy(digests, k * BLOCK_DIGEST_BYTES)
  }
  return digests.toString('base64')
}
