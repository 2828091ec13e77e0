/**
 * @packageDocumentation
 *
 * An {@link Origin} on Azure Blob Storage, named by `az://account/container/prefix` or
 * `https://account.blob.core.windows.net/container/prefix`. Layout under the prefix, as the S3
 * origin's: `chunks/<cid>`, `manifests/<cid>`, `refs/<name>/<tag>` (body: the manifest CID).
 *
 * Design:
 * - Writes, HEADs and listings go through `@azure/storage-blob` (block blobs, one Put Blob per
 *   object: a chunk is at most 64 MiB and Put Blob takes up to 5000 MiB).
 * - Blob GETs (chunks, manifests, refs) are the bulk of the bytes and go around the SDK: read in
 *   place (blob-reads.ts, `@swarm/http-in-place`), authorized by a SAS (the one configured, or a
 *   read-only container SAS this origin derives from its shared key, made anew before it ends) or
 *   a bearer token from the token credential. Byte workers read chunks the same way through the
 *   light reader (`@swarm/origin-azure/reader`) from what `chunkReaderSpec` describes, without
 *   loading the SDK. In `bench/origin-pull --origin azure` (Azurite, 838 MiB, 2 workers) the
 *   SDK's download took 5.21 CPU-s/GB at a peak RSS of 366 MB; in place, 2.54 CPU-s/GB and 234 MB.
 * - Chunks and manifests are written with `If-None-Match: *`: content-addressed, an object that
 *   exists already holds these bytes, so the 409 `BlobAlreadyExists` that answers a second
 *   writer is success, and two pushers never rewrite each other's blobs. Refs are plain
 *   overwrites: a tag moves, and the last writer wins, as with S3.
 * - Credentials, the first that applies: `credential` given by the caller (the agent's
 *   `azure.accountKey` / `azure.sasToken`, `SWARM_AZURE_ACCOUNT_KEY` / `SWARM_AZURE_SAS_TOKEN`);
 *   a SAS in the URL's query (`https://…/container/prefix?sv=…&sig=…`); `AZURE_STORAGE_KEY` (a
 *   shared key, when `AZURE_STORAGE_ACCOUNT` is unset or names the same account);
 *   `AZURE_STORAGE_SAS_TOKEN`; else `DefaultAzureCredential` from `@azure/identity`, the standard
 *   chain (environment service principal, workload identity, managed identity, Azure CLI, …),
 *   loaded only when it is needed.
 * - `endpoint` replaces the public cloud's `https://<account>.blob.core.windows.net`, e.g. for
 *   Azurite (`http://127.0.0.1:10000/devstoreaccount1`) or a private endpoint.
 * - Retries: the SDK's for its calls, `retrying` from @swarm/interface for the GETs (5xx but 501,
 *   408, 429, resets, timeouts; exponential backoff with full jitter); 404 becomes
 *   {@link NotFoundError}, a missing container {@link AzureContainerNotFoundError}, 401/403 and
 *   credentials the chain cannot find {@link AzureCredentialsError}; an endpoint that cannot be
 *   reached or keeps failing, {@link OriginUnavailableError}.
 * - Chunk bodies are read into buffers lent from a pool; `release(bytes)` gives them back.
 * - Every call honours its AbortSignal; an aborted call rejects with the signal's reason.
 * - A SAS or key never appears in `url`, messages or logs.
 *
 * @example
 *
 * ```ts
 * import { azureOrigin } from '@swarm/origin-azure'
 *
 * const origin = azureOrigin({ url: 'az://models/prod/llama' })   // DefaultAzureCredential
 * const cid = await origin.resolveRef({ name: 'meta/llama-3-8b', tag: 'latest' }, { signal })
 * await origin.close()
 * ```
 */

import { AzureOrigin } from './origin.js'
import type { TokenCredential } from '@azure/core-auth'
import type { Logger, Origin } from '@swarm/interface'

export * from './errors.js'
export { DEFAULT_LIST_PAGE_SIZE, DEFAULT_RETRIES } from './constants.js'
export { isAzureBlobUrl, parseAzureUrl } from './url.js'

export type AzureCredentialInit =
  | { accountKey: string }
  | { sasToken: string }
  /** a token credential as `@azure/identity` makes them (managed identity, service principal, …) */
  | { tokenCredential: TokenCredential }

export interface AzureOriginInit {
  /** `az://account/container[/prefix]` or `https://account.blob.core.windows.net/container[/prefix][?sas]` */
  url: string | URL
  /** the account's blob service URL, for Azurite or a private endpoint; default `https://<account>.blob.core.windows.net` */
  endpoint?: string
  /** default: a SAS in the URL, then AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, then DefaultAzureCredential */
  credential?: AzureCredentialInit
  /** where AZURE_STORAGE_* are read (default process.env) */
  env?: Record<string, string | undefined>
  /** retries after the first attempt for transient failures (default 4) */
  retries?: number
  /** blobs per listing page (default 5000) */
  listPageSize?: number
  /** connections for blob GETs at most (default 64) */
  maxSockets?: number
  /** how long a blob GET may stay silent before the attempt fails and is retried (default 30 s) */
  requestTimeoutMs?: number
  logger?: Logger
}

export function azureOrigin (init: AzureOriginInit): Origin {
  return new AzureOrigin(init)
}
