/**
 * @packageDocumentation
 *
 * Cuts files into content-addressed chunks (CIDv1, raw codec, sha2-256). Safetensors files
 * are cut on tensor boundaries, so a model's next version shares every chunk of the tensors
 * that did not change, even when other tensors were resized and every offset moved. Pure: it
 * reads and writes no files; callers hand it bytes and sizes.
 *
 * @example
 *
 * ```ts
 * import { cidForBytes, parseSafetensorsHeader, planChunks, safetensorsHeaderLength } from '@swarm/chunker'
 *
 * // `read(offset, length)` is the caller's own file access
 * const headerSize = safetensorsHeaderLength(await read(0, 8), fileSize)
 * const layout = parseSafetensorsHeader(await read(0, headerSize), fileSize)
 * const chunks = []
 * for (const { offset, size } of planChunks({ size: fileSize, layout })) {
 *   chunks.push({ cid: cidForBytes(await read(offset, size)), offset, size })
 * }
 * ```
 */

export * from './cid.js'
export * from './constants.js'
export * from './errors.js'
export * from './plan.js'
export * from './safetensors.js'
