/** `swarm gc`: evict to the budget, and describe what was evicted and what was kept and why. */

import { formatBytes } from '../progress.js'
import { createLogger } from '../runtime.js'
import { controller, globals, configFrom, logLevelFor, emit, withStore } from './context.js'
import type { Command } from 'commander'
import type { GcReport } from '@swarm/interface'

export async function gcCommand (local: { cacheSize?: string }, command: Command): Promise<void> {
  const options = { ...globals(command), cacheSize: local.cacheSize }
  const config = await configFrom(options)
  const logger = createLogger(logLevelFor(config, options))
  await withStore(config, logger, async store => {
    const report = await store.gc({ budgetBytes: config.cacheSize, signal: controller.signal })
    emit(options, { command: 'gc', ...report }, describeGc(report))
  })
}

function describeGc (report: GcReport): string {
  const name = (m: { manifestCid: string, refs: string[] }): string => m.refs.length > 0 ? `${m.refs.join(',')} (${m.manifestCid})` : m.manifestCid
  const lines = [report.evicted.length === 0
    ? 'nothing to evict'
    : `evicted ${report.evicted.length} models, freed ${formatBytes(report.evicted.reduce((sum, e) => sum + e.freedBytes, 0))}: ${report.evicted.map(e => `${name(e)}${e.reason === 'unused' ? ' (unused, held nothing)' : ''}`).join(', ')}`]
  const why = { pinned: 'pinned', leased: 'in use', 'shares-pinned': 'all its content is a pinned model\'s' }
  for (const s of report.skipped) lines.push(`kept ${name(s)}: ${why[s.reason]}${s.holders != null ? ` by ${s.holders.join(', ')}` : ''}`)
  if (report.budgetBytes != null && report.presentBytes > report.budgetBytes) lines.push(`still over budget: ${formatBytes(report.presentBytes)} present, budget ${formatBytes(report.budgetBytes)}`)
  return lines.join('\n')
}
