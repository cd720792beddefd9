/**
 * One e2e case, the way a customer's install goes: a virtual disk, the image served on 127.0.0.1,
 * the rescue image booted in QEMU, the install/start payload POSTed to the agent's API and its
 * events followed, the VM powered off; then the disk checked from the host, and booted by itself.
 */
import { randomBytes, randomInt } from 'node:crypto'
import { existsSync, promises as fs } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AgentClient, type AgentEvent, type InstallStatus } from './agent-client.js'
import { bootInstalledDisk, expectNoBoot, MOTD_LINE, type BootReport } from './boot-checks.js'
import type { E2eCase } from './cases.js'
import { compareDataRegion, isZero, readConfigDrive, run, sgdiskVerify, sha256 } from './disk-checks.js'
import { startImageServer } from './image-server.js'
import { QemuVm } from './qemu-vm.js'

/** The repository: the folder above this file holding the Makefile (from test/e2e or dist/test/e2e). */
export function repoRoot (): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'Makefile')) && existsSync(join(dir, 'package.json'))) return dir
    if (dirname(dir) === dir) throw new Error('no repository root above test/e2e')
  }
}

export const MiB = 1024 * 1024
/** The guest-side address of the image server's forward (QEMU user network, 10.0.2.0/24). */
const IMAGE_HOST = '10.0.2.100'
const API_PORT = 8080
const RESCUE_BOOT_TIMEOUT_MS = 180_000
const INSTALL_TIMEOUT_MS = 30 * 60_000
const BOOT_TIMEOUT_MS = 240_000
/** The disk's name in the rescue system, before the partition number (devtmpfs names, as the kernel gives them). */
const GUEST_DISK_NAMES: Record<E2eCase['bus'], string> = { 'virtio': 'vda', 'virtio-4k': 'vda', 'nvme': 'nvme0n1p', 'sata': 'sda' }

export interface Check { name: string; ok: boolean; detail: string }

export interface CaseReport {
  name: string
  ok: boolean
  error?: string
  /** Seconds: rescue power-on to /health answering, the install, host checks, each boot, the whole case. */
  timings: { rescueToApi?: number; install?: number; hostChecks?: number; boots: Record<string, number>; total: number
    /** The lifecycle case's phases, in order (install A, bake boot, capture, install B, boot B). */
    phases?: Record<string, number> }
  result?: { state: string; code: string; message: string }
  /** The agent's `note` events, in order (the config-2 mount check's among them). */
  notes: string[]
  checks: Check[]
  boots: BootReport[]
  dir: string
}

/** What a caller sees while a case runs (the e2e runner prints it tersely, the demo in full). */
export interface CaseObserver {
  phase: (text: string) => void
  event?: (event: AgentEvent) => void
  rescueConsole?: (line: string) => void
  bootConsole?: (line: string) => void
  check?: (check: Check) => void
  /** After the host checks of an installed disk, before it boots (the demo shows its partitions). */
  installed?: (disk: string) => Promise<void>
}

