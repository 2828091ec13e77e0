import { availableParallelism } from 'node:os'
import { MAX_DEFAULT_WORKERS, MIN_CORES_FOR_WORKERS, RESERVED_CORES } from './constants.js'

/**
 * Byte workers for a node of `cores` cores when none are configured. A worker pays for itself only
 * where it has a core of its own: the main thread (scheduling, the journal), libuv's pool (writes
 * and syncs) and V8 keep about two busy while bytes move. Measured on a 2-core machine, one worker
 * already kept 1.8 cores busy and two moved fewer bytes than the main thread alone (bench/scaling),
 * so small nodes keep the byte path on the main thread; larger ones get a worker per core but two,
 * at most `MAX_DEFAULT_WORKERS` (each holds its own heap, connections and buffers).
 */
export function defaultWorkerCount (cores: number = availableParallelism()): number {
  if (cores < MIN_CORES_FOR_WORKERS) return 0
  return Math.min(MAX_DEFAULT_WORKERS, cores - RESERVED_CORES)
}
