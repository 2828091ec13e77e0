/**
 * @packageDocumentation
 *
 * HTTP/1.1 GETs whose bodies are read straight into the buffer the caller names (Node's
 * `onread`), for the origins' bulk reads: no buffer per socket read, no copy in JavaScript, no
 * garbage for the collector. What it speaks, and why, is in the notes at the top of `client.ts`.
 *
 * @example
 *
 * ```ts
 * import { InPlaceGets } from '@swarm/http-in-place'
 *
 * const gets = new InPlaceGets({ maxConnections: 16, keepAliveMs: 30_000, timeoutMs: 30_000, maxErrorBodyBytes: 64 * 1024 })
 * const endpoint = { protocol: 'http:', hostname: '127.0.0.1', port: 7480, host: '127.0.0.1:7480' }
 * const { status, body } = await gets.get(endpoint, '/bucket/chunks/bafk…', {
 *   into: (status, _headers, length) => status === 200 ? pool.take(length) : undefined,
 *   signal
 * })
 * await gets.close()
 * ```
 */

export { InPlaceGets } from './client.js'
export type { BodyTarget, Endpoint, GetOptions, InPlaceGetInit, InPlaceResponse } from './client.js'
export { DEFAULT_KEEP_ALIVE_MS, DEFAULT_MAX_ERROR_BODY_BYTES, MAX_HEAD_BYTES } from './constants.js'
export { BodyLengthError, UnsupportedFramingError } from './errors.js'
export { ObjectGets, getThrough } from './through.js'
export type { ObjectGetsInit, ThroughOptions } from './through.js'