export interface RunCaseOptions {
  /** Keep the installed disk of a passing case (it is removed by default: up to 1.5 GiB of data). */
  keepDisk?: boolean
  /** More rescue kernel command line, e.g. byoi.memlog=5 to follow the memory in use. */
  rescueAppend?: string
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/**
 * What a case of several phases (lifecycle, ironic) starts from: its folder under build/e2e made
 * empty, its report with a phase table, and the helpers every phase uses.
 */
export interface PhasedCase {
  root: string
  dir: string
  started: number
  phases: Record<string, number>
  report: CaseReport
  /** Records a check (and tells the observer); returns whether it passed. */
  check: (name: string, ok: boolean, detail?: string) => boolean
  /** Seconds since `since`, to a tenth. */
  seconds: (since: number) => number
  /** Stops the case when a phase did not give what the next one needs. */
  need: (ok: boolean, what: string) => void
}

export async function openPhasedCase (name: string, observer: CaseObserver): Promise<PhasedCase> {
  const root = repoRoot()
  const started = Date.now()
  const dir = join(root, 'build', 'e2e', name)
  const phases: Record<string, number> = {}
  const report: CaseReport = { name, ok: false, timings: { boots: {}, total: 0, phases }, notes: [], checks: [], boots: [], dir }
  const check = (checkName: string, ok: boolean, detail = ''): boolean => {
    const entry = { name: checkName, ok, detail }
    report.checks.push(entry)
    observer.check?.(entry)
    return ok
  }
  const seconds = (since: number): number => Math.round((Date.now() - since) / 100) / 10
  const need = (ok: boolean, what: string): void => { if (!ok) throw new Error(`stopped: ${what}`) }
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(dir, { recursive: true })
  return { root, dir, started, phases, report, check, seconds, need }
}

export async function writeAt (file: string, offset: number, data: Buffer): Promise<void> {
  const handle = await fs.open(file, 'r+')
  try {
    await handle.write(data, 0, data.length, offset)
  } finally {
    await handle.close()
  }
}

/** The user data: the OVH example's motd line, and a marker printed on the console (computed, so the script's text is not the marker). */
function userData (markerNumber: number): { script: string; marker: string } {
  const a = randomInt(1, markerNumber)
  return {
    script: `#!/bin/bash\necho "${MOTD_LINE}" > /etc/motd\necho "BYOI-E2E-MARKER-$((${a} + ${markerNumber - a}))" > /dev/ttyS0\n`,
    marker: `BYOI-E2E-MARKER-${markerNumber}`,
  }
}

export function installStartPayload (options: {
  hostname: string
  imageUrl: string
  imageType: string
  authorization: string
  checksum: string
  userData: string
  metadata: Record<string, string>
}): unknown {
  return {
    details: { customHostname: options.hostname },
    templateName: 'byoi_64',
    userMetadata: [
      { key: 'imageURL', value: options.imageUrl },
      { key: 'imageType', value: options.imageType },
      { key: 'httpHeaders0Key', value: 'Authorization' },
      { key: 'httpHeaders0Value', value: options.authorization },
      { key: 'imageCheckSum', value: options.checksum },
      { key: 'imageCheckSumType', value: 'sha512' },
      { key: 'configDriveUserData', value: options.userData },
      { key: 'configDriveMetadata', value: JSON.stringify(options.metadata) },
    ],
  }
}

export async function runCase (testCase: E2eCase, observer: CaseObserver, options: RunCaseOptions = {}): Promise<CaseReport> {
  const root = repoRoot()
  const started = Date.now()
  const dir = join(root, 'build', 'e2e', testCase.name)
  const report: CaseReport = { name: testCase.name, ok: false, timings: { boots: {}, total: 0 }, notes: [], checks: [], boots: [], dir }
  const check = (name: string, ok: boolean, detail = ''): void => {
    const entry = { name, ok, detail }
    report.checks.push(entry)
    observer.check?.(entry)
  }
  const seconds = (since: number): number => Math.round((Date.now() - since) / 100) / 10
  await fs.rm(dir, { recursive: true, force: true })
  await fs.mkdir(dir, { recursive: true })
  const disk = join(dir, 'disk.raw')
  try {
    const imagesDir = join(root, 'build', 'test-os')
    const image = join(imagesDir, testCase.image)
    if (testCase.image === 'test-os.raw.zst') await zstdOfRaw(imagesDir)
    const sectorBytes = testCase.bus === 'virtio-4k' ? 4096 : 512
    const imageSectorBytes = testCase.image === 'test-os-4k.raw' ? 4096 : 512

    // The target disk, a sparse raw file, with what it held before.
    observer.phase(`disk: ${testCase.diskMiB} MiB raw file on ${testCase.bus}${testCase.prefill === undefined ? '' : `, holding ${testCase.prefill}`}`)
    if (testCase.prefill === 'bootable-os') {
      await run('cp', ['--sparse=always', join(imagesDir, 'test-os.raw'), disk])
      await run('truncate', ['-s', `${testCase.diskMiB}M`, disk])
    } else {
      const created = await run('qemu-img', ['create', '-q', '-f', 'raw', disk, `${testCase.diskMiB}M`])
      if (created.code !== 0) throw new Error(`qemu-img create: ${created.stderr}`)
      if (testCase.prefill === 'random-head') await writeAt(disk, 0, randomBytes(4 * MiB))
    }
    const diskBefore = testCase.expect.disk === 'untouched' ? await sha256(disk) : undefined

    // The image, behind Basic auth, on 127.0.0.1; the guest reaches it at http://10.0.2.100/.
    const credentials = `e2e:${randomBytes(6).toString('hex')}`
    const server = await startImageServer({ dir: imagesDir, basicAuth: credentials, cutOnceAfterBytes: testCase.cutOnceAfterBytes })
    const rightChecksum = (await fs.readFile(`${image}.sha512`, 'utf8')).trim()
    const checksum = testCase.wrongChecksum === true ? `${rightChecksum.slice(0, -1)}${rightChecksum.endsWith('0') ? '1' : '0'}` : rightChecksum
    const hostname = `byoi-e2e-${testCase.name}`.slice(0, 63)
    const { script, marker } = userData(randomInt(100_000, 1_000_000))
    const metadata = { e2eCase: testCase.name }
    const payload = installStartPayload({
      hostname,
      imageUrl: `http://${IMAGE_HOST}/${testCase.image}`,
      imageType: testCase.imageType,
      authorization: `Basic ${Buffer.from(credentials).toString('base64')}`,
      checksum,
      userData: script,
      metadata,
    })
    await fs.writeFile(join(dir, 'payload.json'), JSON.stringify(payload, null, 2))

    // The rescue image, booted as the server would be; the API on 127.0.0.1:apiPort.
    const token = randomBytes(24).toString('hex')
    const apiPort = await freePort()
    const memoryMiB = testCase.rescueMemoryMiB ?? 6 * 1024
    const limit = `${testCase.memoryLimit === undefined ? '' : ` byoi.memory_limit=${testCase.memoryLimit}`}` +
      `${testCase.connections === undefined ? '' : ` byoi.connections=${testCase.connections}`}`
    const extra = `${limit}${options.rescueAppend === undefined ? '' : ` ${options.rescueAppend}`}`
    const append = `console=ttyS0 quiet byoi.token=${token} byoi.disk=${testCase.diskArg ?? 'auto'} byoi.listen=0.0.0.0:${API_PORT}${extra}`
    const rescue = new QemuVm({
      name: 'rescue',
      dir,
      firmware: 'bios',
      memoryMiB,
      kernel: { vmlinuz: join(root, 'build/rescue/vmlinuz'), initrd: join(root, 'build/rescue/initramfs.img'), append },
      disks: [{ file: disk, format: 'raw', bus: testCase.bus }],
      network: {
        hostForwards: [{ hostPort: apiPort, guestPort: API_PORT }],
        guestForwards: [{ guestAddress: IMAGE_HOST, guestPort: 80, hostPort: server.port }],
      },
      onConsoleLine: observer.rescueConsole,
    })
    observer.phase(`rescue VM: ${memoryMiB} MiB, TCG, API forwarded to 127.0.0.1:${apiPort}, ` +
      `image server 127.0.0.1:${server.port} seen as http://${IMAGE_HOST}/`)
    let status: InstallStatus | undefined
    try {
      await rescue.start()
      const client = new AgentClient(apiPort, token)
      await client.waitForHealth(RESCUE_BOOT_TIMEOUT_MS, () => (rescue.running ? undefined : rescue.stderr.trim()))
      report.timings.rescueToApi = seconds(rescue.startedAtMs)
      observer.phase(`API answering ${report.timings.rescueToApi} s after power-on; POST /install/start`)

      const installStarted = Date.now()
      const events = client.followEvents((event) => {
        if (event.type === 'note') report.notes.push(event.data.message)
        observer.event?.(event)
      }, INSTALL_TIMEOUT_MS)
      events.catch(() => undefined)
      await client.start(payload)
      const result = await events
      report.timings.install = seconds(installStarted)
      report.result = { state: result.state, code: result.code, message: result.message }
      status = await client.status()
      observer.phase(`result after ${report.timings.install} s: ${result.code}: ${result.message}`)
    } finally {
      await rescue.stop()
      await server.close()
    }
    const redacted = server.requests.map((r) => ({
      ...r,
      headers: { ...r.headers, authorization: r.headers.authorization === undefined ? undefined : '(redacted)' },
    }))
    await fs.writeFile(join(dir, 'server-requests.json'), JSON.stringify(redacted, null, 2))

    // The result, as the API reports it.
    const expected = testCase.expect
    check(`result ${expected.code}`, report.result?.code === expected.code, `${report.result?.code ?? '?'}: ${report.result?.message ?? ''}`)
    for (const note of testCase.notes ?? []) check(`a note matching ${String(note)}`, report.notes.some((n) => note.test(n)), report.notes.join(' | '))
    check('status agrees with the result event',
      status?.result?.code === report.result?.code && status?.state === report.result?.state, `state ${status?.state ?? '?'}`)

    const checksStarted = Date.now()
    if (testCase.cutOnceAfterBytes !== undefined) {
      const gets = server.requests.filter((r) => r.method === 'GET' && r.path === `/${testCase.image}`)
      const resumed = gets.find((r) => r.status === 206)
      check('download cut once, then resumed with Range + If-Range',
        gets[0]?.cut === true && resumed !== undefined && resumed.headers['if-range'] !== undefined &&
          resumed.headers.range === `bytes=${gets[0]?.sentBytes ?? -1}-`,
        gets.map((r) => `${r.status}${r.headers.range === undefined ? '' : ` ${r.headers.range}`}, ${r.sentBytes} B${r.cut ? ' (cut)' : ''}`).join('; '))
    }
    if (expected.disk === 'installed') {
      observer.phase('checking the disk from the host')
      let rawImage = testCase.image === 'test-os.raw.zst' ? join(imagesDir, 'test-os.raw') : image
      if (testCase.imageType === 'qcow2') {
        rawImage = join(dir, 'image-reference.raw')
        const converted = await run('qemu-img', ['convert', '-O', 'raw', image, rawImage])
        if (converted.code !== 0) throw new Error(`qemu-img convert: ${converted.stderr}`)
      }
      const region = await compareDataRegion(rawImage, disk, imageSectorBytes)
      check(`image data region equals qemu-img convert -O raw (${Math.round(region.bytes / MiB)} MiB, cmp)`, region.equal, region.detail)
      if (testCase.imageType === 'qcow2') await fs.rm(rawImage, { force: true })
      const gpt = await sgdiskVerify(disk, sectorBytes)
      check('sgdisk -v: no problems', gpt.clean, gpt.text.split('\n').filter((l) => /problem|warning|caution/i.test(l)).join(' | '))
      const drive = await readConfigDrive(disk, sectorBytes, dir)
      const endBytes = (drive.partition.startLba + drive.partition.sectors) * sectorBytes
      const driveMiB = Math.round(drive.partition.sectors * sectorBytes / MiB)
      const beforeEndKiB = Math.round((testCase.diskMiB * MiB - endBytes) / 1024)
      check(`config-2 partition ${drive.partition.number} (${drive.fsType}, ${driveMiB} MiB, ends ${beforeEndKiB} KiB before the disk end)`,
        drive.fsType === (sectorBytes === 4096 ? 'vfat' : 'iso9660'), drive.files.join(' '))
      check('meta_data.json: hostname and meta as the payload asked',
        drive.metaData.hostname === hostname && JSON.stringify(drive.metaData.meta) === JSON.stringify(metadata), JSON.stringify(drive.metaData))
      check('user_data: the payload\'s configDriveUserData, byte for byte', drive.userData === script, `${drive.userData?.length ?? 0} bytes`)
      check('cloud-init\'s read_config_drive: same hostname, meta and user data',
        drive.cloudInit.hostname === hostname && drive.cloudInit.userData === script && JSON.stringify(drive.cloudInit.meta) === JSON.stringify(metadata),
        `instance-id ${drive.cloudInit.instanceId ?? '?'}`)
      // In the rescue system, the agent itself mounted the partition read-only and compared its files.
      const node = `/dev/${GUEST_DISK_NAMES[testCase.bus]}${drive.partition.number}`
      const mountNote = report.notes.find((note) => note.startsWith('config-2 mount check'))
      check(`the agent mounted ${node} read-only in the rescue system (${drive.fsType}) and found what it wrote`,
        mountNote === `config-2 mount check passed: ${node} mounted read-only (${drive.fsType}), 3 files equal to what was written.`,
        mountNote ?? 'no mount check note')
      report.timings.hostChecks = seconds(checksStarted)
      await observer.installed?.(disk)

      for (const firmware of expected.boots) {
        const bus = expected.bootBus ?? testCase.bus
        observer.phase(`booting the installed disk by itself: ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF (UEFI)'} on ${bus}`)
        const boot = await bootInstalledDisk({
          disk,
          bus,
          firmware,
          dir,
          name: `boot-${firmware}`,
          timeoutMs: BOOT_TIMEOUT_MS,
          onConsoleLine: observer.bootConsole,
        }, { hostname, marker })
        report.boots.push(boot)
        report.timings.boots[firmware] = Math.round(boot.seconds * 10) / 10
        for (const c of boot.checks) check(`${firmware}: ${c.name}`, c.ok, c.evidence)
      }
    } else {
      observer.phase('checking the disk from the host')
      if (expected.disk === 'untouched') check('disk untouched (sha256 before = after)', diskBefore === await sha256(disk), diskBefore ?? '')
      else check('first and last MiB zeroed', await isZero(disk, 0, MiB) && await isZero(disk, testCase.diskMiB * MiB - MiB, MiB))
      report.timings.hostChecks = seconds(checksStarted)
      for (const firmware of expected.noBoot) {
        observer.phase(`booting the disk: ${firmware === 'bios' ? 'SeaBIOS' : 'OVMF (UEFI)'} must find nothing to boot`)
        const boot = await expectNoBoot({
          disk,
          bus: testCase.bus,
          firmware,
          dir,
          name: `noboot-${firmware}`,
          timeoutMs: 120_000,
          onConsoleLine: observer.bootConsole,
        })
        report.boots.push(boot)
        report.timings.boots[firmware] = Math.round(boot.seconds * 10) / 10
        for (const c of boot.checks) check(`${firmware}: ${c.name}`, c.ok, c.evidence)
      }
    }
    report.ok = report.checks.every((c) => c.ok)
    // A passing case's disk goes (up to 1.5 GiB of data each); a failing one stays for a look.
    if (report.ok && options.keepDisk !== true) await fs.rm(disk, { force: true })
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err)
    report.ok = false
  }
  report.timings.total = seconds(started)
  await fs.writeFile(join(dir, 'report.json'), JSON.stringify(report, null, 2))
  return report
}

/** build/test-os/test-os.raw.zst (and its .sha512) from test-os.raw, made again when older than it. */
async function zstdOfRaw (imagesDir: string): Promise<void> {
  const raw = join(imagesDir, 'test-os.raw')
  const zst = join(imagesDir, 'test-os.raw.zst')
  const [rawStat, zstStat] = await Promise.all([fs.stat(raw), fs.stat(`${zst}.sha512`).catch(() => undefined)])
  if (zstStat !== undefined && zstStat.mtimeMs >= rawStat.mtimeMs) return
  const made = await run('zstd', ['-q', '-f', '-3', '-T0', raw, '-o', zst])
  if (made.code !== 0) throw new Error(`zstd: ${made.stderr}`)
  const sum = await run('sha512sum', [zst])
  if (sum.code !== 0) throw new Error(`sha512sum: ${sum.stderr}`)
  await fs.writeFile(`${zst}.sha512`, `${sum.stdout.split(' ')[0] ?? ''}\n`)
}
