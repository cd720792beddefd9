/**
 * OpenStack Ironic deploys a server through the rescue image, on virtual machines:
 *
 * 1. Debian's Ironic (test/helpers/ironic-server: API and conductor in one process, fake power,
 *    noop management) on 127.0.0.1; a node whose port has the VM's MAC, root device hints
 *    `{"serial": <the second disk's>}`, instance_info for the test OS (raw, sha512, boot_mode uefi).
 * 2. The failure run: a wrong `image_os_hash_value`. The rescue image boots (OVMF) with
 *    `ipa-api-url=` on its command line, so its init runs `byoi-agent ironic`; the agent looks the
 *    node up, heartbeats, writes the image while it downloads, finds the digest wrong: `deploy
 *    failed` with the agent's message in last_error, the logs collected by the conductor, the
 *    second disk's first and last MiB zeroed, the first disk untouched.
 * 3. The deploy: undeploy, the right digest, deploy again; a new rescue VM: lookup, heartbeats,
 *    write_image, get_partition_uuids, install_bootloader (UEFI), power_off: the agent powers the
 *    VM off itself (`poweroff -f`) and the node is `active`. The first disk untouched; the second
 *    holds the image, a clean GPT spanning it and Ironic's own config drive (its ISO) in config-2.
 * 4. The second disk boots by itself (OVMF): cloud-init reads Ironic's config drive (host name
 *    from meta_data, the user data's marker and motd).
 *
 * The network, as in the other cases: QEMU user networking with `restrict=on`; every forward's
 * host end is 127.0.0.1. The guest reaches Ironic at http://10.0.2.100:6385 and the image at
 * http://10.0.2.101/ (guestfwd); Ironic reaches the agent at the callback URL the agent
 * advertises, http://127.0.0.1:P (a hostfwd to the guest's 9999). Ironic's conductor HEADs
 * image_source (the guest's URL) itself: it goes through an HTTP proxy on 127.0.0.1
 * (guest-address-proxy.ts, the conductor's `http_proxy`) that maps 10.0.2.101:80 to the image
 * server, so that one URL holds on both sides and nothing on the host connects to 10.0.2.x.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto'
import { promises as fs } from 'node:fs'
import { join } from 'node:path'
import { makeGptImage } from '../helpers/image-server.js'
import { startIronic, type IronicServer, type Json } from '../helpers/ironic-server.js'
import { bootInstalledDisk, MOTD_LINE } from './boot-checks.js'
import { compareDataRegion, isZero, readConfigDrive, run, sgdiskVerify, sha256 } from './disk-checks.js'
import { startGuestAddressProxy } from './guest-address-proxy.js'
import { startImageServer } from './image-server.js'
import { QemuVm } from './qemu-vm.js'
import { freePort, MiB, openPhasedCase, writeAt, type CaseObserver, type CaseReport, type RunCaseOptions } from './run-case.js'

export const IRONIC_NAME = 'ironic'
export const IRONIC_SUMMARY = 'Debian\'s Ironic deploys the test OS through the rescue image (byoi-agent ironic): root device hint ' +
  'serial picks the second of two disks; a wrong sha512 fails (deploy failed, disk unbootable), then the deploy goes active; ' +
  'the disk boots (OVMF) with Ironic\'s config drive'

/** Guest-side addresses of the forwards (QEMU user network, 10.0.2.0/24). */
const IRONIC_HOST = '10.0.2.100'
const IRONIC_GUEST_PORT = 6385 // Ironic's usual port, as a ramdisk would be told
const IMAGE_HOST = '10.0.2.101'
/** ironic-python-agent's listening port (ipa-listen-port's default); the callback is a hostfwd to it. */
const AGENT_PORT = 9999
const MAC = '52:54:00:1b:0e:01'
const OTHER_SERIAL = 'byoi-e2e-other'
const TARGET_SERIAL = 'byoi-e2e-target'
const DISK_BYTES = 2048 * MiB
const NODE_NAME = 'byoi-e2e-ironic'
const HOSTNAME = 'byoi-e2e-ironic-host'
/**
 * The deploy's image: the zstd qcow2 (162 MB; qemu-img convert -c of test-os.raw). Its data is test-os.raw's, which the
 * disk is compared with. A qcow2 rather than the 1.5 GiB raw: through QEMU's user network under TCG the raw's download
 * took 143 s at load 5 and 557 s at load 12 (the streamed qcow2: 182 s at load 12).
 */
