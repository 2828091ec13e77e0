/**
 * @packageDocumentation
 *
 * Swarm's peer data plane: chunk and manifest bytes between peers over Node's native TLS 1.3,
 * with certificates bound to libp2p peer ids. Who holds what and where a peer's data port is
 * travel over libp2p elsewhere; this package only moves bytes, about four times cheaper in CPU
 * than libp2p streams. The wire protocol is described in `protocol.ts`.
 *
 * A server answers only peers the swarm admits, bounds concurrent uploads (answering BUSY
 * beyond them, fairly between peers) and can cap its upload rate. No peer holds a slot or a
 * connection for long without doing its part: write, idle and handshake timeouts, and caps on
 * connections in all and per peer (see `server.ts`). A client keeps a small pool of connections per peer
 * with many requests in flight on each, bounds every response by the size it asked for, and
 * leaves verifying bytes against their CID to its caller. Payload memory is reused on both sides
 * instead of left to the garbage collector: a server reads chunks into pooled buffers, and a
 * client reads each response in place into a pooled buffer that its caller hands back with
 * `release` (see BufferPool in @swarm/interface for why this matters).
 *
 * @example
 *
 * ```ts
 * import { dataClient, dataServer, keyIdentity, peerSource } from '@swarm/exchange'
 *
 * // one certificate for every client and server of the node (a `privateKey` alone makes its own)
 * const identity = keyIdentity(privateKey)
 * const server = dataServer({ identity, store, isAdmitted: peerId => swarm.has(peerId), host: '0.0.0.0', writeTimeoutMs: 30_000 })
 * const { port } = await server.start()           // announce the port over libp2p
 *
 * const client = dataClient({ identity })
 * const source = peerSource(client, { peerId: '12D3Koo…', host: '10.0.0.7', port: 7001 })
 * const bytes = await source.fetch({ cid, size }, { signal })
 * if (!verifies(cid, bytes)) client.disconnect('12D3Koo…')
 * await store.putChunk(cid, bytes)
 * client.release(bytes)                            // the next response reuses this memory
 *
 * await client.close()
 * await server.stop()
 * ```
 */


export * from './constants.js'
export * from './errors.js'
export { dataServer } from './server.js'
export { UploadGate } from './gate.js'
export type { GateCounts, PeerVerdict, ServeGate, SlotVerdict, UploadGateInit, UploadLimits } from './gate.js'
export { defaultReservedUploads, slotGranted, uploadSlotFree } from './slots.js'
export type { NodeUploads, UploadSlots } from './slots.js'
export type { ChunkProvider, DataServer, DataServerAddress, DataServerInit, DataServerStats, ServedContent } from './server.js'
export { dataClient, peerSource } from './client.js'
export { certificateChecks, keyIdentity, peerOfCertificate } from './identity.js'
export type { Certificate, CertificateValidity, PeerIdentity } from './identity.js'
export type { DataClient, DataClientInit, DataClientStats, DataPeer } from './client.js'
export { BufferPool } from '@swarm/interface'
export type { BufferPoolInit } from '@swarm/interface'
