/**
 * A real Ironic (Debian 12's ironic-api/ironic-conductor, 21.4.x) on 127.0.0.1 for the tests: one `/usr/bin/ironic`
 * process (API and conductor in one, `rpc_transport = none`), noauth, a sqlite database copied from a template cached in
 * build/ironic/ (made once per Ironic package version by `ironic-dbsync create_schema`), and the test-only hardware type
 * of test/fixtures/ironic-hw (fake-hardware that also allows the `noop` management interface, without which a direct
 * deploy cannot finish: fake management refuses the boot device `disk`). Nodes are driven over the REST API
 * (`X-OpenStack-Ironic-API-Version: latest`): the `baremetal` CLI costs 1–1.4 s a call.
 *
 * The settings are /work/shared/reference/ironic.md's; callers stop the server (t.teardown(ironic.stop)). The process
 * also gets SIGTERM from the kernel if this Node process dies first (PR_SET_PDEATHSIG), and SIGKILL on Node's exit.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { freePort } from './free-port.js'

/** Debian's Python (a pyenv `python3` may come first on PATH) and Ironic's entry points. */
const PYTHON = '/usr/bin/python3'
const IRONIC = '/usr/bin/ironic'
const IRONIC_DBSYNC = '/usr/bin/ironic-dbsync'
/** The package whose version keys the cached schema template. */
const IRONIC_PACKAGE = 'python3-ironic'

/** The test-only hardware type (test/fixtures/ironic-hw), and the interfaces a node uses with it. */
export const HARDWARE_TYPE = 'byoi-fake-hardware'
export const NODE_INTERFACES = {
  boot_interface: 'fake',
  deploy_interface: 'direct',
  management_interface: 'noop',
  network_interface: 'noop',
  power_interface: 'fake',
} as const

/** The API version an agent speaks (ironic-python-agent's; below 1.62 no token, without the header lookup is 404). */
export const AGENT_API_VERSION = '1.68'

export type Json = Record<string, unknown>

export interface IronicResponse {
  status: number
  /** The body parsed as JSON, or null when empty or not JSON. */
  json: Json | null
  text: string
}

export interface CreateNodeOptions {
  name?: string
  /** One port per MAC (the addresses an agent reports in its lookup). */
  macs: string[]
  instanceInfo: Json
  properties?: Json
  driverInfo?: Json
  /** Any other node field (e.g. another interface), sent as is in the POST. */
  fields?: Json
}

export interface IronicServer {
  /** http://127.0.0.1:PORT (the API root; `${url}/v1` is the v1 API). */
  url: string
  pid: number
  /** The server's directory (config, database, log). */
  dir: string
  /**
   * Any request, with `X-OpenStack-Ironic-API-Version: apiVersion ?? 'latest'` (null: no such header, Ironic's minimum
   * version); never throws on an HTTP status.
   */
  request: (method: string, path: string, options?: { body?: unknown, apiVersion?: string | null }) => Promise<IronicResponse>
  /** A node (with a port per MAC) taken through `manage` and `provide` to `available`; resolves to its UUID. */
  createNode: (options: CreateNodeOptions) => Promise<string>
  /** `PUT /v1/nodes/{uuid}/states/provision` (202 expected), with any extra body fields (configdrive, …). */
  setProvisionState: (uuid: string, target: string, extra?: Json) => Promise<void>
  /** Provision state `active` with the configdrive (a JSON one is built into an ISO by the conductor); returns at 202. */
  deploy: (uuid: string, configdrive?: string | Json) => Promise<void>
  /** Provision state `deleted` (undeploy, or out of `deploy failed`); returns at 202. */
  undeploy: (uuid: string) => Promise<void>
  /** GET /v1/nodes/{uuid}. */
  node: (uuid: string) => Promise<Json>
  /**
   * Polls the node (every 100 ms) until its provision_state is one of `states` and no conductor task holds it; throws at the timeout, or at
   * once on a `… failed` state not in `states` (with the node's last_error and the tail of Ironic's log).
   */
  waitForState: (uuid: string, states: string[], timeoutMs: number) => Promise<Json>
  /** The agent's lookup: `GET /v1/lookup?addresses=…` at the agent's API version. */
  lookup: (macs: string[]) => Promise<IronicResponse>
  /** The agent's heartbeat: `POST /v1/heartbeat/{uuid}` at the agent's API version (202 expected). */
  heartbeat: (uuid: string, body: { callback_url: string, agent_token: string, agent_version?: string }) => Promise<IronicResponse>
  /** Ironic's log so far (kept after stop), with the process's own stderr (a start-up failure before logging). */
  logText: () => string
  /** SIGTERM by pid, SIGKILL after the grace period; resolves when the process has exited (and its dir is removed). */
  stop: () => Promise<void>
}

