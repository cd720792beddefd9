/**
 * The image lifecycle (issue 14), as a customer runs it, on virtual machines:
 *
 * 1. install A: the test OS installed on disk A (virtio, 2 GiB) through the rescue image's API;
 * 2. bake: A boots by itself; its user data bakes it (/opt/app/VERSION = 1, /etc/baked-marker with
 *    a random token, SSH host keys made by a first-boot unit the bake installs) and powers it off;
 * 3. capture: the rescue image boots again on A; POST /capture/start uploads A as a qcow2 to the
 *    host's WebDAV server (nginx, X-Upload-Token); the file is checked (qemu-img check, sha512);
 * 4. install B: the rescue image on a new, larger disk B (NVMe, 4 GiB) installs the capture from
 *    the capture's own install/start payload (its imageURL replaced by where the file is served),
 *    with `scrub` (/opt/app besides the defaults), B's host name, and user data that deploys the
 *    latest code (VERSION = 2) and joins a listener on the host with B's host name and machine-id;
 * 5. boot B: B boots by itself, runs that user data and powers off; its disk is read from the host
 *    (debugfs): the baked marker is there, the host name is B's, the machine-id and SSH host key
 *    are not A's (the scrub's work), VERSION is 2, and the join arrived.
 *
 * Every forward's host end is 127.0.0.1, the user network keeps `restrict=on`; QEMU processes are
 * ended by their own pid only (qemu-vm.ts); nginx by its pid (webdav-server.ts).
 */
