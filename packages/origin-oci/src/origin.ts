import { createHash } from 'node:crypto'
import { basename } from 'node:path'
import { DEFAULT_CHUNK_SIZE, isChunkCid, MAX_CHUNK_SIZE, RAW_CODEC } from '@swarm/chunker'
import { BufferPool, InvalidRefError, NotFoundError, silentLogger, UnsupportedOperationError, checkCid } from '@swarm/interface'
import { decodeManifest, formatRef, JSON_CODEC, MANIFEST_LIMITS, manifestCid } from '@swarm/manifest'
import { CID } from 'multiformats/cid'
import { dockerCredentials } from './auth.js'
import { RegistryClient, sha256Digest } from './client.js'
import {
  CHUNK_MANIFEST_ARTIFACT,
  CHUNK_MANIFEST_LAYER,
  CHUNK_POOL_IDLE_MS,
  CHUNK_POOL_MAX_FREE_BYTES,
  CHUNK_SIZE_ANNOTATION,
  CID_PATTERN,
  DEFAULT_MAX_SOCKETS,
  DEFAULT_OBJECTS_REPOSITORY,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRIES,
  DIGEST_PATTERN,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  FILE_METADATA_ANNOTATIONS,
  LIST_CONCURRENCY,
  MANIFEST_CID_ANNOTATION,
  MODELPACK_ARTIFACT,
  MODELPACK_CONFIG,
  OCI_EMPTY,
  OCI_EMPTY_BYTES,
  OCI_INDEX,
  OCI_MANIFEST,
  REF_ARTIFACT,
  REPOSITORY_COMPONENT,
  TITLE_ANNOTATION
} from './constants.js'
import { UnsupportedArtifactError } from './errors.js'
import { deriveManifest, fitProblem, layoutOf } from './layout.js'
import { parseOciUrl, repositoryOf, targetOf } from './reference.js'
import type { Descriptor } from './client.js'
import type { OciOriginInit } from './index.js'
import type { LayerLayout } from './layout.js'
import type { OciLocation, Target } from './reference.js'
import type { AbortOptions, ChunkFetchOptions, CidString, ContentCheck, Logger, Manifest, ModelRef, ModelUpload, Origin, OriginCapabilities, RefEntry } from '@swarm/interface'

interface ImageManifest {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  config?: Descriptor
  layers: Descriptor[]
  annotations?: Record<string, string>
}

/** A model this origin has resolved: where its chunks are. */
interface OpenModel {
  repository: string
  layouts: LayerLayout[]
  bytes: Uint8Array
}

/** Where a chunk of a model read from layers lies; plain data, handed to another instance by `chunkLocation`. */
interface ChunkLocation {
  repository: string
  /** the layer blob's digest */
  digest: string
  offset: number
  size: number
}

function isChunkLocation (value: unknown): value is ChunkLocation {
  const l = value as Partial<ChunkLocation> | null | undefined
  return typeof l?.repository === 'string' && l.repository.split('/').every(part => REPOSITORY_COMPONENT.test(part)) && typeof l.digest === 'string' && DIGEST_PATTERN.test(l.digest) &&
    Number.isSafeInteger(l.offset) && (l.offset as number) >= 0 && Number.isSafeInteger(l.size) && (l.size as number) > 0
}

const MANIFEST_ACCEPT = [OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST]


/** The blob digest of a CID: both are sha2-256 of the same bytes. */
function digestOf (cid: CidString): string {
  return `sha256:${Buffer.from(CID.parse(cid).multihash.digest).toString('hex')}`
}

function codecOf (cid: CidString): number | undefined {
  try {
    return CID.parse(cid).code
  } catch {
    return undefined
  }
}

