/** `swarm ls`: tags at the origin and models held locally. */

import { formatRef } from '@swarm/manifest'
import { formatBytes } from '../progress.js'
import { createLogger, createOrigin } from '../runtime.js'
import { redactSecrets } from '@swarm/interface'
import { controller, globals, configFrom, logLevelFor, withStore } from './context.js'
import type { Command } from 'commander'

export async function lsCommand (local: { local?: boolean, remote?: boolean }, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options)
  const logger = createLogger(logLevelFor(config, options))
  const remote: Array<{ ref: string, cid: string }> = []
  if (local.local !== true && config.origin !== '') {
    const origin = createOrigin(config, logger)
    try {
      for await (const entry of origin.listRefs({ signal: controller.signal })) remote.push({ ref: formatRef(entry), cid: entry.cid })
    } finally {
      await origin.close()
    }
  }
  const held = local.remote === true ? [] : await withStore(config, logger, async store => store.models())
  if (options.json === true) {
    process.stdout.write(JSON.stringify({ event: 'done', command: 'ls', remote, local: held }) + '\n')
    return
  }
  if (local.local !== true) {
    process.stdout.write(`origin ${config.origin === '' ? '(none configured)' : redactSecrets(config.origin)}:\n`)
    for (const r of remote.sort((a, b) => a.ref.localeCompare(b.ref))) process.stdout.write(`  ${r.ref.padEnd(40)} ${r.cid}\n`)
  }
  if (local.remote !== true) {
    process.stdout.write(`local ${config.dataDir}:\n`)
    for (const m of held) {
      const pct = m.totalBytes === 0 ? 100 : Math.floor(m.presentBytes / m.totalBytes * 100)
      process.stdout.write(`  ${(m.refs.join(',') || '(no name)').padEnd(40)} ${m.manifestCid} ${formatBytes(m.totalBytes)} ${pct}%${m.pinned ? ' pinned' : ''}\n`)
    }
  }
}
