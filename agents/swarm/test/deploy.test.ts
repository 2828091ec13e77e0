/**
 * The Kubernetes manifests in deploy/ and the image's Dockerfile: every object is a valid
 * Kubernetes object, and the pieces that must agree do (ports, paths, names, labels), with the
 * agent's own configuration schema and bootstrap parser as the judges of what it will accept.
 *
 * Each check is a function from the parsed files to a list of problems. Every check runs on the
 * files as they are (no problems) and on copies broken in each way it exists to catch (it must
 * report that problem), so none of them can pass vacuously.
 */

import { readdir, readFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_DATA_DIR_ROOT, ENV_KEYS, loadConfig } from '@swarm/config'
import { generateSwarmKey, matchesSelector, parseBootstrapEntry, parseSelector, parseSwarmKey } from '@swarm/p2p'
import { describe, expect, it } from 'vitest'
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { Job } from 'kubernetes-models/batch/v1/Job'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service } from 'kubernetes-models/v1/Service'
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount'
import { parseAllDocuments } from 'yaml'
import type { Config } from '@swarm/config'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment'
import type { IJob } from 'kubernetes-models/batch/v1/Job'
import { parseDuration } from '../src/commands/fleet-watch.js'
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap'
import type { IContainer } from 'kubernetes-models/v1/Container'
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec'
import type { ISecret } from 'kubernetes-models/v1/Secret'
import type { IService } from 'kubernetes-models/v1/Service'
import type { IVolume } from 'kubernetes-models/v1/Volume'

const AGENT_DIR = fileURLToPath(new URL('..', import.meta.url))
const DEPLOY_DIR = join(AGENT_DIR, 'deploy')
const REPO_ROOT = join(AGENT_DIR, '..', '..')

/** variables the agent reads that are not config keys: the config file's path and the FUSE view's mount point */
const NON_CONFIG_VARIABLES = ['SWARM_CONFIG', 'SWARM_MOUNT']

interface KubeObject { apiVersion: string, kind: string, metadata?: { name?: string, namespace?: string }, [key: string]: unknown }
interface Kustomization { kind: string, namespace?: string, resources?: string[], images?: Array<{ name: string, newName?: string, newTag?: string }> }

interface Bundle {
  /** file name in deploy/ → the objects it holds */
  files: Record<string, KubeObject[]>
  dockerfile: string
  dockerignore: string
  packageJson: { bin?: Record<string, string>, engines?: Record<string, string> }
  rootPackageJson: { engines?: Record<string, string> }
}

async function loadBundle (): Promise<Bundle> {
  const files: Record<string, KubeObject[]> = {}
  for (const name of (await readdir(DEPLOY_DIR)).filter(n => /\.ya?ml$/.test(n)).sort()) {
    const docs = parseAllDocuments(await readFile(join(DEPLOY_DIR, name), 'utf8'))
    if (!Array.isArray(docs)) throw new Error(`${name}: not a YAML stream`)
    files[name] = docs.map((doc, i) => {
      if (doc.errors.length > 0) throw new Error(`${name} document ${i}: ${doc.errors.map(e => e.message).join('; ')}`)
      return doc.toJS() as KubeObject
    }).filter(obj => obj != null)
  }
  return {
    files,
    dockerfile: await readFile(join(AGENT_DIR, 'Dockerfile'), 'utf8'),
    dockerignore: await readFile(join(REPO_ROOT, '.dockerignore'), 'utf8'),
    packageJson: JSON.parse(await readFile(join(AGENT_DIR, 'package.json'), 'utf8')),
    rootPackageJson: JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8'))
  }
}

// ---- finding things -------------------------------------------------------------------------

function objects (bundle: Bundle): Array<{ file: string, obj: KubeObject }> {
  return Object.entries(bundle.files).flatMap(([file, objs]) => objs.map(obj => ({ file, obj })))
}

function only<T> (bundle: Bundle, kind: string, file?: string): T {
  const found = objects(bundle).filter(o => o.obj.kind === kind && (file == null || o.file === file))
  if (found.length !== 1) throw new Error(`expected one ${kind}${file != null ? ` in ${file}` : ''}, found ${found.length}`)
  return found[0]!.obj as T
}

function kustomization (bundle: Bundle): Kustomization {
  return only<Kustomization>(bundle, 'Kustomization', 'kustomization.yaml')
}

function daemonSet (bundle: Bundle): IDaemonSet { return only<IDaemonSet>(bundle, 'DaemonSet', 'daemonset.yaml') }
function service (bundle: Bundle): IService { return only<IService>(bundle, 'Service', 'service-headless.yaml') }
function inference (bundle: Bundle): IDeployment { return only<IDeployment>(bundle, 'Deployment', 'inference-example.yaml') }

function podSpec (workload: IDaemonSet | IDeployment): IPodSpec {
  const spec = workload.spec?.template.spec
  if (spec == null) throw new Error(`${workload.metadata?.name ?? workload.kind} has no pod spec`)
  return spec
}

function agentContainer (bundle: Bundle): IContainer {
  const containers = podSpec(daemonSet(bundle)).containers
  if (containers.length !== 1) throw new Error(`the DaemonSet should run one container, has ${containers.length}`)
  return containers[0]!
}

function envValue (container: IContainer, name: string): string | undefined {
  return container.env?.find(e => e.name === name)?.value
}

function volumeAt (spec: IPodSpec, container: IContainer, mountPath: string): { volume: IVolume, mount: NonNullable<IContainer['volumeMounts']>[number] } | undefined {
  const mount = container.volumeMounts?.find(m => m.mountPath === mountPath)
  const volume = mount != null ? spec.volumes?.find(v => v.name === mount.name) : undefined
  return mount != null && volume != null ? { volume, mount } : undefined
}

/** the container port a probe or Service names, by name or number */
function resolvePort (container: IContainer, port: number | string | undefined): number | undefined {
  if (typeof port === 'number') return container.ports?.some(p => p.containerPort === port) === true ? port : undefined
  return container.ports?.find(p => p.name === port)?.containerPort
}

