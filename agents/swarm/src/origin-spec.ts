/**
 * An origin as plain data: which adapter, and the init it is opened with (all but the logger).
 * The main thread derives it from the configuration (`originSpec` in runtime.ts, where URLs are
 * told apart and files such as a CA bundle are read) and hands it to the byte workers, which open
 * it with `openOriginSpec`: a dynamic import of that one adapter package and nothing else. A
 * worker thus loads neither the configuration schema (zod) nor the CLI nor the other adapters:
 * loading all of them cost each worker about a second of CPU and 60–90 MB of heap.
 *
 * An adapter may offer a lighter reader of its chunks for the workers (`Origin.chunkReaderSpec`):
 * a worker asks the main thread for its spec (`CHUNK_READER_QUESTION`) and opens it with
 * `openChunkReader`, loading the adapter's reader module rather than the adapter. The S3 and Azure
 * adapters do (their readers GET in place with what the main thread's origin signed or resolved,
 * without their SDKs).
 *
 * An origin that learns where chunks lie as it resolves models (the OCI origin: ranges of layer
 * blobs) says so to the workers' instances, which resolved nothing: a worker asks the main thread
 * where a chunk lies (`locateQuestion`) before it reads one (`Origin.chunkLocation`,
 * `addChunkLocation`).
 *
 * This module imports no adapter and nothing heavy itself; its imports are types only.
 */
import type { ChunkReader, ChunkReaderSpec, Logger, Origin } from '@swarm/interface'
import type { AzureOriginInit } from '@swarm/origin-azure'
import type { FileOriginInit } from '@swarm/origin-file'
import type { HttpOriginInit } from '@swarm/origin-http'
import type { OciOriginInit } from '@swarm/origin-oci'
import type { S3OriginInit } from '@swarm/origin-s3'

type WithoutLogger<T> = Omit<T, 'logger'>

/** Structured-cloneable: crosses to worker threads as it is. */
export type OriginSpec =
  | { adapter: 'file', init: WithoutLogger<FileOriginInit> }
  | { adapter: 'oci', init: WithoutLogger<OciOriginInit> }
  | { adapter: 'azure', init: WithoutLogger<AzureOriginInit> }
  | { adapter: 'http', init: WithoutLogger<HttpOriginInit> }
  | { adapter: 's3', init: WithoutLogger<S3OriginInit> }

/** The package each adapter lives in. */
export const ORIGIN_PACKAGES = {
  file: '@swarm/origin-file',
  oci: '@swarm/origin-oci',
  azure: '@swarm/origin-azure',
  http: '@swarm/origin-http',
  s3: '@swarm/origin-s3'
} as const satisfies Record<OriginSpec['adapter'], string>

/** Opens the origin a spec names, loading only its adapter's package. */
export async function openOriginSpec (spec: OriginSpec, logger: Logger): Promise<Origin> {
  switch (spec.adapter) {
    case 'file': return (await import('@swarm/origin-file')).fileOrigin({ ...spec.init, logger })
    case 'oci': return (await import('@swarm/origin-oci')).ociOrigin({ ...spec.init, logger })
    case 'azure': return (await import('@swarm/origin-azure')).azureOrigin({ ...spec.init, logger })
    case 'http': return (await import('@swarm/origin-http')).httpOrigin({ ...spec.init, logger })
    case 's3': return (await import('@swarm/origin-s3')).s3Origin({ ...spec.init, logger })
    default: throw new TypeError(`unknown origin adapter ${JSON.stringify((spec as { adapter: unknown }).adapter)}`)
  }
}

/** What a byte worker asks the main thread for its origin's chunk reader spec (answered by `answerChunkReader`). */
export const CHUNK_READER_QUESTION = { origin: 'chunk-reader' } as const

/** Whether a worker's question is `CHUNK_READER_QUESTION`. */
export function isChunkReaderQuestion (question: unknown): boolean {
  return typeof question === 'object' && question !== null && (question as { origin?: unknown }).origin === CHUNK_READER_QUESTION.origin
}

/** What a byte worker asks the main thread of a chunk whose place only the main thread's origin knows (`Origin.chunkLocation`). */
export function locateQuestion (cid: string): { origin: 'locate', cid: string } {
  return { origin: 'locate', cid }
}

/** The chunk a `locateQuestion` asks of, or undefined for another question. */
export function locatedCid (question: unknown): string | undefined {
  const q = question as { origin?: unknown, cid?: unknown } | null
  return typeof q === 'object' && q !== null && q.origin === 'locate' && typeof q.cid === 'string' ? q.cid : undefined
}

/** The packages that hold each adapter's chunk reader, where it has one. */
export const CHUNK_READER_PACKAGES: Partial<Record<OriginSpec['adapter'], string>> = {
  s3: '@swarm/origin-s3/reader',
  azure: '@swarm/origin-azure/reader'
}

/** Opens the chunk reader a spec names (`Origin.chunkReaderSpec`), loading only that reader's module. */
export async function openChunkReader (spec: ChunkReaderSpec, refresh: () => Promise<ChunkReaderSpec>, logger: Logger): Promise<ChunkReader> {
  switch (spec.adapter) {
    case 's3': return (await import('@swarm/origin-s3/reader')).s3ChunkReader({ spec, refresh, logger })
    case 'azure': return (await import('@swarm/origin-azure/reader')).azureChunkReader({ spec, refresh, logger })
    default: throw new TypeError(`no chunk reader for origin adapter ${JSON.stringify(spec.adapter)}`)
  }
}
