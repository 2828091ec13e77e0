import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const dist = fileURLToPath(new URL('../dist/', import.meta.url))

/**
 * The packages a fresh process resolves while it imports `modules` (built), in the order it
 * resolves them: every CLI run pays for what its command loads.
 */
async function packagesLoadedBy (modules: string[]): Promise<string[]> {
  const script = `
    import { registerHooks } from 'node:module'
    const seen = new Set()
    registerHooks({ resolve (specifier, context, next) { if (!specifier.startsWith('.') && !specifier.startsWith('node:') && !specifier.startsWith('file:')) seen.add(specifier); return next(specifier, context) } })
    for (const m of ${JSON.stringify(modules)}) await import(${JSON.stringify(dist)} + m)
    process.stdout.write(JSON.stringify([...seen]))
  `
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script])
  return JSON.parse(stdout) as string[]
}

describe('what a command loads', () => {
  it('a pull through the agent and `swarm status` load no peer stack, no origin client and no store', async () => {
    const loaded = await packagesLoadedBy(['commands/pull.js', 'commands/status.js', 'agent/control-client.js'])
    expect(loaded).toContain('@swarm/manifest')
    expect(loaded.filter(name => /libp2p|@swarm\/(p2p|store|pull|fetcher|workers|origin-)|@aws-sdk|undici/.test(name))).toEqual([])
  })

  it('the agent\'s side of the control API does load the peer stack (what the commands are kept apart from)', async () => {
    const loaded = await packagesLoadedBy(['agent/control-api.js'])
    expect(loaded).toContain('@swarm/p2p')
  })
})
