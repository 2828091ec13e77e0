/**
 * What a valid manifest is.
 *
 * Checking happens in two steps. `manifestShapeSchema` checks types and per-field bounds;
 * only when the shape holds does the second step check what spans fields: that paths are safe
 * to join under a directory (relative, no `.`/`..`/empty segments, no NUL or backslash, no path
 * that is both a file and a directory), that chunks tile each file exactly, that tensors lie in
 * order inside their file, and the limits that add up over the whole manifest. Running the
 * second step on a malformed shape would only produce confusing follow-on errors.
 *
 * Every problem is reported as `files[3].path "../x": must not contain ".."`: where, what value,
 * and why. Readers validate a manifest in full before using any of it.
 */

import { z } from 'zod'
import { BLOCK_DIGEST_BYTES, InvalidManifestError, MANIFEST_VERSION, MANIFEST_VERSION_WITH_BLOCKS, MANIFEST_VERSION_WITH_METADATA, type FileEntry, type Manifest } from '@swarm/interface'
import { isChunkCid, parseChunkCid } from '@swarm/chunker'
import { MANIFEST_LIMITS, MAX_BLOCK_SIZE, MAX_METADATA_KEY_LENGTH, METADATA_KEY_PATTERN, MIN_BLOCK_SIZE } from './constants.js'

const { maxChunkSize, maxFileSize, maxFiles, maxMetadataEntries, maxMetadataValueLength, maxPathLength, maxPathSegmentLength, maxTensorsPerFile, maxTotalChunks } = MANIFEST_LIMITS

/** `must be a number`, or `is required` when the field is missing. */
function expected (what: string): { error: (issue: { input?: unknown }) => string } {
  return { error: (issue) => issue.input === undefined ? 'is required' : `must be ${what}` }
}

function integer (init: { min: number, max: number, tooBig: string }): z.ZodNumber {
  return z.number(expected('a number'))
    .min(init.min, init.min === 0 ? 'must not be negative' : `must be at least ${init.min}`)
    .max(init.max, init.tooBig)
    .int('must be an integer')
}

const offsetSchema = integer({ min: 0, max: maxFileSize, tooBig: `exceeds the file size limit of 2^50 bytes` })

const chunkRefSchema = z.strictObject({
  cid: z.string(expected('a string')).check((ctx) => {
    if (isChunkCid(ctx.value)) return
    let message: string
    try {
      message = `invalid CID ${ctx.value}: write it in its canonical base32 form, ${parseChunkCid(ctx.value).toString()}`
    } catch (err) {
      message = (err as Error).message
    }
    ctx.issues.push({ code: 'custom', message, input: undefined })
  }),
  offset: offsetSchema,
  size: z.number(expected('a number'))
    .min(1, 'chunks must not be empty')
    .max(maxChunkSize, `exceeds the chunk size limit of ${maxChunkSize} bytes (64 MiB)`)
    .int('must be an integer'),
  blocks: z.string(expected('a string'))
    .max(Math.ceil(maxChunkSize / MIN_BLOCK_SIZE) * BLOCK_DIGEST_BYTES * 4 / 3 + 4, 'holds more digests than any chunk has blocks')
    .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be the block digests in base64')
    .optional()
}, expected('an object'))

const tensorSchema = z.strictObject({
  name: z.string(expected('a string')).min(1, 'must not be empty'),
  dtype: z.string(expected('a string')).min(1, 'must not be empty'),
  shape: z.array(integer({ min: 0, max: Number.MAX_SAFE_INTEGER, tooBig: 'must be a safe integer' }), expected('an array')),
  start: offsetSchema,
  end: offsetSchema
}, expected('an object'))

const fileEntrySchema = z.strictObject({
  path: z.string(expected('a string')),
  size: integer({ min: 0, max: maxFileSize, tooBig: `exceeds the file size limit of 2^50 bytes` }),
  mode: integer({ min: 0, max: 0o7777, tooBig: 'must be permission bits, 0 to 0o7777' }),
  chunks: z.array(chunkRefSchema, expected('an array')),
  tensors: z.array(tensorSchema, expected('an array'))
    .max(maxTensorsPerFile, { error: (issue) => `holds ${(issue.input as unknown[]).length} tensors; the limit is ${maxTensorsPerFile}` })
    .optional()
}, expected('an object'))

