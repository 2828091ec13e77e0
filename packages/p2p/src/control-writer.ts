/**
 * Our side of the control streams: the one outbound stream per peer that carries our messages,
 * opened when there is something to say and starting with our whole state.
 *
 * Backpressure: messages queue per peer and are written with `stream.send()`, waiting for
 * `'drain'` whenever it returns false. A peer that lets {@link MAX_QUEUED_BYTES} pile up loses
 * its stream; the next message opens a new one with our full state.
 */

import { CONTROL_PROTOCOL, MAX_QUEUED_BYTES, OPEN_STREAM_TIMEOUT_MS } from './constants.js'
import { encodeMessage } from './messages.js'
import type { PeerSession } from './control-peers.js'
import type { ControlMessage } from './messages.js'
import type { Libp2p, Stream } from '@libp2p/interface'
import type { Logger } from '@swarm/interface'

export interface ControlWriterInit {
  libp2p: Libp2p
  log: Logger
  /** false while the channel is stopped: no stream is opened then */
  running: () => boolean
  /** aborted when the channel stops */
  signal: () => AbortSignal
  /** whether the session is still its peer's: the peer may have disconnected while a stream opened */
  isCurrent: (session: PeerSession) => boolean
  /** what a new stream starts with: `hello`, then a `join` per manifest we hold */
  greeting: () => ControlMessage[]
}

export class ControlWriter {
  readonly #init: ControlWriterInit
  /** messages queued on a stream since start, by type (what the channel's stats report as sent) */
  readonly sent: Record<ControlMessage['type'], number> = { hello: 0, address: 0, join: 0, have: 0, arriving: 0, 'not-arriving': 0, leave: 0 }

  constructor (init: ControlWriterInit) {
    this.#init = init
  }

  /**
   * Queues a message for a peer. Without a writer stream the message is dropped and one is
   * opened instead: a new stream starts with our whole state, which includes the message.
   */
  send (session: PeerSession, message: ControlMessage): void {
    const writer = session.writer
    if (writer == null) {
      this.ensureWriter(session)
      return
    }
    const frame = encodeMessage(message)
    this.sent[message.type]++
    session.queue.push(frame)
    session.queuedBytes += frame.length
    if (session.queuedBytes > MAX_QUEUED_BYTES) {
      this.#init.log.warn({ peer: session.id, bytes: session.queuedBytes }, 'peer is not reading control messages; resetting its stream')
      this.#dropWriter(session, writer)
      writer.abort(new Error('control messages not read'))
      return
    }
    void this.#pump(session)
  }

  ensureWriter (session: PeerSession): void {
    if (!this.#init.running() || session.writer != null || session.opening != null) {
      return
    }
    session.opening = this.#openWriter(session)
      .catch(err => {
        this.#init.log.debug({ peer: session.id, err: err.message }, 'could not open a control stream')
      })
      .finally(() => {
        session.opening = undefined
      })
  }

  async #openWriter (session: PeerSession): Promise<void> {
    const signal = AbortSignal.any([this.#init.signal(), AbortSignal.timeout(OPEN_STREAM_TIMEOUT_MS)])
    const stream = await this.#init.libp2p.dialProtocol(session.peerId, CONTROL_PROTOCOL, { signal })
    if (!this.#init.running() || !this.#init.isCurrent(session)) {
      stream.abort(new Error('peer session ended while the control stream opened'))
      return
    }
    stream.addEventListener('close', () => { this.#dropWriter(session, stream) })
    session.writer = stream
    session.queue = []
    session.queuedBytes = 0
    for (const message of this.#init.greeting()) {
      this.send(session, message)
    }
  }

  #dropWriter (session: PeerSession, stream: Stream): void {
    if (session.writer === stream) {
      session.writer = undefined
      session.queue = []
      session.queuedBytes = 0
    }
  }

  async #pump (session: PeerSession): Promise<void> {
    if (session.pumping) {
      return
    }
    session.pumping = true
    try {
      for (;;) {
        const stream = session.writer
        const frame = session.queue.shift()
        if (stream == null || frame == null) {
          break
        }
        session.queuedBytes -= frame.length
        if (!stream.send(frame)) {
          await drained(stream)
        }
      }
    } catch (err) {
      this.#init.log.debug({ peer: session.id, err: (err as Error).message }, 'control stream write failed')
      const stream = session.writer
      if (stream != null) {
        this.#dropWriter(session, stream)
        stream.abort(err as Error)
      }
    } finally {
      session.pumping = false
    }
  }
}

/** Resolves on the stream's next `'drain'`; rejects if it closes first. */
async function drained (stream: Stream): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      stream.removeEventListener('close', onClose)
      resolve()
    }
    const onClose = (): void => {
      stream.removeEventListener('drain', onDrain)
      reject(new Error('control stream closed while waiting to write'))
    }
    stream.addEventListener('drain', onDrain, { once: true })
    stream.addEventListener('close', onClose, { once: true })
  })
}
