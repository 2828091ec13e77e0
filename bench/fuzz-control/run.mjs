// bench/fuzz-control: the control-plane fuzzer of test/peer-control-fuzz.test.ts, run for as many
// cases as asked, in rounds with a new seed each (a round ends at its first failure, is recorded
// and the next round goes on). Against real agents: a seed that holds a model, bans on, and in
// each round a fresh puller (bans off, so every generated message reaches its pull) that pulls
// the model from the seed while fuzzed and must finish byte-identical. Also measures how long the
// largest control messages a peer may send hold the event loop while they are parsed.
// Prints cases run and failures found; results go to bench/results/fuzz-control.json.
//
// Settings: FUZZ_CONTROL_RUNS (default 20000), FUZZ_SOCKET_RUNS (default 10000), FUZZ_ROUNDS
// (default 10), FUZZ_SEED (the first round's seed).
import { createHash } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { writeSyntheticModel } from '@swarm/agent'
import { decodeManifest } from '@swarm/manifest'
import { decodeMessage, encodeMessage, generateSwarmKey, MAX_CHUNK_COUNT, MAX_HAVE_INDICES_PER_MESSAGE } from '@swarm/p2p'
import { fuzzControl, fuzzSocket } from '../../test/fixtures/control-fuzz.mjs'
import { fmt, saveResult, startAgent, swarm } from '../lib/common.mjs'

const controlRuns = Number(process.env.FUZZ_CONTROL_RUNS ?? 20_000)
const socketRuns = Number(process.env.FUZZ_SOCKET_RUNS ?? 10_000)
const rounds = Math.max(1, Number(process.env.FUZZ_ROUNDS ?? 10))
const firstSeed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000_000)

const work = await mkdtemp(join(tmpdir(), 'swarm-bench-fuzz-'))
const agents = []
const alive = pid => { try { process.kill(pid, 0); return true } catch { return false } }

async function sha256 (path) {
  return createHash('sha256').update(await readFile(path)).digest('hex')
}

/** How long parsing the largest messages a peer may send takes, ms (median of a few). */
function parseCost () {
  const median = fn => {
    const times = []
    for (let i = 0; i < 7; i++) {
      const started = performance.now()
      fn()
      times.push(performance.now() - started)
    }
    return times.sort((a, b) => a - b)[3]
  }
  const manifest = 'bagaaierasords4njcts6vs7qvdjfcvgnume4hqohf65zsfguprqphs3icwea'
  const join = encodeMessage({ type: 'join', manifest, chunkCount: MAX_CHUNK_COUNT, pulling: true, bitfield: new Uint8Array(Math.ceil(MAX_CHUNK_COUNT / 8)).fill(0xaa) }).subarray(4)
  const have = encodeMessage({ type: 'have', manifest, indices: Array.from({ length: MAX_HAVE_INDICES_PER_MESSAGE }, (_, i) => MAX_CHUNK_COUNT - 1 - i) }).subarray(4)
  return {
    joinBytes: join.length,
    joinMs: median(() => decodeMessage(join)),
    haveBytes: have.length,
    haveMs: median(() => decodeMessage(have))
  }
}

