/**
 * Captures what Debian's Ironic sends to a ramdisk agent on a direct deploy of a whole-disk raw image with a config
 * drive: a real Ironic (test/helpers/ironic-server.ts) and a minimal stand-in agent on 127.0.0.1 (lookup, a heartbeat
 * every 0.5 s, POST /v1/commands/ and GET /v1/commands/ answered as ironic-python-agent does), every request Ironic makes
 * logged with its body (the agent token redacted, the config drive decoded: gzip+base64 of an ISO, listed by isoinfo).
 *
 * Cases: bios (root_device hint set), uefi (install_bootloader), oob (driver_info deploy_forces_oob_reboot), fail
 * (write_image FAILED). Run: npx esbuild scripts/ironic-agent-capture.ts --bundle --platform=node --format=esm
 * --outfile=build/ironic/capture.mjs && node build/ironic/capture.mjs [case…] > capture.json
 */
import { execFileSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, request as httpRequest, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { makeImage, sha, startImageServer } from '../test/helpers/image-server.js'
import { startIronic, type IronicServer, type Json } from '../test/helpers/ironic-server.js'

interface Logged { tMs: number, from: string, method?: string, url?: string, status?: number, body?: unknown, note?: string }

/**
 * The log's shape: a command's `node` and `ports` (the whole node object, every time) shortened to the fields an agent
 * reads, and GET /v1/commands/ answers to names and statuses; the first execute_deploy_step's params are kept whole.
 */
function compact (body: unknown, keepWhole: boolean): unknown {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return body
  const out: Json = { ...(body as Json) }
  if (Array.isArray(out.commands)) {
    out.commands = (out.commands as Json[]).map((c) => `${String(c.command_name)}: ${String(c.command_status)}`)
  }
  const params = out.params as Json | undefined
  if (params !== undefined && !keepWhole) {
    const node = params.node as Json | undefined
    out.params = {
      ...params,
      ...(node === undefined
        ? {}
        : {
            node: `<node ${String(node.uuid)}: ${Object.keys(node).length} fields; properties ${JSON.stringify(node.properties)}; ` +
              `driver_info ${JSON.stringify(node.driver_info)}; provision_state ${String(node.provision_state)}>`,
          }),
      ...(params.ports === undefined ? {} : { ports: `<${(params.ports as Json[]).map((p) => String(p.address)).join(', ')}>` }),
    }
  }
  if (out.command_params !== undefined) out.command_params = '<as sent>'
  return out
}

interface CaseSpec {
  name: string
  bootMode: 'bios' | 'uefi'
  properties?: Json
  driverInfo?: Json
  fail?: boolean
}

const CASES: CaseSpec[] = [
  { name: 'bios', bootMode: 'bios', properties: { root_device: { serial: 'X' } } },
  { name: 'uefi', bootMode: 'uefi' },
  { name: 'oob', bootMode: 'bios', driverInfo: { deploy_forces_oob_reboot: true } },
  { name: 'fail', bootMode: 'bios', fail: true },
]

const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

/** Replaces the token and the long config drive in a copy of a body; the config drive is decoded and listed once. */
function redact (value: unknown, token: string, seen: { configdrive?: Json }): unknown {
  if (typeof value === 'string') {
    if (token !== '' && value.includes(token)) return value.split(token).join('<TOKEN>')
    if (value.length > 200 && /^H4sI/.test(value)) { // base64 of gzip's magic 1f 8b 08
      seen.configdrive ??= describeConfigDrive(value)
      return `<configdrive: ${value.length} base64 chars, gzip of a ${String(seen.configdrive.isoBytes)}-byte ISO>`
    }
    return value
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, token, seen))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, token, seen)]))
  }
  return value
}

