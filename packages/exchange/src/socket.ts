import { ConnectionClosedError } from './errors.js'
import type { Socket } from 'node:net'

/** Resolves on 'drain'; rejects if the socket closes first (events.once would wait forever). */
export async function waitForDrain (socket: Socket): Promise<void> {
  if (socket.destroyed) throw new ConnectionClosedError()
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => {
      socket.off('close', onClose)
      resolve()
    }
    const onClose = (): void => {
      socket.off('drain', onDrain)
      reject(new ConnectionClosedError())
    }
    socket.once('drain', onDrain)
    socket.once('close', onClose)
  })
}
