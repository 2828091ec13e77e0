/**
 * The settings that run an agent beside others on one machine's loopback: its own data
 * directory and control socket, and every port (libp2p, data, metrics) picked by the kernel, so
 * any number of agents fit on one host. The demo, the benchmarks and the end-to-end tests start
 * their agents with these; each agent says the ports it got in its `ready` line.
 */

import { join } from 'node:path'

export function loopbackAgentEnv (dataDir: string, options: { bootstrap?: readonly string[] } = {}): Record<string, string> {
  return {
    SWARM_DATA_DIR: dataDir,
    SWARM_SOCKET: join(dataDir, 'agent.sock'),
    SWARM_LISTEN: '/ip4/127.0.0.1/tcp/0',
    SWARM_DATA_HOST: '127.0.0.1',
    SWARM_DATA_PORT: '0',
    SWARM_METRICS_PORT: '0',
    ...(options.bootstrap != null && options.bootstrap.length > 0 ? { SWARM_BOOTSTRAP: options.bootstrap.join(',') } : {})
  }
}
