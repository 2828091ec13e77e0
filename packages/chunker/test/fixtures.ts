import { createHash } from 'node:crypto'
import type { TensorInfo } from '@swarm/interface'
import { seededRandom } from '@swarm/scheduler'
import { encodeSafetensorsHeader, type TensorSpec } from '../src/index.js'

export function randomInt (next: () => number, min: number, max: number): number {
  return min + Math.floor(next() * (max - min + 1))
}

/** Fills `data` with pseudo-random bytes derived from `seed`. */
export function fillFromSeed (seed: string, data: Uint8Array): void {
  const next = seededRandom(createHash('sha256').update(seed).digest().readUInt32LE(0))
  const words = Math.floor(data.length / 4)
  const view = new DataView(data.buffer, data.byteOffset, data.length)
  for (let i = 0; i < words; i++) view.setUint32(i * 4, next() * 2 ** 32, true)
  for (let i = words * 4; i < data.length; i++) data[i] = Math.floor(next() * 256)
}

/** A whole safetensors file in memory; `seedOf` picks each tensor's content. */
export function safetensorsFile (specs: TensorSpec[], seedOf: (name: string) => string = name => name): { bytes: Uint8Array, tensors: TensorInfo[], headerSize: number } {
  const { header, tensors, size } = encodeSafetensorsHeader(specs)
  const bytes = new Uint8Array(size)
  bytes.set(header)
  for (const tensor of tensors) fillFromSeed(seedOf(tensor.name), bytes.subarray(tensor.start, tensor.end))
  return { bytes, tensors, headerSize: header.length }
}

/** Throws unless `chunks` tile [0, size) in order with no empty or oversized chunk. */
export function expectTiling (chunks: Array<{ offset: number, size: number }>, size: number, chunkSize: number): void {
  let end = 0
  for (const [i, chunk] of chunks.entries()) {
    if (chunk.offset !== end) throw new Error(`chunk ${i} starts at ${chunk.offset}, expected ${end}`)
    if (!Number.isInteger(chunk.size) || chunk.size <= 0) throw new Error(`chunk ${i} has size ${chunk.size}`)
    if (chunk.size > chunkSize) throw new Error(`chunk ${i} has size ${chunk.size} > ${chunkSize}`)
    end += chunk.size
  }
  if (end !== size) throw new Error(`chunks end at ${end}, expected ${size}`)
}
