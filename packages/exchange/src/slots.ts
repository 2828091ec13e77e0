/**
 * Who gets an upload slot: the data server's rule, as a pure function, so the server and
 * bench/sim's model of it are one rule (see the notes at the top of `server.ts`).
 */

import { DEFAULT_RESERVED_UPLOADS } from './constants.js'

/** A server's uploads when a GET asks for a slot. */
export interface UploadSlots {
  /** slots open now: `maxUploads`, or fewer while uploads follow landing times */
  open: number
  /** slots taken now */
  taken: number
  /** of those, the asking peer's */
  takenByPeer: number
  maxUploads: number
  maxUploadsPerPeer: number
  /** free slots only a peer holding none may take, of `maxUploads` */
  reservedUploads: number
}

/** The reservation when none is configured: 2, and no more than a quarter of the slots. */
export function defaultReservedUploads (maxUploads: number): number {
  return Math.min(DEFAULT_RESERVED_UPLOADS, Math.floor(maxUploads / 4))
}

/**
 * Whether the asking peer gets a slot: one is free, the peer is within its share, and a peer
 * already holding one does not take the last reserved ones. The reservation shrinks with the
 * slots open: at 2 of 8 a fixed 2 would leave every peer one slot, even the only one there is
 * (in bench/fanout at 2 nodes it waited out BUSYs between its chunks with the uplink idle).
 */
export function uploadSlotFree (slots: UploadSlots): boolean {
  const free = slots.open - slots.taken
  if (free <= 0 || slots.takenByPeer >= slots.maxUploadsPerPeer) return false
  const reserved = Math.floor(slots.reservedUploads * slots.open / slots.maxUploads)
  return slots.takenByPeer === 0 || free > reserved
}
