import { describe, expect, it } from 'vitest'
import { MAX_DEFAULT_WORKERS, defaultWorkerCount } from '../src/index.js'

describe('defaultWorkerCount', () => {
  it('keeps the byte path on the main thread below 4 cores', () => {
    expect(defaultWorkerCount(1)).toBe(0)
    expect(defaultWorkerCount(2)).toBe(0)
    expect(defaultWorkerCount(3)).toBe(0)
  })

  it('gives larger nodes a worker per core but two, up to the cap', () => {
    expect(defaultWorkerCount(4)).toBe(2)
    expect(defaultWorkerCount(16)).toBe(14)
    expect(defaultWorkerCount(34)).toBe(32)
    expect(defaultWorkerCount(192)).toBe(MAX_DEFAULT_WORKERS)
  })
})