/** Keys are checked with the fields that span values (checkMetadataKeys), where an error can name the key. */
const metadataSchema = z.record(
  z.string(),
  z.string(expected('a string')).max(maxMetadataValueLength, `values are at most ${maxMetadataValueLength} characters`),
  { error: (issue) => issue.code === 'invalid_type' ? 'must be an object of strings' : undefined }
).refine(record => Object.keys(record).length <= maxMetadataEntries, { error: `holds more than ${maxMetadataEntries} entries` })

/** Types and per-field bounds of a version 1, 2 or 3 manifest, without the checks that span fields. */
export const manifestShapeSchema = z.strictObject({
  version: z.union([z.literal(MANIFEST_VERSION), z.literal(MANIFEST_VERSION_WITH_METADATA), z.literal(MANIFEST_VERSION_WITH_BLOCKS)], { error: `must be ${MANIFEST_VERSION}, ${MANIFEST_VERSION_WITH_METADATA} or ${MANIFEST_VERSION_WITH_BLOCKS}` }),
  chunkSize: integer({ min: 1, max: maxChunkSize, tooBig: `exceeds the chunk size limit of ${maxChunkSize} bytes (64 MiB)` }),
  blockSize: integer({ min: MIN_BLOCK_SIZE, max: MAX_BLOCK_SIZE, tooBig: `exceeds the block size limit of ${MAX_BLOCK_SIZE} bytes` }).optional(),
  files: z.array(fileEntrySchema, expected('an array'))
    .max(maxFiles, { error: (issue) => `holds ${(issue.input as unknown[]).length} files; the limit is ${maxFiles}` }),
  metadata: metadataSchema.optional()
})

/** A complete version 1, 2 or 3 manifest: shape, then the checks that span fields. */
export const manifestSchema = manifestShapeSchema.pipe(z.custom<Manifest>().superRefine((manifest, ctx) => {
  checkManifest(manifest, (path, message, input) => {
    ctx.addIssue({ code: 'custom', path, message, ...(input === undefined ? {} : { input }) })
  })
}))

type Report = (path: Array<string | number>, message: string, input?: unknown) => void

const utf8 = new TextEncoder()

/** Why `path` is unsafe to join under a directory, or undefined when it is fine. */
export function pathProblem (path: string): string | undefined {
  if (path.length === 0) return 'must not be empty'
  if (path.includes('\0')) return 'must not contain a NUL byte'
  if (path.includes('\\')) return 'must not contain a backslash; directories are separated by "/"'
  if (!path.isWellFormed()) return 'must be valid Unicode (it holds a lone surrogate)'
  if (path.startsWith('/')) return 'must be relative, not start with "/"'
  const bytes = utf8.encode(path).length
  if (bytes > maxPathLength) return `is ${bytes} bytes long; the limit is ${maxPathLength}`
  for (const segment of path.split('/')) {
    if (segment === '') return 'must not contain empty segments (a doubled or trailing "/")'
    if (segment === '..') return 'must not contain ".."'
    if (segment === '.') return 'must not contain "." segments'
    const segmentBytes = utf8.encode(segment).length
    if (segmentBytes > maxPathSegmentLength) return `has a ${segmentBytes}-byte segment; the limit is ${maxPathSegmentLength}`
  }
  return undefined
}

/** The name a case-insensitive, normalizing file system sees: NFC, then case folded. */
function foldPath (path: string): string {
  return path.normalize('NFC').toUpperCase().toLowerCase().normalize('NFC')
}