function parseImageManifest (bytes: Uint8Array, mediaType: string, digest: string, where: string): ImageManifest {
  if (mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST) throw new UnsupportedArtifactError(`${where} is an index of several manifests (a multi-platform image); name one of them by digest`)
  let parsed: Partial<ImageManifest> & { schemaVersion?: unknown }
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes)) as typeof parsed
  } catch {
    throw new UnsupportedArtifactError(`${where} is not a JSON manifest`)
  }
  if (parsed.schemaVersion !== 2 || !Array.isArray(parsed.layers)) throw new UnsupportedArtifactError(`${where} is not an OCI image manifest (${mediaType})`)
  for (const layer of parsed.layers) {
    if (typeof layer?.digest !== 'string' || !DIGEST_PATTERN.test(layer.digest) || !Number.isSafeInteger(layer.size) || layer.size < 0 || typeof layer.mediaType !== 'string') {
      throw new UnsupportedArtifactError(`${where} has a layer without a sha256 digest, size and media type`)
    }
  }
  return { ...parsed, layers: parsed.layers, mediaType, digest, size: bytes.byteLength } as ImageManifest
}

function json (value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value))
}

/** ModelPack's layer media type for a file, by what its name says it is. */
function modelPackMediaType (path: string): string {
  const name = basename(path).toLowerCase()
  if (/\.(safetensors|bin|gguf|pt|pth|ckpt|onnx|h5|msgpack|npz|pb|tflite)$/.test(name)) return 'application/vnd.cncf.model.weight.v1.raw'
  if (/\.(json|yaml|yml|txt|model|tiktoken|vocab|merges)$/.test(name) || name.startsWith('tokenizer')) return 'application/vnd.cncf.model.weight.config.v1.raw'
  if (/\.(md|rst|pdf|html)$/.test(name) || /^(license|notice|readme)/.test(name)) return 'application/vnd.cncf.model.doc.v1.raw'
  return 'application/vnd.cncf.model.code.v1.raw'
}

export class OciOrigin implements Origin {
  readonly url: string
  // where a chunk lies in which layer is learned from the manifests this instance resolved
  readonly reopenable = false
  readonly capabilities: Partial<OriginCapabilities> = { listChunks: false }
  private readonly location: OciLocation
  private readonly client: RegistryClient
  private readonly objects: string
  private readonly chunkSize: number
  private readonly publishDerived: boolean
  private readonly log: Logger
  private readonly models = new Map<CidString, OpenModel>()
  private readonly chunks = new Map<CidString, ChunkLocation>()
  private readonly chunkBuffers = new BufferPool({ maxFreeBytes: CHUNK_POOL_MAX_FREE_BYTES, idleMs: CHUNK_POOL_IDLE_MS })

  constructor (init: OciOriginInit) {
    this.location = parseOciUrl(init.url, init.plainHttp)
    this.url = this.location.display
    this.log = (init.logger ?? silentLogger).child({ origin: this.url })
    this.chunkSize = init.chunkSize ?? DEFAULT_CHUNK_SIZE
    this.publishDerived = init.publishDerived ?? true
    this.objects = repositoryOf(this.location, init.objectsRepository ?? DEFAULT_OBJECTS_REPOSITORY)
    const given = init.credentials ?? this.location.credentials
    const env = init.env ?? process.env
    this.client = new RegistryClient({
      base: this.location.base,
      registry: this.location.registry,
      credentials: async () => given ?? await dockerCredentials(this.location.registry, env),
      retries: init.retries ?? DEFAULT_RETRIES,
      requestTimeoutMs: init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxSockets: init.maxSockets ?? DEFAULT_MAX_SOCKETS,
      logger: this.log
    })
  }

  async getChunk (cid: CidString, { signal, onData }: ChunkFetchOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    signal?.throwIfAborted()
    const at = this.chunks.get(cid)
    if (at !== undefined) return await this.client.readBlobRange(at.repository, at.digest, at.offset, at.size, signal, this.chunkBuffers, onData)
    if (codecOf(cid) !== RAW_CODEC) throw new NotFoundError(`chunk ${cid} not found at ${this.url}`)
    return await this.client.readBlob(this.objects, digestOf(cid), MAX_CHUNK_SIZE, signal).catch(err => { throw this.notFound(err, `chunk ${cid}`) })
  }

  release (bytes: Uint8Array): void {
    this.chunkBuffers.give(bytes)
  }

  /**
   * Where a chunk of a model this instance resolved lies (its repository, layer and range), for
   * an instance in a byte worker, which cannot learn it itself: it resolved no model.
   */
  chunkLocation (cid: CidString): ChunkLocation | undefined {
    const at = this.chunks.get(cid)
    return at === undefined ? undefined : { ...at }
  }

