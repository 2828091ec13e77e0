/** `swarm status`: what the local agent is doing, read over its control socket. */

import { formatBytes } from '../progress.js'
import { agentStatus } from '../agent/control-client.js'
import { globals, configFrom } from './context.js'
import type { Command } from 'commander'
import type { TransferProgress } from '@swarm/interface'

export async function statusCommand (_local: unknown, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options)
  const status = await agentStatus(config.agent.socket)
  if (options.json === true) {
    process.stdout.write(JSON.stringify({ event: 'done', command: 'status', ...status }) + '\n')
    return
  }
  const models = status.models as Array<{ refs: string[], manifestCid: string, totalBytes: number, presentBytes: number, pinned: boolean }>
  const transfers = status.transfers as Array<{ manifestCid: string, ref?: string, progress: TransferProgress, bytesPerSecond: number }>
  const lines = [
    `agent ${String(status.peerId)}`,
    `  origin: ${String(status.origin ?? '(none)')}`,
    `  listening: ${(status.multiaddrs as string[]).join(' ')}; data port ${String(status.dataPort)}; metrics port ${String(status.metricsPort)}`,
    `  peers: ${(status.peers as string[]).length}`,
    `  models held: ${models.length}`,
    ...models.map(m => `    ${(m.refs.join(',') || '(no name)').padEnd(32)} ${m.manifestCid} ${formatBytes(m.presentBytes)}/${formatBytes(m.totalBytes)}${m.pinned ? ' pinned' : ''}`),
    `  transfers: ${transfers.length}`,
    ...transfers.map(t => `    ${t.ref ?? t.manifestCid}: ${formatBytes(t.progress.doneBytes)}/${formatBytes(t.progress.totalBytes)} at ${formatBytes(t.bytesPerSecond)}/s (peers ${formatBytes(t.progress.bytesBySource.peer)}, origin ${formatBytes(t.progress.bytesBySource.origin)})`)
  ]
  process.stdout.write(lines.join('\n') + '\n')
}