import { createHash, randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { startWebDav } from '../helpers/webdav-server.js'
import { AgentClient, type AgentEvent, type CaptureView, type InstallStatus, type ResultMessage } from './agent-client.js'
import { ext4Offset, readConfigDrive, readGuestFile, run, sgdiskVerify } from './disk-checks.js'
import { startImageServer } from './image-server.js'
import { startJoinListener } from './join-listener.js'
import { QemuVm, type DiskBus, type GuestForward } from './qemu-vm.js'
import { freePort, installStartPayload, MiB, openPhasedCase, type CaseObserver, type CaseReport, type RunCaseOptions } from './run-case.js'

export const LIFECYCLE_NAME = 'lifecycle'
export const LIFECYCLE_SUMMARY = 'install A (virtio), bake boot, capture A to WebDAV, install the capture on a larger NVMe disk B with scrub, boot B: ' +
  'baked marker kept, host name, machine-id and SSH host key new, latest code deployed, joined'

/** Guest-side addresses of the forwards (QEMU user network, 10.0.2.0/24). */
const IMAGE_HOST = '10.0.2.100'
const UPLOAD_HOST = '10.0.2.101'
const JOIN_HOST = '10.0.2.102'
const API_PORT = 8080
const RESCUE_BOOT_TIMEOUT_MS = 180_000
const JOB_TIMEOUT_MS = 20 * 60_000
/** A boot whose user data powers the VM off: cloud-init's end, then the poweroff. */
const POWEROFF_BOOT_TIMEOUT_MS = 300_000
const GiB = 1024 * MiB
const DISK_A_BYTES = 2 * GiB
const DISK_B_BYTES = 4 * GiB
const HOST_A = 'byoi-lc-a'
const HOST_B = 'byoi-lc-b'
const ROOT_LABEL = 'byoi-root'
const HOST_KEY = '/etc/ssh/ssh_host_ed25519_key.pub'

/**
 * Host keys made when missing, as `ssh-keygen -A` does at an OS's first boot. The test OS has no
 * SSH server (nor ssh-keygen); python3-cryptography (cloud-init's) writes the same files, so that
 * the image carries host keys a clone must not share. The bake installs it as a systemd unit run
 * at each boot while the key is missing: the baked image makes new keys once the scrub removed them.
 */
const HOST_KEYS_SCRIPT = `#!/usr/bin/python3
# byoi lifecycle: SSH host keys made when missing (as ssh-keygen -A at first boot).
import os, socket
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = '/etc/ssh/ssh_host_ed25519_key'
if not os.path.exists(key):
    os.makedirs('/etc/ssh', exist_ok=True)
    k = Ed25519PrivateKey.generate()
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, k.private_bytes(s.Encoding.PEM, s.PrivateFormat.OpenSSH, s.NoEncryption()))
    os.close(fd)
    pub = k.public_key().public_bytes(s.Encoding.OpenSSH, s.PublicFormat.OpenSSH)
    with open(key + '.pub', 'wb') as f:
        f.write(pub + b' root@' + socket.gethostname().encode() + b'\\n')
`

const HOST_KEYS_UNIT = `[Unit]
Description=SSH host keys, made when missing (as ssh-keygen -A at first boot)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
After=cloud-init.service
Before=cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/byoi-ssh-host-keys

[Install]
WantedBy=multi-user.target
`

/** Joins the "cluster": POSTs this server's host name and machine-id to the listener (up to a minute of tries). */
const JOIN_SCRIPT = `#!/usr/bin/python3
# byoi lifecycle: join the cluster with this server's identity.
import json, socket, time, urllib.request
body = json.dumps({'hostname': socket.gethostname(), 'machineId': open('/etc/machine-id').read().strip()}).encode()
for attempt in range(30):
    try:
        request = urllib.request.Request('http://${JOIN_HOST}/join', data=body, method='POST', headers={'content-type': 'application/json'})
        with urllib.request.urlopen(request, timeout=10) as answer:
            print('BYOI-LC-JOINED', answer.status, flush=True)
        break
    except Exception as err:
        print('join attempt', attempt, 'failed:', err, flush=True)
        time.sleep(2)
`

/** Indents a file's text for a YAML block scalar (`content: |`) at `spaces`. */
function block (text: string, spaces: number): string {
  return text.trimEnd().split('\n').map((line) => (line === '' ? '' : `${' '.repeat(spaces)}${line}`)).join('\n')
}

/** A's user data: bake the server (the application's first version, a marker, host keys), then power off. */
function bakeUserData (bakedToken: string): string {
  return `#cloud-config
write_files:
  - path: /usr/local/sbin/byoi-ssh-host-keys
    permissions: '0755'
    content: |
${block(HOST_KEYS_SCRIPT, 6)}
  - path: /etc/systemd/system/byoi-ssh-host-keys.service
    content: |
${block(HOST_KEYS_UNIT, 6)}
  - path: /opt/app/VERSION
    content: "1\\n"
  - path: /etc/baked-marker
    content: "${bakedToken}\\n"
runcmd:
  - [systemctl, enable, byoi-ssh-host-keys.service]
  - [/usr/local/sbin/byoi-ssh-host-keys]
  - [sh, -c, 'echo "BYOI-LC-BAKED version=$(cat /opt/app/VERSION) marker=$(cat /etc/baked-marker) machine-id=$(cat /etc/machine-id)" > /dev/ttyS0']
power_state:
  mode: poweroff
  message: byoi lifecycle - baked, powering off
  timeout: 120
  condition: true
`
}

/** B's deploy: says whether /opt/app came with the image, deploys the latest code, joins; everything on the console. */
const DEPLOY_SCRIPT = `#!/bin/sh
# byoi lifecycle: deploy the latest code, then join the cluster.
if [ -e /opt/app ]; then
  echo "BYOI-LC-APP-BEFORE-DEPLOY present: $(ls -A /opt/app | tr '\\n' ' ')"
else
  echo "BYOI-LC-APP-BEFORE-DEPLOY absent"
fi
mkdir -p /opt/app && echo 2 > /opt/app/VERSION
/usr/local/sbin/byoi-join
echo "BYOI-LC-DEPLOYED hostname=$(hostname) version=$(cat /opt/app/VERSION) machine-id=$(cat /etc/machine-id) marker=$(cat /etc/baked-marker)"
`

/** B's user data: the deploy (and join) on the console, then power off. */
function deployUserData (): string {
  return `#cloud-config
write_files:
  - path: /usr/local/sbin/byoi-join
    permissions: '0755'
    content: |
${block(JOIN_SCRIPT, 6)}
  - path: /usr/local/sbin/byoi-deploy
    permissions: '0755'
    content: |
${block(DEPLOY_SCRIPT, 6)}
runcmd:
  - [sh, -c, '/usr/local/sbin/byoi-deploy > /dev/ttyS0 2>&1']
power_state:
  mode: poweroff
  message: byoi lifecycle - deployed and joined, powering off
  timeout: 120
  condition: true
`
}

/** OpenSSH's fingerprint of a public key line (`ssh-keygen -l`'s SHA256:…, unpadded base64 of the blob's sha256). */
export function sshFingerprint (publicKeyLine: string): string | undefined {
  const blob = publicKeyLine.trim().split(/\s+/)[1]
  if (blob === undefined) return undefined
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`
}

interface JobOutcome {
  result: ResultMessage & { state: 'done' | 'error' }
  status: InstallStatus
  notes: string[]
  rescueToApiSeconds: number
  jobSeconds: number
}

export interface LifecycleOptions extends RunCaseOptions {
  /**
   * The control run: B installed without `scrub`, so that the checks that are the scrub's work
   * (machine-id, host key, /opt/app, its notes) must fail; everything else must still pass.
   */
  withoutScrub?: boolean
}

interface PoweroffBoot { vm: QemuVm; poweredOff: boolean; seconds: number }

interface RescueJob {
  /** The console log's name in the case folder. */
  name: string
  disk: string
  bus: DiskBus
  /** byoi.disk= on the rescue kernel command line. */
  diskArg: string
  guestForwards: GuestForward[]
  /** POSTs the job (install/start or capture/start). */
  start: (client: AgentClient) => Promise<string>
}

export async function runLifecycle (observer: CaseObserver, options: LifecycleOptions = {}): Promise<CaseReport> {
  const { root, dir, started, phases, report, check, seconds, need } = await openPhasedCase(LIFECYCLE_NAME, observer)
  const diskA = join(dir, 'disk-a.raw')
  const diskB = join(dir, 'disk-b.raw')
  const imagesDir = join(root, 'build', 'test-os')
  const token = randomBytes(24).toString('hex')

  /** One rescue VM: boots on `disk`, the job POSTed, its events followed to the result, the VM powered off. */
  const rescueJob = async (job: RescueJob): Promise<JobOutcome> => {
    const apiPort = await freePort()
    const append = `console=ttyS0 quiet byoi.token=${token} byoi.disk=${job.diskArg} byoi.listen=0.0.0.0:${API_PORT}` +
      `${options.rescueAppend === undefined ? '' : ` ${options.rescueAppend}`}`
    const rescue = new QemuVm({
      name: job.name,
      dir,
      firmware: 'bios',
      memoryMiB: 6 * 1024,
      kernel: { vmlinuz: join(root, 'build/rescue/vmlinuz'), initrd: join(root, 'build/rescue/initramfs.img'), append },
      disks: [{ file: job.disk, format: 'raw', bus: job.bus }],
      network: { hostForwards: [{ hostPort: apiPort, guestPort: API_PORT }], guestForwards: job.guestForwards },
      onConsoleLine: observer.rescueConsole,
    })
    const notes: string[] = []
    try {
      await rescue.start()
      const client = new AgentClient(apiPort, token)
      await client.waitForHealth(RESCUE_BOOT_TIMEOUT_MS, () => (rescue.running ? undefined : rescue.stderr.trim()))
      const rescueToApiSeconds = seconds(rescue.startedAtMs)
      observer.phase(`${job.name}: API answering ${rescueToApiSeconds} s after power-on`)
      const jobStarted = Date.now()
      const events = client.followEvents((event: AgentEvent) => {
        if (event.type === 'note') notes.push(event.data.message)
        observer.event?.(event)
      }, JOB_TIMEOUT_MS)
      events.catch(() => undefined)
      await job.start(client)
      const result = await events
      const jobSeconds = seconds(jobStarted)
      const status = await client.status()
      observer.phase(`${job.name}: result after ${jobSeconds} s: ${result.code}: ${result.message}`)
      report.notes.push(...notes.map((note) => `${job.name}: ${note}`))
      return { result, status, notes, rescueToApiSeconds, jobSeconds }
    } finally {
      await rescue.stop()
    }
  }

  /** Boots a disk by itself (SeaBIOS); its user data powers it off. The disk itself, not an overlay: it is read afterwards. */
  const poweroffBoot = async (name: string, disk: string, bus: DiskBus, guestForwards: GuestForward[]): Promise<PoweroffBoot> => {
    const vm = new QemuVm({
      name,
      dir,
      firmware: 'bios',
      memoryMiB: 2048,
      disks: [{ file: disk, format: 'raw', bus }],
      network: { hostForwards: [], guestForwards },
      onConsoleLine: observer.bootConsole,
    })
    const bootStarted = Date.now()
    await vm.start()
    let poweredOff: boolean
    try {
      poweredOff = await vm.waitForExit(POWEROFF_BOOT_TIMEOUT_MS)
    } finally {
      await vm.stop()
    }
    return { vm, poweredOff, seconds: seconds(bootStarted) }
  }

  /** Servers still open: each is closed once, by its phase, or in the end when a failure skipped that. */
  const openServers = new Set<() => Promise<void>>()
  const opened = (close: () => Promise<void>): (() => Promise<void>) => {
    openServers.add(close)
    return async () => { if (openServers.delete(close)) await close() }
  }
  try {
    // 1. Install the test OS on disk A, through the rescue image's API.
    let phaseStarted = Date.now()
    observer.phase(`install A: the test OS (test-os.qcow2) on a ${DISK_A_BYTES / GiB} GiB virtio disk`)
    const createdA = await run('qemu-img', ['create', '-q', '-f', 'raw', diskA, String(DISK_A_BYTES)])
    if (createdA.code !== 0) throw new Error(`qemu-img create: ${createdA.stderr}`)
    const credentials = `e2e:${randomBytes(6).toString('hex')}`
    const authorization = `Basic ${Buffer.from(credentials).toString('base64')}`
    const bakedToken = randomBytes(16).toString('hex')
    const osServer = await startImageServer({ dir: imagesDir, basicAuth: credentials })
    const closeOsServer = opened(osServer.close)
    const installA = installStartPayload({
      hostname: HOST_A,
      imageUrl: `http://${IMAGE_HOST}/test-os.qcow2`,
      imageType: 'qcow2',
      authorization,
      checksum: (await fs.readFile(join(imagesDir, 'test-os.qcow2.sha512'), 'utf8')).trim(),
      userData: bakeUserData(bakedToken),
      metadata: { e2eCase: LIFECYCLE_NAME, server: 'A' },
    })
    await fs.writeFile(join(dir, 'payload-a.json'), JSON.stringify(installA, null, 2))
    const a = await rescueJob({
      name: 'rescue-install-a',
      disk: diskA,
      bus: 'virtio',
      diskArg: 'auto',
      guestForwards: [{ guestAddress: IMAGE_HOST, guestPort: 80, hostPort: osServer.port }],
      start: async (client) => await client.start(installA),
    })
    await closeOsServer()
    phases['install A'] = seconds(phaseStarted)
    phases['install A: rescue→API'] = a.rescueToApiSeconds
    phases['install A: job'] = a.jobSeconds
    need(check('install A: INSTALLED', a.result.code === 'INSTALLED', `${a.result.code}: ${a.result.message}`), 'A was not installed')

    // 2. The bake: A boots by itself, its user data bakes it and powers it off.
    phaseStarted = Date.now()
    observer.phase('bake boot: A by itself (SeaBIOS, virtio); its user data bakes it, then powers it off')
    const bake = await poweroffBoot('boot-a-bake', diskA, 'virtio', [])
    phases['bake boot'] = bake.seconds
    report.timings.boots['A bake'] = bake.seconds
    const bakedLine = /^BYOI-LC-BAKED version=(\S*) marker=(\S*) machine-id=(\S*)\s*$/m.exec(bake.vm.console)
    check('bake boot: cloud-init ran the bake (its console line)', bakedLine?.[1] === '1' && bakedLine[2] === bakedToken,
      bakedLine?.[0] ?? 'no BYOI-LC-BAKED line')
    need(check('bake boot: A powered itself off (cloud-init power_state)', bake.poweredOff && /reboot: Power down/.test(bake.vm.console),
      bake.poweredOff ? 'QEMU exited' : `still running after ${POWEROFF_BOOT_TIMEOUT_MS / 1000} s`), 'A did not power off')
    const rootA = await ext4Offset(diskA, ROOT_LABEL)
    const machineIdA = (await readGuestFile(diskA, rootA, '/etc/machine-id'))?.trim() ?? ''
    const hostKeyA = await readGuestFile(diskA, rootA, HOST_KEY)
    const fingerprintA = hostKeyA === undefined ? undefined : sshFingerprint(hostKeyA)
    check('disk A (debugfs): /opt/app/VERSION is 1', (await readGuestFile(diskA, rootA, '/opt/app/VERSION'))?.trim() === '1')
    check('disk A (debugfs): /etc/baked-marker holds the token', (await readGuestFile(diskA, rootA, '/etc/baked-marker'))?.trim() === bakedToken, bakedToken)
    check('disk A (debugfs): /etc/machine-id made at the first boot', /^[0-9a-f]{32}$/.test(machineIdA), machineIdA)
    check(`disk A (debugfs): an SSH host key (${HOST_KEY})`, fingerprintA !== undefined, fingerprintA ?? 'none')

    // 3. The capture: the rescue image on A again, A uploaded to the host's WebDAV server.
    phaseStarted = Date.now()
    const uploadToken = randomBytes(16).toString('hex')
    const dav = await startWebDav(join(dir, 'webdav'), { token: uploadToken })
    const closeDav = opened(dav.close)
    const davPort = Number(new URL(dav.origin).port)
    const uploadUrl = `http://${UPLOAD_HOST}/images/a.qcow2`
    observer.phase(`capture: A uploaded to ${uploadUrl} (nginx WebDAV at ${dav.origin}, X-Upload-Token)`)
    const captureBody = { uploadURL: uploadUrl, httpHeaders: { 'X-Upload-Token': uploadToken } }
    const c = await rescueJob({
      name: 'rescue-capture-a',
      disk: diskA,
      bus: 'virtio',
      diskArg: 'auto',
      guestForwards: [{ guestAddress: UPLOAD_HOST, guestPort: 80, hostPort: davPort }],
      start: async (client) => await client.startCapture(captureBody),
    })
    await closeDav()
    phases.capture = seconds(phaseStarted)
    phases['capture: rescue→API'] = c.rescueToApiSeconds
    phases['capture: job'] = c.jobSeconds
    const capture: CaptureView | undefined = c.status.capture ?? undefined
    check('capture: CAPTURED', c.result.code === 'CAPTURED', `${c.result.code}: ${c.result.message}`)
    check('capture: status kind "capture", state done, with capture.payloads',
      c.status.kind === 'capture' && c.status.state === 'done' && capture !== undefined,
      `kind ${String(c.status.kind)}, state ${c.status.state}`)
    if (capture === undefined) throw new Error('stopped: no capture in the status')
    await fs.writeFile(join(dir, 'capture.json'), JSON.stringify(capture, null, 2))
    const captured = join(dav.root, 'images', 'a.qcow2')
    const capturedBytes = (await fs.stat(captured).catch(() => undefined))?.size
    need(check('capture: the file is on the WebDAV server, capture.bytes long', capturedBytes === capture.bytes,
      `${capturedBytes ?? 'no file'} bytes on disk, capture.bytes ${capture.bytes}`), 'no captured file')
    const qemuCheck = await run('qemu-img', ['check', '-f', 'qcow2', captured])
    check('capture: qemu-img check clean', qemuCheck.code === 0 && /No errors were found/.test(qemuCheck.stdout),
      qemuCheck.stdout.trim().split('\n').join(' | '))
    const info = JSON.parse((await run('qemu-img', ['info', '--output=json', captured])).stdout) as { format?: string; 'virtual-size'?: number }
    check('capture: qcow2 of A\'s size (qemu-img info)',
      info.format === 'qcow2' && info['virtual-size'] === DISK_A_BYTES && capture.virtualSizeBytes === DISK_A_BYTES,
      `${info.format ?? '?'}, virtual size ${info['virtual-size'] ?? '?'}, capture.virtualSizeBytes ${capture.virtualSizeBytes}`)
    const sha512 = (await run('sha512sum', [captured])).stdout.split(' ')[0] ?? ''
    check('capture: sha512 of the stored file equals capture.digest.hex', capture.digest.type === 'sha512' && sha512 === capture.digest.hex,
      `${sha512.slice(0, 16)}…`)
    const givenUrl = capture.payloads.installStart.userMetadata.find((entry) => entry.key === 'imageURL')?.value
    check('capture: payloads.installStart\'s imageURL is the upload\'s', givenUrl === uploadUrl, givenUrl ?? 'none')

    // 4. Install the capture on B (NVMe, larger), from the capture's own payload, with the scrub.
    phaseStarted = Date.now()
    observer.phase(`install B: the capture on a ${DISK_B_BYTES / GiB} GiB NVMe disk, from capture.payloads.installStart, ` +
      `${options.withoutScrub === true ? 'WITHOUT scrub (the control run: the scrub\'s checks must fail)' : 'with scrub'}`)
    const createdB = await run('qemu-img', ['create', '-q', '-f', 'raw', diskB, String(DISK_B_BYTES)])
    if (createdB.code !== 0) throw new Error(`qemu-img create: ${createdB.stderr}`)
    const captureServer = await startImageServer({ dir: join(dav.root, 'images'), basicAuth: credentials })
    const closeCaptureServer = opened(captureServer.close)
    const capturedUrl = `http://${IMAGE_HOST}/a.qcow2` // the guest-side URL of the served capture
    const userDataB = deployUserData()
    const metadataB = { e2eCase: LIFECYCLE_NAME, server: 'B' }
    const installB = {
      details: { customHostname: HOST_B },
      templateName: capture.payloads.installStart.templateName,
      userMetadata: [
        ...capture.payloads.installStart.userMetadata.map((entry) => (entry.key === 'imageURL' ? { key: entry.key, value: capturedUrl } : entry)),
        { key: 'httpHeaders0Key', value: 'Authorization' },
        { key: 'httpHeaders0Value', value: authorization },
        ...(options.withoutScrub === true ? [] : [{ key: 'scrub', value: JSON.stringify({ paths: ['/opt/app'] }) }]),
        { key: 'configDriveUserData', value: userDataB },
        { key: 'configDriveMetadata', value: JSON.stringify(metadataB) },
      ],
    }
    await fs.writeFile(join(dir, 'payload-b.json'), JSON.stringify(installB, null, 2))
    const b = await rescueJob({
      name: 'rescue-install-b',
      disk: diskB,
      bus: 'nvme',
      diskArg: '/dev/nvme0n1',
      guestForwards: [{ guestAddress: IMAGE_HOST, guestPort: 80, hostPort: captureServer.port }],
      start: async (client) => await client.start(installB),
    })
    await closeCaptureServer()
    phases['install B'] = seconds(phaseStarted)
    phases['install B: rescue→API'] = b.rescueToApiSeconds
    phases['install B: job'] = b.jobSeconds
    need(check('install B: INSTALLED', b.result.code === 'INSTALLED', `${b.result.code}: ${b.result.message}`), 'B was not installed')
    const scrubNotes = b.notes.filter((note) => note.startsWith('scrub:'))
    check('install B: the scrub\'s notes (machine-id emptied, host keys and /opt/app removed)',
      scrubNotes.some((n) => n.startsWith('scrub: /etc/machine-id emptied')) && scrubNotes.some((n) => n.startsWith('scrub: SSH host keys removed')) &&
        scrubNotes.includes('scrub: /opt/app removed'), scrubNotes.join(' | ') || 'no scrub note')
    const gpt = await sgdiskVerify(diskB, 512)
    check('disk B: sgdisk -v: no problems', gpt.clean, gpt.text.split('\n').filter((l) => /problem|warning/i.test(l)).join(' | '))
    // The GPT covers all of B: the space past A's 2 GiB is free (the backup table moved to B's end).
    const freeSectors = Number(/(\d+) free sectors/.exec(gpt.text)?.[1] ?? 0)
    check('disk B: the GPT spans the larger disk (its free space is B\'s extra size)', freeSectors * 512 >= DISK_B_BYTES - DISK_A_BYTES,
      `${freeSectors} free sectors (${(freeSectors * 512 / GiB).toFixed(2)} GiB)`)
    // The capture holds A's config-2 partition: the install reuses it in place for B's ConfigDrive.
    const drive = await readConfigDrive(diskB, 512, dir)
    check(`disk B: config-2 (partition ${drive.partition.number}, ${drive.fsType}) holds B's host name and user data`,
      drive.metaData.hostname === HOST_B && drive.userData === userDataB && drive.cloudInit.hostname === HOST_B,
      `hostname ${String(drive.metaData.hostname)}, ${drive.userData?.length ?? 0} bytes of user data`)

    // 5. Boot B: the user data deploys, joins and powers off; then B's disk is read from the host.
    phaseStarted = Date.now()
    const listener = await startJoinListener()
    const closeListener = opened(listener.close)
    observer.phase(`boot B: by itself (SeaBIOS, NVMe); the join listener on 127.0.0.1:${listener.port}, seen as http://${JOIN_HOST}/join`)
    const bootB = await poweroffBoot('boot-b', diskB, 'nvme', [{ guestAddress: JOIN_HOST, guestPort: 80, hostPort: listener.port }])
    await closeListener()
    phases['boot B'] = bootB.seconds
    report.timings.boots.B = bootB.seconds
    await fs.writeFile(join(dir, 'join-requests.json'), JSON.stringify(listener.requests, null, 2))
    const text = bootB.vm.console
    check('boot B: cloud-init finished with the ConfigDrive datasource', /Cloud-init v\. \S+ finished at .*Datasource DataSourceConfigDrive/.test(text),
      text.split('\n').find((l) => /Cloud-init v\. \S+ finished/.test(l))?.trim() ?? '')
    check('boot B: B powered itself off (cloud-init power_state)', bootB.poweredOff && /reboot: Power down/.test(text),
      bootB.poweredOff ? 'QEMU exited' : `still running after ${POWEROFF_BOOT_TIMEOUT_MS / 1000} s`)
    const before = /^BYOI-LC-APP-BEFORE-DEPLOY (.*)$/m.exec(text)?.[1]?.trim()
    check('boot B: /opt/app did not come with the image (scrub paths)', before === 'absent', before ?? 'no BYOI-LC-APP-BEFORE-DEPLOY line')
    const deployed = /^BYOI-LC-DEPLOYED hostname=(\S*) version=(\S*) machine-id=(\S*) marker=(\S*)\s*$/m.exec(text)
    check('boot B: the deploy\'s console line (host name B, VERSION 2, the baked marker)',
      deployed?.[1] === HOST_B && deployed[2] === '2' && deployed[4] === bakedToken, deployed?.[0] ?? 'no BYOI-LC-DEPLOYED line')

    const rootB = await ext4Offset(diskB, ROOT_LABEL)
    const machineIdB = (await readGuestFile(diskB, rootB, '/etc/machine-id'))?.trim() ?? ''
    const hostKeyB = await readGuestFile(diskB, rootB, HOST_KEY)
    const fingerprintB = hostKeyB === undefined ? undefined : sshFingerprint(hostKeyB)
    const markerB = (await readGuestFile(diskB, rootB, '/etc/baked-marker'))?.trim()
    const hostnameB = (await readGuestFile(diskB, rootB, '/etc/hostname'))?.trim()
    const versionB = (await readGuestFile(diskB, rootB, '/opt/app/VERSION'))?.trim()
    check('disk B (debugfs): the baked marker is there', markerB === bakedToken, markerB ?? 'no /etc/baked-marker')
    check(`disk B (debugfs): /etc/hostname is ${HOST_B}`, hostnameB === HOST_B, hostnameB ?? 'no /etc/hostname')
    check('disk B (debugfs): /opt/app/VERSION is 2 (the latest code deployed)', versionB === '2', versionB ?? 'no VERSION')
    check('disk B (debugfs): machine-id is not A\'s (scrub)', /^[0-9a-f]{32}$/.test(machineIdB) && machineIdB !== machineIdA,
      `A ${machineIdA}, B ${machineIdB}`)
    check('disk B (debugfs): SSH host key is not A\'s (scrub; made again at B\'s first boot)',
      fingerprintA !== undefined && fingerprintB !== undefined && fingerprintB !== fingerprintA, `A ${fingerprintA ?? 'none'}, B ${fingerprintB ?? 'none'}`)
    const joins = listener.requests.filter((r) => r.method === 'POST' && r.path === '/join')
    const joined = joins.map((r) => { try { return JSON.parse(r.body) as { hostname?: string; machineId?: string } } catch { return {} } })
    check('join: the listener got B\'s host name and machine-id', joined.some((j) => j.hostname === HOST_B && j.machineId === machineIdB),
      joins.map((r) => r.body).join(' | ') || 'no POST /join')

    report.ok = report.checks.every((entry) => entry.ok)
    // A passing case's disks and capture go (up to 2.5 GiB of data); a failing one's stay for a look.
    if (report.ok && options.keepDisk !== true) {
      await fs.rm(diskA, { force: true })
      await fs.rm(diskB, { force: true })
      await fs.rm(captured, { force: true })
    }
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err)
    report.ok = false
  } finally {
    // The servers a failure left open.
    for (const close of [...openServers].reverse()) await close().catch(() => undefined)
  }
  report.timings.total = seconds(started)
  await fs.writeFile(join(dir, 'report.json'), JSON.stringify(report, null, 2))
  return report
}
