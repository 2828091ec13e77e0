/**
 * Failures particular to Azure Blob Storage. A missing object is the shared NotFoundError and an
 * unreachable endpoint the shared OriginUnavailableError (both from @swarm/interface).
 */

import { SwarmError } from '@swarm/interface'

/** The service refused the credentials or their permissions (401, 403), or none could be found. Not retried. */
export class AzureCredentialsError extends SwarmError {
  override readonly code = 'ERR_AZURE_CREDENTIALS'
}

/** The container the origin URL names does not exist in the account. Not retried. */
export class AzureContainerNotFoundError extends SwarmError {
  override readonly code = 'ERR_AZURE_NO_SUCH_CONTAINER'
  constructor (readonly container: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** Any other refusal that retrying would not change. `status` and `azureCode` say which. */
export class AzureRequestError extends SwarmError {
  override readonly code = 'ERR_AZURE_REQUEST'
  constructor (readonly status: number | undefined, readonly azureCode: string | undefined, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}
