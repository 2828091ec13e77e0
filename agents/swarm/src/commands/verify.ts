/** `swarm verify`: re-hash every chunk of a held model against its CID; corrupt chunks are marked missing. */

import { verifyModel } from '@swarm/store'
import { formatBytes } from '../progress.js'
import { createLogger } from '../runtime.js'
import { VerifyFailedError, controller, globals, configFrom, logLevelFor, emit, withStore, findHeld } from './context.js'
import type { Command } from 'commander'

export async function verifyCommand (target: string, _local: unknown, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options)
  const logger = createLogger(logLevelFor(config, options))
  await withStore(config, logger, async store => {
    const manifestCid = findHeld(store, target)
    const report = await verifyModel(store, manifestCid, { signal: controller.signal })
    emit(options, { command: 'verify', ...report },
      report.bad.length === 0
        ? `${target}: ${report.checkedChunks} chunks verified (${formatBytes(report.checkedBytes)}), ${report.missingChunks} missing`
        : `${target}: ${report.bad.length} of ${report.checkedChunks} chunks are corrupt and were marked missing (pull again to repair): ${report.bad.map(b => `${b.path} at offset ${b.offset} (${b.cid})`).join(', ')}`)
    if (report.bad.length > 0) throw new VerifyFailedError(`${report.bad.length} corrupt chunks in ${target}`)
  })
}
