/**
 * @packageDocumentation
 *
 * An {@link Origin} on Azure Blob Storage, named by `az://account/container/prefix` or
 * `https://account.blob.core.windows.net/container/prefix`. Layout under the prefix, as the S3
 * origin's: `chunks/<cid>`, `manifests/<cid>`, `refs/<name>/<tag>` (body: the manifest CID).
 *
 * Design:
 * - Everything goes through `@azure/storage-blob` (block blobs, one Put Blob per object: a chunk
 *   is at most 64 MiB and Put Blob takes up to 5000 MiB).
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
 * - Retries are the SDK's (500, 503, resets, timeouts; exponential backoff); 404 becomes
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
  logger?: Logger
}

export function azureOrigin (init: AzureOriginInit): Origin {
  return new AzureOrigin(init)
}
