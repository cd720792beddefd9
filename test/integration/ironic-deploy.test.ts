/**
 * Debian's Ironic (test/helpers/ironic-server) drives byoi-agent's `ironic` mode through a direct
 * deploy of a whole-disk raw image, the agent on this host with a file as its disk: lookup by MAC,
 * heartbeats, get_deploy_steps, execute_deploy_step(write_image), get_partition_uuids,
 * install_bootloader (UEFI), power_off; the node must end `active` and the disk hold the image,
 * its backup GPT at the disk's end and Ironic's own config drive in config-2. A wrong checksum:
 * `deploy failed`, the agent's result message in last_error, the disk left unbootable, the logs
 * collected by the conductor.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { readIso9660Files } from '../../agent/configdrive/index.js'
import { makeDirtyDisk, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { makeGptImage, startImageServer } from '../helpers/image-server.js'
import { fakeServer } from '../helpers/fake-sysfs.js'
import { cliWithIo } from '../helpers/run-cli.js'
import type { BlockDeviceSources } from '../../agent/disk/auto-disk.js'
import { startIronic } from '../helpers/ironic-server.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const MiB = 1024 * 1024

const image = makeGptImage(24 * MiB)
const sha256 = createHash('sha256').update(image).digest('hex')
const server = await startImageServer({ image })
t.teardown(server.close)
const ironic = await startIronic({ tmpDir: tmp.path, callbackTimeoutS: 90 })
t.teardown(ironic.stop)

/** `byoi-agent ironic` in this process until it ends (power_off) or `stop` is aborted; its output. */
async function runAgent (
  mac: string, disk: string, stop: AbortController, blockDevices?: BlockDeviceSources,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stateDir = join(tmp.path, `state-${mac.replaceAll(':', '')}`)
  mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  const args = [
    'ironic', '--api-url', ironic.url, '--listen', '127.0.0.1:0', '--disk', disk, '--mac', mac,
    '--heartbeat-interval', '0.3', '--lookup-timeout', '60', '--state-dir', stateDir, '--log-level', 'info',
  ]
  return await cliWithIo(args, { signal: stop.signal, ...(blockDevices === undefined ? {} : { blockDevices }) })
}

/**
 * Deploys the node (as a booted ramdisk: the agent started once the node waits for it) with the
 * agent in process until the node is in `end`. After `active` the agent ends by itself on
 * power_off (stopped 5 s later if not); after a failure it keeps heartbeating and is stopped.
 */
async function deployThroughAgent (
  uuid: string, mac: string, disk: string, end: 'active' | 'deploy failed',
  options: { configdrive?: Record<string, unknown>; blockDevices?: BlockDeviceSources } = {},
): Promise<{ node: Record<string, unknown>; agent: { code: number; stdout: string; stderr: string } }> {
  await ironic.deploy(uuid, options.configdrive)
  await ironic.waitForState(uuid, ['wait call-back'], 60_000)
  const stop = new AbortController()
  const agent = runAgent(mac, disk, stop, options.blockDevices)
  let node
  try {
    node = await ironic.waitForState(uuid, [end], 90_000)
  } finally {
    if (end === 'active') setTimeout(() => { stop.abort() }, 5000).unref()
    else stop.abort()
  }
  return { node, agent: await agent }
}

