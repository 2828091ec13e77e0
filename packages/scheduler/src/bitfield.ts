/**
 * Bitfields are `@swarm/interface`'s (one module for the scheduler, the control protocol, the
 * agent and the FUSE view); the scheduler's modules and callers take them from here too.
 */

export { bitfieldLength, countBits, createBitfield, decodeBitfield, encodeBitfield, fitsChunkCount, hasBit, setBit, uniqueChunks, validateBitfield } from '@swarm/interface'
