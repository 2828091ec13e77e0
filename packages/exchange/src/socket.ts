import { ConnectionClosedError, WriteTimeoutError } from './errors.js'
import type { Socket } from 'node:net'

/**
 * Resolves on 'drain'; rejects if the socket closes first (events.once would wait forever), or
 * with WriteTimeoutError when `timeoutMs` is given and passes first. The deadline is on the whole
 * buffer draining, not on progress, so a peer that reads a byte now and then cannot stretch it.
 */
export async function waitForDrain (socket: Socket, timeoutMs?: number): Promise<void> {
  if (socket.destroyed) throw new ConnectionClosedError()
  await new Promise<void>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer)
      socket.off('drain', onDrain)
      socket.off('close', onClose)
    }
    const onDrain = (): void => {
      done()
      resolve()
    }
    const onClose = (): void => {
      done()
      reject(new ConnectionClosedError())
    }
    const timer = timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
        done()
        reject(new WriteTimeoutError(timeoutMs))
      }, timeoutMs)
    socket.once('drain', onDrain)
    socket.once('close', onClose)
  })
}
