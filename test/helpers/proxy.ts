/**
 * A real HTTP reverse proxy on loopback in front of the S3 server, which counts requests by
 * method and object kind and can be stopped and restarted on the same port. Tests use it to
 * count what reached the origin and to make the origin vanish mid-pull without stopping the
 * S3 server other tests share. The Host header is passed through unchanged, so SigV4
 * signatures made for the proxy's address still verify at the server.
 */

import { createServer, request } from 'node:http'
import type { Server, IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'

export interface OriginProxy {
  endpoint: string
  port: number
  /** GET counts by kind: `chunks`, `manifests`, `refs` */
  gets: Record<string, number>
  puts: Record<string, number>
  /** response bytes of GETs by kind */
  getBytes: Record<string, number>
  /** called for every proxied GET of a chunk (e.g. to kill a client after N of them) */
  onChunkGet?: (count: number) => void
  /** asked for every GET of a chunk, by CID: a promise holds the request until it settles */
  holdChunkGet?: (cid: string) => Promise<void> | undefined
  /** when set, each chunk GET's body is sent at this many bytes per second (the origin's link, slow) */
  chunkBytesPerSecond?: number
  reset(): void
  stop(): Promise<void>
  restart(): Promise<void>
}

function kindOf (req: IncomingMessage): string {
  const path = (req.url ?? '').split('?')[0] ?? ''
  const match = /\/(chunks|manifests|refs)\//.exec(path)
  return match?.[1] ?? 'other'
}

export async function originProxy (target: string, port = 0): Promise<OriginProxy> {
  const upstream = new URL(target)
  const sockets = new Set<Socket>()
  let server: Server
  const proxy: OriginProxy = {
    endpoint: '',
    port,
    gets: {},
    puts: {},
    getBytes: {},
    reset () {
      proxy.gets = {}
      proxy.puts = {}
      proxy.getBytes = {}
    },
    async stop () {
      await new Promise<void>(resolve => {
        server.close(() => { resolve() })
        for (const socket of sockets) socket.destroy()
      })
    },
    async restart () {
      await listen(proxy.port)
    }
  }

  const listen = async (at: number): Promise<void> => {
    server = createServer((req, res) => {
      const kind = kindOf(req)
      const counts = req.method === 'GET' ? proxy.gets : req.method === 'PUT' ? proxy.puts : undefined
      if (counts != null) counts[kind] = (counts[kind] ?? 0) + 1
      if (req.method === 'GET' && kind === 'chunks') proxy.onChunkGet?.(proxy.gets.chunks ?? 0)
      const send = (): void => {
        const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, upstreamRes => {
          res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers)
          if (req.method === 'GET') {
            upstreamRes.on('data', (piece: Buffer) => { proxy.getBytes[kind] = (proxy.getBytes[kind] ?? 0) + piece.length })
          }
          const rate = proxy.chunkBytesPerSecond
          if (req.method !== 'GET' || kind !== 'chunks' || rate === undefined) {
            upstreamRes.pipe(res)
            return
          }
          // paced: each piece waits its share of a second before the next is read
          upstreamRes.on('data', (piece: Buffer) => {
            res.write(piece)
            upstreamRes.pause()
            setTimeout(() => { upstreamRes.resume() }, piece.length / rate * 1000)
          })
          upstreamRes.on('end', () => { res.end() })
        })
        forward.on('error', () => { res.destroy() })
        req.pipe(forward)
      }
      const held = req.method === 'GET' && kind === 'chunks' ? proxy.holdChunkGet?.(((req.url ?? '').split('?')[0] ?? '').split('/').pop() ?? '') : undefined
      if (held == null) send()
      else held.then(send, () => { res.destroy() })
    })
    server.on('connection', socket => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(at, '127.0.0.1', () => { resolve() })
    })
    const address = server.address()
    if (address == null || typeof address === 'string') throw new Error('proxy has no address')
    proxy.port = address.port
    proxy.endpoint = `http://127.0.0.1:${address.port}`
  }
  await listen(port)
  return proxy
}
