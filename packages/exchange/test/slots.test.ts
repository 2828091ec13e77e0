import { describe, expect, it } from 'vitest'
import { defaultReservedUploads, uploadSlotFree } from '../src/index.js'
import type { UploadSlots } from '../src/index.js'

const server = (over: Partial<UploadSlots>): UploadSlots => ({ open: 8, taken: 0, takenByPeer: 0, maxUploads: 8, maxUploadsPerPeer: 4, reservedUploads: 2, ...over })

describe('who gets an upload slot', () => {
  it('a free slot, within the peer\'s share', () => {
    expect(uploadSlotFree(server({}))).toBe(true)
    expect(uploadSlotFree(server({ taken: 8 }))).toBe(false)
    expect(uploadSlotFree(server({ taken: 4, takenByPeer: 4 }))).toBe(false)
  })

  it('keeps the last free slots for peers holding none, as many as the slots open allow', () => {
    // all 8 open: the last 2 free go only to a peer holding none
    expect(uploadSlotFree(server({ taken: 6, takenByPeer: 1 }))).toBe(false)
    expect(uploadSlotFree(server({ taken: 6, takenByPeer: 0 }))).toBe(true)
    expect(uploadSlotFree(server({ taken: 5, takenByPeer: 1 }))).toBe(true)
    // 2 of 8 open (uploads landing slowly): no reservation, so the only peer may hold both
    expect(uploadSlotFree(server({ open: 2, taken: 1, takenByPeer: 1 }))).toBe(true)
    // 4 of 8 open: a reservation of 1
    expect(uploadSlotFree(server({ open: 4, taken: 3, takenByPeer: 1 }))).toBe(false)
    expect(uploadSlotFree(server({ open: 4, taken: 2, takenByPeer: 1 }))).toBe(true)
  })

  it('reserves 2 by default, and no more than a quarter of the slots', () => {
    expect(defaultReservedUploads(8)).toBe(2)
    expect(defaultReservedUploads(32)).toBe(2)
    expect(defaultReservedUploads(4)).toBe(1)
    expect(defaultReservedUploads(2)).toBe(0)
  })
})
