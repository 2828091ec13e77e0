import { it } from 'vitest'
import { chunkScheduler, seededRandom } from '../src/index.js'
import { chunkList, peerIds } from './fixtures.js'
it('bench', () => {
  const nodes = 2000, chunks = chunkList(512, 3)
  const ids = peerIds(nodes, 'x')
  let t0 = performance.now()
  const ss = []
  for (let i = 0; i < 200; i++) {
    const s = chunkScheduler({ selfId: ids[i]!, chunks, random: seededRandom(i), pullers: ids, now: 0 })
    s.tick(0)
    ss.push(s)
  }
  let t1 = performance.now()
  console.log(`200 schedulers with 2000 pullers x 512 chunks: ${(t1 - t0).toFixed(0)} ms => per scheduler ${((t1 - t0) / 200).toFixed(2)} ms`)
}, 600_000)
