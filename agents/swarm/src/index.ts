/**
 * @packageDocumentation
 *
 * The node agent and the `swarm` CLI. The building blocks are exported for benchmarks and
 * end-to-end tests that drive them in-process.
 *
 * @example
 *
 * ```ts
 * import { pushDirectory, pullModel } from '@swarm/agent'
 *
 * const pushed = await pushDirectory('./llama', { origin, ref: { name: 'llama', tag: 'latest' } })
 * await pullModel({ store, origin, manifestCid: pushed.manifestCid })
 * ```
 */

export * from './exit-codes.js'
export * from './progress.js'
export * from './pull.js'
export * from './push.js'
export * from './runtime.js'
export * from './synthetic.js'
