/**
 * models.json: which models the store holds, under which names, pinned or not, last used when.
 * Manifests and chunk presence live elsewhere; this file is small and rewritten whole, atomically.
 */
import { readFile } from 'node:fs/promises'
import { formatRef, isManifestCid, parseManifestCid, parseRef } from '@swarm/manifest'
import { z } from 'zod'
import { MODELS_FILE_VERSION } from './constants.js'
import { CorruptModelsFileError } from './errors.js'
import { isMissing, writeFileAtomic } from './fs-util.js'

const heldModelRecordSchema = z.object({
  // also a file name under manifests/: only a canonical manifest CID is accepted
  manifestCid: z.string().refine(cid => isManifestCid(cid) && parseManifestCid(cid) === cid, 'not a canonical manifest CID'),
  refs: z.array(z.string().refine(isCanonicalRef, 'not a name:tag reference')),
  pinned: z.boolean(),
  lastUsed: z.number().finite().nonnegative()
})

const modelsFileSchema = z.object({
  version: z.literal(MODELS_FILE_VERSION),
  models: z.array(heldModelRecordSchema)
}).refine(
  file => new Set(file.models.map(m => m.manifestCid)).size === file.models.length,
  { message: 'a manifest CID is listed twice', path: ['models'] }
)

export type HeldModelRecord = z.infer<typeof heldModelRecordSchema>

/** The held models; an empty list when the file does not exist yet. */
export async function loadModelsFile (path: string): Promise<HeldModelRecord[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if (isMissing(err)) return []
    throw err
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw new CorruptModelsFileError(path, `not JSON (${(err as Error).message})`, { cause: err })
  }
  const parsed = modelsFileSchema.safeParse(json)
  if (!parsed.success) throw new CorruptModelsFileError(path, z.prettifyError(parsed.error).replace(/\n/g, '; '), { cause: parsed.error })
  return parsed.data.models
}

export async function saveModelsFile (path: string, models: HeldModelRecord[]): Promise<void> {
  await writeFileAtomic(path, JSON.stringify({ version: MODELS_FILE_VERSION, models }, null, 2) + '\n')
}

function isCanonicalRef (ref: string): boolean {
  try {
    return formatRef(parseRef(ref)) === ref
  } catch {
    return false
  }
}
