import t from 'tap'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { compareDiskNames, devicePath, findAutoDisk, pickAutoDisk, readBlockDevices, type BlockDeviceInfo } from '../../../agent/disk/auto-disk.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

const disk = (name: string, extra: Partial<BlockDeviceInfo> = {}): BlockDeviceInfo =>
  ({ name, removable: false, size512: 2048, virtual: false, partition: false, readOnly: false, model: null, ...extra })

t.test('natural order: numbers as numbers, sd letters as the kernel counts them', async (t) => {
  const names = ['sdb', 'vda', 'sdaa', 'nvme10n1', 'sda', 'nvme1n1', 'sdz', 'nvme1n2', 'hda', 'xvda', 'mmcblk0', 'nvme0n1']
  t.same([...names].sort(compareDiskNames), ['hda', 'mmcblk0', 'nvme0n1', 'nvme1n1', 'nvme1n2', 'nvme10n1', 'sda', 'sdb', 'sdz', 'sdaa', 'vda', 'xvda'])
  t.equal(compareDiskNames('sda', 'sda'), 0)
})

t.test('the first whole, non-removable, non-virtual disk', async (t) => {
  const choice = pickAutoDisk([disk('sdb'), disk('sda', { model: 'SAMSUNG' }), disk('nvme0n1', { removable: true })])
  t.same(choice.disk, { name: 'sda', path: '/dev/sda', sizeBytes: 2048 * 512, model: 'SAMSUNG' })
  t.same(choice.skipped, [{ name: 'nvme0n1', reason: 'removable' }, { name: 'sdb', reason: 'not the first disk (sda is)' }])
  t.equal(pickAutoDisk([disk('vda'), disk('sda')]).disk?.name, 'sda')
  t.equal(pickAutoDisk([disk('sdb'), disk('nvme0n1')]).disk?.name, 'nvme0n1')
})

t.test('never loop, ram, zram, sr, fd, dm, md, nbd, a partition, a virtual, read-only or empty device', async (t) => {
  const never = ['loop0', 'ram0', 'zram0', 'sr0', 'fd0', 'dm-0', 'md0', 'md127', 'nbd0'].map((name) => disk(name))
  const odd = [disk('sda1', { partition: true }), disk('vdb', { virtual: true }), disk('sdc', { removable: true }), disk('sdd', { readOnly: true }), disk('sde', { size512: 0 })]
  const choice = pickAutoDisk([...never, ...odd])
  t.equal(choice.disk, undefined)
  t.equal(choice.skipped.length, never.length + odd.length, 'each one said')
  t.match(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), { loop0: /not a disk/, sda1: 'a partition', vdb: 'a virtual device', sdc: 'removable', sdd: 'read-only', sde: 'empty (size 0)' })
  t.same(pickAutoDisk([]), { disk: undefined, skipped: [] })
})

t.test('device paths: ! in a sysfs name is a /', async (t) => {
  t.equal(devicePath('cciss!c0d0'), '/dev/cciss/c0d0')
  t.equal(devicePath('sda'), '/dev/sda')
})

/** A folder laid out like /sys: /sys/devices/… with the attributes, /sys/block/NAME → the device. */
function fakeSysfs (root: string, devices: Array<{ name: string; under: string; attrs: Record<string, string>; partitions?: string[] }>): string {
  const block = join(root, 'block')
  mkdirSync(block, { recursive: true })
  for (const device of devices) {
    const dir = join(root, 'devices', device.under, 'block', device.name)
    mkdirSync(join(dir, 'device'), { recursive: true })
    for (const [name, value] of Object.entries(device.attrs)) writeFileSync(join(dir, name), `${value}\n`)
    for (const partition of device.partitions ?? []) {
      mkdirSync(join(dir, partition), { recursive: true })
      writeFileSync(join(dir, partition, 'partition'), '1\n')
    }
    symlinkSync(join('..', 'devices', device.under, 'block', device.name), join(block, device.name))
  }
  return block
}

t.test('reads a sysfs-like folder and picks from it', async (t) => {
  const block = fakeSysfs(join(tmp.path, 'sys1'), [
    { name: 'loop0', under: 'virtual', attrs: { removable: '0', size: '0', ro: '0' } },
    { name: 'zram0', under: 'virtual', attrs: { removable: '0', size: '8388608', ro: '0' } },
    { name: 'sr0', under: 'pci0000:00/ata1/host0', attrs: { removable: '1', size: '2097152', ro: '0' } },
    { name: 'sdb', under: 'pci0000:00/usb1/1-1', attrs: { removable: '1', size: '30000000', ro: '0', 'device/model': 'USB Stick' } },
    { name: 'sda', under: 'pci0000:00/ata2/host1', attrs: { removable: '0', size: '937703088', ro: '0', 'device/model': 'SAMSUNG MZ7LH480  ' }, partitions: ['sda1', 'sda2'] },
    { name: 'nvme0n1', under: 'pci0000:00/nvme/nvme0', attrs: { removable: '0', size: '0', ro: '0' } },
  ])
  const devices = await readBlockDevices(block)
  t.match(devices.find((d) => d.name === 'sda'), { removable: false, size512: 937703088, virtual: false, partition: false, readOnly: false, model: 'SAMSUNG MZ7LH480' })
  t.match(devices.find((d) => d.name === 'zram0'), { virtual: true })
  t.match(devices.find((d) => d.name === 'sdb'), { removable: true, model: 'USB Stick' })
  const choice = await findAutoDisk(block)
  t.same(choice.disk, { name: 'sda', path: '/dev/sda', sizeBytes: 937703088 * 512, model: 'SAMSUNG MZ7LH480' })
  t.match(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), { nvme0n1: 'empty (size 0)', sdb: 'removable', sr0: /not a disk/ })
})

t.test('a device with unreadable attributes counts as empty', async (t) => {
  const block = fakeSysfs(join(tmp.path, 'sys2'), [{ name: 'sda', under: 'pci0000:00/x', attrs: {} }])
  t.same(await findAutoDisk(block), { disk: undefined, skipped: [{ name: 'sda', reason: 'empty (size 0)' }] })
})

t.test('the real /sys/block can be read (nothing is chosen for use here)', { skip: process.platform !== 'linux' }, async (t) => {
  const devices = await readBlockDevices()
  t.ok(devices.length > 0)
  t.ok(devices.every((d) => typeof d.name === 'string' && Number.isInteger(d.size512)))
  const choice = pickAutoDisk(devices)
  t.ok(choice.disk === undefined || !/^(loop|zram|ram)/.test(choice.disk.name))
})
