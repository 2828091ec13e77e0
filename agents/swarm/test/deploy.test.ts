/**
 * The Kubernetes manifests in deploy/ and the image's Dockerfile: every object is a valid
 * Kubernetes object, and the pieces that must agree do (ports, paths, names, labels), with the
 * agent's own configuration schema and bootstrap parser as the judges of what it will accept.
 *
 * Each check is a function from the parsed files to a list of problems. Every check runs once
 * on the files as they are (no problems) and once on a copy broken in the way the check exists
 * to catch (the problem it must report), so none of them can pass vacuously.
 */

import { readdir, readFile } from 'node:fs/promises'
import { join, posix } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_DATA_DIR_ROOT, ENV_KEYS, loadConfig } from '@swarm/config'
import { parseBootstrapEntry, parseSwarmKey } from '@swarm/p2p'
import { describe, expect, it } from 'vitest'
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Secret } from 'kubernetes-models/v1/Secret'
import { Service } from 'kubernetes-models/v1/Service'
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount'
import { parseAllDocuments } from 'yaml'
import type { Config } from '@swarm/config'
import type { IDaemonSet } from 'kubernetes-models/apps/v1/DaemonSet'
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment'
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
    else if (e.valueFrom?.secretKeyRef != null) env[e.name] = 'secret-value'
  }
  return env
}