const IMAGE = 'test-os-zstd.qcow2'
const IMAGE_RAW = 'test-os.raw'
/** The failure run's image: a small GPT disk image (any image does: its digest is wrong), so that the run costs seconds, not a 1.5 GiB download. */
const FAILURE_IMAGE = 'small-gpt.raw'
const FAILURE_IMAGE_BYTES = 64 * MiB
const RESCUE_MEMORY_MIB = 6 * 1024
/** No timed assertion: only how long the case waits before calling a phase stuck. */
const DEPLOY_TIMEOUT_MS = 20 * 60_000
const POWEROFF_TIMEOUT_MS = 120_000
const BOOT_TIMEOUT_MS = 300_000

export interface IronicCaseOptions extends RunCaseOptions {
  /** Skip the failure run (a wrong digest) before the deploy. */
  withoutFailureRun?: boolean
}

interface RescueRun {
  vm: QemuVm
  /** Seconds from power-on to the agent's "node found" (lookup answered), when seen. */
  lookupSeconds?: number
  node: Json
  deploySeconds: number
}

/** The rescue system's `memory:` lines (init logs them every byoi.memlog seconds): in use and the agent's RSS, MiB. */
export function memoryLines (text: string): Array<{ inUseMiB: number; agentRssMiB: number | undefined }> {
  return [...text.matchAll(/byoi-rescue: memory: (\d+) MiB in use of \d+ MiB .*agent RSS (\d+|\?) MiB/g)]
    .map((m) => ({ inUseMiB: Number(m[1]), agentRssMiB: m[2] === '?' ? undefined : Number(m[2]) }))
}

function cloudConfig (markerNumber: number, token: string): { text: string; marker: string } {
  const a = randomInt(1, markerNumber)
  return {
    text: `#cloud-config
write_files:
  - path: /etc/motd
    content: "${MOTD_LINE}\\n"
  - path: /etc/byoi-ironic-marker
    content: "${token}\\n"
runcmd:
  - [sh, -c, 'echo "BYOI-E2E-MARKER-$((${a} + ${markerNumber - a}))" > /dev/ttyS0']
`,
    marker: `BYOI-E2E-MARKER-${markerNumber}`,
  }
}