function checkManifest (manifest: Manifest, report: Report): void {
  // one content, one CID: metadata exactly when version 2 (or 3, where it is optional); block digests exactly when version 3
  const hasMetadata = manifest.metadata !== undefined && Object.keys(manifest.metadata).length > 0
  const withBlocks = manifest.version === MANIFEST_VERSION_WITH_BLOCKS
  if (manifest.version === MANIFEST_VERSION && manifest.metadata !== undefined) {
    report(['metadata'], `needs version ${MANIFEST_VERSION_WITH_METADATA}; version ${MANIFEST_VERSION} manifests carry none`)
  } else if (manifest.version === MANIFEST_VERSION_WITH_METADATA && !hasMetadata) {
    report(['version'], `${MANIFEST_VERSION_WITH_METADATA} carries metadata; a manifest without any is version ${MANIFEST_VERSION}`, manifest.version)
  } else if (withBlocks && manifest.metadata !== undefined && !hasMetadata) {
    report(['metadata'], 'must not be empty; leave it out')
  }
  if (withBlocks && manifest.blockSize === undefined) report(['blockSize'], `is required in version ${MANIFEST_VERSION_WITH_BLOCKS}`)
  else if (!withBlocks && manifest.blockSize !== undefined) report(['blockSize'], `needs version ${MANIFEST_VERSION_WITH_BLOCKS}`)
  for (const key of Object.keys(manifest.metadata ?? {})) {
    if (key.length > MAX_METADATA_KEY_LENGTH) report(['metadata', key], `keys are at most ${MAX_METADATA_KEY_LENGTH} characters`)
    else if (!METADATA_KEY_PATTERN.test(key)) report(['metadata', key], 'keys are lowercase dotted names such as huggingface.revision')
  }
  const fileIndex = new Map<string, number>()
  let totalChunks = 0
  manifest.files.forEach((file, i) => {
    const problem = pathProblem(file.path)
    if (problem !== undefined) {
      report(['files', i, 'path'], problem, file.path)
    } else {
      const first = fileIndex.get(file.path)
      if (first !== undefined) report(['files', i, 'path'], `duplicates files[${first}].path`, file.path)
      else fileIndex.set(file.path, i)
    }
    totalChunks += file.chunks.length
    checkChunks(file, i, manifest.chunkSize, report)
    if (!withBlocks || manifest.blockSize !== undefined) checkBlocks(file, i, withBlocks ? manifest.blockSize : undefined, report)
    checkTensors(file, i, report)
  })

  // Paths that differ only in case or in Unicode normalization are one file on macOS, Windows
  // and many Linux mounts (and NFC vs NFD is one name to most users): written under a
  // directory, one would overwrite the other. Only a path that passed the checks above gets here.
  const foldedIndex = new Map<string, number>()
  for (const [path, i] of fileIndex) {
    const folded = foldPath(path)
    const first = foldedIndex.get(folded)
    if (first !== undefined) {
      report(['files', i, 'path'], `collides with files[${first}].path ${JSON.stringify(manifest.files[first]?.path)} where names are compared without case or Unicode normalization (NFC)`, path)
    } else {
      foldedIndex.set(folded, i)
    }
  }

  // a file that is also a directory, exactly or once folded
  for (const [path, i] of fileIndex) {
    const folded = foldPath(path)
    let slash = folded.indexOf('/')
    while (slash !== -1) {
      const directory = folded.slice(0, slash)
      const asFile = foldedIndex.get(directory)
      if (asFile !== undefined) {
        report(['files', asFile, 'path'], `is both a file and a directory (files[${i}].path ${JSON.stringify(path)} lies inside it)`, manifest.files[asFile]?.path)
        break
      }
      slash = folded.indexOf('/', slash + 1)
    }
  }

  if (totalChunks > maxTotalChunks) {
    report(['files'], `hold ${totalChunks} chunks in all; the limit is ${maxTotalChunks}`)
  }
}

function checkChunks (file: FileEntry, i: number, chunkSize: number, report: Report): void {
  let end = 0
  for (let j = 0; j < file.chunks.length; j++) {
    const chunk = file.chunks[j] as FileEntry['chunks'][number]
    if (chunk.size > chunkSize) {
      report(['files', i, 'chunks', j, 'size'], `exceeds the manifest's chunkSize ${chunkSize}`, chunk.size)
      return
    }
    if (chunk.offset !== end) {
      const why = j === 0
        ? 'the first chunk must start at 0'
        : chunk.offset > end
          ? `leaves a gap after the previous chunk, which ends at ${end}`
          : `overlaps the previous chunk, which ends at ${end}`
      report(['files', i, 'chunks', j, 'offset'], why, chunk.offset)
      return
    }
    end = chunk.offset + chunk.size
    if (end > file.size) {
      report(['files', i, 'chunks', j], `[${chunk.offset}, ${end}) runs past the end of the ${file.size}-byte file`)
      return
    }
  }
  if (end < file.size) {
    report(['files', i, 'chunks'], file.chunks.length === 0
      ? `are missing: the file has ${file.size} bytes`
      : `end at ${end}, short of the file's ${file.size} bytes`)
  }
}