function describeConfigDrive (b64: string): Json {
  const iso = gunzipSync(Buffer.from(b64, 'base64'))
  const dir = mkdtempSync(join(tmpdir(), 'configdrive-'))
  try {
    const file = join(dir, 'cd.iso')
    writeFileSync(file, iso)
    const info = execFileSync('isoinfo', ['-d', '-i', file], { encoding: 'utf8' })
    const files = execFileSync('isoinfo', ['-f', '-R', '-i', file], { encoding: 'utf8' }).trim().split('\n')
    const contents: Record<string, string> = {}
    for (const f of files) {
      if (!/\.json$|user_data$/.test(f)) continue
      contents[f] = execFileSync('isoinfo', ['-R', '-i', file, '-x', f], { encoding: 'utf8' })
    }
    return { isoBytes: iso.length, isoinfo: info.trim().split('\n'), files, contents }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function runCase (ironic: IronicServer, imageUrl: string, imageSha: string, spec: CaseSpec, caseIndex: number): Promise<Json> {
  const log: Logged[] = []
  const started = performance.now()
  const at = (): number => Math.round(performance.now() - started)
  const seen: { configdrive?: Json } = {}
  let token = ''
  const commands: Json[] = []
  const mac = `52:54:00:00:10:${String(caseIndex).padStart(2, '0')}`

  // The stand-in agent's API.
  const agent: Server = createServer((req, res) => {
    let raw = ''
    req.on('data', (c: Buffer) => { raw += c.toString() })
    req.on('end', () => {
      const body = raw === '' ? undefined : JSON.parse(raw) as Json
      const reply = (status: number, payload: unknown): void => {
        const whole = body?.name === 'deploy.execute_deploy_step' && !log.some((l) => l.from === 'ironic→agent' && l.body !== undefined &&
          (l.body as Json).name === 'deploy.execute_deploy_step')
        const url = redact(req.url, token, seen) as string
        log.push({ tMs: at(), from: 'ironic→agent', method: req.method, url, body: compact(redact(body, token, seen), whole) })
        log.push({ tMs: at(), from: 'agent reply', status, body: compact(redact(payload, token, seen), false) })
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload))
      }
      if (req.method === 'GET' && req.url?.startsWith('/v1/commands')) { reply(200, { commands }); return }
      if (req.method !== 'POST' || req.url?.startsWith('/v1/commands') !== true || body === undefined) {
        reply(404, { faultstring: 'not found' })
        return
      }
      const name = String(body.name)
      const params = (body.params ?? {}) as Json
      const result: Json = {
        id: randomUUID(),
        command_name: name.slice(name.indexOf('.') + 1),
        command_params: params,
        command_status: 'SUCCEEDED',
        command_result: null,
        command_error: null,
      }
      switch (name) {
        case 'deploy.get_deploy_steps':
          result.command_result = {
            deploy_steps: {
              GenericHardwareManager: [
                { step: 'write_image', priority: 0, interface: 'deploy', reboot_requested: false, argsinfo: null },
              ],
            },
            hardware_manager_version: { generic_hardware_manager: '1.1' },
          }
          break
        case 'deploy.execute_deploy_step': {
          result.command_status = 'RUNNING'
          const step = params.step
          setTimeout(() => {
            if (spec.fail === true) {
              result.command_status = 'FAILED'
              result.command_error = {
                type: 'ImageWriteError',
                code: 500,
                message: 'Error writing image to device',
                details: 'Writing image to device /dev/sda failed with exit code 1. stdout: . stderr: no space left.',
              }
            } else {
              result.command_status = 'SUCCEEDED'
              result.command_result = { deploy_result: null, deploy_step: step }
            }
          }, 1500)
          break
        }
        case 'standby.get_partition_uuids':
          result.command_result = { 'root uuid': '0x1234abcd', 'efi system partition uuid': null, partitions: {} }
          break
        case 'image.install_bootloader':
          result.command_status = 'RUNNING'
          setTimeout(() => { result.command_status = 'SUCCEEDED' }, 500)
          break
        case 'log.collect_system_logs':
          result.command_result = { system_logs: gzipTarBase64() }
          break
        default:
          break
      }
      commands.push(result)
      reply(200, result)
    })
  })
  await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve))
  const callbackUrl = `http://127.0.0.1:${(agent.address() as AddressInfo).port}`

  const instanceInfo: Json = {
    image_source: imageUrl,
    image_os_hash_algo: 'sha256',
    image_os_hash_value: imageSha,
    image_disk_format: 'raw',
    root_gb: 1,
    capabilities: { boot_mode: spec.bootMode },
  }
  const uuid = await ironic.createNode({
    name: `capture-${spec.name}`,
    macs: [mac],
    instanceInfo,
    properties: spec.properties ?? {},
    driverInfo: spec.driverInfo ?? {},
  })
  await ironic.deploy(uuid, {
    meta_data: { uuid: 'c0ffee00-0000-4000-8000-000000000001', hostname: 'capture-host', public_keys: { default: 'ssh-ed25519 AAAA test' } },
    user_data: '#cloud-config\nhostname: capture-host\n',
    network_data: { links: [], networks: [], services: [] },
  })
  await ironic.waitForState(uuid, ['wait call-back'], 30_000)

  const lookup = await ironic.lookup([mac])
  const issued = (lookup.json?.config as Json | undefined)?.agent_token
  token = typeof issued === 'string' ? issued : ''
  log.push({ tMs: at(), from: 'agent→ironic', method: 'GET', url: `/v1/lookup?addresses=${mac}`, status: lookup.status,
    body: redact(lookup.json, token, seen) })

  let final: Json = {}
  for (let i = 0; i < 120; i++) {
    const hb = await ironic.heartbeat(uuid, { callback_url: callbackUrl, agent_token: token, agent_version: '9.0.0' })
    if (i < 2 || hb.status !== 202) {
      log.push({ tMs: at(), from: 'agent→ironic', method: 'POST', url: `/v1/heartbeat/${uuid}`, status: hb.status, body: hb.json })
    }
    final = await ironic.node(uuid)
    if (final.provision_state === 'active' || final.provision_state === 'deploy failed') break
    await sleep(500)
  }
  log.push({ tMs: at(), from: 'end', note: `provision_state ${String(final.provision_state)}` })
  const after = await ironic.heartbeat(uuid, { callback_url: callbackUrl, agent_token: token, agent_version: '9.0.0' })
  log.push({ tMs: at(), from: 'agent→ironic (after the end)', status: after.status, body: after.json })
  agent.closeAllConnections()
  await new Promise<void>((resolve) => agent.close(() => { resolve() }))
  return {
    case: spec.name,
    provision_state: final.provision_state,
    last_error: final.last_error,
    power_state: final.power_state,
    driver_internal_info: redact(final.driver_internal_info, token, seen),
    instance_info: redact(final.instance_info, token, seen),
    configdrive: seen.configdrive,
    log,
  }
}