export interface IronicServerOptions {
  /** Where the server's dir is made (a fresh mkdtemp under it, removed by stop()); default os.tmpdir(). */
  tmpDir?: string
  /** `[conductor] deploy_callback_timeout`: seconds a node may wait for the agent (0: forever). Default 60. */
  callbackTimeoutS?: number
  /** `[conductor] check_provision_state_interval`: how often that timeout is checked. Default 1 s. */
  checkProvisionStateIntervalS?: number
  /** `[agent] command_wait_interval`: between polls of an agent's async command (default 6 s in Ironic). Default 1 s. */
  commandWaitIntervalS?: number
  /** More settings, merged over the defaults: `{ section: { option: value } }`. */
  config?: Record<string, Record<string, string | number | boolean>>
  /** Ironic's debug logging (on by default: the log explains failures). */
  debug?: boolean
  readyTimeoutMs?: number
  /** After SIGTERM, how long to wait before SIGKILL. Default 5 s. */
  stopGraceMs?: number
  /**
   * More environment for the Ironic process, over this one's (e.g. `http_proxy` and `no_proxy`: the e2e case sends the
   * conductor's image HEAD through a proxy that maps the guest's address of the image server to 127.0.0.1).
   */
  env?: Record<string, string>
}

/** The repository: the folder above this file holding the Makefile (from test/helpers or dist/test/helpers). */
function repoRoot (): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'Makefile')) && existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) throw new Error('no repository root above test/helpers')
  }
}


const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

function renderConfig (sections: Record<string, Record<string, string | number | boolean>>): string {
  return Object.entries(sections)
    .map(([name, options]) => `[${name}]\n${Object.entries(options).map(([k, v]) => `${k} = ${String(v)}`).join('\n')}\n`)
    .join('\n')
}

function mergeConfig (
  base: Record<string, Record<string, string | number | boolean>>,
  over: Record<string, Record<string, string | number | boolean>> = {},
): Record<string, Record<string, string | number | boolean>> {
  const merged = { ...base }
  for (const [section, options] of Object.entries(over)) merged[section] = { ...merged[section], ...options }
  return merged
}

/** The environment of Ironic's processes: the test hardware type importable, no .pyc written into the repository. */
function ironicEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const fixtures = join(repoRoot(), 'test/fixtures/ironic-hw')
  return { ...process.env, PYTHONPATH: fixtures, PYTHONDONTWRITEBYTECODE: '1', ...extra }
}

/**
 * build/ironic/schema-<version>.sqlite: an empty Ironic database at the installed package's schema, made once by
 * `ironic-dbsync create_schema` (2–6 s) and copied per server. Made under a temporary name and renamed into place, so
 * two test files starting at once never see half a template.
 */
