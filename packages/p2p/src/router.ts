/**
 * Content routing over the Swarm DHT, in the manner of Spegel: finding who holds a manifest
 * is kept apart from serving it, and a lookup result is a hint, not a promise — the control
 * channel says what a peer really holds.
 *
 * `advertise` writes our provider record at once and publishes it to the closest peers in the
 * background: the first publish after start waits for the DHT's initial self-query (seconds),
 * which must not hold up a pull. kad-dht's reprovider re-publishes records of advertised keys
 * before they expire. `withdraw` removes our record, so we stop answering for the key and it is
 * not re-published; copies other peers already store expire after the provider validity
 * (see `providerValidity` in the node's init), which bounds how long a stale hint lives.
 */

import { CID } from 'multiformats/cid'
import { AbortError, silentLogger } from '@swarm/interface'
import { InvalidManifestCidError, NodeNotStartedError } from './errors.js'
import type { PeerAddress } from './control.js'
import type { KadDHT } from '@libp2p/kad-dht'
import type { PeerId } from '@libp2p/interface'
import type { AbortOptions, Logger } from '@swarm/interface'

export interface AdvertiseOptions extends AbortOptions {
  /**
   * Wait until the record has been published to the network (or the publish failed: then
   * reject). By default `advertise` returns once publishing has started.
   */
  wait?: boolean
}

export interface Router {
  /** Announce that we provide `key` (a manifest CID) and keep announcing it until withdrawn. Idempotent. */
  advertise(key: string, options?: AdvertiseOptions): Promise<void>
  /** Stop providing `key`. Idempotent. */
  withdraw(key: string, options?: AbortOptions): Promise<void>
  /** Peers that provide `key`, as they are found, without duplicates and never ourselves. */
  lookup(key: string, options?: AbortOptions): AsyncIterable<PeerAddress>
  /** keys currently advertised */
  advertised(): string[]
}

interface Advertisement {
  controller: AbortController
  /** settles when the current publish has finished */
  publishing: Promise<void>
}

export interface DhtRouterComponents {
  dht: KadDHT
  peerId: PeerId
  isStarted(): boolean
}

export class DhtRouter implements Router {
  readonly #components: DhtRouterComponents
  readonly #log: Logger
  readonly #advertised = new Map<string, Advertisement>()

  constructor (components: DhtRouterComponents, init: { logger?: Logger } = {}) {
    this.#components = components
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:router' })
  }

  async advertise (key: string, options: AdvertiseOptions = {}): Promise<void> {
    const cid = parseKey(key)
    this.#requireStarted()
    options.signal?.throwIfAborted()
    const name = cid.toString()
    let advertisement = this.#advertised.get(name)
    if (advertisement == null) {
      advertisement = this.#publish(cid)
      this.#advertised.set(name, advertisement)
    }
    if (options.wait === true) {
      await raceSignal(advertisement.publishing, options.signal)
    }
  }

  async withdraw (key: string, options: AbortOptions = {}): Promise<void> {
    const cid = parseKey(key)
    options.signal?.throwIfAborted()
    const name = cid.toString()
    const advertisement = this.#advertised.get(name)
    if (advertisement == null) {
      return
    }
    this.#advertised.delete(name)
    advertisement.controller.abort()
    // the publish writes our record first: let it settle so the removal comes after
    await advertisement.publishing.catch(() => {})
    await this.#components.dht.cancelReprovide(cid, options)
    this.#log.debug({ key: name }, 'withdrawn')
  }

  async * lookup (key: string, options: AbortOptions = {}): AsyncGenerator<PeerAddress> {
    const cid = parseKey(key)
    this.#requireStarted()
    const self = this.#components.peerId.toString()
    const seen = new Set<string>()
    for await (const event of this.#components.dht.findProviders(cid, { signal: options.signal })) {
      if (event.name !== 'PROVIDER') {
        continue
      }
      for (const provider of event.providers) {
        const peerId = provider.id.toString()
        if (peerId === self || seen.has(peerId)) {
          continue
        }
        seen.add(peerId)
        yield { peerId, multiaddrs: provider.multiaddrs.map(address => address.toString()) }
      }
    }
  }

  advertised (): string[] {
    return [...this.#advertised.keys()]
  }

  /** Forgets advertisements when the node stops; the DHT's records went with it. */
  stop (): void {
    for (const advertisement of this.#advertised.values()) {
      advertisement.controller.abort()
    }
    this.#advertised.clear()
  }

  #publish (cid: CID): Advertisement {
    const controller = new AbortController()
    const started = Date.now()
    const publishing = drain(this.#components.dht.provide(cid, { signal: controller.signal }))
    publishing.then(
      () => { this.#log.debug({ key: cid.toString(), ms: Date.now() - started }, 'provider record published') },
      (err: Error) => {
        if (!controller.signal.aborted) {
          // the record stays local and the reprovider tries again before it expires
          this.#log.warn({ key: cid.toString(), err: err.message }, 'publishing a provider record failed')
        }
      }
    )
    return { controller, publishing }
  }

  #requireStarted (): void {
    if (!this.#components.isStarted()) {
      throw new NodeNotStartedError()
    }
  }
}

function parseKey (key: string): CID {
  try {
    return CID.parse(key)
  } catch {
    throw new InvalidManifestCidError(key)
  }
}

async function drain (source: AsyncIterable<unknown>): Promise<void> {
  for await (const event of source) {
    void event
  }
}

async function raceSignal<T> (promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal == null) {
    return await promise
  }
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(new AbortError()) }
        signal.addEventListener('abort', onAbort, { once: true })
      })
    ])
  } finally {
    if (onAbort != null) {
      signal.removeEventListener('abort', onAbort)
    }
  }
}