/** A tiny tar.gz, base64 (what collect_system_logs answers). */
function gzipTarBase64 (): string {
  const dir = mkdtempSync(join(tmpdir(), 'logs-'))
  try {
    writeFileSync(join(dir, 'journal.txt'), 'agent log\n')
    return execFileSync('tar', ['-czf', '-', '-C', dir, 'journal.txt']).toString('base64')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const wanted = process.argv.slice(2)
const image = makeImage(1024 * 1024)
const images = await startImageServer({ image })
// What the conductor itself asks of the image URL (the image server records headers only): a logging proxy in front.
const imageRequests: string[] = []
const imageProxy = createServer((req, res) => {
  imageRequests.push(`${String(req.method)} ${String(req.url)} (${String(req.headers['user-agent'])})`)
  const upstream = httpRequest(images.url(req.url), { method: req.method, headers: req.headers }, (up) => {
    res.writeHead(up.statusCode ?? 502, up.headers)
    up.pipe(res)
  })
  req.pipe(upstream)
})
await new Promise<void>((resolve) => imageProxy.listen(0, '127.0.0.1', resolve))
const imageUrl = `http://127.0.0.1:${(imageProxy.address() as AddressInfo).port}/disk.raw`
const ironic = await startIronic({ callbackTimeoutS: 120 })
const results: Json[] = []
try {
  for (const [i, spec] of CASES.entries()) {
    if (wanted.length > 0 && !wanted.includes(spec.name)) continue
    results.push(await runCase(ironic, imageUrl, sha('sha256', image), spec, i))
  }
  results.push({ imageRequests })
} finally {
  await ironic.stop()
  imageProxy.closeAllConnections()
  await new Promise<void>((resolve) => imageProxy.close(() => { resolve() }))
  await images.close()
}
console.log(JSON.stringify(results, null, 2))