t.test('a direct deploy reaches active; the disk holds the image, the moved GPT and Ironic\'s config drive', async (t) => {
  const mac = '52:54:00:00:20:01'
  const disk = join(tmp.path, 'disk-ok.img')
  makeDirtyDisk(disk, 64 * MiB)
  const uuid = await ironic.createNode({
    name: 'byoi-node-1',
    macs: [mac],
    instanceInfo: {
      image_source: server.url('/disk.raw'), image_os_hash_algo: 'sha256', image_os_hash_value: sha256,
      image_disk_format: 'raw', root_gb: 1, capabilities: { boot_mode: 'uefi' },
    },
  })
  const configdrive = { meta_data: { hostname: 'node-one', public_keys: { k: 'ssh-ed25519 AAAA test' } }, user_data: '#cloud-config\nruncmd: [true]\n' }
  const { node, agent: { code, stdout, stderr } } = await deployThroughAgent(uuid, mac, disk, 'active', { configdrive })
  t.equal(code, 0, 'the agent ended cleanly')
  t.match(stdout, /byoi-agent ironic: powered-off/, 'by standby.power_off')
  t.equal(node.provision_state, 'active')
  t.equal(node.last_error, null)
  t.match(String((node.driver_internal_info as Record<string, unknown>).root_uuid_or_disk_id), /^0x[0-9a-f]{8}$/, 'get_partition_uuids answered the disk id')
  t.match(stderr, /"msg":"image written"/)
  t.notMatch(stderr, /agent_token=[^*]/, 'no token logged')

  // The GPT's first sectors gained the config-2 entry; partition 1 (1 MiB on) is the image's as it was.
  const partitionEnd = (24 * MiB) - 33 * 512 // makeGptImage: partition 1 ends before the image's backup GPT
  t.ok(readRange(disk, MiB, partitionEnd - MiB).equals(image.subarray(MiB, partitionEnd)), 'the image\'s partition bytes')
  const verify = sgdiskVerify(disk)
  t.ok(verify.clean, `sgdisk -v finds no problem: ${verify.report}`)
  const print = execFileSync('sgdisk', ['-p', disk], { encoding: 'utf8' })
  const configRow = /^\s+(\d+)\s+(\d+)\s+(\d+)\s+.*config-2\s*$/m.exec(print)
  t.ok(configRow !== null, `a config-2 partition: ${print}`)
  const start = Number(configRow?.[2]) * 512
  const iso = readRange(disk, start, Number(configRow?.[3]) * 512 + 512 - start)
  const blkid = execFileSync('blkid', ['-p', '-O', String(start), '-o', 'export', disk], { encoding: 'utf8' })
  t.match(blkid, /TYPE=iso9660/)
  t.match(blkid, /LABEL=config-2/)
  t.match(iso.subarray(0x8000 + 318, 0x8000 + 318 + 9).toString(), /metalsmi/, 'the conductor\'s own ISO (publisher metalsmith), written as it came')
  const files = readIso9660Files(iso).files
  const metaData = JSON.parse(files.find((f) => f.path === 'openstack/latest/meta_data.json')?.data.toString() ?? '{}') as Record<string, unknown>
  t.equal(metaData.hostname, 'node-one')
  t.equal(metaData.name, 'byoi-node-1', 'Ironic adds the node name')
  t.equal(files.find((f) => f.path === 'openstack/latest/user_data')?.data.toString(), '#cloud-config\nruncmd: [true]\n')
})

t.test('a wrong checksum: deploy failed with the agent\'s message, the disk unbootable, the logs collected', async (t) => {
  const mac = '52:54:00:00:20:02'
  const disk = join(tmp.path, 'disk-bad.img')
  makeDirtyDisk(disk, 64 * MiB)
  const wrong = 'f'.repeat(64)
  const uuid = await ironic.createNode({
    name: 'byoi-node-2',
    macs: [mac],
    instanceInfo: { image_source: server.url('/disk.raw'), image_os_hash_algo: 'sha256', image_os_hash_value: wrong, image_disk_format: 'raw', root_gb: 1 },
  })
  const { node, agent: { code } } = await deployThroughAgent(uuid, mac, disk, 'deploy failed', { configdrive: { meta_data: {}, user_data: '#cloud-config\n' } })
  t.equal(code, 0, 'stopped by its signal')
  t.equal(node.provision_state, 'deploy failed')
  t.equal(node.last_error, `Deploy step deploy.write_image failed on node ${uuid}. Bad sha256 for downloaded file, got: ${sha256} while expecting ${wrong}.`)
  t.ok(readRange(disk, 0, MiB).every((byte) => byte === 0), 'first MiB zeroed: unbootable')
  t.ok(readRange(disk, 63 * MiB, MiB).every((byte) => byte === 0), 'last MiB zeroed: no backup GPT to recover from')
  const logsDir = join(ironic.dir, 'deploy-logs')
  const logs = existsSync(logsDir) ? readdirSync(logsDir).filter((name) => name.startsWith(uuid)) : []
  t.equal(logs.length, 1, 'the conductor stored the logs the agent sent')
  if (logs[0] !== undefined) {
    const listing = execFileSync('tar', ['-tzf', join(logsDir, logs[0])], { encoding: 'utf8' })
    t.match(listing, /byoi-agent\.log/)
    t.notMatch(execFileSync('tar', ['-xzOf', join(logsDir, logs[0]), 'byoi-agent.log']).toString(), /agent_token=/)
  }
  t.ok(readFileSync(disk).length === 64 * MiB)
})

t.test('the node\'s root device hints choose the disk (a fake /sys/block: the disk chosen cannot be opened, which names it)', async (t) => {
  const mac = '52:54:00:00:20:03'
  const uuid = await ironic.createNode({
    name: 'byoi-node-3',
    macs: [mac],
    properties: { root_device: { serial: 'S64F2', size: '>= 800' } },
    instanceInfo: { image_source: server.url('/disk.raw'), image_os_hash_algo: 'sha256', image_os_hash_value: sha256, image_disk_format: 'raw', root_gb: 1 },
  })
  const { node, agent: { stderr } } = await deployThroughAgent(uuid, mac, 'auto', 'deploy failed', { blockDevices: fakeServer(join(tmp.path, 'sys')) })
  t.equal(node.last_error, `Deploy step deploy.write_image failed on node ${uuid}. Could not open disk /dev/nvme91n1: no such file or device.`,
    'nvme91n1 (serial S64F2) chosen, not nvme90n1 (--disk auto\'s)')
  t.match(stderr, /"why":"\/dev\/nvme91n1 chosen by root device hints/)
})