export async function runIronicCase (observer: CaseObserver, options: IronicCaseOptions = {}): Promise<CaseReport> {
  const { root, dir, started, phases, report, check, seconds, need } = await openPhasedCase(IRONIC_NAME, observer)
  const imagesDir = join(root, 'build', 'test-os')
  const otherDisk = join(dir, 'disk-other.raw')
  const targetDisk = join(dir, 'disk-target.raw')
  const closers: Array<() => Promise<void>> = []
  let ironic: IronicServer | undefined
  try {
    // The two disks, the same size (only the serial tells them apart), random bytes at their ends.
    let phaseStarted = Date.now()
    for (const disk of [otherDisk, targetDisk]) {
      const created = await run('qemu-img', ['create', '-q', '-f', 'raw', disk, String(DISK_BYTES)])
      if (created.code !== 0) throw new Error(`qemu-img create: ${created.stderr}`)
      await writeAt(disk, 0, randomBytes(4 * MiB))
      await writeAt(disk, DISK_BYTES - MiB, randomBytes(MiB))
    }
    const otherBefore = await sha256(otherDisk)

    // The image server (the guest's http://10.0.2.101/), the conductor's proxy, Ironic.
    // Served: the test OS (a symbolic link to build/test-os/'s) and the failure run's small image.
    const servedDir = join(dir, 'images')
    await fs.mkdir(servedDir, { recursive: true })
    await fs.symlink(join(imagesDir, IMAGE), join(servedDir, IMAGE))
    const failureImage = makeGptImage(FAILURE_IMAGE_BYTES)
    await fs.writeFile(join(servedDir, FAILURE_IMAGE), failureImage)
    const images = await startImageServer({ dir: servedDir })
    closers.push(images.close)
    const proxy = await startGuestAddressProxy({ [`${IMAGE_HOST}:80`]: images.port })
    closers.push(proxy.close)
    ironic = await startIronic({
      tmpDir: dir,
      callbackTimeoutS: DEPLOY_TIMEOUT_MS / 1000,
      env: { http_proxy: proxy.url, no_proxy: '127.0.0.1,localhost', HTTP_PROXY: '', NO_PROXY: '', https_proxy: '', HTTPS_PROXY: '' },
    })
    const server = ironic
    closers.push(server.stop)
    const ironicPort = Number(new URL(server.url).port)
    phases['disks and Ironic'] = seconds(phaseStarted)
    observer.phase(`Ironic ${server.url} (pid ${server.pid}), seen as http://${IRONIC_HOST}:${IRONIC_GUEST_PORT}; ` +
      `image server 127.0.0.1:${images.port} seen as http://${IMAGE_HOST}/, the conductor through the proxy ${proxy.url}`)

    const imageUrl = `http://${IMAGE_HOST}/${IMAGE}`
    const rightSha512 = (await fs.readFile(join(imagesDir, `${IMAGE}.sha512`), 'utf8')).trim()
    const instanceInfo = (source: string, format: 'raw' | 'qcow2', sha512: string): Json => ({
      image_source: `http://${IMAGE_HOST}/${source}`,
      image_os_hash_algo: 'sha512',
      image_os_hash_value: sha512,
      image_disk_format: format,
      root_gb: 1,
      capabilities: { boot_mode: 'uefi' },
    })
    // The failure run: the small image, streamed as Ironic asks (stream_raw_images), its digest one digit off.
    const failedSha512 = createHash('sha512').update(failureImage).digest('hex')
    const wrongSha512 = `${failedSha512.slice(0, -1)}${failedSha512.endsWith('0') ? '1' : '0'}`
    const failureRun = options.withoutFailureRun !== true
    const uuid = await server.createNode({
      name: NODE_NAME,
      macs: [MAC],
      instanceInfo: failureRun ? instanceInfo(FAILURE_IMAGE, 'raw', wrongSha512) : instanceInfo(IMAGE, 'qcow2', rightSha512),
      properties: { root_device: { serial: TARGET_SERIAL } },
    })
    const { text: userData, marker } = cloudConfig(randomInt(100_000, 1_000_000), randomBytes(8).toString('hex'))
    const configdrive = { meta_data: { uuid, hostname: HOSTNAME, meta: { e2eCase: IRONIC_NAME } }, user_data: userData }
    await fs.writeFile(join(dir, 'configdrive.json'), JSON.stringify(configdrive, null, 2))

    /** One rescue VM as Ironic's deploy ramdisk, until the node is in one of `states`. */
    const rescueDeploy = async (name: string, states: string[]): Promise<RescueRun> => {
      const callbackPort = await freePort()
      const append = `console=ttyS0 quiet ipa-api-url=http://${IRONIC_HOST}:${IRONIC_GUEST_PORT} ipa-advertise-host=127.0.0.1 ` +
        `ipa-advertise-port=${callbackPort} byoi.disk=auto byoi.memlog=5${options.rescueAppend === undefined ? '' : ` ${options.rescueAppend}`}`
      const vm = new QemuVm({
        name,
        dir,
        firmware: 'uefi',
        memoryMiB: RESCUE_MEMORY_MIB,
        kernel: { vmlinuz: join(root, 'build/rescue/vmlinuz'), initrd: join(root, 'build/rescue/initramfs.img'), append },
        disks: [
          { file: otherDisk, format: 'raw', bus: 'virtio', serial: OTHER_SERIAL },
          { file: targetDisk, format: 'raw', bus: 'virtio', serial: TARGET_SERIAL },
        ],
        network: {
          mac: MAC,
          hostForwards: [{ hostPort: callbackPort, guestPort: AGENT_PORT }],
          guestForwards: [
            { guestAddress: IRONIC_HOST, guestPort: IRONIC_GUEST_PORT, hostPort: ironicPort },
            { guestAddress: IMAGE_HOST, guestPort: 80, hostPort: images.port },
          ],
        },
        onConsoleLine: observer.rescueConsole,
      })
      observer.phase(`${name}: rescue VM (OVMF, ${RESCUE_MEMORY_MIB} MiB, MAC ${MAC}, disks ${OTHER_SERIAL} and ${TARGET_SERIAL}), ` +
        `callback http://127.0.0.1:${callbackPort} → guest :${AGENT_PORT}`)
      const deployStarted = Date.now()
      await vm.start()
      const found = vm.waitForConsole(/"msg":"node found"/, DEPLOY_TIMEOUT_MS).then((m) => (m === undefined ? undefined : seconds(vm.startedAtMs)))
      let node: Json
      try {
        node = await server.waitForState(uuid, states, DEPLOY_TIMEOUT_MS)
      } catch (err) {
        await vm.stop()
        throw err
      }
      const lookupSeconds = await Promise.race([found, Promise.resolve(undefined)])
      return { vm, node, lookupSeconds, deploySeconds: seconds(deployStarted) }
    }
    const agentLogLine = (text: string, msg: string): string => text.split('\n').find((l) => l.includes(`"msg":"${msg}"`))?.trim() ?? ''
    const chosenByHint = (line: string): boolean => line.includes('"disk":"/dev/vdb"') && line.includes('root_device') && line.includes(TARGET_SERIAL)

    if (failureRun) {
      // 2. The failure run: the wrong digest.
      phaseStarted = Date.now()
      observer.phase(`failure run: deploy ${uuid} with http://${IMAGE_HOST}/${FAILURE_IMAGE} (raw, ${FAILURE_IMAGE_BYTES / MiB} MiB) ` +
        'and a wrong image_os_hash_value (sha512)')
      await server.deploy(uuid, configdrive)
      const failed = await rescueDeploy('rescue-bad-checksum', ['deploy failed'])
      await failed.vm.stop() // a failed deploy leaves the agent heartbeating: the power is cut as Ironic's would
      phases['failure run'] = seconds(phaseStarted)
      if (failed.lookupSeconds !== undefined) phases['failure run: power-on → lookup'] = failed.lookupSeconds
      const expected = `Deploy step deploy.write_image failed on node ${uuid}. ` +
        `Bad sha512 for downloaded file, got: ${failedSha512} while expecting ${wrongSha512}.`
      check('failure run: deploy failed, last_error is the agent\'s result message',
        failed.node.provision_state === 'deploy failed' && failed.node.last_error === expected, String(failed.node.last_error))
      const logsDir = join(server.dir, 'deploy-logs')
      const logs = (await fs.readdir(logsDir).catch(() => [] as string[])).filter((n) => n.startsWith(uuid))
      const listing = logs[0] === undefined ? '' : (await run('tar', ['-tzf', join(logsDir, logs[0])])).stdout
      check('failure run: the conductor collected the agent\'s logs (log.collect_system_logs, a tar.gz)', /byoi-agent\.log/.test(listing),
        `${logs[0] ?? 'no file'}: ${listing.trim().split('\n').join(' ')}`)
      check('failure run: the first disk untouched (sha256)', await sha256(otherDisk) === otherBefore, otherBefore.slice(0, 16))
      check('failure run: the target disk\'s first and last MiB zeroed (unbootable)',
        await isZero(targetDisk, 0, MiB) && await isZero(targetDisk, DISK_BYTES - MiB, MiB))
      const chosen = agentLogLine(failed.vm.console, 'deploy disk chosen')
      check('failure run: the agent chose /dev/vdb by the node\'s root_device (serial)', chosenByHint(chosen), chosen)
      report.notes.push(`failure run: ${String(failed.node.last_error)}`)

      // Back to available (no cleaning), the right digest.
      await server.undeploy(uuid)
      await server.waitForState(uuid, ['available'], 60_000)
      const patch = Object.entries(instanceInfo(IMAGE, 'qcow2', rightSha512)).map(([key, value]) => ({ op: 'add', path: `/instance_info/${key}`, value }))
      const patched = await server.request('PATCH', `/v1/nodes/${uuid}`, { body: patch })
      need(patched.status === 200, `PATCH instance_info: ${patched.status} ${patched.text}`)
    }

    // 3. The deploy.
    phaseStarted = Date.now()
    observer.phase(`deploy ${uuid}: ${imageUrl} (qcow2, zstd clusters, sha512), root device hint serial ${TARGET_SERIAL}, JSON config drive`)
    await server.deploy(uuid, configdrive)
    const deployed = await rescueDeploy('rescue-deploy', ['active'])
    const poweredOff = await deployed.vm.waitForExit(POWEROFF_TIMEOUT_MS)
    await deployed.vm.stop()
    phases.deploy = seconds(phaseStarted)
    if (deployed.lookupSeconds !== undefined) phases['deploy: power-on → lookup'] = deployed.lookupSeconds
    phases['deploy: power-on → active'] = deployed.deploySeconds
    // The summary table's columns: rescue power-on → the agent's lookup answered; then the deploy to `active`.
    if (deployed.lookupSeconds !== undefined) {
      report.timings.rescueToApi = deployed.lookupSeconds
      report.timings.install = Math.round((deployed.deploySeconds - deployed.lookupSeconds) * 10) / 10
    }
    const text = deployed.vm.console
    need(check('deploy: the node is active, no last_error', deployed.node.provision_state === 'active' && deployed.node.last_error === null,
      `${String(deployed.node.provision_state)}: ${String(deployed.node.last_error)}`), 'the node is not active')
    // The agent answers power_off, stops heartbeating, then runs poweroff -f: the kernel's last words, and QEMU exits.
    const powerOffEnded = /"command":"power_off","status":"SUCCEEDED"/.test(text)
    check('deploy: the agent powered the VM off itself (standby.power_off SUCCEEDED, then poweroff -f: "reboot: Power down")',
      poweredOff && powerOffEnded && /reboot: Power down/.test(text),
      poweredOff
        ? `QEMU exited${powerOffEnded ? '' : ', no power_off SUCCEEDED in the agent\'s log'}`
        : `still running ${POWEROFF_TIMEOUT_MS / 1000} s after active`)
    const chosen = agentLogLine(text, 'deploy disk chosen')
    check('deploy: the agent chose /dev/vdb by the node\'s root_device (serial)', chosenByHint(chosen), chosen)
    const log = server.logText()
    const sent = ['deploy.get_deploy_steps', 'deploy.execute_deploy_step', 'standby.get_partition_uuids', 'image.install_bootloader', 'standby.power_off']
    const missing = sent.filter((command) => !log.includes(command))
    check('deploy: the conductor sent get_deploy_steps, execute_deploy_step, get_partition_uuids, install_bootloader (UEFI), power_off',
      missing.length === 0, missing.length === 0 ? 'all in Ironic\'s log' : `not in Ironic's log: ${missing.join(', ')}`)
    const heads = proxy.requests.filter((r) => r.method === 'HEAD' && r.url === imageUrl)
    check('deploy: the conductor HEADed image_source (the guest\'s URL, through the proxy): 200', heads.length > 0 && heads.every((r) => r.status === 200),
      proxy.requests.map((r) => `${r.method} ${r.url} ${r.status}`).join('; '))
    const gets = images.requests.filter((r) => r.method === 'GET')
    report.notes.push(`image server: ${gets.length} GETs (${gets.filter((r) => r.status === 206).length} ranged), ` +
      `${proxy.requests.length} proxied requests from the conductor`)

    // The disks, from the host.
    const checksStarted = Date.now()
    check('deploy: the first disk untouched (sha256)', await sha256(otherDisk) === otherBefore, otherBefore.slice(0, 16))
    const region = await compareDataRegion(join(imagesDir, IMAGE_RAW), targetDisk, 512)
    check(`target disk: the image's data region (${Math.round(region.bytes / MiB)} MiB, cmp)`, region.equal, region.detail)
    const gpt = await sgdiskVerify(targetDisk, 512)
    check('target disk: sgdisk -v: no problems', gpt.clean, gpt.text.split('\n').filter((l) => /problem|warning|caution/i.test(l)).join(' | '))
    const freeSectors = Number(/(\d+) free sectors/.exec(gpt.text)?.[1] ?? 0)
    const imageBytes = (await fs.stat(join(imagesDir, IMAGE_RAW))).size
    check('target disk: the GPT spans the disk (the backup table moved to its end)', freeSectors * 512 >= DISK_BYTES - imageBytes - 64 * MiB,
      `${freeSectors} free sectors`)
    const drive = await readConfigDrive(targetDisk, 512, dir)
    const partitionStart = drive.partition.startLba * 512
    // The primary volume descriptor (sector 16 of the ISO): its publisher, at byte 318, is the conductor's.
    const pvd = Buffer.alloc(2048)
    const handle = await fs.open(targetDisk, 'r')
    try { await handle.read(pvd, 0, 2048, partitionStart + 16 * 2048) } finally { await handle.close() }
    const isoPublisher = pvd.subarray(318, 318 + 128).toString('latin1').trim()
    check(`target disk: config-2 (partition ${drive.partition.number}, ${drive.fsType}) is the conductor's ISO (publisher ${isoPublisher})`,
      drive.fsType === 'iso9660' && isoPublisher === 'metalsmith', drive.files.join(' '))
    check('config-2: meta_data has the host name and Ironic\'s node name', drive.metaData.hostname === HOSTNAME && drive.metaData.name === NODE_NAME,
      JSON.stringify(drive.metaData))
    check('config-2: user_data is the configdrive\'s, byte for byte; cloud-init reads the same',
      drive.userData === userData && drive.cloudInit.userData === userData && drive.cloudInit.hostname === HOSTNAME,
      `${drive.userData?.length ?? 0} bytes, instance-id ${drive.cloudInit.instanceId ?? '?'}`)
    const signature = Buffer.alloc(4)
    const diskHandle = await fs.open(targetDisk, 'r')
    try { await diskHandle.read(signature, 0, 4, 440) } finally { await diskHandle.close() }
    const diskId = `0x${signature.readUInt32LE(0).toString(16).padStart(8, '0')}`
    const internal = (deployed.node.driver_internal_info ?? {}) as Record<string, unknown>
    check('Ironic: driver_internal_info.root_uuid_or_disk_id is the disk\'s MBR signature (get_partition_uuids)',
      internal.root_uuid_or_disk_id === diskId, `${String(internal.root_uuid_or_disk_id)} vs ${diskId}`)
    phases['host checks'] = seconds(checksStarted)
    report.timings.hostChecks = phases['host checks']

    // The agent's footprint in the rescue system (init's memory lines, every 5 s).
    const memory = memoryLines(text)
    const rss = memory.map((m) => m.agentRssMiB).filter((v): v is number => v !== undefined)
    if (memory.length > 0) {
      // The first sample is 20 s after the agent started: the deploy is under way by then.
      report.notes.push(`rescue memory: first sample ${memory[0]?.inUseMiB ?? '?'} MiB in use, agent RSS ${memory[0]?.agentRssMiB ?? '?'} MiB; ` +
        `peak ${Math.max(...memory.map((m) => m.inUseMiB))} MiB in use, agent RSS ${rss.length === 0 ? '?' : Math.max(...rss)} MiB (${memory.length} samples)`)
    }

    // 4. The target disk by itself, as the firmware would boot it.
    phaseStarted = Date.now()
    observer.phase('boot: the target disk by itself (OVMF, virtio), as the node\'s boot mode says')
    const boot = await bootInstalledDisk({
      disk: targetDisk, bus: 'virtio', firmware: 'uefi', dir, name: 'boot-uefi', timeoutMs: BOOT_TIMEOUT_MS, onConsoleLine: observer.bootConsole,
    }, { hostname: HOSTNAME, marker })
    report.boots.push(boot)
    report.timings.boots.uefi = Math.round(boot.seconds * 10) / 10
    phases.boot = seconds(phaseStarted)
    for (const c of boot.checks) check(`boot (OVMF): ${c.name}`, c.ok, c.evidence)

    await fs.writeFile(join(dir, 'proxy-requests.json'), JSON.stringify(proxy.requests, null, 2))
    await fs.writeFile(join(dir, 'image-requests.json'), JSON.stringify(images.requests, null, 2))
    report.ok = report.checks.every((c) => c.ok)
    if (report.ok && options.keepDisk !== true) {
      await fs.rm(otherDisk, { force: true })
      await fs.rm(targetDisk, { force: true })
    }
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err)
    report.ok = false
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined)
    if (ironic !== undefined) await fs.writeFile(join(dir, 'ironic.log'), ironic.logText()).catch(() => undefined)
  }
  report.timings.total = seconds(started)
  await fs.writeFile(join(dir, 'report.json'), JSON.stringify(report, null, 2))
  return report
}
