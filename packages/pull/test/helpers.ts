import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fetcher } from '@swarm/fetcher'
import { PEER_BUSY_CODE, encodeBitfield, uniqueChunks } from '@swarm/interface'
import { createStore } from '@swarm/store'
import { lyingCopy, randomModel } from '../../fetcher/test/model.js'
import type { Fetcher } from '@swarm/fetcher'
import type { ChunkRequest, ChunkSource } from '@swarm/interface'
import type { Model } from '../../fetcher/test/model.js'
import type { NamedFetcher, PullPeer, PullPeerEvents, PullPeers } from '../src/index.js'
import type { Store } from '@swarm/store'

export const CHUNK = 64 * 1024

export type { Model }

/** A model of `chunkCount` random chunks in one file. */
export function makeModel (chunkCount: number): Model {
  return randomModel(chunkCount, CHUNK)
}

export interface Behaviour {
  delayMs?: number
  /** every answer's bytes are wrong */
  lie?: boolean
  /** every request fails */
  fail?: boolean
  /** fails this request's first attempt after half its delay (a connection reset mid-chunk) */
  failFirst?: (cid: string) => boolean
  /** turns this request's first attempt away as a busy data server does */
  busyFirst?: (cid: string) => boolean
}

/** A source with scripted behaviour that counts what it was asked. */
export function scriptedSource (name: string, kind: 'peer' | 'origin', model: Model, behaviour: Behaviour = {}): ChunkSource & { calls: string[], failed: number } {
  const tried = new Set<string>()
  const source = {
    name,
    kind,
    calls: [] as string[],
    failed: 0,
    async fetch ({ cid }: ChunkRequest, { signal }: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
      source.calls.push(cid)
      if (behaviour.busyFirst?.(cid) === true && !tried.has(cid)) {
        tried.add(cid)
        source.failed++
        throw Object.assign(new Error(`${name} is busy`), { name: 'PeerBusyError', code: PEER_BUSY_CODE })
      }
      const resetNow = behaviour.failFirst?.(cid) === true && !tried.has(cid)
      tried.add(cid)
      const delay = behaviour.delayMs ?? 1
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, resetNow ? delay / 2 : delay)
        signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
      })
      if (resetNow || behaviour.fail === true) {
        source.failed++
        throw Object.assign(new Error(`${name}: connection reset`), { code: 'ECONNRESET' })
      }
      const bytes = model.chunks.get(cid)
      if (bytes == null) throw new Error(`${name} does not have ${cid}`)
      return behaviour.lie === true ? lyingCopy(bytes) : bytes
    }
  }
  return source
}

/** Peers scripted in process: each holds what its bitfield says and serves through a scripted source. */
export class ScriptedPeers implements PullPeers {
  constructor (readonly selfId = '12D3KooWself') {}

  readonly joins: Array<{ pulling: boolean, count: number }> = []
  /** the origin fetchers each join named */
  readonly named: Array<readonly NamedFetcher[]> = []
  readonly haves: number[] = []
  readonly rejectedPeers: string[] = []
  readonly banned = new Set<string>()
  private readonly state = new Map<string, PullPeer>()
  listeners = 0
  private events?: PullPeerEvents

  peers (): PullPeer[] { return [...this.state.values()] }
  connectedCount (): number { return this.state.size }
  isBanned (peerId: string): boolean { return this.banned.has(peerId) }
  join (state: { bitfield: Uint8Array, chunkCount: number, pulling: boolean, fetchers?: readonly NamedFetcher[] }): void {
    this.joins.push({ pulling: state.pulling, count: state.chunkCount })
    this.named.push(state.fetchers ?? [])
  }

  have (indices: number[]): void { this.haves.push(...indices) }
  rejected (peerId: string): void { this.rejectedPeers.push(peerId) }
  subscribe (events: PullPeerEvents): () => void {
    this.events = events
    this.listeners++
    return () => {
      this.events = undefined
      this.listeners--
    }
  }

  /** A peer that holds every chunk of `model` (or the ones flagged). */
  add (peerId: string, model: Model, flags?: boolean[]): void {
    const count = uniqueChunks(model.manifest).length
    const peer = { peerId, pulling: false, bitfield: encodeBitfield(flags ?? new Array(count).fill(true)) }
    this.state.set(peerId, peer)
    this.events?.joined(peer)
  }

  /** A peer joins (again) with this state, holding nothing unless `bitfield` says so. */
  joinAs (peer: PullPeer): void {
    this.state.set(peer.peerId, peer)
    this.events?.joined(peer)
  }

  /** Sends an event as a peer would, whatever it holds. */
  emit (event: (events: PullPeerEvents) => void): void {
    if (this.events != null) event(this.events)
  }
}

export interface Harness {
  dir: string
  store: Store
  fetcher: Fetcher
  close(): Promise<void>
}

export async function harness (): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'swarm-pull-'))
  const store = await createStore({ dir })
  return {
    dir,
    store,
    fetcher: fetcher({ store, sources: [] }),
    async close () {
      await store.close()
      await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Whether the store holds exactly the model's bytes. */
export async function holdsModel (store: Store, model: Model): Promise<boolean> {
  if (store.missingChunks(model.cid).length > 0) return false
  const all = await store.read(model.cid, 'weights.bin', 0, model.bytes)
  return Buffer.compare(Buffer.from(all), Buffer.concat([...model.chunks.values()])) === 0
}
