// Hosts on one machine as Linux network namespaces joined by a bridge, each with a shaped link.
//
// The bridge lives in a namespace of its own, so the machine's own network is never touched, and
// every address is assigned inside namespaces made here. A host's link is a veth pair: its end
// (eth0) is in the host's namespace, the other end is a bridge port. Shaping is a token bucket
// (`tbf`) on the egress of each end: on eth0 it limits what the host sends (its upload), on the
// bridge port what the bridge hands the host (its download). Loopback inside a namespace is not
// shaped. Everything is removed by `destroy()`, which also ends any process still running in one
// of the namespaces (only processes in namespaces made here, found by `ip netns pids`).
//
// Every link's counters are read at the bridge's ports: a port's rx is what its host sent, its tx
// what the host received. One idle process in the bridge's namespace lets them be read from
// /proc/<pid>/net/dev as often as wanted, with no process started per read.
import { execFile, execFileSync, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'

const exec = promisify(execFile)

/** tbf settings: a burst of a few packets and a queue of `latencyMs` at the link's rate. */
function tbf (mbit, latencyMs) {
  const burstBytes = Math.max(32 * 1024, Math.round(mbit * 1e6 / 8 / 250))
  return ['root', 'tbf', 'rate', `${mbit}mbit`, 'burst', String(burstBytes), 'latency', `${latencyMs}ms`]
}

async function ip (...args) {
  await exec('ip', args)
}

export class Fabric {
  /**
   * @param {{ prefix: string, subnet: string, latencyMs?: number }} init prefix: namespace names start
   * with it; subnet: the first three octets of the /24 used inside the namespaces, e.g. "10.77.0"
   */
  constructor ({ prefix, subnet, latencyMs = 50 }) {
    if (!/^[a-z][a-z0-9-]{1,20}$/.test(prefix)) throw new Error(`bad namespace prefix "${prefix}"`)
    if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`subnet must be 10.x.y, got "${subnet}"`)
    this.prefix = prefix
    this.subnet = subnet
    this.latencyMs = latencyMs
    this.bridge = `${prefix}-br`
    this.hosts = new Map()
    this.made = new Set()
  }

  /** Namespaces left by an earlier run with this prefix (a killed run). */
  static leftovers (prefix) {
    const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    return out.split('\n').map(l => l.split(' ')[0]).filter(name => name != null && name.startsWith(`${prefix}-`))
  }

  async start () {
    const stale = Fabric.leftovers(this.prefix)
    if (stale.length > 0) throw new Error(`namespaces ${stale.join(', ')} exist already: another run is active, or remove them with "ip netns del"`)
    await this.namespace(this.bridge)
    await ip('-n', this.bridge, 'link', 'add', 'br0', 'type', 'bridge')
    await ip('-n', this.bridge, 'link', 'set', 'br0', 'up')
    await ip('-n', this.bridge, 'link', 'set', 'lo', 'up')
    this.watcher = spawn('ip', ['netns', 'exec', this.bridge, 'sleep', 'infinity'], { stdio: 'ignore' })
    this.watcher.on('error', () => {})
  }

  /**
   * What each host's link has carried so far, read at its bridge port: Map host name → { sentBytes,
   * receivedBytes } (Ethernet headers included, as tbf counts them). Synchronous and cheap.
   */
  linkBytes () {
    const dev = readFileSync(`/proc/${this.watcher.pid}/net/dev`, 'utf8')
    const byPort = new Map()
    for (const line of dev.split('\n')) {
      const colon = line.indexOf(':')
      if (colon < 0) continue
      const fields = line.slice(colon + 1).trim().split(/\s+/)
      byPort.set(line.slice(0, colon).trim(), { rx: Number(fields[0]), tx: Number(fields[8]) })
    }
    const out = new Map()
    for (const [name, host] of this.hosts) {
      const port = byPort.get(host.port)
      if (port != null) out.set(name, { sentBytes: port.rx, receivedBytes: port.tx })
    }
    return out
  }

  async namespace (name) {
    await ip('netns', 'add', name)
    this.made.add(name)
  }

  /**
   * Adds a host: a namespace `${prefix}-${name}` with eth0 at `${subnet}.${octet}`, its upload and
   * download shaped to the given rates. Returns { ns, address }.
   */
  async addHost (name, octet, { upMbit, downMbit }) {
    const ns = `${this.prefix}-${name}`
    const address = `${this.subnet}.${octet}`
    const port = `p-${name}`.slice(0, 15)
    await this.namespace(ns)
    await ip('-n', this.bridge, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    await ip('-n', this.bridge, 'link', 'set', port, 'master', 'br0')
    await ip('-n', this.bridge, 'link', 'set', port, 'up')
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
    await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0')
    await ip('-n', ns, 'link', 'set', 'eth0', 'up')
    await exec('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', ...tbf(upMbit, this.latencyMs)])
    await exec('ip', ['netns', 'exec', this.bridge, 'tc', 'qdisc', 'add', 'dev', port, ...tbf(downMbit, this.latencyMs)])
    const host = { name, ns, address, port }
    this.hosts.set(name, host)
    return host
  }

  /** Bytes a host's eth0 has sent and received (what crossed its shaped link, headers included). */
  async counters (name) {
    const host = this.hosts.get(name)
    const { stdout } = await exec('ip', ['-n', host.ns, '-s', '-j', 'link', 'show', 'eth0'])
    const stats = JSON.parse(stdout)[0].stats64
    return { txBytes: stats.tx.bytes, rxBytes: stats.rx.bytes }
  }

  /** Argv that runs a command inside a host's namespace. */
  exec (name, argv) {
    const host = this.hosts.get(name)
    if (host == null) throw new Error(`no host ${name}`)
    return ['ip', ['netns', 'exec', host.ns, ...argv]]
  }

  /** Ends what still runs in our namespaces, then deletes them. Never throws; returns what it could not remove. */
  destroy () {
    const names = new Set([...this.made, ...Fabric.leftovers(this.prefix)])
    for (const name of names) {
      for (let round = 0; round < 2; round++) {
        let pids = []
        try {
          pids = execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number)
        } catch {}
        if (pids.length === 0) break
        for (const pid of pids) {
          try { process.kill(pid, round === 0 ? 'SIGTERM' : 'SIGKILL') } catch {}
        }
        const until = Date.now() + 5000
        while (Date.now() < until && pids.some(alive)) execFileSync('sleep', ['0.1'])
      }
    }
    const failed = []
    for (const name of names) {
      try {
        execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' })
      } catch {
        if (Fabric.leftovers(this.prefix).includes(name)) failed.push(name)
      }
    }
    this.made.clear()
    return failed
  }
}

function alive (pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
