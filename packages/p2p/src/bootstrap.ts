/**
 * Bootstrap: dial a fixed list of peers, and keep dialling them.
 *
 * An entry is a multiaddr (ideally with `/p2p/<id>`) or `dns:<name>:<port>`. A `dns:` entry
 * resolves to every A and AAAA record of the name (through the system resolver, so
 * /etc/hosts applies), which is how a Kubernetes headless Service lists its pods; each address
 * is dialled without knowing its peer id — the handshake tells. Entries are re-resolved and
 * re-dialled every {@link BOOTSTRAP_INTERVAL_MS}, so pods that come later, or peers we lost,
 * are (re)joined. A round in which a dial failed (or a name did not resolve) is followed by
 * another after {@link BOOTSTRAP_RETRY_MS}, doubling up to the interval while rounds keep
 * failing: a node started before its seed, or whose first dial timed out on a busy host, is not
 * left alone for a whole interval. Our own address is skipped; an address whose last dial
 * reached a peer we are still connected to is not dialled again.
 */

import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { multiaddr } from '@multiformats/multiaddr'
import { silentLogger } from '@swarm/interface'
import { BOOTSTRAP_INTERVAL_MS, BOOTSTRAP_RETRY_MS, DIAL_TIMEOUT_MS } from './constants.js'
import { InvalidBootstrapAddressError } from './errors.js'
import type { Libp2p } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { AbortOptions, Logger } from '@swarm/interface'

export type BootstrapEntry =
  | { kind: 'multiaddr', entry: string, address: Multiaddr, peerId?: string }
  | { kind: 'dns', entry: string, name: string, port: number }

/** Parses one bootstrap entry; throws {@link InvalidBootstrapAddressError} with the reason. */
export function parseBootstrapEntry (entry: string): BootstrapEntry {
  if (entry.startsWith('dns:')) {
    const rest = entry.slice('dns:'.length)
    const colon = rest.lastIndexOf(':')
    const name = rest.slice(0, colon)
    const portText = rest.slice(colon + 1)
    const port = Number(portText)
    if (colon <= 0 || !/^[0-9]+$/.test(portText) || port < 1 || port > 65_535) {
      throw new InvalidBootstrapAddressError(entry, `bootstrap entry ${JSON.stringify(entry)} is not dns:<name>:<port> with a port from 1 to 65535`)
    }
    return { kind: 'dns', entry, name, port }
  }
  if (!entry.startsWith('/')) {
    throw new InvalidBootstrapAddressError(entry, `bootstrap entry ${JSON.stringify(entry)} is neither a multiaddr nor dns:<name>:<port>`)
  }
  let address: Multiaddr
  try {
    address = multiaddr(entry)
  } catch (err) {
    throw new InvalidBootstrapAddressError(entry, `bootstrap entry ${JSON.stringify(entry)} is not a valid multiaddr: ${(err as Error).message}`)
  }
  const peerId = address.getComponents().find(component => component.name === 'p2p')?.value
  return { kind: 'multiaddr', entry, address, ...(peerId != null ? { peerId } : {}) }
}

export interface BootstrapperInit {
  intervalMs?: number
  logger?: Logger
}

export class Bootstrapper {
  readonly #libp2p: Libp2p
  readonly #entries: BootstrapEntry[]
  readonly #intervalMs: number
  readonly #log: Logger
  /** address → peer id its last successful dial reached */
  readonly #reached = new Map<string, string>()
  #timer: ReturnType<typeof setInterval> | undefined
  #retry: ReturnType<typeof setTimeout> | undefined
  /** the wait before the next retry; back to `BOOTSTRAP_RETRY_MS` after a round with no failure */
  #nextRetryMs: number
  #round: Promise<void> | undefined
  #shutdown = new AbortController()

  constructor (libp2p: Libp2p, entries: BootstrapEntry[], init: BootstrapperInit = {}) {
    this.#libp2p = libp2p
    this.#entries = entries
    this.#intervalMs = init.intervalMs ?? BOOTSTRAP_INTERVAL_MS
    this.#nextRetryMs = BOOTSTRAP_RETRY_MS
    this.#log = (init.logger ?? silentLogger).child({ component: 'p2p:bootstrap' })
  }