/** each chunk's block digests: exactly in version 3, one per block of `blockSize` */
function checkBlocks (file: FileEntry, i: number, blockSize: number | undefined, report: Report): void {
  for (let j = 0; j < file.chunks.length; j++) {
    const chunk = file.chunks[j] as FileEntry['chunks'][number]
    if (blockSize === undefined) {
      if (chunk.blocks !== undefined) {
        report(['files', i, 'chunks', j, 'blocks'], `needs version ${MANIFEST_VERSION_WITH_BLOCKS}`)
        return
      }
      continue
    }
    if (chunk.blocks === undefined) {
      report(['files', i, 'chunks', j, 'blocks'], `is required in version ${MANIFEST_VERSION_WITH_BLOCKS}`)
      return
    }
    const blocks = Math.ceil(chunk.size / blockSize)
    const length = Buffer.byteLength(chunk.blocks, 'base64')
    if (length !== blocks * BLOCK_DIGEST_BYTES) {
      report(['files', i, 'chunks', j, 'blocks'], `holds ${length} bytes of digests; a chunk of ${chunk.size} bytes has ${blocks} block${blocks === 1 ? '' : 's'} of ${blockSize}, ${blocks * BLOCK_DIGEST_BYTES} bytes`)
      return
    }
  }
}

function checkTensors (file: FileEntry, i: number, report: Report): void {
  if (file.tensors === undefined) return
  const names = new Map<string, number>()
  let previousEnd = 0
  for (let k = 0; k < file.tensors.length; k++) {
    const tensor = file.tensors[k] as NonNullable<FileEntry['tensors']>[number]
    const at = ['files', i, 'tensors', k]
    if (tensor.end < tensor.start) {
      report([...at, 'end'], `is before the tensor's start ${tensor.start}`, tensor.end)
      return
    }
    if (tensor.end > file.size) {
      report([...at, 'end'], `lies outside the ${file.size}-byte file`, tensor.end)
      return
    }
    if (tensor.start < previousEnd) {
      report([...at, 'start'], `overlaps or precedes tensors[${k - 1}], which ends at ${previousEnd}; tensors must be in file order`, tensor.start)
      return
    }
    const first = names.get(tensor.name)
    if (first !== undefined) {
      report([...at, 'name'], `duplicates tensors[${first}].name`, tensor.name)
      return
    }
    names.set(tensor.name, k)
    previousEnd = tensor.end
  }
}

function formatPath (path: PropertyKey[]): string {
  let text = ''
  for (const key of path) {
    text += typeof key === 'number' ? `[${key}]` : text === '' ? String(key) : `.${String(key)}`
  }
  return text
}

function formatInput (issue: z.core.$ZodIssue): string | undefined {
  if ((issue as { received?: unknown }).received === 'NaN') return 'NaN'
  const input = issue.input
  if (typeof input === 'string') return JSON.stringify(input)
  if (typeof input === 'number' || typeof input === 'boolean' || input === null) return String(input)
  return undefined
}

/** `files[3].path "../x": must not contain ".."` */
export function formatIssue (issue: z.core.$ZodIssue): string {
  const where = formatPath(issue.path)
  const input = formatInput(issue)
  const message = issue.code === 'unrecognized_keys'
    ? `unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map(key => JSON.stringify(key)).join(', ')}`
    : issue.message
  const subject = [where, input].filter(part => part !== undefined && part !== '').join(' ')
  return subject === '' ? message : `${subject}: ${message}`
}

/**
 * Checks that `value` is a valid version 1, 2 or 3 manifest and returns it (a copy with nothing
 * dropped: unknown fields are rejected). Throws InvalidManifestError naming the first problem
 * and counting the rest.
 */
export function validateManifest (value: unknown): Manifest {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidManifestError(`invalid manifest: must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`)
  }
  const supported = `${MANIFEST_VERSION}, ${MANIFEST_VERSION_WITH_METADATA}, ${MANIFEST_VERSION_WITH_BLOCKS}`
  if (!('version' in value)) {
    throw new InvalidManifestError(`invalid manifest: no version field (supported: ${supported})`)
  }
  if (value.version !== MANIFEST_VERSION && value.version !== MANIFEST_VERSION_WITH_METADATA && value.version !== MANIFEST_VERSION_WITH_BLOCKS) {
    throw new InvalidManifestError(`invalid manifest: version ${JSON.stringify(value.version)} is not supported (supported: ${supported})`)
  }
  const result = manifestSchema.safeParse(value, { reportInput: true })
  if (result.success) return result.data
  const [first, ...rest] = result.error.issues
  const more = rest.length === 0 ? '' : ` (and ${rest.length} more problem${rest.length === 1 ? '' : 's'})`
  throw new InvalidManifestError(`invalid manifest: ${first === undefined ? 'rejected' : formatIssue(first)}${more}`)
}
