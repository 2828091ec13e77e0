/**
 * Addresses on the control channel: where our data server and our peers' listen, and the peer
 * addresses a discovery hands us to dial.
 *
 * Data address: peers announce the port of their data server and, optionally, a host. Without
 * a host the address is the IP the peer's connection comes from, which is right for pods and
 * hosts behind no NAT and needs no configuration.
 */

import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr as toMultiaddr } from '@multiformats/multiaddr'
import { InvalidMultiaddrError, InvalidPeerIdError } from './errors.js'
import { isValidDataAddress } from './messages.js'
import type { ControlEvents } from './control.js'
import type { PeerSession } from './control-peers.js'
import type { DataAddress } from './messages.js'
import type { PeerId, TypedEventEmitter } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Logger } from '@swarm/interface'

/** Our data address, as the node says it is now. */
export class LocalDataAddress {
  readonly #dataAddress: () => DataAddress | undefined
  readonly #log: Logger
  #invalidAddressKey = ''

  constructor (dataAddress: () => DataAddress | undefined, log: Logger) {
    this.#dataAddress = dataAddress
    this.#log = log
  }

  /** our data address if peers will accept it; an invalid one is logged and not announced */
  current (): DataAddress | undefined {
    const address = this.#dataAddress()
    if (address == null || isValidDataAddress(address)) {
      return address
    }
    const key = addressKey(address)
    if (key !== this.#invalidAddressKey) {
      this.#invalidAddressKey = key
      this.#log.error({ dataAddress: address }, 'not announcing an invalid data address')
    }
    return undefined
  }
}

/** Takes the data address a peer announced; tells the channel's listeners when where we reach it changes. */
export function updateDataAddress (events: TypedEventEmitter<ControlEvents>, session: PeerSession, announced: DataAddress | undefined): void {
  session.announced = announced
  const host = announced?.host ?? session.observedHost
  const resolved = announced != null && host != null ? { host, port: announced.port } : undefined
  if (addressKey(resolved) === addressKey(session.dataAddress)) {
    return
  }
  session.dataAddress = resolved
  if (resolved != null) {
    events.safeDispatchEvent('peer:data-address', { detail: { peerId: session.id, ...resolved } })
  }
}

export function addressKey (address: DataAddress | undefined): string {
  return address == null ? '' : `${address.host ?? ''}|${address.port}`
}

export function observedHost (address: Multiaddr): string | undefined {
  for (const component of address.getComponents()) {
    if ((component.name === 'ip4' || component.name === 'ip6') && component.value != null) {
      return component.value
    }
  }
  return undefined
}

export function parsePeerId (value: string): PeerId {
  try {
    return peerIdFromString(value)
  } catch {
    throw new InvalidPeerIdError(value)
  }
}

export function parseMultiaddr (value: string): Multiaddr {
  try {
    return toMultiaddr(value)
  } catch (err) {
    throw new InvalidMultiaddrError(value, `not a multiaddr: ${JSON.stringify(value)} (${(err as Error).message})`)
  }
}

export function withPeerId (address: Multiaddr, peerId: string): Multiaddr {
  const named = address.getComponents().find(component => component.name === 'p2p')?.value
  if (named == null) {
    return address.encapsulate(`/p2p/${peerId}`)
  }
  if (named !== peerId) {
    throw new InvalidMultiaddrError(address.toString(), `address ${address.toString()} names peer ${named}, not ${peerId}`)
  }
  return address
}