/** the environment the agent process sees, with pod fields and optional Secrets filled in */
function agentEnvironment (bundle: Bundle): Record<string, string> {
  const container = agentContainer(bundle)
  const env: Record<string, string> = {}
  for (const source of container.envFrom ?? []) {
    const name = source.configMapRef?.name
    const configMap = objects(bundle).find(o => o.obj.kind === 'ConfigMap' && o.obj.metadata?.name === name)?.obj as IConfigMap | undefined
    if (configMap == null) throw new Error(`envFrom names ConfigMap ${String(name)}, which deploy/ does not define`)
    Object.assign(env, configMap.data)
  }
  // explicit env wins over envFrom, as in Kubernetes
  for (const e of container.env ?? []) {
    if (e.value != null) env[e.name] = e.value
    else if (e.valueFrom?.fieldRef?.fieldPath === 'status.podIP') env[e.name] = '10.1.2.3'
    else if (e.valueFrom?.fieldRef?.fieldPath.startsWith('metadata.annotations[') === true) {
      const key = /^metadata\.annotations\['([^']+)'\]$/.exec(e.valueFrom.fieldRef.fieldPath)?.[1] ?? ''
      const value = daemonSet(bundle).spec?.template.metadata?.annotations?.[key]
      // as in Kubernetes, a missing annotation is an empty string
      env[e.name] = value ?? ''
    }
    else if (e.valueFrom?.secretKeyRef != null) env[e.name] = 'secret-value'
  }
  return env
}

async function agentConfig (bundle: Bundle): Promise<Config> {
  // the image holds no config file; an empty one keeps this machine's /etc/swarm/config.yaml out
  return await loadConfig({ env: agentEnvironment(bundle), file: '/dev/null' })
}

function cpu (quantity: string | number | undefined): number {
  if (quantity == null) return Number.NaN
  const text = String(quantity)
  return text.endsWith('m') ? Number(text.slice(0, -1)) / 1000 : Number(text)
}

function bytes (quantity: string | number | undefined): number {
  if (quantity == null) return Number.NaN
  const match = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(quantity))
  if (match == null) return Number.NaN
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[match[2] ?? ''] ?? 1
  return Number(match[1]) * unit
}

function matches (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
  return selector != null && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v)
}

// ---- the Dockerfile ---------------------------------------------------------------------------

interface Instruction { keyword: string, args: string }

/** instructions per build stage; continuation lines joined, comments dropped */
function dockerStages (text: string): Instruction[][] {
  const logical: string[] = []
  let pending = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#')) continue
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' '
      continue
    }
    logical.push(pending + line)
    pending = ''
  }
  const stages: Instruction[][] = []
  for (const line of logical) {
    const match = /^(\S+)\s*(.*)$/.exec(line)
    if (match == null) continue
    const instruction = { keyword: match[1]!.toUpperCase(), args: match[2]! }
    if (instruction.keyword === 'FROM') stages.push([])
    stages[stages.length - 1]?.push(instruction)
  }
  return stages
}

function execForm (instruction: Instruction | undefined): string[] | undefined {
  if (instruction == null) return undefined
  try {
    const value: unknown = JSON.parse(instruction.args)
    return Array.isArray(value) && value.every(v => typeof v === 'string') ? value : undefined
  } catch {
    return undefined
  }
}

function last (stage: Instruction[] | undefined, keyword: string): Instruction | undefined {
  return stage?.filter(i => i.keyword === keyword).at(-1)
}

// ---- the checks -------------------------------------------------------------------------------

/** a way to break a copy of the files, and what the check must then report */
type Break = [how: string, breakIt: (bundle: Bundle) => void, reason: RegExp]

interface Check {
  name: string
  check: (bundle: Bundle) => Promise<string[]> | string[]
  breaks: Break[]
}

type Model = new (data: any) => { validate: () => void }

/** the kubernetes-models class for each apiVersion and kind deploy/ uses; any other is reported */
const MODELS: Record<string, Model> = {
  'v1 Namespace': Namespace,
  'v1 ServiceAccount': ServiceAccount,
  'v1 ConfigMap': ConfigMap,
  'v1 Secret': Secret,
  'v1 Service': Service,
  'apps/v1 DaemonSet': DaemonSet,
  'apps/v1 Deployment': Deployment,
  'batch/v1 Job': Job
}

function listenPorts (config: Config): number[] {
  return config.agent.listen.map(address => Number(/\/tcp\/(\d+)/.exec(address)?.[1]))
}

function setEnv (bundle: Bundle, name: string, value: string): void {
  const entry = agentContainer(bundle).env?.find(e => e.name === name)
  if (entry == null) throw new Error(`the agent has no ${name}`)
  entry.value = value
}

function agentMount (bundle: Bundle, mountPath: string): NonNullable<IContainer['volumeMounts']>[number] {
  const mount = agentContainer(bundle).volumeMounts?.find(m => m.mountPath === mountPath)
  if (mount == null) throw new Error(`the agent mounts nothing at ${mountPath}`)
  return mount
}

function agentVolume (bundle: Bundle, mountPath: string): IVolume {
  const name = agentMount(bundle, mountPath).name
  const volume = podSpec(daemonSet(bundle)).volumes?.find(v => v.name === name)
  if (volume == null) throw new Error(`no volume ${name}`)
  return volume
}

function gateJob (bundle: Bundle): IJob { return only<IJob>(bundle, 'Job', 'rollout-gate-example.yaml') }

/** containers of the examples that run `swarm wait` or `swarm preheat`, with their pod spec */
function fleetCommands (bundle: Bundle): Array<{ where: string, spec: IPodSpec, container: IContainer }> {
  const pods: Array<[string, IPodSpec]> = [['inference-example.yaml', podSpec(inference(bundle))], ['rollout-gate-example.yaml', gateJob(bundle).spec!.template.spec!]]
  return pods.flatMap(([where, spec]) => [...spec.initContainers ?? [], ...spec.containers]
    .filter(c => c.args?.[0] === 'wait' || c.args?.[0] === 'preheat')
    .map(container => ({ where: `${where} ${container.name}`, spec, container })))
}

