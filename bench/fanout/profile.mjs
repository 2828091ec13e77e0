// Where the agents' CPU went in a fan-out run: reads the V8 CPU profiles that run.mjs has the
// agents write (FANOUT_CPU_PROF=<dir>), keeps the samples inside the pull's window (from the
// release to the last node's finish, in <run>.window.json; V8 stamps samples with the same
// monotonic clock as process.hrtime), and sums them up three ways:
//
// - by component of the frame that ran (self time): a package under node_modules, one of the
//   project's packages, a Node.js internal module, or V8's own buckets ((garbage collector),
//   (program): native code not attributed to a JS frame, (idle));
// - by the nearest caller that is not Node.js or V8 (the component that asked for the work:
//   hashing in node:crypto called by @swarm/chunker counts for @swarm/chunker);
// - by function, self time and inclusive (each function once per stack: a protocol handler with
//   everything it calls).
//
// V8 stamps each sample with wall-clock time, so on a loaded machine (an agent waiting for a core
// while its thread is busy) the sampled seconds exceed the CPU seconds by far; the shares hold.
//
//   node bench/fanout/profile.mjs <dir> [run name prefix]   # prints a markdown report; --json for JSON
//   (with up to 2,000 functions by inclusive time, to search for a component's entry points)
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'

const args = process.argv.slice(2).filter(a => a !== '--json')
const asJson = process.argv.includes('--json')
const [dir, only] = args
if (dir == null) {
  process.stderr.write('usage: node bench/fanout/profile.mjs <dir> [run name prefix] [--json]\n')
  process.exit(2)
}

/** The component a script URL belongs to. */
function component (url, functionName) {
  if (url === '' || url == null) return functionName.startsWith('(') ? functionName : '(native)'
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/')
    return 'node:' + (parts[0] === 'internal' ? parts.slice(0, Math.min(parts.length, 2)).join('/').replace(/\.js$/, '') : parts[0])
  }
  const nm = url.lastIndexOf('/node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 14).split('/')
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]
  }
  const pkg = /\/packages\/([^/]+)\//.exec(url)
  if (pkg != null) return `@swarm/${pkg[1]}`
  if (url.includes('/agents/swarm/')) return '@swarm/agent'
  return url
}

const isPlatform = c => c.startsWith('node:') || c.startsWith('(')

function summarize (profile, window) {
  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const parent = new Map()
  for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id)
  const self = new Map()
  const owner = new Map()
  const fns = new Map()
  const inclusive = new Map()
  let total = 0
  let t = profile.startTime
  const { samples, timeDeltas } = profile
  for (let i = 0; i < samples.length; i++) {
    t += timeDeltas[i]
    const weight = i + 1 < timeDeltas.length ? timeDeltas[i + 1] : 0
    if (window != null && (t < window.fromUs || t > window.toUs)) continue
    const node = byId.get(samples[i])
    const cf = node.callFrame
    const c = component(cf.url, cf.functionName)
    total += weight
    self.set(c, (self.get(c) ?? 0) + weight)
    const fn = `${cf.functionName || '(anonymous)'} ${c}${cf.url ? `:${cf.lineNumber + 1}` : ''}`
    fns.set(fn, (fns.get(fn) ?? 0) + weight)
    let o = c
    if (isPlatform(c) && c !== '(idle)') {
      let id = parent.get(node.id)
      while (id != null) {
        const p = byId.get(id).callFrame
        const pc = component(p.url, p.functionName)
        if (!isPlatform(pc)) { o = `${pc} (via ${c})`; break }
        id = parent.get(id)
      }
    }
    owner.set(o, (owner.get(o) ?? 0) + weight)
    if (cf.functionName !== '(idle)') {
      const seen = new Set()
      for (let id = node.id; id != null; id = parent.get(id)) {
        const f = byId.get(id).callFrame
        if (f.functionName === '(root)') continue
        const key = `${f.functionName || '(anonymous)'} ${component(f.url, f.functionName)}${f.url ? `:${f.lineNumber + 1}` : ''}`
        if (seen.has(key)) continue
        seen.add(key)
        inclusive.set(key, (inclusive.get(key) ?? 0) + weight)
      }
    }
  }
  return { total, self, owner, fns, inclusive }
}

const add = (into, from) => { for (const [k, v] of from) into.set(k, (into.get(k) ?? 0) + v) }

const files = readdirSync(dir)
const runs = new Map()
for (const f of files.filter(f => f.endsWith('.cpuprofile')).sort()) {
  const run = f.replace(/-h\d+\.cpuprofile$/, '')
  if (only != null && !run.startsWith(only)) continue
  if (!runs.has(run)) runs.set(run, [])
  runs.get(run).push(f)
}
if (runs.size === 0) {
  process.stderr.write(`no .cpuprofile files${only != null ? ` for ${only}` : ''} in ${dir}\n`)
  process.exit(1)
}

const report = []
for (const [run, profiles] of runs) {
  let window
  try { window = JSON.parse(readFileSync(join(dir, `${run}.window.json`), 'utf8')) } catch {}
  const all = { total: 0, self: new Map(), owner: new Map(), fns: new Map(), inclusive: new Map() }
  for (const f of profiles) {
    const s = summarize(JSON.parse(readFileSync(join(dir, f), 'utf8')), window)
    all.total += s.total
    add(all.self, s.self)
    add(all.owner, s.owner)
    add(all.fns, s.fns)
    add(all.inclusive, s.inclusive)
  }
  const idle = all.self.get('(idle)') ?? 0
  const busy = all.total - idle
  const top = (m, k) => [...m].filter(([name]) => name !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, k).map(([name, us]) => ({ name, ms: us / 1000, share: us / busy }))
  report.push({ run, agents: profiles.length, windowS: window != null ? (window.toUs - window.fromUs) / 1e6 : undefined, sampledS: all.total / 1e6, busyS: busy / 1e6, bySelf: top(all.self, 25), byCaller: top(all.owner, 25), byFunction: top(all.fns, 40), byInclusive: top(all.inclusive, asJson ? 2000 : 60) })
}

if (asJson) {
  process.stdout.write(JSON.stringify(report, null, 2) + '\n')
} else {
  const table = (title, rows) => [`| ${title} | sampled s | share of busy |`, '| --- | ---: | ---: |', ...rows.map(r => `| ${r.name.replace(/\|/g, '\\|')} | ${(r.ms / 1000).toFixed(2)} | ${(100 * r.share).toFixed(1)}% |`)].join('\n')
  for (const r of report) {
    process.stdout.write(`## ${r.run}: ${r.agents} agents, ${r.windowS != null ? `window ${r.windowS.toFixed(1)} s` : 'whole profiles'}; ` +
      `${r.busyS.toFixed(1)} s of the main threads' samples busy (not idle) of ${r.sampledS.toFixed(1)} s sampled\n\n`)
    process.stdout.write(table('component (self)', r.bySelf) + '\n\n')
    process.stdout.write(table('nearest non-platform caller', r.byCaller) + '\n\n')
    process.stdout.write(table('function (self)', r.byFunction) + '\n\n')
    process.stdout.write(table('function (inclusive)', r.byInclusive) + '\n\n')
  }
}
