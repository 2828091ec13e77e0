/**
 * The peers' side of the control streams: reading the streams peers open to us, and what each of
 * their messages does to our view of them.
 *
 * Network input is validated in `messages.ts`; a malformed message, an oversized length or a
 * stream that does not start with `hello` closes that one stream with a logged warning and
 * changes nothing else.
 *
 * Every message is then checked against this node's own state before anything uses it, so no
 * listener ever sees a bitfield or index that does not fit the manifest:
 * - a `join` is used only for a manifest we have joined ourselves, and only when its chunk count
 *   is ours. One for a manifest we do not hold is set aside, a few per peer
 *   ({@link MAX_PEER_ASIDE_MANIFESTS}, oldest out first) and checked only against its own chunk
 *   count, so that a pull or a FUSE read that joins the manifest a moment later has the peer at
 *   once; our `join` adopts it if its chunk count is ours. One that was not kept is not lost:
 *   our own `join` makes the peer send its state again (see `control.ts`), a round trip later;
 * - a `have` must name a manifest the peer joined, with indices inside it;
 * - when we leave a manifest, every peer's state for it is forgotten.
 * A message that fails is dropped, counted by reason (`ControlChannel.stats`) and reported
 * to the node's peer scores, which ban repeat offenders (`peer-score.ts`); messages of a banned
 * peer are not read.
 */

import { holdsAll, setBit } from '@swarm/interface'
import { OPEN_STREAM_TIMEOUT_MS } from './constants.js'
import { observedHost, updateDataAddress } from './control-address.js'
import { joinMessage } from './control-local.js'
import { remoteState } from './control-peers.js'
import { ControlMessageTooLargeError, InvalidControlMessageError } from './errors.js'
import { decodeMessage, FrameDecoder } from './messages.js'
import type { ControlEvents } from './control.js'
import type { LocalManifest } from './control-local.js'
import type { PeerSession, PeerSessions } from './control-peers.js'
import type { ControlWriter } from './control-writer.js'
import type { ControlMessage } from './messages.js'
import type { PeerScores } from './peer-score.js'
import type { Connection, Stream, TypedEventEmitter } from '@libp2p/interface'
import type { Logger } from '@swarm/interface'

export interface ControlReaderInit {
  peers: PeerSessions
  writer: ControlWriter
  /** where bans are looked up */
  scores: PeerScores
  log: Logger
  /** the channel whose listeners hear what peers announce */
  events: TypedEventEmitter<ControlEvents>
  /** our state for a manifest we joined */
  local: (cid: string) => LocalManifest | undefined
}

export class ControlReader {
  readonly #init: ControlReaderInit

  constructor (init: ControlReaderInit) {
    this.#init = init
  }

  /** Reads a stream the peer opened until it ends; a bad message closes it, and is counted. */
  serve (session: PeerSession, stream: Stream, connection: Connection): void {
    session.readers.add(stream)
    // reply even before identify tells us the peer speaks the protocol
    this.#init.writer.ensureWriter(session)
    this.#read(session, stream, connection)
      .catch(err => {
        const bad = err instanceof InvalidControlMessageError || err instanceof ControlMessageTooLargeError
        if (bad) {
          this.#init.peers.reject(session, err instanceof ControlMessageTooLargeError ? 'too-large' : err.reason, err.message)
          this.#init.log.warn({ peer: session.id, err: err.message }, 'closing control stream after a bad message')
        } else {
          this.#init.log.debug({ peer: session.id, err: err.message }, 'control stream failed')
        }
        stream.abort(err)
      })
      .finally(() => {
        session.readers.delete(stream)
      })
  }

