/**
 * @packageDocumentation
 *
 * An {@link Origin} on an OCI registry (distribution, Harbor, Zot, ECR, GHCR, …), named by
 * `oci://registry[:port]/namespace` (a model `name:tag` is repository `namespace/name`, tag
 * `tag`) or `oci://registry/namespace/name:tag` (the same, and the URL pins that model; see
 * `reference.ts`).
 *
 * How the Origin API maps onto a registry:
 * - `resolveRef` reads the manifest at the tag. A model published as an OCI artifact by anyone
 *   (ModelPack, `modctl`, ORAS-style file layers; `layout.ts` says which layers are read and
 *   how) has its files in layers, not Swarm chunks. Its Swarm manifest is found as a referrer
 *   artifact (`application/vnd.swarm.chunk-manifest.v1`, OCI 1.1 `subject`), else derived from
 *   the layer bytes exactly as `swarm push` would cut the files, every layer checked against its
 *   digest on the way, and published back as that referrer, so the next node starts from it
 *   without re-hashing. Registries without the referrers API (distribution 2.8) get the OCI 1.1
 *   tag-schema fallback: an index at tag `sha256-<hex>` of the subject.
 * - `getChunk` of such a model's chunk is a ranged GET of its layer blob (redirects to blob
 *   storage followed, without the registry's credentials); the fetcher verifies it against its
 *   CID like any chunk. A published manifest is only as good as its chunk CIDs, and peers serve
 *   by CID, so `contentChecks` gives each layer's digest and how it is made of the model's files
 *   (and tar headers): a pull checks every complete file against it, and a manifest that lists
 *   the wrong chunks can never yield a file the layer digest does not vouch for.
 * - `putModel` (what `swarm push` calls) publishes a ModelPack artifact, one raw layer per file,
 *   and its chunk manifest as a referrer.
 * - `putChunk`/`putManifest` (the generic API) store blobs in one repository,
 *   `namespace/swarm-objects`, by digest: a chunk's CID and its blob digest are the same sha2-256.
 *   `putRef` writes a small artifact at the tag whose annotation holds the manifest CID.
 * - `listRefs` walks the catalog and tags under the namespace and lists the refs whose manifest
 *   CID is known without reading layers; `listChunks` is not possible (a registry lists no
 *   blobs): `capabilities.listChunks` is false and it rejects with UnsupportedOperationError.
 * - Credentials: the init's, the URL's userinfo, else Docker's config (`auth.ts`); anonymous,
 *   basic and bearer-token registries (`client.ts`). Retries, timeouts and abort as in the S3
 *   origin: transient failures retried with jittered backoff, then OriginUnavailableError.
 *
 * - Byte workers: their instances resolved no model, so each asks the main thread's instance where
 *   a chunk lies (`chunkLocation`: repository, layer digest, range; taken with `addChunkLocation`,
 *   checked as it arrives) and GETs the range itself.
 *
 * Limits: a chunk of a model this origin has not resolved (a `--cid` pull after a restart) is
 * found only among the generic blobs; compressed layers are refused, as Swarm reads by range.
 *
 * @example
 *
 * ```ts
 * import { ociOrigin } from '@swarm/origin-oci'
 *
 * const origin = ociOrigin({ url: 'oci://registry.example.com/team' })
 * const manifestCid = await origin.resolveRef({ name: 'llama-70b', tag: 'v3' }, { signal })
 * const manifest = await origin.getManifest(manifestCid, { signal })
 * const bytes = await origin.getChunk(firstChunkCid, { signal })   // a ranged GET of a layer
 * await origin.close()
 * ```
 */

import { OciOrigin } from './origin.js'
import type { RegistryCredentials } from './auth.js'
import type { Logger, Origin } from '@swarm/interface'

export * from './errors.js'
export { dockerConfigPath, dockerCredentials } from './auth.js'
export type { RegistryCredentials } from './auth.js'
export { parseOciUrl } from './reference.js'
export {
  CHUNK_MANIFEST_ARTIFACT,
  CHUNK_MANIFEST_LAYER,
  DEFAULT_OBJECTS_REPOSITORY,
  MANIFEST_CID_ANNOTATION,
  MODELPACK_ARTIFACT,
  MODELPACK_CONFIG
} from './constants.js'

export interface OciOriginInit {
  /** `oci://registry[:port][/namespace]` or `oci://registry/namespace/name:tag`; userinfo is taken as credentials */
  url: string | URL
  /** default: the URL's userinfo, else Docker's config file (DOCKER_CONFIG, ~/.docker/config.json) */
  credentials?: RegistryCredentials
  /** default: plain HTTP for loopback hosts only */
  plainHttp?: boolean
  /** the target chunk size of derived manifests (default 4 MiB, as `swarm push`) */
  chunkSize?: number
  /** publish derived chunk manifests back as referrers (default true; needs push access) */
  publishDerived?: boolean
  /** repository under the namespace for generic chunk and manifest blobs (default `swarm-objects`) */
  objectsRepository?: string
  /** connections to the registry (default 64) */
  maxSockets?: number
  /** retries after the first attempt for transient failures (default 4) */
  retries?: number
  /** silence allowed on a connection before an attempt fails (default 30 s) */
  requestTimeoutMs?: number
  /** where DOCKER_CONFIG and HOME are read (default process.env) */
  env?: NodeJS.ProcessEnv
  logger?: Logger
}

export function ociOrigin (init: OciOriginInit): Origin {
  return new OciOrigin(init)
}
