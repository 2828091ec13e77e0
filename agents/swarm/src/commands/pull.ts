/** `swarm pull`: through the local agent when one runs on this data directory (peers first, origin after), else in this process with the pull engine and the origin alone (`--no-agent`, or no agent socket). */

import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { formatRef, parseRef } from '@swarm/manifest'
import { describeError } from '../exit-codes.js'
import { formatBytes, outputMode, reporter } from '../progress.js'
import { agentPull } from '../agent/control-client.js'
import { controller, globals, configFrom, logLevelFor, emit, withStore } from './context.js'
import type { Command } from 'commander'
import type { TransferProgress } from '@swarm/interface'

export async function pullCommand (target: string, local: { to?: string, cid?: boolean, pin?: boolean, agent: boolean }, command: Command): Promise<void> {
  const options = globals(command)
  const config = await configFrom(options)
  const ref = local.cid === true ? undefined : parseRef(target)
  const label = ref != null ? formatRef(ref) : target
  const progress = reporter(outputMode(options.json === true), `pull ${label}`)
  try {
    if (local.agent && existsSync(config.agent.socket)) {
      const result = await agentPull(config.agent.socket, { target, cid: local.cid === true, pin: local.pin === true, to: local.to != null ? resolve(local.to) : undefined }, event => {
        progress.update({ doneBytes: Number(event.doneBytes), totalBytes: Number(event.totalBytes), detail: { bytesBySource: event.bytesBySource } })
      })
      progress.stop()
      const bySource = result.progress as TransferProgress
      const seconds = Number(result.durationMs) / 1000
      emit(options, { command: 'pull', via: 'agent', ...result, ...bySource, peakRssBytes: process.resourceUsage().maxRSS * 1024, to: local.to },
        `pulled ${label} = ${String(result.manifestCid)} through the agent: ${formatBytes(bySource.totalBytes)} in ${seconds.toFixed(1)} s; ${formatBytes(bySource.bytesBySource.peer)} from peers, ${formatBytes(bySource.bytesBySource.origin)} from the origin${local.to != null ? `; placed in ${local.to}` : ''}`)
      return
    }
    // the pull engine, the origin's client and the byte workers load only for a pull in this process
    const [{ pullModel, placeFiles, resolveManifestCid }, { createByteWorkers, createLogger, createOrigin }] = await Promise.all([import('../pull.js'), import('../runtime.js')])
    const logger = createLogger(logLevelFor(config, options))
    const origin = createOrigin(config, logger)
    // started now, so the threads load their clients while the store opens and the manifest resolves
    const workers = createByteWorkers(config, undefined, logger, { origin })
    workers?.pool.start()
    try {
      await withStore(config, logger, async store => {
        const manifestCid = ref != null ? await resolveManifestCid(origin, ref, { signal: controller.signal }) : target
        try {
          const summary = await pullModel({
            store, origin, manifestCid, ref: ref != null ? formatRef(ref) : undefined, concurrency: config.concurrency, logger, signal: controller.signal, workers: workers?.chunks,
            onProgress: p => { progress.update({ doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: { bytesBySource: p.bytesBySource } }) }
          })
          progress.stop()
          if (local.pin === true) await store.pin(manifestCid, true)
          if (local.to != null) await placeFiles(store, manifestCid, local.to)
          if (config.cacheSize > 0) await store.gc({ budgetBytes: config.cacheSize })
          const seconds = summary.durationMs / 1000
          const fetched = summary.progress.bytesBySource.origin + summary.progress.bytesBySource.peer
          emit(options, { command: 'pull', via: 'origin', manifestCid, ref: ref != null ? formatRef(ref) : undefined, ...summary.progress, durationMs: Math.round(summary.durationMs), peakRssBytes: process.resourceUsage().maxRSS * 1024, to: local.to },
            `pulled ${label} = ${manifestCid}: ${formatBytes(summary.progress.totalBytes)}; fetched ${formatBytes(fetched)} in ${seconds.toFixed(1)} s (${formatBytes(fetched / Math.max(seconds, 1e-3))}/s), ${formatBytes(summary.progress.bytesBySource.local)} copied locally${local.to != null ? `; placed in ${local.to}` : ''}`)
        } catch (err) {
          const { message, exitCode, code } = describeError(err, store.getManifest(manifestCid))
          throw Object.assign(new Error(message), { exitCode, code })
        }
      })
    } finally {
      await workers?.close()
      await origin.close()
    }
  } finally {
    progress.stop()
  }
}