async function agentConfig (bundle: Bundle): Promise<Config> {
  return await loadConfig({ env: agentEnvironment(bundle) })
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
    if (pending === '' && (line === '' || line.startsWith('#'))) continue
    if (line.startsWith('#')) continue
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

interface Check {
  name: string
  check: (bundle: Bundle) => Promise<string[]> | string[]
  /** breaks a copy of the files the way this check exists to catch */
  breakIt: (bundle: Bundle) => void
  /** what the check must then report */
  reason: RegExp
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
  'apps/v1 Deployment': Deployment
}

const checks: Check[] = [
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
    breakIt (bundle) {
      const port = agentContainer(bundle).ports![0]! as { containerPort: unknown }
      port.containerPort = 'p2p'
    },
    reason: /containerPort must be integer/
  },
  {
    name: 'kustomization.yaml lists every manifest but the examples, and puts them in one namespace',
    check (bundle) {
      const k = kustomization(bundle)
      const problems: string[] = []
      if (k.namespace == null) problems.push('kustomization.yaml sets no namespace')
      const listed = new Set(k.resources ?? [])
      for (const file of Object.keys(bundle.files)) {
        if (file === 'kustomization.yaml') continue
        const example = file.includes('example')
        if (example && listed.has(file)) problems.push(`${file} is an example (applying it would overwrite real Secrets or deploy a workload of the user's) but is listed`)
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
    breakIt (bundle) { kustomization(bundle).resources = kustomization(bundle).resources!.filter(r => r !== 'service-headless.yaml') },
    reason: /service-headless\.yaml is not listed/
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
    breakIt (bundle) {
      const configMap = only<IConfigMap>(bundle, 'ConfigMap')
      configMap.data = { ...configMap.data, SWARM_CACHESIZE: '1GiB' }
    },
    reason: /SWARM_CACHESIZE is not a variable the agent reads/
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
    breakIt (bundle) { agentContainer(bundle).readinessProbe!.httpGet!.path = '/healthz' },
    reason: /readinessProbe asks \/healthz, not \/readyz/
  },
  {
    name: 'the agent listens on the ports it declares: libp2p and TLS data',
    async check (bundle) {
      const container = agentContainer(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const listenPorts = config.agent.listen.map(a => Number(/\/tcp\/(\d+)/.exec(a)?.[1]))
      const p2p = resolvePort(container, 'p2p')
      if (p2p == null || !listenPorts.includes(p2p)) problems.push(`containerPort p2p (${String(p2p)}) is not among the libp2p listen ports ${listenPorts.join(', ')}`)
      const data = resolvePort(container, 'data')
      if (data !== config.agent.dataPort) problems.push(`containerPort data (${String(data)}) is not the data port ${config.agent.dataPort}`)
      const podIp = container.env?.find(e => e.name === 'SWARM_DATA_HOST')?.valueFrom?.fieldRef?.fieldPath
      if (config.agent.dataHost != null && podIp !== 'status.podIP') problems.push('SWARM_DATA_HOST is set to something other than the pod\'s IP')
      return problems
    },
    breakIt (bundle) { agentContainer(bundle).env!.find(e => e.name === 'SWARM_DATA_PORT')!.value = '4102' },
    reason: /containerPort data \(4002\) is not the data port 4102/
  },
  {
    name: 'SWARM_BOOTSTRAP names the headless Service\'s DNS name and port, which reach the agent\'s libp2p port',
    async check (bundle) {
      const svc = service(bundle)
      const container = agentContainer(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const namespace = kustomization(bundle).namespace ?? svc.metadata?.namespace
      const entries = config.agent.bootstrap.map(parseBootstrapEntry)
      const dns = entries.find(e => e.kind === 'dns')
      const servicePort = svc.spec?.ports?.[0]
      if (dns == null || dns.kind !== 'dns') return ['SWARM_BOOTSTRAP has no dns:<name>:<port> entry']
      if (dns.name !== `${String(svc.metadata?.name)}.${String(namespace)}.svc.cluster.local`) problems.push(`SWARM_BOOTSTRAP names ${dns.name}, the Service is ${String(svc.metadata?.name)}.${String(namespace)}.svc.cluster.local`)
      if (dns.port !== servicePort?.port) problems.push(`SWARM_BOOTSTRAP asks port ${dns.port}, the Service serves ${String(servicePort?.port)}`)
      // a headless Service resolves to pod IPs, so the port dialled must be the container's own
      const target = resolvePort(container, servicePort?.targetPort ?? servicePort?.port)
      if (target !== dns.port) problems.push(`the Service's port ${String(servicePort?.port)} leads to container port ${String(target)}, not the dialled ${dns.port}`)
      const listenPorts = config.agent.listen.map(a => Number(/\/tcp\/(\d+)/.exec(a)?.[1]))
      if (!listenPorts.includes(dns.port)) problems.push(`no libp2p listen address uses port ${dns.port}`)
      return problems
    },
    breakIt (bundle) { agentContainer(bundle).env!.find(e => e.name === 'SWARM_BOOTSTRAP')!.value = 'dns:swarm-headless.default.svc.cluster.local:4001' },
    reason: /SWARM_BOOTSTRAP names swarm-headless\.default\.svc\.cluster\.local/
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
    breakIt (bundle) { service(bundle).spec!.selector = { 'app.kubernetes.io/name': 'swarm', 'app.kubernetes.io/component': 'peer' } },
    reason: /selector does not match the DaemonSet's pod labels/
  },
  {
    name: 'the swarm key Secret is mounted and SWARM_SWARM_KEY_FILE points at its key; the example holds no usable key',
    async check (bundle) {
      const ds = daemonSet(bundle)
      const config = await agentConfig(bundle)
      const problems: string[] = []
      const keyFile = config.agent.swarmKeyFile
      if (keyFile == null) return ['SWARM_SWARM_KEY_FILE is not set: any node could join']
      const found = volumeAt(podSpec(ds), agentContainer(bundle), posix.dirname(keyFile))
      const secretName = found?.volume.secret?.secretName
      if (found == null || secretName == null) return [`nothing mounts a Secret at ${posix.dirname(keyFile)}`]
      if (found.volume.secret?.optional === true) problems.push('the swarm key Secret is optional: without it the agent would start outside the swarm')
      const example = objects(bundle).find(o => o.file === 'secret-example.yaml' && o.obj.kind === 'Secret' && o.obj.metadata?.name === secretName)?.obj as ISecret | undefined
      if (example == null) return [...problems, `secret-example.yaml does not show the Secret ${secretName}`]
      const fileName = posix.basename(keyFile)
      const item = found.volume.secret?.items?.find(i => i.path === fileName)
      const key = item != null ? item.key : fileName
      const placeholder = example.stringData?.[key] ?? (example.data?.[key] != null ? Buffer.from(example.data[key], 'base64').toString() : undefined)
      if (placeholder == null) problems.push(`SWARM_SWARM_KEY_FILE reads ${fileName}, which the Secret ${secretName} has no key for`)
      else {
        try {
          parseSwarmKey(placeholder)
          problems.push('secret-example.yaml holds a usable swarm key: everyone who reads this repository could join')
        } catch {}
      }
      return problems
    },
    breakIt (bundle) { agentContainer(bundle).env!.find(e => e.name === 'SWARM_SWARM_KEY_FILE')!.value = '/etc/swarm/key/psk' },
    reason: /reads psk, which the Secret swarm-key has no key for/
  },
  {
    name: 'the store is the node\'s /var/lib/swarm, where the swarm CLI run as root on the node looks too',
    async check (bundle) {
      const config = await agentConfig(bundle)
      const found = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), config.dataDir)
      if (found?.volume.hostPath == null) return [`the data dir ${config.dataDir} is not a hostPath volume: the store would be lost with the pod`]
      return found.volume.hostPath.path === DEFAULT_DATA_DIR_ROOT ? [] : [`the store is the node's ${found.volume.hostPath.path}, not ${DEFAULT_DATA_DIR_ROOT}`]
    },
    breakIt (bundle) {
      const volume = podSpec(daemonSet(bundle)).volumes!.find(v => v.name === 'data')!
      volume.emptyDir = {}
      delete volume.hostPath
    },
    reason: /not a hostPath volume/
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
    breakIt (bundle) { agentContainer(bundle).volumeMounts!.find(m => m.mountPath === '/mnt/swarm')!.mountPropagation = 'HostToContainer' },
    reason: /does not propagate to the node/
  },
  {
    name: 'the inference example reads the same node path with HostToContainer propagation, read-only, unprivileged',
    check (bundle) {
      const agentView = volumeAt(podSpec(daemonSet(bundle)), agentContainer(bundle), envValue(agentContainer(bundle), 'SWARM_MOUNT') ?? '')
      const nodePath = agentView?.volume.hostPath?.path
      if (nodePath == null) return ['the agent mounts no view']
      const spec = podSpec(inference(bundle))
      const problems: string[] = []
      const readers = spec.containers.flatMap(c => (c.volumeMounts ?? []).map(m => ({ c, m, v: spec.volumes?.find(v => v.name === m.name) })))
        .filter(r => r.v?.hostPath?.path === nodePath)
      if (readers.length === 0) return [`no inference container mounts the node's ${nodePath}`]
      for (const { c, m } of readers) {
        if (m.mountPropagation !== 'HostToContainer') problems.push(`${c.name} mounts ${nodePath} with ${String(m.mountPropagation)}, not HostToContainer: a view mounted later would not appear`)
        if (m.readOnly !== true) problems.push(`${c.name} mounts ${nodePath} writable`)
        if (c.securityContext?.privileged === true) problems.push(`${c.name} is privileged, and needs not be`)
      }
      const server = readers.find(r => r.c.args?.includes('--model'))
      const model = server?.c.args?.[server.c.args.indexOf('--model') + 1]
      if (server == null || model == null || !model.startsWith(server.m.mountPath + '/')) problems.push(`the server's --model (${String(model)}) is not under the view`)
      return problems
    },
    breakIt (bundle) { podSpec(inference(bundle)).volumes!.find(v => v.name === 'models')!.hostPath!.path = '/mnt/models' },
    reason: /no inference container mounts the node's \/mnt\/swarm/
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
    breakIt (bundle) { delete agentContainer(bundle).resources!.limits!.memory },
    reason: /no memory limit/
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
    breakIt (bundle) { daemonSet(bundle).spec!.updateStrategy!.rollingUpdate!.maxSurge = 1 },
    reason: /maxSurge above 0/
  },
  {
    name: 'the Dockerfile builds with npm ci and tsc -b, installs fuse and libfuse2, and its entrypoint runs the CLI\'s agent',
    check (bundle) {
      const stages = dockerStages(bundle.dockerfile)
      const problems: string[] = []
      if (stages.length < 2) problems.push('not a multi-stage build')
      const build = stages.slice(0, -1).flat().filter(i => i.keyword === 'RUN').map(i => i.args).join('\n')
      if (!/\bnpm ci\b/.test(build)) problems.push('the build stage does not run npm ci')
      if (!/\btsc -b\b/.test(build)) problems.push('the build stage does not run tsc -b')
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
    breakIt (bundle) { bundle.dockerfile = bundle.dockerfile.replace(/fuse libfuse2/, 'libfuse2') },
    reason: /does not apt-get install fuse$/m
  },
  {
    name: '.dockerignore keeps host builds out of the image\'s build',
    check (bundle) {
      const patterns = bundle.dockerignore.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
      const problems: string[] = []
      for (const needed of ['**/node_modules', '**/dist', '**/*.tsbuildinfo']) {
        if (!patterns.includes(needed)) problems.push(`.dockerignore does not exclude ${needed}`)
      }
      if (patterns.some(p => /^!?package(-lock)?\.json$/.test(p) && !p.startsWith('!'))) problems.push('.dockerignore excludes package.json or package-lock.json, which npm ci needs')
      return problems
    },
    breakIt (bundle) { bundle.dockerignore = bundle.dockerignore.replace('**/*.tsbuildinfo', '') },
    reason: /does not exclude \*\*\/\*\.tsbuildinfo/
  }
]

describe('deploy/ and the Dockerfile', () => {
  it('has the manifests it should, each parsing as YAML', async () => {
    const bundle = await loadBundle()
    for (const file of ['kustomization.yaml', 'namespace.yaml', 'daemonset.yaml', 'service-headless.yaml', 'secret-example.yaml', 'inference-example.yaml']) {
      expect(bundle.files[file]?.length ?? 0, file).toBeGreaterThan(0)
    }
  })

  for (const { name, check, breakIt, reason } of checks) {
    describe(name, () => {
      it('holds', async () => {
        expect(await check(await loadBundle())).toEqual([])
      })

      it('fails when broken', async () => {
        const bundle = await loadBundle()
        breakIt(bundle)
        expect((await check(bundle)).join('\n')).toMatch(reason)
      })
    })
  }
})
