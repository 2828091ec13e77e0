import { describe, expect, it } from 'vitest'
import { defaultReservedUploads, slotGranted, uploadSlotFree } from '../src/index.js'
import type { NodeUploads, UploadSlots } from '../src/index.js'

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

  describe('relays and uploads', () => {
    const node = (over: Partial<NodeUploads>): NodeUploads => ({ uploads: 0, relays: 0, takenByPeer: 0, landingLimit: 8, maxUploads: 8, maxRelays: 8, maxUploadsPerPeer: 4, reservedUploads: 2, ...over })

    it('gives relays slots of their own: 8 uploads under way leave every relay slot free, 8 relays every upload slot', () => {
      expect(slotGranted(node({ uploads: 8 }), true)).toBe(true)
      expect(slotGranted(node({ uploads: 8 }), false)).toBe(false)
      expect(slotGranted(node({ uploads: 8, relays: 8 }), false)).toBe(true)
      expect(slotGranted(node({ uploads: 8, relays: 8 }), true)).toBe(false)
      expect(slotGranted(node({ uploads: 16, relays: 8 }), false)).toBe(false)
    })

    it('opens to uploads only the slots landing times open; relays do not follow them', () => {
      expect(slotGranted(node({ landingLimit: 2, uploads: 2 }), false)).toBe(false)
      expect(slotGranted(node({ landingLimit: 2, uploads: 2 }), true)).toBe(true)
      expect(slotGranted(node({ landingLimit: 2, uploads: 3, relays: 2 }), false)).toBe(true)
    })

    it('counts both kinds towards the peer\'s share', () => {
      expect(slotGranted(node({ uploads: 4, relays: 2, takenByPeer: 4 }), true)).toBe(false)
      expect(slotGranted(node({ uploads: 4, relays: 2, takenByPeer: 4 }), false)).toBe(false)
      expect(slotGranted(node({ uploads: 4, relays: 2, takenByPeer: 3 }), true)).toBe(true)
    })

    it('keeps no relay slots for peers holding none: whoever asks a relay has found no holder yet', () => {
      expect(slotGranted(node({ uploads: 7, relays: 7, takenByPeer: 1 }), true)).toBe(true)
      // the uploads keep theirs
      expect(slotGranted(node({ uploads: 6, takenByPeer: 1 }), false)).toBe(false)
    })
  })
})
