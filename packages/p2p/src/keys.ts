/**
 * Key material: the node's libp2p identity and the swarm's pre-shared key.
 *
 * The identity is stored as libp2p's protobuf encoding, mode 0600. Creating it is atomic and
 * never clobbers: the key is written to a temporary file and hard-linked into place, so two
 * agents starting at once on the same path end up with the same key, and a crash never leaves
 * a half-written key behind.
 *
 * The swarm key is the go-ipfs/libp2p pnet format (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex
 * digits); every member of one swarm holds the same file.
 */

import { randomBytes } from 'node:crypto'
import { chmod, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { silentLogger } from '@swarm/interface'
import { SWARM_KEY_BYTES } from './constants.js'
import { InvalidKeyFileError, InvalidSwarmKeyError } from './errors.js'
import type { PrivateKey } from '@libp2p/interface'
import type { AbortOptions, Logger } from '@swarm/interface'

const SWARM_KEY_HEADER = '/key/swarm/psk/1.0.0/'
const SWARM_KEY_ENCODING = '/base16/'

export interface LoadOrCreateKeyOptions extends AbortOptions {
  logger?: Logger
}

/**
 * Reads the Ed25519 identity at `path`, or creates it (and its directory) when the file does
 * not exist. The same path always yields the same peer id.
 */
export async function loadOrCreateKey (path: string, options: LoadOrCreateKeyOptions = {}): Promise<PrivateKey> {
  const log = (options.logger ?? silentLogger).child({ component: 'p2p:keys' })
  options.signal?.throwIfAborted()

  const existing = await readKeyFile(path, log, options)
  if (existing != null) {
    return existing
  }

  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  await writeFile(temporary, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx', signal: options.signal })
  try {
    await link(temporary, path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw err
    }
    // another process created it first: theirs wins, so both end up with one identity
    const winner = await readKeyFile(path, log, options)
    if (winner == null) {
      throw new InvalidKeyFileError(path, `key file ${path} vanished while it was being created`)
    }
    return winner
  } finally {
    await unlink(temporary).catch(() => {})
  }
  log.info({ path }, 'created a new node identity')
  return key
}

async function readKeyFile (path: string, log: Logger, options: AbortOptions): Promise<PrivateKey | undefined> {
  let bytes: Buffer
  try {
    bytes = await readFile(path, { signal: options.signal })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return undefined
    }
    throw err
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new InvalidKeyFileError(path, `${path} does not hold a libp2p private key: ${(err as Error).message}`, { cause: err })
  }
  const { mode } = await stat(path)
  if ((mode & 0o077) !== 0) {
    log.warn({ path, mode: (mode & 0o777).toString(8) }, 'node identity was readable by others; restricting it to 0600')
    await chmod(path, 0o600)
  }
  return key
}

/** A new random swarm key file's contents. Write it with mode 0600 and give it to every member. */
export function generateSwarmKey (): Uint8Array {
  const hex = randomBytes(SWARM_KEY_BYTES).toString('hex')
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_ENCODING}\n${hex}\n`)
}

/**
 * Checks a swarm key file's contents and returns them in the exact form @libp2p/pnet reads
 * (which otherwise fails with a bare "invalid psk"). Accepts CRLF line ends and trailing space.
 */
export function parseSwarmKey (contents: Uint8Array | string): Uint8Array {
  const text = typeof contents === 'string' ? contents : new TextDecoder().decode(contents)
  const lines = text.split(/\r\n|\r|\n/).map(line => line.trim()).filter(line => line !== '')
  if (lines.length !== 3) {
    throw new InvalidSwarmKeyError(`a swarm key has 3 lines (${SWARM_KEY_HEADER}, ${SWARM_KEY_ENCODING}, the key); got ${lines.length}`)
  }
  const [header, encoding, key] = lines as [string, string, string]
  if (header !== SWARM_KEY_HEADER) {
    throw new InvalidSwarmKeyError(`a swarm key starts with ${SWARM_KEY_HEADER}; got ${JSON.stringify(header.slice(0, 40))}`)
  }
  if (encoding !== SWARM_KEY_ENCODING) {
    throw new InvalidSwarmKeyError(`only ${SWARM_KEY_ENCODING} swarm keys are supported; got ${JSON.stringify(encoding.slice(0, 40))}`)
  }
  if (!new RegExp(`^[0-9a-fA-F]{${SWARM_KEY_BYTES * 2}}$`).test(key)) {
    throw new InvalidSwarmKeyError(`a swarm key is ${SWARM_KEY_BYTES * 2} hex digits; got ${key.length} characters`)
  }
  return new TextEncoder().encode(`${SWARM_KEY_HEADER}\n${SWARM_KEY_ENCODING}\n${key.toLowerCase()}`)
}
