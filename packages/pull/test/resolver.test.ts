import { NotFoundError } from '@swarm/interface'
import { encodeManifest } from '@swarm/manifest'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ManifestUnavailableError, resolveManifest } from '../src/index.js'
import { harness, makeModel } from './helpers.js'
import type { Harness } from './helpers.js'
import type { ManifestPeers } from '../src/index.js'

describe('resolveManifest', () => {
  let h: Harness
  beforeEach(async () => { h = await harness() })
  afterEach(async () => { await h.close() })

  const model = makeModel(3)
  const bytes = encodeManifest(model.manifest).bytes
  const origin = (answer: () => Promise<Uint8Array>): { getManifest(): Promise<Uint8Array>, asked: number } => {
    const o = { asked: 0, async getManifest () { o.asked++; return await answer() } }
    return o
  }
  const peers = (answers: Record<string, Uint8Array | Error>): ManifestPeers & { asked: string[] } => {
    const p = {
      asked: [] as string[],
      candidates: async () => Object.keys(answers),
      async fetchManifest (peerId: string) {
        p.asked.push(peerId)
        const answer = answers[peerId] as Uint8Array | Error
        if (answer instanceof Error) throw answer
        return answer
      }
    }
    return p
  }

  it('takes the store\'s copy first, asking nobody', async () => {
    await h.store.addManifest(model.cid, model.manifest)
    const o = origin(async () => { throw new Error('not asked') })
    expect(await resolveManifest(model.cid, { store: h.store, origin: o })).toEqual(model.manifest)
    expect(o.asked).toBe(0)
  })

  it('takes the origin\'s copy, verified against the CID', async () => {
    expect(await resolveManifest(model.cid, { store: h.store, origin: origin(async () => bytes) })).toEqual(model.manifest)
    const tampered = Uint8Array.from(bytes)
    tampered[tampered.length - 2] = (tampered[tampered.length - 2] ?? 0) ^ 1
    await expect(resolveManifest(model.cid, { origin: origin(async () => tampered) })).rejects.toThrow()
  })

  it('says a manifest the origin does not have is not found, without asking peers', async () => {
    const p = peers({ a: bytes })
    const err = await resolveManifest(model.cid, { origin: origin(async () => { throw new NotFoundError('no') }), peers: p }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(NotFoundError)
    expect((err as Error).message).toMatch(/is not at the origin/)
    expect(p.asked).toEqual([])
  })

  it('asks peers when the origin fails or is not configured, and refuses a copy that does not verify', async () => {
    const wrong = encodeManifest(makeModel(2).manifest).bytes
    const p = peers({ liar: wrong, down: new Error('reset'), good: bytes })
    expect(await resolveManifest(model.cid, { origin: origin(async () => { throw new Error('503') }), peers: p })).toEqual(model.manifest)
    expect(p.asked).toEqual(['liar', 'down', 'good'])
    expect(await resolveManifest(model.cid, { peers: peers({ good: bytes }) })).toEqual(model.manifest)
  })

  it('names every reason when nobody has it', async () => {
    const err = await resolveManifest(model.cid, { origin: origin(async () => { throw new Error('503') }), peers: peers({ down: new Error('reset') }) }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(ManifestUnavailableError)
    expect((err as Error).message).toMatch(/origin: 503; peer down: reset/)
    await expect(resolveManifest(model.cid, { peers: peers({}) })).rejects.toThrow(/no peer has it and no origin is configured/)
    // an origin's own error stands when there are no peers to ask
    await expect(resolveManifest(model.cid, { origin: origin(async () => { throw new Error('503') }) })).rejects.toThrow(/^503$/)
  })
})
