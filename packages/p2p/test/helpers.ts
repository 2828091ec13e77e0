import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { createSwarmNode } from '../src/index.js'
import type { SwarmNode, SwarmNodeInit } from '../src/index.js'
import type { Logger } from '@swarm/interface'

export const LOOPBACK = ['/ip4/127.0.0.1/tcp/0']

/** Creates nodes on loopback and remembers them so `stopAll` can close them. */
export class Fleet {
  readonly nodes: SwarmNode[] = []

  async add (init: SwarmNodeInit = {}): Promise<SwarmNode> {
    const node = await createSwarmNode({ listen: LOOPBACK, ...init })
    this.nodes.push(node)
    return node
  }

  async stopAll (): Promise<void> {
    await Promise.all(this.nodes.splice(0).map(async node => { await node.stop() }))
  }
}

export async function waitFor (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    }
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

export async function manifestCid (name: string): Promise<string> {
  return CID.createV1(0x0129, await sha256.digest(new TextEncoder().encode(name))).toString()
}

export async function collect<T> (source: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = []
  for await (const item of source) {
    items.push(item)
  }
  return items
}

export function addressWithPeer (node: SwarmNode): string {
  const address = node.multiaddrs().find(a => a.includes('/ip4/127.0.0.1/'))
  if (address == null) {
    throw new Error(`node ${node.peerId} has no loopback address`)
  }
  return address
}

/** A logger that records every entry, to assert on what a node reported. */
export function capturingLogger (entries: Array<{ obj: Record<string, unknown>, msg?: string, level: string }>): Logger {
  const make = (bindings: Record<string, unknown>): Logger => {
    const log = (level: string) => (obj: object | string, msg?: string): void => {
      if (typeof obj === 'string') {
        entries.push({ obj: { ...bindings }, msg: obj, level })
      } else {
        entries.push({ obj: { ...bindings, ...obj }, ...(msg != null ? { msg } : {}), level })
      }
    }
    return {
      trace: log('trace'),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more })
    }
  }
  return make({})
}