  start (): void {
    if (this.#entries.length === 0 || this.#timer != null) {
      return
    }
    this.#shutdown = new AbortController()
    const run = (): void => {
      this.run().catch(err => { this.#log.warn({ err: err.message }, 'bootstrap round failed') })
    }
    run()
    this.#timer = setInterval(run, this.#intervalMs)
    this.#timer.unref?.()
  }

  stop (): void {
    clearInterval(this.#timer)
    this.#timer = undefined
    clearTimeout(this.#retry)
    this.#retry = undefined
    this.#shutdown.abort()
  }

  /** One round: resolve every entry and dial what is not connected. Joins a round already running. */
  async run (options: AbortOptions = {}): Promise<void> {
    this.#round ??= this.#runRound().finally(() => { this.#round = undefined })
    if (options.signal == null) {
      await this.#round
      return
    }
    const { signal } = options
    signal.throwIfAborted()
    // removed once the round ends: a caller may pass one long-lived signal to many rounds
    let onAbort = (): void => {}
    try {
      await Promise.race([
        this.#round,
        new Promise<void>((_resolve, reject) => {
          onAbort = () => { reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
        })
      ])
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }

  async #runRound (): Promise<void> {
    let failed = false
    const targets = (await Promise.all(this.#entries.map(async entry => {
      const resolved = await this.#resolve(entry)
      if (resolved.length === 0) failed = true
      return resolved
    }))).flat()
    const own = this.#ownAddresses()
    await Promise.all(targets.map(async target => {
      const key = endpointKey(target)
      if (key != null && own.has(key)) {
        return
      }
      const peerId = target.getComponents().find(component => component.name === 'p2p')?.value ?? this.#reached.get(target.toString())
      if (peerId === this.#libp2p.peerId.toString()) {
        return
      }
      if (peerId != null && this.#libp2p.getPeers().some(peer => peer.toString() === peerId)) {
        return
      }
      try {
        const signal = AbortSignal.any([this.#shutdown.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
        const connection = await this.#libp2p.dial(target, { signal })
        this.#reached.set(target.toString(), connection.remotePeer.toString())
        this.#log.debug({ address: target.toString(), peer: connection.remotePeer.toString() }, 'bootstrap peer connected')
      } catch (err) {
        failed = true
        this.#log.debug({ address: target.toString(), err: (err as Error).message }, 'bootstrap dial failed')
      }
    }))
    this.#scheduleRetry(failed)
  }

  /** Another round soon after a failed one, backing off; none while the interval's rounds succeed. */
  #scheduleRetry (failed: boolean): void {
    if (!failed) {
      this.#nextRetryMs = BOOTSTRAP_RETRY_MS
      return
    }
    if (this.#timer == null || this.#retry != null || this.#shutdown.signal.aborted) return
    const wait = this.#nextRetryMs
    this.#nextRetryMs = Math.min(this.#intervalMs, this.#nextRetryMs * 2)
    if (wait >= this.#intervalMs) return
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      this.run().catch(err => { this.#log.warn({ err: err.message }, 'bootstrap round failed') })
    }, wait)
    this.#retry.unref?.()
  }

  async #resolve (entry: BootstrapEntry): Promise<Multiaddr[]> {
    if (entry.kind === 'multiaddr') {
      return [entry.address]
    }
    try {
      const records = await lookup(entry.name, { all: true, verbatim: true })
      return records
        .filter(record => isIP(record.address) !== 0)
        .map(record => multiaddr(`/${record.family === 6 ? 'ip6' : 'ip4'}/${record.address}/tcp/${entry.port}`))
    } catch (err) {
      this.#log.warn({ entry: entry.entry, err: (err as Error).message }, 'bootstrap name did not resolve')
      return []
    }
  }

  #ownAddresses (): Set<string> {
    const own = new Set<string>()
    for (const address of this.#libp2p.getMultiaddrs()) {
      const key = endpointKey(address)
      if (key != null) {
        own.add(key)
      }
    }
    return own
  }
}

/** `ip|port` of a TCP multiaddr, or undefined for anything else. */
function endpointKey (address: Multiaddr): string | undefined {
  let host: string | undefined
  let port: string | undefined
  for (const component of address.getComponents()) {
    if (component.name === 'ip4' || component.name === 'ip6') {
      host = component.value
    } else if (component.name === 'tcp') {
      port = component.value
    }
  }
  return host != null && port != null ? `${host}|${port}` : undefined
}