const failures = []
const totals = { controlCases: 0, socketCases: 0, identities: 0, pulls: 0 }
try {
  const origin = join(work, 'origin')
  await mkdir(origin)
  const env = { SWARM_ORIGIN: pathToFileURL(origin).href }
  const keyFile = join(work, 'swarm.key')
  const swarmKey = generateSwarmKey()
  await writeFile(keyFile, swarmKey, { mode: 0o600 })
  const model = await writeSyntheticModel(join(work, 'model'), { layers: 2, hidden: 512, intermediate: 1536, vocab: 4096 })
  const { manifestCid } = await swarm(['push', model.dir, '--name', 'fuzz:v1', '--chunk-size', '1MiB'], env)
  const manifest = decodeManifest(await readFile(join(origin, 'manifests', manifestCid)), { expectedCid: manifestCid })
  const chunkCount = new Set(manifest.files.flatMap(f => f.chunks.map(c => c.cid))).size
  const expected = Object.fromEntries(await Promise.all(model.files.map(async f => [f, await sha256(join(model.dir, f))])))

  // each bad message is logged at warn: thousands of lines that say nothing new here
  const seed = await startAgent({ dataDir: join(work, 'seed'), env: { ...env, SWARM_SWARM_KEY_FILE: keyFile, SWARM_LOG_LEVEL: 'error' } })
  agents.push(seed)
  await swarm(['pull', 'fuzz:v1'], seed.env)
  const parse = parseCost()
  console.log(`largest join: ${parse.joinBytes} bytes parsed in ${fmt(parse.joinMs, 2)} ms; largest have: ${parse.haveBytes} bytes in ${fmt(parse.haveMs, 2)} ms`)

  const started = performance.now()
  for (let round = 0; round < rounds; round++) {
    const roundSeed = firstSeed + round
    const puller = await startAgent({ dataDir: join(work, `puller-${round}`), env: { SWARM_SWARM_KEY_FILE: keyFile, SWARM_PEER_BAN_SECONDS: '0', SWARM_DOWNLOAD_RATE: '2MiB', SWARM_LOG_LEVEL: 'error' }, bootstrap: seed.multiaddrs })
    agents.push(puller)
    const up = async () => alive(seed.pid) && alive(puller.pid)
    const to = join(work, `out-${round}`)
    const pull = swarm(['pull', '--cid', manifestCid, '--to', to], puller.env).then(() => null, err => err)
    const common = { swarmKey, manifestCid, otherCid: 'bagaaieraobn5eobb4isuxtphxodbsrb7qkerdve7gxfdnso2kvolrgi2s3ua', chunkCount, alive: up }
    const perRound = Math.ceil(controlRuns / rounds)
    const outcomes = await Promise.allSettled([
      fuzzControl({ ...common, targets: [{ peerId: puller.peerId, multiaddrs: puller.multiaddrs }], numRuns: Math.round(perRound * 0.7), seed: roundSeed }),
      fuzzControl({ ...common, targets: [{ peerId: seed.peerId, multiaddrs: seed.multiaddrs }], numRuns: Math.round(perRound * 0.3), seed: roundSeed }),
      fuzzSocket({ socket: seed.env.SWARM_SOCKET, numRuns: Math.ceil(socketRuns / rounds), seed: roundSeed, alive: up })
    ])
    for (const [i, outcome] of outcomes.entries()) {
      const what = ['control at the puller', 'control at the seed', 'control socket'][i]
      if (outcome.status === 'rejected') {
        failures.push({ round, seed: roundSeed, what, error: outcome.reason.message.slice(0, 4_000) })
        console.log(`round ${round} (seed ${roundSeed}): ${what} FAILED: ${outcome.reason.message.split('\n').slice(0, 3).join(' ')}`)
        continue
      }
      if (i < 2) {
        totals.controlCases += outcome.value.cases
        totals.identities += outcome.value.identities
      } else {
        totals.socketCases += outcome.value.cases
      }
    }
    const pullError = await pull
    if (pullError != null) {
      failures.push({ round, seed: roundSeed, what: 'honest pull', error: pullError.message.slice(0, 4_000) })
    } else {
      const got = Object.fromEntries(await Promise.all(model.files.map(async f => [f, await sha256(join(to, f))])))
      if (JSON.stringify(got) !== JSON.stringify(expected)) failures.push({ round, seed: roundSeed, what: 'honest pull', error: 'files differ from the model' })
      else totals.pulls++
    }
    if (!alive(seed.pid)) {
      failures.push({ round, seed: roundSeed, what: 'seed agent', error: 'exited' })
      break
    }
    await puller.stop()
    await rm(to, { recursive: true, force: true })
    console.log(`round ${round + 1}/${rounds}: ${totals.controlCases} control cases, ${totals.socketCases} socket requests, ${totals.pulls} honest pulls byte-identical, ${failures.length} failures so far`)
  }
  const seconds = (performance.now() - started) / 1000
  console.log(`fuzz-control: ${totals.controlCases} control cases and ${totals.socketCases} control-socket requests in ${fmt(seconds)} s (${totals.identities} peer identities); ${totals.pulls}/${rounds} honest pulls byte-identical; failures found: ${failures.length}`)
  for (const failure of failures) console.log(`  round ${failure.round}, seed ${failure.seed}, ${failure.what}: ${failure.error.split('\n')[0]}`)
  const file = await saveResult('fuzz-control', { controlRuns, socketRuns, rounds, firstSeed, ...totals, seconds, parse, failures })
  console.log(`results: ${file}`)
} finally {
  await Promise.allSettled(agents.map(async agent => { if (alive(agent.pid)) await agent.stop() }))
  await rm(work, { recursive: true, force: true })
}
process.exitCode = failures.length > 0 ? 1 : 0