  addChunkLocation (cid: CidString, location: unknown): void {
    checkCid(cid)
    if (!isChunkLocation(location)) throw new TypeError(`not where a chunk lies in a registry: ${JSON.stringify(location)}`)
    this.chunks.set(cid, { repository: location.repository, digest: location.digest, offset: location.offset, size: location.size })
  }

  async hasChunk (cid: CidString, { signal }: AbortOptions = {}): Promise<boolean> {
    checkCid(cid)
    signal?.throwIfAborted()
    if (this.chunks.has(cid)) return true
    if (codecOf(cid) !== RAW_CODEC) return false
    return await this.client.statBlob(this.objects, digestOf(cid), signal) !== undefined
  }

  async putChunk (cid: CidString, bytes: Uint8Array, { signal }: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    signal?.throwIfAborted()
    if (!isChunkCid(cid)) throw new TypeError(`invalid chunk CID ${cid}: expected CIDv1, raw codec, sha2-256`)
    await this.client.uploadBlob(this.objects, digestOf(cid), bytes.byteLength, () => bytes, signal)
  }

  // eslint-disable-next-line require-yield
  async * listChunks ({ signal }: AbortOptions = {}): AsyncIterable<CidString> {
    signal?.throwIfAborted()
    throw new UnsupportedOperationError(`${this.url} cannot list chunks: a registry lists tags and repositories, not blobs`)
  }

  async getManifest (cid: CidString, { signal }: AbortOptions = {}): Promise<Uint8Array> {
    checkCid(cid)
    signal?.throwIfAborted()
    const open = this.models.get(cid)
    if (open !== undefined) return open.bytes
    if (codecOf(cid) !== JSON_CODEC) throw new NotFoundError(`manifest ${cid} not found at ${this.url}`)
    return await this.client.readBlob(this.objects, digestOf(cid), MANIFEST_LIMITS.maxManifestBytes, signal).catch(err => { throw this.notFound(err, `manifest ${cid}`) })
  }

  async putManifest (cid: CidString, bytes: Uint8Array, { signal }: AbortOptions = {}): Promise<void> {
    checkCid(cid)
    signal?.throwIfAborted()
    if (codecOf(cid) !== JSON_CODEC) throw new TypeError(`invalid manifest CID ${cid}: expected the json codec`)
    await this.client.uploadBlob(this.objects, digestOf(cid), bytes.byteLength, () => bytes, signal)
  }

  async resolveRef (ref: ModelRef, { signal }: AbortOptions = {}): Promise<CidString> {
    const text = formatRef(ref)
    const target = targetOf(this.location, ref)
    signal?.throwIfAborted()
    const where = `${target.repository}:${target.reference}`
    const fetched = await this.client.getManifest(target.repository, target.reference, MANIFEST_ACCEPT, signal).catch(err => { throw this.notFound(err, `ref ${text} (${where})`) })
    const image = parseImageManifest(fetched.bytes, fetched.mediaType, fetched.digest, `${this.location.registry}/${where}`)
    if (image.artifactType === REF_ARTIFACT) {
      const cid = image.annotations?.[MANIFEST_CID_ANNOTATION]
      if (cid === undefined || !CID_PATTERN.test(cid)) throw new InvalidRefError(`ref ${text} at ${this.url} does not hold a CID`)
      return cid
    }
    return await this.openModel(target.repository, image, signal)
  }

