/** `swarm mount`: the read-only FUSE view of the store without an agent, the origin its only source, until SIGINT or SIGTERM. */

import { formatBytes } from '../progress.js'
import { createLogger, createOrigin } from '../runtime.js'
import { controller, globals, configFrom, logLevelFor, emit, withStore } from './context.js'
import type { Command } from 'commander'

export async function mountCommand (dir: string, local: { readAhead?: string, adapter?: string }, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options, undefined, { dir, readAhead: local.readAhead, adapter: local.adapter })
  const logger = createLogger(logLevelFor(config, options))
  const { mountOptionsFrom, mountStoreView } = await import('../agent/mount.js')
  const settings = mountOptionsFrom(config.mount)
  if (settings == null) throw new Error('no mount point given')
  const origin = config.origin !== '' ? createOrigin(config, logger) : undefined
  try {
    await withStore(config, logger, async store => {
      const mount = await mountStoreView({ store, origin, logger }, settings)
      try {
        const ready = { event: 'ready', command: 'mount', mountpoint: mount.mountpoint, adapter: mount.adapter, dataDir: config.dataDir }
        process.stdout.write((options.json === true ? JSON.stringify(ready) : `swarm mount: models of ${config.dataDir} mounted read-only at ${mount.mountpoint} (${mount.adapter} adapter); stop with Ctrl-C`) + '\n')
        await new Promise<void>(resolve => {
          if (controller.signal.aborted) resolve()
          controller.signal.addEventListener('abort', () => { resolve() }, { once: true })
        })
      } finally {
        await mount.close()
      }
      const stats = mount.view.stats()
      emit(options, { command: 'mount', mountpoint: mount.mountpoint, adapter: mount.adapter, ...stats, fuse: mount.fuseStats() ?? null },
        `unmounted ${mount.mountpoint}: ${stats.reads} reads, ${formatBytes(stats.bytesRead)}; ${stats.chunksFetched} chunks fetched for reads, ${stats.prefetch.chunks} prefetched`)
    })
  } finally {
    await origin?.close()
  }
}
