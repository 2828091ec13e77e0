/** `swarm agent`: run the node agent (store, libp2p node, data server, control socket, metrics, optionally the FUSE view) until SIGINT or SIGTERM. */

import { rm } from 'node:fs/promises'
import { describeError } from '../exit-codes.js'
import { createLogger, createOrigin } from '../runtime.js'
import { controller, globals, configFrom } from './context.js'
import type { Command } from 'commander'

export async function agentCommand (local: { listen?: string, bootstrap?: string, swarmKey?: string, insecureOpenSwarm?: boolean, dataPort?: string, dataHost?: string, dataConnections?: string, dataConnectionsPerPeer?: string, dataWriteTimeout?: string, dataIdleTimeout?: string, dataHandshakeTimeout?: string, metricsPort?: string, socket?: string, mdns?: boolean, peerBanSeconds?: string, mount?: string, mountReadAhead?: string, mountAdapter?: string, label: string[] }, command: Command): Promise<void> {
  const options = globals(command)
  const agentFlags: Record<string, unknown> = {}
  if (local.listen != null) agentFlags.listen = local.listen
  if (local.bootstrap != null) agentFlags.bootstrap = local.bootstrap
  if (local.swarmKey != null) agentFlags.swarmKeyFile = local.swarmKey
  if (local.insecureOpenSwarm === true) agentFlags.insecureOpenSwarm = true
  if (local.dataPort != null) agentFlags.dataPort = local.dataPort
  if (local.dataHost != null) agentFlags.dataHost = local.dataHost
  if (local.dataConnections != null) agentFlags.dataConnections = local.dataConnections
  if (local.dataConnectionsPerPeer != null) agentFlags.dataConnectionsPerPeer = local.dataConnectionsPerPeer
  if (local.dataWriteTimeout != null) agentFlags.dataWriteTimeoutMs = local.dataWriteTimeout
  if (local.dataIdleTimeout != null) agentFlags.dataIdleTimeoutMs = local.dataIdleTimeout
  if (local.dataHandshakeTimeout != null) agentFlags.dataHandshakeTimeoutMs = local.dataHandshakeTimeout
  if (local.metricsPort != null) agentFlags.metricsPort = local.metricsPort
  if (local.socket != null) agentFlags.socket = local.socket
  if (local.mdns === true) agentFlags.mdns = true
  if (local.peerBanSeconds != null) agentFlags.peerBanSeconds = local.peerBanSeconds
  if (local.label.length > 0) agentFlags.labels = local.label
  const config = await configFrom(options, agentFlags, { dir: local.mount, readAhead: local.mountReadAhead, adapter: local.mountAdapter })
  const logger = createLogger(config.logLevel)
  const origin = config.origin !== '' ? createOrigin(config, logger) : undefined
  const { Agent } = await import('../agent/agent.js')
  const { serveControlApi } = await import('../agent/control-api.js')
  const { mountOptionsFrom } = await import('../agent/mount.js')
  const mount = mountOptionsFrom(config.mount)
  const agent = await Agent.start({ config, origin, logger, mount })
  const api = await serveControlApi(agent, config.agent.socket, err => describeError(err))
  const ready = { event: 'ready', peerId: agent.node.peerId, multiaddrs: agent.node.multiaddrs(), dataPort: agent.dataPort, metricsPort: agent.metricsPort, socket: config.agent.socket, mount: agent.mount?.mountpoint ?? null, mountAdapter: agent.mount?.adapter ?? null }
  process.stdout.write((options.json === true ? JSON.stringify(ready) : `swarm agent ${agent.node.peerId} ready: libp2p ${agent.node.multiaddrs().join(' ')}, data port ${agent.dataPort}, metrics port ${agent.metricsPort}, socket ${config.agent.socket}${agent.mount != null ? `, models mounted at ${agent.mount.mountpoint}` : ''}`) + '\n')
  await new Promise<void>(resolve => { controller.signal.addEventListener('abort', () => { resolve() }, { once: true }) })
  logger.info('shutting down')
  api.close()
  await agent.stop()
  await rm(config.agent.socket, { force: true })
}