  async putRef (ref: ModelRef, cid: CidString, { signal }: AbortOptions = {}): Promise<void> {
    formatRef(ref)
    checkCid(cid)
    const target = this.writableTarget(ref)
    signal?.throwIfAborted()
    await this.client.uploadBlob(target.repository, sha256Digest(OCI_EMPTY_BYTES), OCI_EMPTY_BYTES.byteLength, () => OCI_EMPTY_BYTES, signal)
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: REF_ARTIFACT,
      config: { mediaType: OCI_EMPTY, digest: sha256Digest(OCI_EMPTY_BYTES), size: OCI_EMPTY_BYTES.byteLength },
      layers: [],
      annotations: { [MANIFEST_CID_ANNOTATION]: cid }
    }
    await this.client.putManifest(target.repository, target.reference, json(manifest), OCI_MANIFEST, signal)
  }

  /**
   * Refs whose chunk manifest is known without reading the model: refs put through `putRef`,
   * and artifacts with a chunk-manifest referrer (pushed by Swarm, or derived and published by a
   * node that pulled them). An artifact nobody has pulled yet is left out until one does.
   */
  async * listRefs ({ signal }: AbortOptions = {}): AsyncIterable<RefEntry> {
    signal?.throwIfAborted()
    const prefix = this.location.namespace !== '' ? `${this.location.namespace}/` : ''
    for await (const repositories of this.client.catalog(signal)) {
      for (const repository of repositories.sort()) {
        if (!repository.startsWith(prefix) || repository === this.objects) continue
        const name = repository.slice(prefix.length)
        for await (const tags of this.client.tags(repository, signal)) {
          const valid = tags.filter(tag => {
            try {
              formatRef({ name, tag })
              return !/^sha256-[a-f0-9]{64}$/.test(tag)
            } catch {
              return false
            }
          }).sort()
          for (let i = 0; i < valid.length; i += LIST_CONCURRENCY) {
            const batch = valid.slice(i, i + LIST_CONCURRENCY)
            const cids = await Promise.all(batch.map(async tag => await this.knownCid(repository, tag, signal)))
            for (const [j, tag] of batch.entries()) {
              const cid = cids[j]
              if (cid !== undefined) yield { name, tag, cid }
            }
          }
        }
      }
    }
  }

  async close (): Promise<void> {
    await this.client.close()
    this.chunkBuffers.clear()
  }

  /**
   * Publishes a ModelPack artifact: one raw layer per file (path and mode in ModelPack's
   * annotations, and the title annotation for plain OCI tools), a ModelPack config, the manifest
   * at the tag, then the chunk manifest as its referrer. Layers the repository holds are not sent.
   */
  async putModel (upload: ModelUpload, { signal }: AbortOptions = {}): Promise<void> {
    const target = this.writableTarget(upload.ref)
    const layers: Descriptor[] = []
    for (const entry of [...upload.manifest.files]) {
      signal?.throwIfAborted()
      const hash = createHash('sha256')
      let size = 0
      for await (const piece of upload.readFile(entry.path, { signal })) {
        hash.update(piece)
        size += piece.byteLength
      }
      if (size !== entry.size) throw new UnsupportedArtifactError(`${entry.path} changed while being pushed (${size} bytes, the manifest says ${entry.size})`)
      const digest = `sha256:${hash.digest('hex')}`
      await this.client.uploadBlob(target.repository, digest, size, () => upload.readFile(entry.path, { signal }), signal)
      const metadata = { name: basename(entry.path), mode: entry.mode, uid: 0, gid: 0, size, mtime: '1970-01-01T00:00:00Z', typeflag: 48 }
      layers.push({
        mediaType: modelPackMediaType(entry.path),
        digest,
        size,
        annotations: { 'org.cncf.model.filepath': entry.path, [FILE_METADATA_ANNOTATIONS[0]]: JSON.stringify(metadata), [TITLE_ANNOTATION]: entry.path }
      })
    }
    const config = json({ descriptor: { name: upload.ref.name, version: upload.ref.tag }, config: {}, modelfs: { type: 'layers', diffIds: layers.map(l => l.digest) } })
    await this.client.uploadBlob(target.repository, sha256Digest(config), config.byteLength, () => config, signal)
    const manifest = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: MODELPACK_ARTIFACT,
      config: { mediaType: MODELPACK_CONFIG, digest: sha256Digest(config), size: config.byteLength },
      layers
    })
    const { digest } = await this.client.putManifest(target.repository, target.reference, manifest, OCI_MANIFEST, signal)
    await this.publishChunkManifest(target.repository, { mediaType: OCI_MANIFEST, digest, size: manifest.byteLength }, upload.manifestCid, upload.manifestBytes, upload.manifest.chunkSize, signal)
    this.log.info({ repository: target.repository, reference: target.reference, digest, layers: layers.length }, 'published a ModelPack artifact')
  }

  /** Every layer of a model this origin resolved, as its files and the tar headers between them. */
  async contentChecks (manifestCid: CidString, { signal }: AbortOptions = {}): Promise<ContentCheck[]> {
    const open = this.models.get(manifestCid)
    if (open === undefined) return []
    const checks: ContentCheck[] = []
    for (const layout of open.layouts) {
      const layer = layout.descriptor
      const parts: ContentCheck['parts'] = []
      let at = 0
      for (const file of [...layout.files].sort((a, b) => a.dataOffset - b.dataOffset)) {
        if (file.dataOffset > at) parts.push({ bytes: await this.client.readBlobRange(open.repository, layer.digest, at, file.dataOffset - at, signal) })
        parts.push({ path: file.path })
        at = file.dataOffset + file.size
      }
      if (layer.size > at) parts.push({ bytes: await this.client.readBlobRange(open.repository, layer.digest, at, layer.size - at, signal) })
      checks.push({ what: `layer ${layer.digest} (${layout.files.map(f => f.path).join(', ')}) of ${this.location.registry}/${open.repository}`, digest: layer.digest, size: layer.size, parts })
    }
    return checks
  }

  private writableTarget (ref: ModelRef): Target {
    const target = targetOf(this.location, ref)
    if (DIGEST_PATTERN.test(target.reference)) throw new InvalidRefError(`${this.url} pins ${formatRef(ref)} by digest; a digest cannot be written to`)
    return target
  }

  private notFound (err: unknown, what: string): unknown {
    return err instanceof NotFoundError ? new NotFoundError(`${what} not found at ${this.url}`) : err
  }

  /** The manifest CID of a tag when known without reading layers, else undefined. */
  private async knownCid (repository: string, tag: string, signal: AbortSignal | undefined): Promise<CidString | undefined> {
    try {
      const fetched = await this.client.getManifest(repository, tag, MANIFEST_ACCEPT, signal)
      const image = parseImageManifest(fetched.bytes, fetched.mediaType, fetched.digest, `${repository}:${tag}`)
      if (image.artifactType === REF_ARTIFACT) {
        const cid = image.annotations?.[MANIFEST_CID_ANNOTATION]
        return cid !== undefined && CID_PATTERN.test(cid) ? cid : undefined
      }
      const referrers = await this.client.referrers(repository, fetched.digest, CHUNK_MANIFEST_ARTIFACT, signal)
      const cid = this.preferred(referrers)[0]?.annotations?.[MANIFEST_CID_ANNOTATION]
      return cid !== undefined && CID_PATTERN.test(cid) ? cid : undefined
    } catch (err) {
      if (err instanceof NotFoundError || err instanceof UnsupportedArtifactError) {
        this.log.debug({ repository, tag, err: (err as Error).message }, 'not listing a tag')
        return undefined
      }
      throw err
    }
  }

  /** Referrers with this origin's chunk size first: the manifest this node would derive. */
  private preferred (referrers: Descriptor[]): Descriptor[] {
    const mine = String(this.chunkSize)
    return [...referrers].sort((a, b) => Number(b.annotations?.[CHUNK_SIZE_ANNOTATION] === mine) - Number(a.annotations?.[CHUNK_SIZE_ANNOTATION] === mine))
  }

  /**
   * A model artifact's chunk manifest: a published one that fits the layers, else derived from
   * the layers (and published for the next node). Either way this origin then knows which byte
   * range of which layer each chunk is.
   */
  private async openModel (repository: string, image: ImageManifest, signal: AbortSignal | undefined): Promise<CidString> {
    const readRange = async (layer: Descriptor, offset: number, length: number): Promise<Uint8Array> => await this.client.readBlobRange(repository, layer.digest, offset, length, signal)
    const layouts = await layoutOf(image.layers, readRange)
    let found: { manifest: Manifest, bytes: Uint8Array, cid: CidString } | undefined
    for (const referrer of this.preferred(await this.client.referrers(repository, image.digest, CHUNK_MANIFEST_ARTIFACT, signal))) {
      try {
        found = await this.readChunkManifest(repository, referrer, layouts, signal)
        break
      } catch (err) {
        if (signal?.aborted === true) throw signal.reason
        this.log.warn({ repository, referrer: referrer.digest, err: (err as Error).message }, 'skipping a chunk manifest referrer that does not fit the model')
      }
    }
    if (found === undefined) {
      const started = performance.now()
      found = await deriveManifest(layouts, this.chunkSize, readRange, async (layer, onStart, onData) => { await this.client.streamBlob(repository, layer.digest, onStart, onData, signal) })
      this.log.info({ repository, digest: image.digest, manifestCid: found.cid, ms: Math.round(performance.now() - started) }, 'derived the chunk manifest from the layers')
      if (this.publishDerived) {
        await this.publishChunkManifest(repository, { mediaType: image.mediaType, digest: image.digest, size: image.size }, found.cid, found.bytes, this.chunkSize, signal).catch(err => {
          if (signal?.aborted === true) throw signal.reason
          this.log.warn({ repository, err: (err as Error).message }, 'could not publish the derived chunk manifest; the next node derives it again')
        })
      }
    }
    this.models.set(found.cid, { repository, layouts, bytes: found.bytes })
    const files = new Map(layouts.flatMap(l => l.files).map(f => [f.path, f]))
    for (const entry of found.manifest.files) {
      const file = files.get(entry.path)
      if (file === undefined) continue
      for (const chunk of entry.chunks) this.chunks.set(chunk.cid, { repository, digest: file.layer.digest, offset: file.dataOffset + chunk.offset, size: chunk.size })
    }
    return found.cid
  }

  private async readChunkManifest (repository: string, referrer: Descriptor, layouts: LayerLayout[], signal: AbortSignal | undefined): Promise<{ manifest: Manifest, bytes: Uint8Array, cid: CidString }> {
    const fetched = await this.client.getManifest(repository, referrer.digest, [OCI_MANIFEST], signal)
    const image = parseImageManifest(fetched.bytes, fetched.mediaType, fetched.digest, `referrer ${referrer.digest}`)
    const layer = image.layers.find(l => l.mediaType === CHUNK_MANIFEST_LAYER)
    if (layer === undefined) throw new UnsupportedArtifactError('it holds no Swarm manifest layer')
    const bytes = await this.client.readBlob(repository, layer.digest, MANIFEST_LIMITS.maxManifestBytes, signal)
    const manifest = decodeManifest(bytes)
    const problem = fitProblem(manifest, layouts)
    if (problem !== undefined) throw new UnsupportedArtifactError(problem)
    return { manifest, bytes, cid: manifestCid(bytes) }
  }

  private async publishChunkManifest (repository: string, subject: Descriptor, cid: CidString, bytes: Uint8Array, chunkSize: number, signal: AbortSignal | undefined): Promise<void> {
    const emptyDigest = sha256Digest(OCI_EMPTY_BYTES)
    await this.client.uploadBlob(repository, emptyDigest, OCI_EMPTY_BYTES.byteLength, () => OCI_EMPTY_BYTES, signal)
    await this.client.uploadBlob(repository, sha256Digest(bytes), bytes.byteLength, () => bytes, signal)
    const annotations = { [MANIFEST_CID_ANNOTATION]: cid, [CHUNK_SIZE_ANNOTATION]: String(chunkSize) }
    // no timestamps: nodes that derive the same manifest publish the same referrer, not one each
    const referrer = json({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      artifactType: CHUNK_MANIFEST_ARTIFACT,
      config: { mediaType: OCI_EMPTY, digest: emptyDigest, size: OCI_EMPTY_BYTES.byteLength },
      layers: [{ mediaType: CHUNK_MANIFEST_LAYER, digest: sha256Digest(bytes), size: bytes.byteLength }],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      annotations
    })
    const digest = sha256Digest(referrer)
    const { subjectHandled } = await this.client.putManifest(repository, digest, referrer, OCI_MANIFEST, signal)
    if (!subjectHandled) await this.client.addFallbackReferrer(repository, subject.digest, { mediaType: OCI_MANIFEST, digest, size: referrer.byteLength, artifactType: CHUNK_MANIFEST_ARTIFACT, annotations }, signal)
    this.log.debug({ repository, subject: subject.digest, referrer: digest, manifestCid: cid }, 'published the chunk manifest as a referrer')
  }
}
