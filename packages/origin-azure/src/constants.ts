/** Retries after the first attempt, for failures that may pass (500, 503, resets, timeouts). */
export const DEFAULT_RETRIES = 4
/** The SDK's exponential backoff: base and cap. */
export const RETRY_BASE_DELAY_MS = 200
export const RETRY_MAX_DELAY_MS = 10_000

/** Blob GETs in place: connections to the endpoint at most, and how long one may stay silent. */
export const DEFAULT_MAX_SOCKETS = 64
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
/** The Blob service REST version the GETs in place ask for (a bearer token needs 2017-11-09 or later). */
export const AZURE_API_VERSION = '2023-11-03'
/** A SAS the origin makes from a shared key for its GETs lives this long, and is made anew this long before it ends. */
export const DERIVED_SAS_LIFETIME_MS = 60 * 60_000
export const CREDENTIAL_REFRESH_MARGIN_MS = 5 * 60_000
/** The scope of a bearer token for Blob Storage. */
export const STORAGE_TOKEN_SCOPE = 'https://storage.azure.com/.default'

/** Blobs per List Blobs page; 5000 is the most Azure returns. */
export const DEFAULT_LIST_PAGE_SIZE = 5000


/** The public cloud's blob host suffix; `az://account/…` means `https://account.blob.core.windows.net`. */
export const DEFAULT_BLOB_HOST_SUFFIX = 'blob.core.windows.net'

/** Hosts of Azure's clouds whose `https://account.<suffix>/container/prefix` URLs are taken as Azure origins. */
export const BLOB_HOST_SUFFIXES = ['blob.core.windows.net', 'blob.core.chinacloudapi.cn', 'blob.core.usgovcloudapi.net']

/** Storage account names: 3–24 lowercase letters and digits. */
export const ACCOUNT_PATTERN = /^[a-z0-9]{3,24}$/
/** Container names: 3–63 of lowercase letters, digits and single hyphens, starting and ending alphanumeric. */
export const CONTAINER_PATTERN = /^(?=.{3,63}$)[a-z0-9]+(?:-[a-z0-9]+)*$/

