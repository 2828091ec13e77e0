/**
 * Who gets an upload slot: the data server's rule, as pure functions, so the server's gate and
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

/** A node's uploads when a GET asks for a slot, as its gate counts them. */
export interface NodeUploads {
  /** uploads now, relays included */
  uploads: number
  /** of `uploads`, relays: GETs answered as their chunk arrives here */
  relays: number
  /** of `uploads`, the asking peer's */
  takenByPeer: number
  /** slots landing times open now for uploads that are not relays (at most `maxUploads`) */
  landingLimit: number
  maxUploads: number
  maxRelays: number
  maxUploadsPerPeer: number
  /** free upload slots only a peer holding none may take, of `maxUploads` */
  reservedUploads: number
}

/**
 * Whether a GET gets a slot. An upload of a chunk held here takes one of the slots landing times
 * open (`uploadSlotFree`). A relay takes one of `maxRelays`, beside them: it is paced by its
 * chunk's source, not by this node's uplink, and most of its time it waits for bytes. Counted
 * against the uploads' slots, relays that had started when a chunk was still trickling in from
 * the origin held them for seconds at a fraction of the uplink, and the peers turned away found
 * no other holder yet (bench/sim, 200 and 1,000 nodes: p99 1.63 → ~1.53 × T*). Both kinds count
 * towards the peer's share (`maxUploadsPerPeer`); relays keep no reserved slots, as whoever
 * asks for one has found no holder of the chunk yet.
 */
export function slotGranted (node: NodeUploads, relay: boolean): boolean {
  return relay
    ? uploadSlotFree({ open: node.maxRelays, taken: node.relays, takenByPeer: node.takenByPeer, maxUploads: node.maxRelays, maxUploadsPerPeer: node.maxUploadsPerPeer, reservedUploads: 0 })
    : uploadSlotFree({ open: node.landingLimit, taken: node.uploads - node.relays, takenByPeer: node.takenByPeer, maxUploads: node.maxUploads, maxUploadsPerPeer: node.maxUploadsPerPeer, reservedUploads: node.reservedUploads })
}
