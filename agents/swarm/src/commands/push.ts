/** `swarm push`: chunk a model directory (or a Hugging Face cache snapshot), upload what the origin lacks, write the manifest, move the tag. */

import { formatRef, parseRef } from '@swarm/manifest'
import { formatBytes, outputMode, reporter } from '../progress.js'
import { pushDirectory, PushSourceError } from '../push.js'
import { detectHfSnapshot, findHfSnapshot, hfMetadata } from '../hf-cache.js'
import { createLogger, createOrigin } from '../runtime.js'
import { controller, globals, configFrom, logLevelFor, emit } from './context.js'
import type { Command } from 'commander'
import type { HfSnapshot } from '../hf-cache.js'

export async function pushCommand (dirArg: string | undefined, local: { name?: string, hfCache?: string }, command: Command): Promise<void> {
  const options = globals(command)
  if ((dirArg == null) === (local.hfCache == null)) throw new PushSourceError('push takes a directory or --hf-cache org/name[@rev], one of the two')
  const snapshot = local.hfCache != null ? await findHfSnapshot(local.hfCache) : await detectHfSnapshot(dirArg as string)
  const dir = snapshot?.dir ?? dirArg as string
  if (local.name == null && local.hfCache == null) throw new PushSourceError('push needs --name <name[:tag]>')
  const ref = parseRef(local.name ?? (snapshot as HfSnapshot).repo.toLowerCase())
  const config = await configFrom(options)
  const logger = createLogger(logLevelFor(config, options))
  const origin = createOrigin(config, logger)
  const progress = reporter(outputMode(options.json === true), `push ${formatRef(ref)}`)
  try {
    const result = await pushDirectory(dir, {
      origin, ref, chunkSize: config.chunkSize, blockSize: config.blockSize, concurrency: config.concurrency, logger, signal: controller.signal,
      ...(snapshot != null ? { metadata: hfMetadata(snapshot), linksWithin: snapshot.blobsDir } : {}),
      onProgress: p => { progress.update({ doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: { uploadedChunks: p.uploadedChunks, skippedChunks: p.skippedChunks } }) }
    })
    progress.stop()
    emit(options, { command: 'push', ...result },
      `pushed ${result.ref} = ${result.manifestCid}: ${result.files} files, ${formatBytes(result.totalBytes)}; uploaded ${result.uploadedChunks} chunks (${formatBytes(result.uploadedBytes)}), ${result.skippedChunks} already at the origin${snapshot != null ? `; ${snapshot.repo} at ${snapshot.revision}` : ''}`)
  } finally {
    progress.stop()
    await origin.close()
  }
}
