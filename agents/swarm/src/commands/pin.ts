/** `swarm pin`: keep a held model from eviction, or undo it. */

import { createLogger } from '../runtime.js'
import { globals, configFrom, logLevelFor, emit, withStore, findHeld } from './context.js'
import type { Command } from 'commander'

export async function pinCommand (target: string, local: { off?: boolean }, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options)
  const logger = createLogger(logLevelFor(config, options))
  await withStore(config, logger, async store => {
    const manifestCid = findHeld(store, target)
    await store.pin(manifestCid, local.off !== true)
    emit(options, { command: 'pin', manifestCid, pinned: local.off !== true }, `${target} ${local.off === true ? 'unpinned' : 'pinned'}`)
  })
}