function flag (args: string[], name: string): string | undefined {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}

function inferenceServer (bundle: Bundle): IContainer {
  const server = podSpec(inference(bundle)).containers.find(c => c.args?.includes('--model') === true)
  if (server == null) throw new Error('no inference container takes --model')
  return server
}

const checks: Check[] = [
  {
    name: 'the rollout gate and the inference initContainer reach the agent\'s socket on the node, with goals, selectors and timeouts the CLI accepts that select the agents\' labels',
    async check (bundle) {
      const config = await agentConfig(bundle)
      const dataDir = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), config.dataDir)?.volume.hostPath?.path
      const nodeSocket = dataDir != null ? posix.join(dataDir, posix.relative(config.dataDir, config.agent.socket)) : undefined
      const problems: string[] = []
      const found = fleetCommands(bundle)
      if (!found.some(f => f.container.args?.[0] === 'wait' && f.where.startsWith('inference-example.yaml'))) problems.push('the inference example does not gate on swarm wait')
      if (!found.some(f => f.container.args?.[0] === 'wait' && f.where.startsWith('rollout-gate-example.yaml'))) problems.push('the rollout gate Job does not run swarm wait')
      for (const { where, spec, container } of found) {
        const args = container.args ?? []
        const socket = envValue(container, 'SWARM_SOCKET') ?? config.agent.socket
        const mount = volumeAt(spec, container, socket)
        if (mount?.volume.hostPath?.path !== nodeSocket || mount?.volume.hostPath?.type !== 'Socket') problems.push(`${where}: ${socket} does not mount the agent's socket on the node (${String(nodeSocket)}, type Socket)`)
        if (args[0] === 'wait' && flag(args, '--min') == null && !args.includes('--all') && !args.includes('--local')) problems.push(`${where}: swarm wait says how many nodes with none of --min, --all, --local`)
        const timeout = flag(args, '--timeout')
        if (timeout != null) {
          try { parseDuration(timeout) } catch (err) { problems.push(`${where}: ${(err as Error).message}`) }
        }
        const nodes = flag(args, '--nodes')
        if (nodes != null) {
          try {
            if (!matchesSelector(parseSelector(nodes), config.agent.labels)) problems.push(`${where}: --nodes ${nodes} matches no agent's labels (${JSON.stringify(config.agent.labels)})`)
          } catch (err) {
            problems.push(`${where}: ${(err as Error).message}`)
          }
        }
      }
      const job = gateJob(bundle)
      if (job.spec?.template.spec?.restartPolicy !== 'Never' || job.spec?.backoffLimit !== 0) problems.push('the rollout gate Job retries: a gate that failed must fail the pipeline')
      return problems
    },
    breaks: [
      ['a socket mounted from elsewhere', b => { podSpec(inference(b)).volumes!.find(v => v.name === 'agent-socket')!.hostPath!.path = '/run/swarm.sock' }, /wait-for-model: \/run\/swarm\/agent.sock does not mount the agent's socket/],
      ['a selector no agent matches', b => { gateJob(b).spec!.template.spec!.containers[0]!.args = ['wait', 'llama-70b:v3', '--nodes', 'pool=b', '--all'] }, /--nodes pool=b matches no agent's labels/],
      ['agents without labels', b => { delete daemonSet(b).spec!.template.metadata!.annotations!['swarm.io/labels'] }, /matches no agent's labels \(\{\}\)/],
      ['a selector that does not parse', b => { gateJob(b).spec!.template.spec!.containers[0]!.args = ['wait', 'x', '--nodes', 'pool in (a)', '--all'] }, /not a selector requirement/],
      ['a wait with no goal', b => { gateJob(b).spec!.template.spec!.containers[0]!.args = ['wait', 'llama-70b:v3'] }, /says how many nodes with none of/],
      ['a timeout that is no duration', b => { podSpec(inference(b)).initContainers![0]!.args = ['wait', 'llama-70b', '--local', '--timeout', 'soon'] }, /"soon" is not a duration/],
      ['no gate in the inference pod', b => { podSpec(inference(b)).initContainers = [] }, /the inference example does not gate on swarm wait/],
      ['a Job that retries', b => { gateJob(b).spec!.backoffLimit = 6 }, /the rollout gate Job retries/]
    ]
  },
  {
    name: 'every object in deploy/ is a valid Kubernetes object',
    check (bundle) {
      const problems: string[] = []
      for (const { file, obj } of objects(bundle)) {
        if (obj.kind === 'Kustomization') continue
        const Model = MODELS[`${obj.apiVersion} ${obj.kind}`]
        if (Model == null) {
          problems.push(`${file}: no schema for ${obj.apiVersion} ${obj.kind}`)
          continue
        }
        try {
          new Model(obj).validate()
        } catch (err) {
          problems.push(`${file} ${obj.kind} ${obj.metadata?.name ?? ''}: ${(err as Error).message}`)
        }
      }
      return problems
    },
    breaks: [
      ['a port given by name where a number belongs', b => { (agentContainer(b).ports![0] as { containerPort: unknown }).containerPort = 'p2p' }, /containerPort must be integer/],
      ['a Deployment without its selector', b => { delete (inference(b).spec as { selector?: unknown }).selector }, /data\/spec must have required property selector/],
      ['a kind of object nothing checks', b => { (daemonSet(b) as KubeObject).apiVersion = 'extensions/v1beta1' }, /no schema for extensions\/v1beta1 DaemonSet/]
    ]
  },
  {
    name: 'kustomization.yaml lists every manifest but the examples, all in its namespace, with the agent\'s image',
    check (bundle) {
      const k = kustomization(bundle)
      const problems: string[] = []
      if (k.namespace == null) problems.push('kustomization.yaml sets no namespace')
      const listed = new Set(k.resources ?? [])
      for (const file of Object.keys(bundle.files)) {
        if (file === 'kustomization.yaml') continue
        const example = file.includes('example')
        if (example && listed.has(file)) problems.push(`${file} is an example but is listed: applying it would overwrite real Secrets or deploy a workload of the user's`)
        if (!example && !listed.has(file)) problems.push(`${file} is not listed in kustomization.yaml`)
      }
      for (const file of listed) if (bundle.files[file] == null) problems.push(`kustomization.yaml lists ${file}, which does not exist`)
      for (const { file, obj } of objects(bundle)) {
        if (!listed.has(file)) continue
        const namespace = obj.kind === 'Namespace' ? obj.metadata?.name : obj.metadata?.namespace
        if (namespace !== k.namespace) problems.push(`${file} ${obj.kind} is in namespace ${String(namespace)}, not ${String(k.namespace)}`)
      }
      const image = agentContainer(bundle).image?.split(':')[0]
      if (!(k.images ?? []).some(i => i.name === image)) problems.push(`kustomization.yaml's images do not cover the agent's image ${String(image)}`)
      return problems
    },
    breaks: [
      ['a manifest left out', b => { kustomization(b).resources = kustomization(b).resources!.filter(r => r !== 'service-headless.yaml') }, /service-headless\.yaml is not listed/],
      ['the example Secrets listed', b => { kustomization(b).resources!.push('secret-example.yaml') }, /secret-example\.yaml is an example but is listed/],
      ['a listed file that does not exist', b => { kustomization(b).resources!.push('pdb.yaml') }, /lists pdb\.yaml, which does not exist/],
      ['an object in another namespace', b => { service(b).metadata!.namespace = 'default' }, /Service is in namespace default, not swarm/],
      ['an image the kustomization does not name', b => { agentContainer(b).image = 'other/agent:1' }, /do not cover the agent's image other\/agent/]
    ]
  },
  {
    name: 'the agent\'s environment passes its own configuration schema, with only variables it reads',
    async check (bundle) {
      const problems: string[] = []
      const known = new Set([...Object.keys(ENV_KEYS), ...NON_CONFIG_VARIABLES])
      for (const name of Object.keys(agentEnvironment(bundle))) {
        if (name.startsWith('SWARM_') && !known.has(name)) problems.push(`${name} is not a variable the agent reads (a misspelt name is ignored)`)
      }
      try {
        const config = await agentConfig(bundle)
        if (config.origin === '') problems.push('no SWARM_ORIGIN')
      } catch (err) {
        problems.push((err as Error).message)
      }
      return problems
    },
    breaks: [
      ['a misspelt variable', b => { const c = only<IConfigMap>(b, 'ConfigMap'); c.data = { ...c.data, SWARM_CACHESIZE: '1GiB' } }, /SWARM_CACHESIZE is not a variable the agent reads/],
      ['a value the agent rejects', b => { const c = only<IConfigMap>(b, 'ConfigMap'); c.data = { ...c.data, SWARM_CACHE_SIZE: 'lots' } }, /SWARM_CACHE_SIZE \(env\)/],
      ['no origin', b => { const c = only<IConfigMap>(b, 'ConfigMap'); delete c.data!.SWARM_ORIGIN }, /no SWARM_ORIGIN/]
    ]
  },
  {
    name: 'the probes ask the metrics port, which listens beyond loopback: /healthz for liveness and startup, /readyz for readiness',
    async check (bundle) {
      const container = agentContainer(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const expected = { livenessProbe: '/healthz', startupProbe: '/healthz', readinessProbe: '/readyz' } as const
      for (const [probe, path] of Object.entries(expected) as Array<[keyof typeof expected, string]>) {
        const get = container[probe]?.httpGet
        if (get == null) { problems.push(`${probe} is not an HTTP GET`); continue }
        if (get.path !== path) problems.push(`${probe} asks ${String(get.path)}, not ${path}`)
        const port = resolvePort(container, get.port)
        if (port !== config.agent.metricsPort) problems.push(`${probe} asks port ${String(get.port)} (${String(port)}), the metrics server listens on ${config.agent.metricsPort}`)
      }
      if (config.agent.metricsHost !== '0.0.0.0') problems.push(`the metrics server binds ${config.agent.metricsHost}: the kubelet cannot reach it`)
      const annotations = daemonSet(bundle).spec?.template.metadata?.annotations ?? {}
      if (annotations['prometheus.io/scrape'] !== 'true' || Number(annotations['prometheus.io/port']) !== config.agent.metricsPort || annotations['prometheus.io/path'] !== '/metrics') {
        problems.push('the Prometheus scrape annotations do not point at the metrics port\'s /metrics')
      }
      return problems
    },
    breaks: [
      ['readiness on /healthz', b => { agentContainer(b).readinessProbe!.httpGet!.path = '/healthz' }, /readinessProbe asks \/healthz, not \/readyz/],
      ['no liveness probe', b => { delete agentContainer(b).livenessProbe }, /livenessProbe is not an HTTP GET/],
      ['a startup probe on the data port', b => { agentContainer(b).startupProbe!.httpGet!.port = 'data' }, /startupProbe asks port data \(4002\)/],
      ['metrics on another port than the probes ask', b => { setEnv(b, 'SWARM_METRICS_PORT', '9465') }, /metrics server listens on 9465/],
      ['metrics on loopback', b => { setEnv(b, 'SWARM_METRICS_HOST', '127.0.0.1') }, /binds 127\.0\.0\.1/],
      ['scraping another port', b => { daemonSet(b).spec!.template.metadata!.annotations!['prometheus.io/port'] = '4001' }, /scrape annotations/]
    ]
  },
  {
    name: 'the agent listens on the ports it declares: libp2p and TLS data',
    async check (bundle) {
      const container = agentContainer(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const p2p = resolvePort(container, 'p2p')
      if (p2p == null || !listenPorts(config).includes(p2p)) problems.push(`containerPort p2p (${String(p2p)}) is not among the libp2p listen ports ${listenPorts(config).join(', ')}`)
      const data = resolvePort(container, 'data')
      if (data !== config.agent.dataPort) problems.push(`containerPort data (${String(data)}) is not the data port ${config.agent.dataPort}`)
      const dataHost = container.env?.find(e => e.name === 'SWARM_DATA_HOST')
      if (dataHost != null && dataHost.valueFrom?.fieldRef?.fieldPath !== 'status.podIP') problems.push('SWARM_DATA_HOST is set to something other than the pod\'s IP')
      return problems
    },
    breaks: [
      ['a data port the container does not declare', b => { setEnv(b, 'SWARM_DATA_PORT', '4102') }, /containerPort data \(4002\) is not the data port 4102/],
      ['libp2p on another port', b => { setEnv(b, 'SWARM_LISTEN', '/ip4/0.0.0.0/tcp/4101') }, /containerPort p2p \(4001\) is not among the libp2p listen ports 4101/],
      ['a fixed data host', b => { const e = agentContainer(b).env!.find(e => e.name === 'SWARM_DATA_HOST')!; delete e.valueFrom; e.value = '10.0.0.1' }, /SWARM_DATA_HOST is set to something other than the pod's IP/]
    ]
  },
  {
    name: 'SWARM_BOOTSTRAP names the headless Service\'s DNS name and port, which reach the agent\'s libp2p port',
    async check (bundle) {
      const svc = service(bundle)
      const container = agentContainer(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const namespace = kustomization(bundle).namespace ?? svc.metadata?.namespace
      const expectedName = `${String(svc.metadata?.name)}.${String(namespace)}.svc.cluster.local`
      const dns = config.agent.bootstrap.map(parseBootstrapEntry).find(e => e.kind === 'dns')
      if (dns == null || dns.kind !== 'dns') return ['SWARM_BOOTSTRAP has no dns:<name>:<port> entry']
      const servicePort = svc.spec?.ports?.find(p => p.port === dns.port)
      if (dns.name !== expectedName) problems.push(`SWARM_BOOTSTRAP names ${dns.name}, the Service is ${expectedName}`)
      if (servicePort == null) return [...problems, `SWARM_BOOTSTRAP asks port ${dns.port}, which the Service does not serve`]
      // a headless Service resolves to pod IPs, so the port dialled must be the container's own
      const target = resolvePort(container, servicePort.targetPort ?? servicePort.port)
      if (target !== dns.port) problems.push(`the Service's port ${servicePort.port} leads to container port ${String(target)}, not the dialled ${dns.port}`)
      if (!listenPorts(config).includes(dns.port)) problems.push(`no libp2p listen address uses the dialled port ${dns.port}`)
      return problems
    },
    breaks: [
      ['the wrong namespace in the name', b => { setEnv(b, 'SWARM_BOOTSTRAP', 'dns:swarm-headless.default.svc.cluster.local:4001') }, /SWARM_BOOTSTRAP names swarm-headless\.default\.svc\.cluster\.local/],
      ['a port the Service does not serve', b => { setEnv(b, 'SWARM_BOOTSTRAP', 'dns:swarm-headless.swarm.svc.cluster.local:4002') }, /asks port 4002, which the Service does not serve/],
      ['a Service port leading elsewhere', b => { service(b).spec!.ports![0]!.targetPort = 'data' }, /leads to container port 4002, not the dialled 4001/],
      ['only multiaddrs', b => { setEnv(b, 'SWARM_BOOTSTRAP', '/ip4/10.0.0.1/tcp/4001') }, /no dns:<name>:<port> entry/]
    ]
  },
  {
    name: 'the Service is headless, lists unready agents, and selects the DaemonSet\'s pods and nothing else here',
    check (bundle) {
      const svc = service(bundle)
      const ds = daemonSet(bundle)
      const problems: string[] = []
      if (svc.spec?.clusterIP !== 'None') problems.push(`clusterIP is ${String(svc.spec?.clusterIP)}: DNS would give one virtual IP, not every agent`)
      if (svc.spec?.publishNotReadyAddresses !== true) problems.push('publishNotReadyAddresses is not true: starting agents would not find each other')
      if (!matches(svc.spec?.selector, ds.spec?.template.metadata?.labels)) problems.push('the Service\'s selector does not match the DaemonSet\'s pod labels')
      if (!matches(ds.spec?.selector.matchLabels, ds.spec?.template.metadata?.labels)) problems.push('the DaemonSet\'s selector does not match its own pod labels')
      if (matches(svc.spec?.selector, inference(bundle).spec?.template.metadata?.labels)) problems.push('the Service also selects the inference pods')
      return problems
    },
    breaks: [
      ['a cluster IP', b => { delete service(b).spec!.clusterIP }, /clusterIP is undefined/],
      ['unready agents hidden', b => { service(b).spec!.publishNotReadyAddresses = false }, /publishNotReadyAddresses is not true/],
      ['a selector for other pods', b => { service(b).spec!.selector = { 'app.kubernetes.io/name': 'swarm', 'app.kubernetes.io/component': 'peer' } }, /selector does not match the DaemonSet's pod labels/],
      ['pod labels the DaemonSet does not select', b => { daemonSet(b).spec!.template.metadata!.labels = { 'app.kubernetes.io/name': 'swarm' } }, /DaemonSet's selector does not match its own pod labels/],
      ['a selector matching inference pods too', b => { service(b).spec!.selector = { ...inference(b).spec!.template.metadata!.labels } }, /also selects the inference pods/]
    ]
  },
  {
    name: 'the swarm key Secret is mounted and SWARM_SWARM_KEY_FILE points at its key; the example holds no usable key',
    async check (bundle) {
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const keyFile = config.agent.swarmKeyFile
      if (keyFile == null) return ['SWARM_SWARM_KEY_FILE is not set: any node could join']
      const found = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), posix.dirname(keyFile))
      const secretName = found?.volume.secret?.secretName
      if (found == null || secretName == null) return [`nothing mounts a Secret at ${posix.dirname(keyFile)}`]
      if (found.volume.secret?.optional === true) problems.push('the swarm key Secret is optional: without it the agent would start outside the swarm')
      const example = objects(bundle).find(o => o.file === 'secret-example.yaml' && o.obj.kind === 'Secret' && o.obj.metadata?.name === secretName)?.obj as ISecret | undefined
      if (example == null) return [...problems, `secret-example.yaml does not show the Secret ${secretName}`]
      const fileName = posix.basename(keyFile)
      const key = found.volume.secret?.items?.find(i => i.path === fileName)?.key ?? fileName
      const placeholder = example.stringData?.[key] ?? (example.data?.[key] != null ? Buffer.from(example.data[key], 'base64').toString() : undefined)
      if (placeholder == null) return [...problems, `SWARM_SWARM_KEY_FILE reads ${fileName}, which the Secret ${secretName} has no key for`]
      try {
        parseSwarmKey(placeholder)
        problems.push('secret-example.yaml holds a usable swarm key: anyone who reads it could join')
      } catch {}
      return problems
    },
    breaks: [
      ['no key file', b => { agentContainer(b).env = agentContainer(b).env!.filter(e => e.name !== 'SWARM_SWARM_KEY_FILE') }, /SWARM_SWARM_KEY_FILE is not set/],
      ['a key file name the Secret lacks', b => { setEnv(b, 'SWARM_SWARM_KEY_FILE', '/etc/swarm/key/psk') }, /reads psk, which the Secret swarm-key has no key for/],
      ['a key file outside the Secret\'s mount', b => { setEnv(b, 'SWARM_SWARM_KEY_FILE', '/var/lib/swarm/swarm.key') }, /nothing mounts a Secret at \/var\/lib\/swarm/],
      ['an optional Secret', b => { agentVolume(b, '/etc/swarm/key').secret!.optional = true }, /the swarm key Secret is optional/],
      ['another Secret mounted than the example shows', b => { agentVolume(b, '/etc/swarm/key').secret!.secretName = 'psk' }, /does not show the Secret psk/],
      ['a usable key in the example', b => {
        const secret = objects(b).find(o => o.file === 'secret-example.yaml' && o.obj.metadata?.name === 'swarm-key')!.obj as ISecret
        secret.stringData = { 'swarm.key': new TextDecoder().decode(generateSwarmKey()) }
      }, /holds a usable swarm key/]
    ]
  },
  {
    name: 'the store is the node\'s /var/lib/swarm, where the swarm CLI run as root on the node looks too',
    async check (bundle) {
      const config = await agentConfig(bundle)
      const found = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), config.dataDir)
      if (found?.volume.hostPath == null) return [`the data dir ${config.dataDir} is not a hostPath volume: the store would be lost with the pod`]
      return found.volume.hostPath.path === DEFAULT_DATA_DIR_ROOT ? [] : [`the store is the node's ${found.volume.hostPath.path}, not ${DEFAULT_DATA_DIR_ROOT}`]
    },
    breaks: [
      ['an emptyDir store', b => { const v = agentVolume(b, '/var/lib/swarm'); v.emptyDir = {}; delete v.hostPath }, /not a hostPath volume/],
      ['a data dir nothing is mounted at', b => { setEnv(b, 'SWARM_DATA_DIR', '/data') }, /the data dir \/data is not a hostPath volume/],
      ['another node directory', b => { agentVolume(b, '/var/lib/swarm').hostPath!.path = '/srv/swarm' }, /the store is the node's \/srv\/swarm/]
    ]
  },
  {
    name: 'the agent has /dev/fuse and mounts the view with Bidirectional propagation, privileged',
    check (bundle) {
      const spec = podSpec(daemonSet(bundle))
      const container = agentContainer(bundle)
      const problems: string[] = []
      const fuse = volumeAt(spec, container, '/dev/fuse')
      if (fuse?.volume.hostPath?.path !== '/dev/fuse' || fuse.volume.hostPath.type !== 'CharDevice') problems.push('/dev/fuse is not the node\'s character device')
      const mountPoint = envValue(container, 'SWARM_MOUNT')
      if (mountPoint == null) return [...problems, 'SWARM_MOUNT is not set']
      const view = volumeAt(spec, container, mountPoint)
      if (view?.volume.hostPath == null) problems.push(`SWARM_MOUNT ${mountPoint} is not a hostPath volume`)
      if (view?.mount.mountPropagation !== 'Bidirectional') problems.push(`the view at ${mountPoint} does not propagate to the node (mountPropagation ${String(view?.mount.mountPropagation)})`)
      if (view?.mount.readOnly === true) problems.push('the view\'s volume is read-only: the agent could not mount on it')
      if (container.securityContext?.privileged !== true) problems.push('the agent is not privileged: Bidirectional propagation and mount(2) need it')
      return problems
    },
    breaks: [
      ['no /dev/fuse', b => { agentContainer(b).volumeMounts = agentContainer(b).volumeMounts!.filter(m => m.mountPath !== '/dev/fuse') }, /\/dev\/fuse is not the node's character device/],
      ['HostToContainer on the agent', b => { agentMount(b, '/mnt/swarm').mountPropagation = 'HostToContainer' }, /does not propagate to the node/],
      ['the view in an emptyDir', b => { const v = agentVolume(b, '/mnt/swarm'); v.emptyDir = {}; delete v.hostPath }, /SWARM_MOUNT \/mnt\/swarm is not a hostPath volume/],
      ['a read-only view volume', b => { agentMount(b, '/mnt/swarm').readOnly = true }, /read-only: the agent could not mount/],
      ['no privileges', b => { agentContainer(b).securityContext!.privileged = false }, /not privileged/],
      ['no SWARM_MOUNT', b => { agentContainer(b).env = agentContainer(b).env!.filter(e => e.name !== 'SWARM_MOUNT') }, /SWARM_MOUNT is not set/]
    ]
  },
  {
    name: 'the inference example reads the same node path with HostToContainer propagation, read-only, unprivileged',
    check (bundle) {
      const agentView = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), envValue(agentContainer(bundle), 'SWARM_MOUNT') ?? '')
      const nodePath = agentView?.volume.hostPath?.path
      if (nodePath == null) return ['the agent mounts no view']
      const spec = podSpec(inference(bundle))
      const problems: string[] = []
      const readers = [...spec.initContainers ?? [], ...spec.containers]
        .flatMap(c => (c.volumeMounts ?? []).map(m => ({ c, m, v: spec.volumes?.find(v => v.name === m.name) })))
        .filter(r => r.v?.hostPath?.path === nodePath)
      if (readers.length === 0) return [`no inference container mounts the node's ${nodePath}`]
      for (const { c, m } of readers) {
        if (m.mountPropagation !== 'HostToContainer') problems.push(`${c.name} mounts ${nodePath} with ${String(m.mountPropagation)}, not HostToContainer: a view mounted later would not appear`)
        if (m.readOnly !== true) problems.push(`${c.name} mounts ${nodePath} writable`)
        if (c.securityContext?.privileged === true) problems.push(`${c.name} is privileged, and needs not be`)
      }
      const server = readers.find(r => r.c.args?.includes('--model') === true)
      const model = server?.c.args?.[server.c.args.indexOf('--model') + 1]
      if (server == null || model == null || !model.startsWith(server.m.mountPath + '/')) problems.push(`the server's --model (${String(model)}) is not under the view`)
      return problems
    },
    breaks: [
      ['another node path', b => { podSpec(inference(b)).volumes!.find(v => v.hostPath != null)!.hostPath!.path = '/mnt/models' }, /no inference container mounts the node's \/mnt\/swarm/],
      ['no propagation', b => { delete inferenceServer(b).volumeMounts![0]!.mountPropagation }, /server mounts \/mnt\/swarm with undefined, not HostToContainer/],
      ['a writable mount', b => { inferenceServer(b).volumeMounts![0]!.readOnly = false }, /server mounts \/mnt\/swarm writable/],
      ['a privileged server', b => { inferenceServer(b).securityContext = { privileged: true } }, /server is privileged/],
      ['a model outside the view', b => { const args = inferenceServer(b).args!; args[args.indexOf('--model') + 1] = '/models/llama-70b' }, /--model \(\/models\/llama-70b\) is not under the view/]
    ]
  },
  {
    name: 'the agent has CPU and memory requests and limits, requests no larger than limits',
    check (bundle) {
      const resources = agentContainer(bundle).resources
      const problems: string[] = []
      for (const [name, parse] of [['cpu', cpu], ['memory', bytes]] as const) {
        const request = parse(resources?.requests?.[name])
        const limit = parse(resources?.limits?.[name])
        if (!(request > 0)) problems.push(`no ${name} request`)
        if (!(limit > 0)) problems.push(`no ${name} limit`)
        if (request > limit) problems.push(`${name} request above its limit`)
      }
      return problems
    },
    breaks: [
      ['no memory limit', b => { delete agentContainer(b).resources!.limits!.memory }, /no memory limit/],
      ['no CPU request', b => { delete agentContainer(b).resources!.requests!.cpu }, /no cpu request/],
      ['a request above its limit', b => { agentContainer(b).resources!.requests!.memory = '4Gi' }, /memory request above its limit/]
    ]
  },
  {
    name: 'the agent runs on GPU nodes and rolls out one node at a time, never two agents on a node',
    check (bundle) {
      const ds = daemonSet(bundle)
      const problems: string[] = []
      if (!(podSpec(ds).tolerations ?? []).some(t => t.key === 'nvidia.com/gpu' && t.effect === 'NoSchedule' && (t.operator === 'Exists' || t.value != null))) problems.push('no toleration for nvidia.com/gpu NoSchedule')
      const rolling = ds.spec?.updateStrategy
      if (rolling?.type !== 'RollingUpdate' || rolling.rollingUpdate?.maxUnavailable == null) problems.push('no RollingUpdate with maxUnavailable')
      if (String(rolling?.rollingUpdate?.maxSurge ?? 0) !== '0') problems.push('maxSurge above 0 would run two agents on one node, sharing its store and mount point')
      if (!((podSpec(ds).terminationGracePeriodSeconds ?? 30) >= 30)) problems.push('terminationGracePeriodSeconds leaves too little time to unmount and close the store')
      return problems
    },
    breaks: [
      ['no GPU toleration', b => { podSpec(daemonSet(b)).tolerations = [] }, /no toleration for nvidia\.com\/gpu/],
      ['surge', b => { daemonSet(b).spec!.updateStrategy!.rollingUpdate!.maxSurge = 1 }, /maxSurge above 0/],
      ['OnDelete updates', b => { daemonSet(b).spec!.updateStrategy = { type: 'OnDelete' } }, /no RollingUpdate with maxUnavailable/],
      ['a short grace period', b => { podSpec(daemonSet(b)).terminationGracePeriodSeconds = 5 }, /too little time/]
    ]
  },
  {
    name: 'the Dockerfile builds with npm ci, the FUSE addon and tsc -b, installs fuse and libfuse2, and its entrypoint runs the CLI\'s agent',
    check (bundle) {
      const stages = dockerStages(bundle.dockerfile)
      const problems: string[] = []
      if (stages.length < 2) problems.push('not a multi-stage build')
      const build = stages.slice(0, -1).flat().filter(i => i.keyword === 'RUN').map(i => i.args).join('\n')
      if (!/\bnpm ci\b/.test(build)) problems.push('the build stage does not run npm ci')
      if (!/\btsc -b\b/.test(build)) problems.push('the build stage does not run tsc -b')
      if (!/\bnpm run build:native -w @swarm\/fuse-kernel\b/.test(build)) problems.push('the build stage does not build the FUSE addon')
      const runtime = stages.at(-1)
      const from = runtime?.[0]?.args ?? ''
      const nodeMajor = Number(/node:(\d+)/.exec(from)?.[1])
      const engine = Number(/(\d+)/.exec(bundle.rootPackageJson.engines?.node ?? '')?.[1])
      if (!(nodeMajor >= engine)) problems.push(`the runtime image ${from} is not a Node ${engine}+ image`)
      const installs = (runtime ?? []).filter(i => i.keyword === 'RUN' && /apt-get install/.test(i.args)).flatMap(i => i.args.split(/\s+/))
      for (const pkg of ['fuse', 'libfuse2']) if (!installs.includes(pkg)) problems.push(`the runtime stage does not apt-get install ${pkg}`)
      const cli = bundle.packageJson.bin?.swarm
      const entrypoint = execForm(last(runtime, 'ENTRYPOINT'))
      if (cli == null) problems.push('package.json has no swarm bin')
      else if (entrypoint?.[0] !== 'node' || entrypoint[1] !== posix.join('/app/agents/swarm', cli) || entrypoint.length !== 2) problems.push(`ENTRYPOINT ${JSON.stringify(entrypoint)} does not run node on /app/agents/swarm/${cli}`)
      const cmd = execForm(last(runtime, 'CMD'))
      if (cmd?.[0] !== 'agent') problems.push(`CMD ${JSON.stringify(cmd)} does not start the agent`)
      const exposed = (runtime ?? []).filter(i => i.keyword === 'EXPOSE').flatMap(i => i.args.split(/\s+/)).map(p => Number(p.split('/')[0]))
      for (const port of agentContainer(bundle).ports ?? []) if (!exposed.includes(port.containerPort)) problems.push(`the image does not EXPOSE ${port.containerPort}`)
      return problems
    },
    breaks: [
      ['no fuse package', b => { b.dockerfile = b.dockerfile.replace(/fuse libfuse2/, 'libfuse2') }, /does not apt-get install fuse$/m],
      ['no libfuse2', b => { b.dockerfile = b.dockerfile.replace(/fuse libfuse2/, 'fuse') }, /does not apt-get install libfuse2/],
      ['an entrypoint on another file', b => { b.dockerfile = b.dockerfile.replace('dist/cli.js"]', 'dist/index.js"]') }, /ENTRYPOINT .* does not run node on \/app\/agents\/swarm\/dist\/cli\.js/],
      ['a shell-form entrypoint', b => { b.dockerfile = b.dockerfile.replace(/^ENTRYPOINT .*$/m, 'ENTRYPOINT node /app/agents/swarm/dist/cli.js') }, /ENTRYPOINT undefined/],
      ['another command', b => { b.dockerfile = b.dockerfile.replace(/^CMD .*$/m, 'CMD ["status"]') }, /CMD \["status"\] does not start the agent/],
      ['no build stage', b => { b.dockerfile = b.dockerfile.replace(/^FROM node:24-bookworm-slim AS build$/m, '') }, /not a multi-stage build/],
      ['no npm ci', b => { b.dockerfile = b.dockerfile.replace('npm ci', 'npm install') }, /does not run npm ci/],
      ['no addon build', b => { b.dockerfile = b.dockerfile.replace('npm run build:native -w @swarm/fuse-kernel', 'true') }, /does not build the FUSE addon/],
      ['an old Node', b => { b.dockerfile = b.dockerfile.replace(/^FROM node:24-bookworm-slim$/m, 'FROM node:22-bookworm-slim') }, /not a Node 24\+ image/],
      ['an unexposed port', b => { b.dockerfile = b.dockerfile.replace('EXPOSE 4001 4002 9464', 'EXPOSE 4001 4002') }, /does not EXPOSE 9464/]
    ]
  },
  {
    name: '.dockerignore keeps host builds out of the image\'s build',
    check (bundle) {
      const patterns = bundle.dockerignore.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
      const problems: string[] = []
      for (const needed of ['**/node_modules', '**/dist', '**/*.tsbuildinfo']) {
        if (!patterns.includes(needed)) problems.push(`.dockerignore does not exclude ${needed}`)
      }
      for (const needed of ['package.json', 'package-lock.json']) {
        if (patterns.includes(needed)) problems.push(`.dockerignore excludes ${needed}, which npm ci needs`)
      }
      return problems
    },
    breaks: [
      ['build info let in', b => { b.dockerignore = b.dockerignore.replace('**/*.tsbuildinfo', '') }, /does not exclude \*\*\/\*\.tsbuildinfo/],
      ['node_modules let in', b => { b.dockerignore = b.dockerignore.replace('**/node_modules', '') }, /does not exclude \*\*\/node_modules/],
      ['the lockfile kept out', b => { b.dockerignore += '\npackage-lock.json\n' }, /excludes package-lock\.json/]
    ]
  }
]

describe('deploy/ and the Dockerfile', () => {
  it('has the manifests it should, each parsing as YAML', async () => {
    const bundle = await loadBundle()
    for (const file of ['kustomization.yaml', 'namespace.yaml', 'daemonset.yaml', 'service-headless.yaml', 'secret-example.yaml', 'inference-example.yaml', 'rollout-gate-example.yaml']) {
      expect(bundle.files[file]?.length ?? 0, file).toBeGreaterThan(0)
    }
  })

  for (const { name, check, breaks } of checks) {
    describe(name, () => {
      it('holds', async () => {
        expect(await check(await loadBundle())).toEqual([])
      })

      for (const [how, breakIt, reason] of breaks) {
        it(`catches ${how}`, async () => {
          const bundle = await loadBundle()
          breakIt(bundle)
          expect((await check(bundle)).join('\n')).toMatch(reason)
        })
      }
    })
  }
})