  async #read (session: PeerSession, stream: Stream, connection: Connection): Promise<void> {
    const { peers, scores } = this.#init
    const decoder = new FrameDecoder(peers.limits.maxMessageBytes)
    let greeted = false
    for await (const chunk of stream) {
      for (const body of decoder.push(chunk)) {
        if (!peers.isCurrent(session) || scores.isBanned(session.id)) {
          // the peer left or was banned while this stream was still delivering
          stream.abort(new Error('control session ended'))
          return
        }
        // before parsing: a flood must cost as little as possible
        if (!session.messages.tryTake(1) || !session.bytes.tryTake(body.length)) {
          peers.reject(session, 'rate-limited')
          continue
        }
        const message = decodeMessage(body)
        if (message == null) {
          continue
        }
        if (!greeted && message.type !== 'hello') {
          throw new InvalidControlMessageError(`a control stream must start with hello, not ${message.type}`)
        }
        greeted = true
        this.#receive(session, connection, message)
      }
    }
    if (decoder.pendingBytes > 0) {
      throw new InvalidControlMessageError(`control stream ended inside a message (${decoder.pendingBytes} bytes left)`)
    }
    // we never write on a stream the peer opened: close our end so it is freed on both sides
    await stream.close({ signal: AbortSignal.timeout(OPEN_STREAM_TIMEOUT_MS) })
  }

  #receive (session: PeerSession, connection: Connection, message: ControlMessage): void {
    const { peers, events } = this.#init
    switch (message.type) {
      case 'hello': {
        for (const cid of [...session.manifests.keys()]) {
          peers.forget(session, cid)
        }
        for (const cid of [...session.aside.keys()]) {
          peers.dropAside(session, cid)
        }
        session.observedHost = observedHost(connection.remoteAddr)
        updateDataAddress(events, session, message.dataAddress)
        break
      }
      case 'address': {
        session.observedHost = observedHost(connection.remoteAddr)
        updateDataAddress(events, session, message.dataAddress ?? undefined)
        break
      }
      case 'join': {
        const local = this.#init.local(message.manifest)
        if (local == null) {
          peers.reject(session, 'not-joined')
          peers.setAside(session, message.manifest, remoteState(message))
          break
        }
        if (message.chunkCount !== local.chunkCount) {
          peers.reject(session, 'chunk-count', `join of ${message.manifest} with ${message.chunkCount} chunks, not ${local.chunkCount}`)
          break
        }
        const previous = session.manifests.get(message.manifest)
        const state = remoteState(message)
        // a peer is sent no haves of chunks it held: once it lacks one of those again (it
        // evicted some), it gets our whole state, as a peer that joins for the first time does
        if (peers.adopt(session, message.manifest, state) && (previous == null || !holdsAll(state.bitfield, previous.bitfield))) {
          this.#init.writer.send(session, joinMessage(message.manifest, local))
        }
        break
      }
      case 'have': {
        const aside = session.aside.get(message.manifest)
        const state = session.manifests.get(message.manifest) ?? aside
        if (state == null) {
          peers.reject(session, 'peer-not-joined')
          break
        }
        const outside = message.indices.find(index => index >= state.chunkCount)
        if (outside != null) {
          peers.reject(session, 'index-out-of-range', `have index ${outside} is outside manifest ${message.manifest} of ${state.chunkCount} chunks`)
          break
        }
        for (const index of message.indices) {
          setBit(state.bitfield, index)
        }
        if (state === aside) {
          break
        }
        events.safeDispatchEvent('peer:have', { detail: { peerId: session.id, manifestCid: message.manifest, indices: message.indices } })
        break
      }
      case 'arriving':
      case 'not-arriving': {
        // only for a manifest both hold or pull: a peer's arrivals of others are none of ours
        const state = session.manifests.get(message.manifest)
        if (state == null) {
          if (!session.aside.has(message.manifest)) peers.reject(session, 'peer-not-joined')
          break
        }
        const outside = message.indices.find(index => index >= state.chunkCount)
        if (outside != null) {
          peers.reject(session, 'index-out-of-range', `${message.type} index ${outside} is outside manifest ${message.manifest} of ${state.chunkCount} chunks`)
          break
        }
        events.safeDispatchEvent(message.type === 'arriving' ? 'peer:arriving' : 'peer:not-arriving', { detail: { peerId: session.id, manifestCid: message.manifest, indices: message.indices } })
        break
      }
      case 'leave': {
        peers.forget(session, message.manifest)
        peers.dropAside(session, message.manifest)
        break
      }
    }
  }
}
