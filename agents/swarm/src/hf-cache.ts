/**
 * Publishing a model from the Hugging Face cache, as `huggingface_hub` lays it out:
 *
 * ```
 * <hub>/models--org--name/blobs/<hash>                     the files' bytes, named by hash
 * <hub>/models--org--name/refs/main                        a commit hash (branches, tags, refs/pr/1)
 * <hub>/models--org--name/snapshots/<commit>/<path>        relative symlinks into ../../blobs/
 * ```
 *
 * `<hub>` is `HF_HUB_CACHE`, else `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else
 * `~/.cache/huggingface/hub`, as huggingface_hub decides it. A snapshot is pushed as the files
 * its links point to; a link must resolve inside the same repository's `blobs/` (after every
 * link on the way is followed), so a tampered cache cannot publish `/etc/shadow` or another
 * user's files as part of a model. Regular files in a snapshot (caches on file systems without
 * symlinks) are taken as they are. The repository and commit go into the manifest's metadata
 * (`huggingface.repo`, `huggingface.revision`).
 */

import { readFile, realpath, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { SwarmError } from '@swarm/interface'

/** The cache has no such repository or revision. */
export class HfCacheNotFoundError extends SwarmError {
  override readonly code = 'ERR_HF_CACHE_NOT_FOUND'
}

/** `--hf-cache` was given something that is not `org/name[@revision]`. */
export class HfCacheSpecError extends SwarmError {
  override readonly code = 'ERR_HF_CACHE_SPEC'
}

export interface HfSnapshot {
  /** the snapshot directory, real path */
  dir: string
  /** real path of the repository's `blobs/`: every link must land inside it */
  blobsDir: string
  /** `org/name` */
  repo: string
  /** the commit hash the snapshot is named by */
  revision: string
}

const COMMIT = /^[0-9a-f]{40}$/
/** repository ids as the Hub allows them: `name` or `org/name`, letters, digits, `-_.` */
const REPO_ID = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}\/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/
/** branch, tag or `pr/N`: no `..`, no leading `/` */
const REVISION = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/

/** Where huggingface_hub keeps its cache, from the same variables it reads. */
export function hfHubCacheDir (env: Record<string, string | undefined> = process.env): string {
  const set = (name: string): string | undefined => env[name] !== undefined && env[name] !== '' ? env[name] : undefined
  const hubCache = set('HF_HUB_CACHE') ?? set('HUGGINGFACE_HUB_CACHE')
  if (hubCache !== undefined) return hubCache
  const home = set('HF_HOME') ?? join(set('XDG_CACHE_HOME') ?? join(homedir(), '.cache'), 'huggingface')
  return join(home, 'hub')
}

/** The metadata a snapshot's manifest records. */
export function hfMetadata (snapshot: HfSnapshot): Record<string, string> {
  return { 'huggingface.repo': snapshot.repo, 'huggingface.revision': snapshot.revision }
}

async function isDirectory (path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() === true
}

/**
 * The snapshot `dir` is, when it is one: `…/models--org--name/snapshots/<commit>` next to a
 * `blobs/` directory. Anything else is an ordinary directory (undefined).
 */
export async function detectHfSnapshot (dir: string): Promise<HfSnapshot | undefined> {
  const real = await realpath(dir).catch(() => undefined)
  if (real === undefined) return undefined
  const revision = basename(real)
  const snapshots = dirname(real)
  const repoDir = dirname(snapshots)
  const folder = basename(repoDir)
  if (basename(snapshots) !== 'snapshots' || !folder.startsWith('models--') || !COMMIT.test(revision)) return undefined
  if (!(await isDirectory(join(repoDir, 'blobs')))) return undefined
  return { dir: real, blobsDir: await realpath(join(repoDir, 'blobs')), repo: folder.slice('models--'.length).split('--').join('/'), revision }
}

/** Parses `org/name[@revision]`. */
export function parseHfSpec (spec: string): { repo: string, revision: string } {
  const at = spec.indexOf('@')
  const repo = at === -1 ? spec : spec.slice(0, at)
  const revision = at === -1 ? 'main' : spec.slice(at + 1)
  if (!REPO_ID.test(repo) || repo.includes('--') || repo.includes('..')) {
    throw new HfCacheSpecError(`--hf-cache ${JSON.stringify(spec)}: expected a repository id such as meta-llama/Llama-3.1-8B, optionally @revision`)
  }
  if (!REVISION.test(revision) || revision.split('/').includes('..')) {
    throw new HfCacheSpecError(`--hf-cache ${JSON.stringify(spec)}: the revision must be a commit hash, branch or tag (e.g. @main, @v1.0, @${'0'.repeat(40)})`)
  }
  return { repo, revision }
}

/**
 * Finds `org/name[@revision]` in the cache: a commit hash names its snapshot directly; a branch
 * or tag (default `main`) is read from `refs/`.
 */
export async function findHfSnapshot (spec: string, env: Record<string, string | undefined> = process.env): Promise<HfSnapshot> {
  const { repo, revision } = parseHfSpec(spec)
  const hub = hfHubCacheDir(env)
  const repoDir = join(hub, `models--${repo.split('/').join('--')}`)
  if (!(await isDirectory(repoDir))) {
    throw new HfCacheNotFoundError(`${repo} is not in the Hugging Face cache at ${hub} (HF_HUB_CACHE, HF_HOME): download it first, e.g. huggingface-cli download ${repo}`)
  }
  let commit = revision
  if (!COMMIT.test(revision) || !(await isDirectory(join(repoDir, 'snapshots', revision)))) {
    const refFile = join(repoDir, 'refs', ...revision.split('/'))
    const text = await readFile(refFile, 'utf8').catch(() => undefined)
    if (text === undefined) throw new HfCacheNotFoundError(`${repo} has no revision ${revision} in the Hugging Face cache at ${hub} (no snapshots/${revision} and no refs/${revision})`)
    commit = text.trim()
    if (!COMMIT.test(commit)) throw new HfCacheNotFoundError(`${refFile} does not hold a commit hash`)
  }
  const snapshot = await detectHfSnapshot(join(repoDir, 'snapshots', commit))
  if (snapshot === undefined) throw new HfCacheNotFoundError(`${repo}@${revision} points at commit ${commit}, whose snapshot is not in the cache at ${join(repoDir, 'snapshots')}`)
  return snapshot
}