export async function schemaTemplate (): Promise<{ path: string, createdMs: number | null }> {
  const { stdout } = await promisify(execFile)('dpkg-query', ['-W', '-f=${Version}', IRONIC_PACKAGE])
  const version = stdout.trim().replace(/[^A-Za-z0-9.+-]/g, '_')
  if (version === '') throw new Error(`${IRONIC_PACKAGE} is not installed (make deps)`)
  const cache = join(repoRoot(), 'build/ironic')
  const template = join(cache, `schema-${version}.sqlite`)
  if (existsSync(template)) return { path: template, createdMs: null }
  mkdirSync(cache, { recursive: true })
  const work = mkdtempSync(join(cache, 'schema-'))
  const started = performance.now()
  try {
    const conf = join(work, 'ironic.conf')
    writeFileSync(conf, renderConfig({
      DEFAULT: { use_stderr: true, state_path: work, tempdir: work },
      database: { connection: `sqlite:///${join(work, 'ironic.sqlite')}` },
    }))
    await promisify(execFile)(IRONIC_DBSYNC, ['--config-file', conf, 'create_schema'], { env: ironicEnv() })
    renameSync(join(work, 'ironic.sqlite'), template)
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
  return { path: template, createdMs: performance.now() - started }
}

/**
 * Runs `/usr/bin/ironic --config-file F` under Debian's python with PR_SET_PDEATHSIG = SIGTERM (kept across execve),
 * so the process never outlives this Node process even when it is killed without running its exit handlers.
 */
function spawnIronic (conf: string, env: Record<string, string> | undefined): ChildProcess {
  const launcher = [
    'import ctypes, os, signal, sys',
    'libc = ctypes.CDLL(None, use_errno=True)',
    'libc.prctl(1, signal.SIGTERM)', // PR_SET_PDEATHSIG
    'os.getppid() == int(sys.argv[1]) or sys.exit("parent already gone")',
    'os.execv(sys.argv[2], sys.argv[2:])',
  ].join('\n')
  return spawn(PYTHON, ['-c', launcher, String(process.pid), IRONIC, '--config-file', conf], {
    env: ironicEnv(env),
    stdio: ['ignore', 'ignore', 'pipe'],
  })
}

export async function startIronic (options: IronicServerOptions = {}): Promise<IronicServer> {
  const { path: template } = await schemaTemplate()
  const dir = mkdtempSync(join(options.tmpDir ?? tmpdir(), 'ironic-'))
  for (const sub of ['state', 'tmp', 'http', 'deploy-logs', 'certificates', 'locks']) mkdirSync(join(dir, sub))
  const database = join(dir, 'ironic.sqlite')
  copyFileSync(template, database)
  const log = join(dir, 'ironic.log')
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const config = mergeConfig({
    DEFAULT: {
      auth_strategy: 'noauth',
      host: '127.0.0.1', // the conductor's name
      rpc_transport: 'none', // API and conductor in this one process
      debug: options.debug ?? true,
      use_stderr: false,
      log_file: log,
      state_path: join(dir, 'state'),
      tempdir: join(dir, 'tmp'),
      enabled_hardware_types: HARDWARE_TYPE,
      enabled_boot_interfaces: 'fake',
      enabled_deploy_interfaces: 'direct',
      enabled_management_interfaces: 'noop',
      enabled_power_interfaces: 'fake',
      enabled_network_interfaces: 'noop',
      enabled_bios_interfaces: 'no-bios',
      enabled_console_interfaces: 'no-console',
      enabled_inspect_interfaces: 'no-inspect',
      enabled_raid_interfaces: 'no-raid',
      enabled_rescue_interfaces: 'no-rescue',
      enabled_storage_interfaces: 'noop',
      enabled_vendor_interfaces: 'no-vendor',
      default_deploy_interface: 'direct',
    },
    api: { host_ip: '127.0.0.1', port, api_workers: 1 },
    database: { connection: `sqlite:///${database}` },
    dhcp: { dhcp_provider: 'none' },
    conductor: {
      automated_clean: false, // manage → provide → available at once; undeploy without cleaning
      deploy_callback_timeout: options.callbackTimeoutS ?? 60,
      check_provision_state_interval: options.checkProvisionStateIntervalS ?? 1,
      sync_power_state_interval: 0, // no power-state sync loop (the fake power interface has nothing to sync)
      heartbeat_interval: 5, // the conductor's own liveness in the database
    },
    agent: {
      image_download_source: 'http', // the agent downloads image_source itself
      command_wait_interval: options.commandWaitIntervalS ?? 1,
      post_deploy_get_power_state_retries: 0, // else 30 s waiting for a power-off the fake power interface never sees
      deploy_logs_local_path: join(dir, 'deploy-logs'),
      certificates_path: join(dir, 'certificates'),
    },
    deploy: { http_url: `http://127.0.0.1:${port}/nothing-here`, http_root: join(dir, 'http') },
    // Without it every deploy fails: "Couldn't get the URL of the Ironic API service … keystone catalog".
    service_catalog: { endpoint_override: url },
    oslo_concurrency: { lock_path: join(dir, 'locks') },
  }, options.config)
  const conf = join(dir, 'ironic.conf')
  writeFileSync(conf, renderConfig(config))

  const child = spawnIronic(conf, options.env)
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => { stderr += c.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => { resolve() }))
  const killOnExit = (): void => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') }
  process.once('exit', killOnExit)
  let logKept: string | null = null
  const logText = (): string => {
    if (logKept !== null) return logKept
    let text = ''
    try { text = readFileSync(log, 'utf8') } catch { /* not written yet */ }
    return stderr === '' ? text : `${text}\n--- stderr ---\n${stderr}`
  }
  let stopping: Promise<void> | null = null
  const stop = async (): Promise<void> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM') // by pid: ours
        const timer = setTimeout(() => { child.kill('SIGKILL') }, options.stopGraceMs ?? 5_000)
        await exited
        clearTimeout(timer)
      }
      process.removeListener('exit', killOnExit)
      logKept = logText()
      rmSync(dir, { recursive: true, force: true })
    })()
    await stopping
  }

  const request = async (method: string, path: string, opts: { body?: unknown, apiVersion?: string | null } = {}): Promise<IronicResponse> => {
    const headers: Record<string, string> = {}
    if (opts.apiVersion !== null) headers['X-OpenStack-Ironic-API-Version'] = opts.apiVersion ?? 'latest'
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
    const res = await fetch(`${url}${path}`, { method, headers, body: opts.body === undefined ? null : JSON.stringify(opts.body) })
    const text = await res.text()
    let json: Json | null = null
    try { json = text === '' ? null : JSON.parse(text) as Json } catch { /* not JSON */ }
    return { status: res.status, json, text }
  }
  const expect = async (status: number, method: string, path: string, body?: unknown): Promise<Json | null> => {
    const res = await request(method, path, { body })
    if (res.status !== status) throw new Error(`Ironic: ${method} ${path} answered ${res.status} (${status} expected): ${res.text}`)
    return res.json
  }

  try {
    const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000)
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`ironic exited (${child.exitCode ?? child.signalCode})`)
      if (Date.now() > deadline) throw new Error('ironic did not answer GET /v1 in time')
      try {
        if ((await request('GET', '/v1')).status === 200) break
      } catch { /* not listening yet */ }
      await sleep(100)
    }
  } catch (err) {
    const text = logText()
    await stop()
    throw new Error(`${(err as Error).message}; log tail:\n${text.slice(-4000)}`, { cause: err })
  }

  const node = async (uuid: string): Promise<Json> => (await expect(200, 'GET', `/v1/nodes/${uuid}`)) ?? {}
  const waitForState = async (uuid: string, states: string[], timeoutMs: number): Promise<Json> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const current = await node(uuid)
      const state = String(current.provision_state)
      // A conductor task still holding the node (`reservation`) may not have finished writing it: a timed-out deploy is
      // `deploy failed` before the worker that sets its last_error has run.
      if (states.includes(state) && current.reservation === null) return current
      if (state.endsWith('failed') && !states.includes(state)) {
        throw new Error(`node ${uuid} is ${state} (waiting for ${states.join('|')}): ${String(current.last_error)}\n${logText().slice(-4000)}`)
      }
      if (Date.now() > deadline) {
        throw new Error(`node ${uuid} still ${state} after ${timeoutMs} ms (waiting for ${states.join('|')}): ${String(current.last_error)}`)
      }
      await sleep(100)
    }
  }
  const setProvisionState = async (uuid: string, target: string, extra: Json = {}): Promise<void> => {
    await expect(202, 'PUT', `/v1/nodes/${uuid}/states/provision`, { target, ...extra })
  }
  const createNode = async (o: CreateNodeOptions): Promise<string> => {
    const created = await expect(201, 'POST', '/v1/nodes', {
      ...(o.name === undefined ? {} : { name: o.name }),
      driver: HARDWARE_TYPE,
      ...NODE_INTERFACES,
      instance_info: o.instanceInfo,
      properties: o.properties ?? {},
      driver_info: o.driverInfo ?? {},
      ...o.fields,
    })
    const uuid = String(created?.uuid)
    for (const address of o.macs) await expect(201, 'POST', '/v1/ports', { node_uuid: uuid, address })
    await setProvisionState(uuid, 'manage')
    await waitForState(uuid, ['manageable'], 30_000)
    await setProvisionState(uuid, 'provide')
    await waitForState(uuid, ['available'], 30_000)
    return uuid
  }

  return {
    url,
    pid: child.pid ?? 0,
    dir,
    request,
    createNode,
    setProvisionState,
    deploy: async (uuid, configdrive) => { await setProvisionState(uuid, 'active', configdrive === undefined ? {} : { configdrive }) },
    undeploy: async (uuid) => { await setProvisionState(uuid, 'deleted') },
    node,
    waitForState,
    lookup: async (macs) => await request('GET', `/v1/lookup?addresses=${macs.map(encodeURIComponent).join(',')}`, { apiVersion: AGENT_API_VERSION }),
    heartbeat: async (uuid, body) => await request('POST', `/v1/heartbeat/${uuid}`, {
      apiVersion: AGENT_API_VERSION,
      body: { agent_version: '9.0.0', ...body },
    }),
    logText,
    stop,
  }
}
