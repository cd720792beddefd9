import t from 'tap'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import {
  freeDisks,
  compareDiskNames,
  devicePath,
  findAutoDisk,
  parseMountInfo,
  parseSwaps,
  parseUdevData,
  pickAutoDisk,
  readBlockDevices,
  wwnsOfWwid,
  type BlockDeviceInfo,
} from '../../../agent/disk/auto-disk.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

const disk = (name: string, extra: Partial<BlockDeviceInfo> = {}): BlockDeviceInfo =>
  ({
    name, removable: false, size512: 2048, virtual: false, partition: false, readOnly: false, model: null, mounts: [], swaps: [], holders: [],
    vendor: null, serials: [], wwns: [], wwnWithExtension: null, wwnVendorExtension: null, rotational: null, hctl: null, byPaths: [], ...extra,
  })

/** Empty mount table and swaps, for the fake sysfs tests that are not about them. */
const NOTHING_IN_USE = (() => {
  const mountInfoPath = join(tmp.path, 'mountinfo-none')
  const swapsPath = join(tmp.path, 'swaps-none')
  writeFileSync(mountInfoPath, '')
  writeFileSync(swapsPath, 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n')
  return { mountInfoPath, swapsPath }
})()

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
  const odd = [
    disk('sda1', { partition: true }),
    disk('vdb', { virtual: true }),
    disk('sdc', { removable: true }),
    disk('sdd', { readOnly: true }),
    disk('sde', { size512: 0 }),
  ]
  const choice = pickAutoDisk([...never, ...odd])
  t.equal(choice.disk, undefined)
  t.equal(choice.skipped.length, never.length + odd.length, 'each one said')
  t.match(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), {
    loop0: /not a disk/,
    sda1: 'a partition',
    vdb: 'a virtual device',
    sdc: 'removable',
    sdd: 'read-only',
    sde: 'empty (size 0)',
  })
  t.same(pickAutoDisk([]), { disk: undefined, skipped: [] })
})

t.test('never a disk in use: mounted, swap or held, each said; the next free disk is taken', async (t) => {
  const choice = pickAutoDisk([
    disk('sda', { mounts: [{ device: 'sda1', mountPoint: '/boot' }] }),
    disk('sdb', { swaps: ['sdb2'] }),
    disk('sdc', { holders: [{ device: 'sdc', holder: 'md0' }] }),
    disk('sdd', { holders: [{ device: 'sdd2', holder: 'dm-0' }] }),
    disk('sde', { mounts: [{ device: 'sde', mountPoint: '/mnt' }] }),
    disk('sdf', { swaps: ['sdf'] }),
    disk('sdg'),
    disk('nvme0n1', {
      mounts: [{ device: 'nvme0n1p2', mountPoint: '/' }, { device: 'nvme0n1p1', mountPoint: '/boot/efi' }, { device: 'nvme0n1p2', mountPoint: '/' }],
      swaps: ['nvme0n1p3'],
      holders: [{ device: 'nvme0n1p4', holder: 'dm-0' }, { device: 'nvme0n1p4', holder: 'dm-1' }],
    }),
  ])
  t.equal(choice.disk?.name, 'sdg', 'the first disk nothing uses')
  t.same(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), {
    sda: 'in use: partition sda1 mounted at /boot',
    sdb: 'in use: swap on sdb2',
    sdc: 'in use: held by md0',
    sdd: 'in use: partition sdd2 held by dm-0',
    sde: 'in use: sde mounted at /mnt',
    sdf: 'in use: swap on sdf',
    nvme0n1: 'in use: partition nvme0n1p2 mounted at /, partition nvme0n1p1 mounted at /boot/efi, swap on nvme0n1p3 and 2 more',
  })
  // Being in use is told after what the device is: a removable stick in use says removable.
  t.same(pickAutoDisk([disk('sdh', { removable: true, mounts: [{ device: 'sdh1', mountPoint: '/media' }] })]).skipped, [{ name: 'sdh', reason: 'removable' }])
  t.same(
    pickAutoDisk([disk('sda', { swaps: ['sda1'] })]),
    { disk: undefined, skipped: [{ name: 'sda', reason: 'in use: swap on sda1' }] },
    'none left: none chosen',
  )
})

t.test('mountinfo: device number, mount point (unescaped) and source; odd lines skipped', async (t) => {
  const text = [
    '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/root rw,discard',
    '36 35 98:0 /mnt1 /mnt/my\\040disk rw,noatime master:1 propagate_from:2 - ext3 /dev/sdb1 rw,errors=continue',
    '40 27 0:45 /@home /home rw,relatime - btrfs /dev/nvme0n1p2 rw,space_cache=v2',
    '41 27 0:46 / /tmp rw - tmpfs tmpfs rw',
    'garbage',
    '42 27 8:1 / /no-separator rw',
    '',
  ].join('\n')
  t.same(parseMountInfo(text), [
    { dev: '254:0', mountPoint: '/', source: '/dev/root' },
    { dev: '98:0', mountPoint: '/mnt/my disk', source: '/dev/sdb1' },
    { dev: '0:45', mountPoint: '/home', source: '/dev/nvme0n1p2' },
    { dev: '0:46', mountPoint: '/tmp', source: 'tmpfs' },
  ])
  t.same(parseMountInfo(''), [])
})

t.test('/proc/swaps: the file names after the header', async (t) => {
  const text = 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' +
    '/dev/sda2                               partition\t8388604\t\t0\t\t-2\n' +
    '/swap\\040file\t\t\t\t\tfile\t\t1048572\t\t0\t\t-3\n'
  t.same(parseSwaps(text), ['/dev/sda2', '/swap file'])
  t.same(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n'), [])
  t.same(parseSwaps(''), [])
})

t.test('device paths: ! in a sysfs name is a /', async (t) => {
  t.equal(devicePath('cciss!c0d0'), '/dev/cciss/c0d0')
  t.equal(devicePath('sda'), '/dev/sda')
})

interface FakePartition { name: string; dev?: string; holders?: string[] }

/** A folder laid out like /sys: /sys/devices/… with the attributes, /sys/block/NAME → the device. */
function fakeSysfs (root: string, devices: Array<{
  name: string
  under: string
  attrs: Record<string, string>
  partitions?: Array<string | FakePartition>
  holders?: string[]
}>): string {
  const block = join(root, 'block')
  mkdirSync(block, { recursive: true })
  const holders = (dir: string, names: string[] | undefined): void => {
    if (names === undefined) return
    mkdirSync(join(dir, 'holders'), { recursive: true })
    for (const holder of names) symlinkSync(join('..', '..', '..', '..', 'virtual', 'block', holder), join(dir, 'holders', holder))
  }
  for (const device of devices) {
    const dir = join(root, 'devices', device.under, 'block', device.name)
    mkdirSync(join(dir, 'device'), { recursive: true })
    for (const [name, value] of Object.entries(device.attrs)) {
      mkdirSync(dirname(join(dir, name)), { recursive: true })
      writeFileSync(join(dir, name), `${value}\n`)
    }
    holders(dir, device.holders)
    for (const entry of device.partitions ?? []) {
      const partition = typeof entry === 'string' ? { name: entry } : entry
      mkdirSync(join(dir, partition.name), { recursive: true })
      writeFileSync(join(dir, partition.name, 'partition'), '1\n')
      if (partition.dev !== undefined) writeFileSync(join(dir, partition.name, 'dev'), `${partition.dev}\n`)
      holders(join(dir, partition.name), partition.holders)
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
    {
      name: 'sda',
      under: 'pci0000:00/ata2/host1',
      attrs: { removable: '0', size: '937703088', ro: '0', 'device/model': 'SAMSUNG MZ7LH480  ' },
      partitions: ['sda1', 'sda2'],
    },
    { name: 'nvme0n1', under: 'pci0000:00/nvme/nvme0', attrs: { removable: '0', size: '0', ro: '0' } },
  ])
  const devices = await readBlockDevices({ sysBlockDir: block, ...NOTHING_IN_USE })
  t.match(devices.find((d) => d.name === 'sda'), {
    removable: false,
    size512: 937703088,
    virtual: false,
    partition: false,
    readOnly: false,
    model: 'SAMSUNG MZ7LH480',
    mounts: [],
    swaps: [],
    holders: [],
  })
  t.match(devices.find((d) => d.name === 'zram0'), { virtual: true })
  t.match(devices.find((d) => d.name === 'sdb'), { removable: true, model: 'USB Stick' })
  const choice = await findAutoDisk({ sysBlockDir: block, ...NOTHING_IN_USE })
  t.same(choice.disk, { name: 'sda', path: '/dev/sda', sizeBytes: 937703088 * 512, model: 'SAMSUNG MZ7LH480' })
  t.match(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), { nvme0n1: 'empty (size 0)', sdb: 'removable', sr0: /not a disk/ })
})

t.test('a device with unreadable attributes counts as empty', async (t) => {
  const block = fakeSysfs(join(tmp.path, 'sys2'), [{ name: 'sda', under: 'pci0000:00/x', attrs: {} }])
  t.same(await findAutoDisk({ sysBlockDir: block, ...NOTHING_IN_USE }), { disk: undefined, skipped: [{ name: 'sda', reason: 'empty (size 0)' }] })
})

t.test('mounts, swaps and holders found in a sysfs-like folder, by device number or /dev path', async (t) => {
  const root = join(tmp.path, 'sys3')
  type FakeDevice = Parameters<typeof fakeSysfs>[1][number]
  const disk = (name: string, dev: string, extra: { partitions?: Array<string | FakePartition>; holders?: string[] } = {}): FakeDevice =>
    ({ name, under: `pci0000:00/${name}`, attrs: { removable: '0', size: '2097152', ro: '0', dev }, ...extra })
  const block = fakeSysfs(root, [
    disk('sda', '8:0', { partitions: [{ name: 'sda1', dev: '8:1' }, { name: 'sda2', dev: '8:2' }, { name: 'sda3', dev: '8:3' }] }),
    disk('sdb', '8:16', { partitions: [{ name: 'sdb1', dev: '8:17' }, { name: 'sdb2', dev: '8:18', holders: ['dm-0'] }] }),
    disk('sdc', '8:32', { holders: ['md127'] }),
    disk('nvme0n1', '259:0', { partitions: [{ name: 'nvme0n1p1', dev: '259:1' }, { name: 'nvme0n1p2', dev: '259:2' }] }),
    disk('vda', '254:0'),
    disk('vdb', '254:16', { partitions: [{ name: 'vdb1', dev: '254:17' }] }),
    disk('sdd', '8:48', { partitions: [{ name: 'sdd1', dev: '8:49' }] }),
  ])
  // A folder that is not a partition (no `partition` file) and a symbolic link are never taken for one.
  mkdirSync(join(root, 'devices', 'pci0000:00', 'sdd', 'block', 'sdd', 'queue'))
  symlinkSync('..', join(root, 'devices', 'pci0000:00', 'sdd', 'block', 'sdd', 'bdi'))
  const mountInfoPath = join(root, 'mountinfo')
  writeFileSync(mountInfoPath, [
    '22 27 0:21 / /proc rw,relatime - proc proc rw',
    '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/root rw', // vda itself, by number (the source says /dev/root)
    '30 27 8:1 / /boot rw,relatime shared:2 - ext4 /dev/sda1 rw',
    '31 27 8:1 /x /srv/bind rw,relatime shared:2 - ext4 /dev/sda1 rw', // a bind mount of the same partition
    '40 27 0:45 /@ /mnt/my\\040data rw,relatime - btrfs /dev/nvme0n1p2 rw', // btrfs: an anonymous number, found by its source
    '50 27 8:64 / /mnt/other rw - ext4 /dev/sde rw', // no such disk here
  ].join('\n') + '\n')
  const swapsPath = join(root, 'swaps')
  writeFileSync(swapsPath, 'Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n' +
    '/dev/sda2                               partition\t2097148\t0\t-2\n' +
    '/dev/vdb1\tpartition\t1024\t0\t-3\n')

  const sources = { sysBlockDir: block, mountInfoPath, swapsPath }
  const devices = Object.fromEntries((await readBlockDevices(sources)).map((d) => [d.name, d]))
  t.same(devices['sda']?.mounts, [{ device: 'sda1', mountPoint: '/boot' }, { device: 'sda1', mountPoint: '/srv/bind' }])
  t.same(devices['sda']?.swaps, ['sda2'])
  t.same(devices['sdb']?.holders, [{ device: 'sdb2', holder: 'dm-0' }])
  t.same(devices['sdc']?.holders, [{ device: 'sdc', holder: 'md127' }])
  t.same(devices['nvme0n1']?.mounts, [{ device: 'nvme0n1p2', mountPoint: '/mnt/my data' }])
  t.same(devices['vda']?.mounts, [{ device: 'vda', mountPoint: '/' }])
  t.same(devices['vdb']?.swaps, ['vdb1'])
  t.match(devices['sdd'], { mounts: [], swaps: [], holders: [] })

  const choice = await findAutoDisk(sources)
  t.equal(choice.disk?.path, '/dev/sdd', 'the one disk nothing uses')
  t.same(Object.fromEntries(choice.skipped.map((s) => [s.name, s.reason])), {
    nvme0n1: 'in use: partition nvme0n1p2 mounted at /mnt/my data',
    sda: 'in use: partition sda1 mounted at /boot, partition sda1 mounted at /srv/bind, swap on sda2',
    sdb: 'in use: partition sdb2 held by dm-0',
    sdc: 'in use: held by md127',
    vda: 'in use: vda mounted at /',
    vdb: 'in use: swap on vdb1',
  })
})

t.test('an unreadable mount table is an error; no /proc/swaps means no swap', async (t) => {
  const block = fakeSysfs(join(tmp.path, 'sys4'), [{ name: 'sda', under: 'pci0000:00/x', attrs: { removable: '0', size: '2048', ro: '0', dev: '8:0' } }])
  await t.rejects(
    findAutoDisk({ sysBlockDir: block, mountInfoPath: join(tmp.path, 'no-mountinfo'), swapsPath: NOTHING_IN_USE.swapsPath }),
    /cannot read .*no-mountinfo to tell which disks are mounted/,
  )
  const choice = await findAutoDisk({ sysBlockDir: block, mountInfoPath: NOTHING_IN_USE.mountInfoPath, swapsPath: join(tmp.path, 'no-swaps') })
  t.equal(choice.disk?.name, 'sda')
  await t.rejects(
    findAutoDisk({ sysBlockDir: block, mountInfoPath: NOTHING_IN_USE.mountInfoPath, swapsPath: tmp.path }),
    /cannot read .* to tell which disks hold swap/,
    'a swaps path that cannot be read (a folder)',
  )
})

t.test('what hints need, from sysfs alone: SATA and SAS (SCSI), NVMe, virtio-blk', async (t) => {
  const root = join(tmp.path, 'sys-identity')
  const block = fakeSysfs(root, [
    {
      // A SATA SSD through libata: vendor ATA, the serial in VPD page 0x80, an NAA 5 wwid.
      name: 'sda',
      under: 'pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0',
      attrs: {
        dev: '8:0', removable: '0', size: '937703088', ro: '0', 'queue/rotational': '0',
        'device/model': 'SAMSUNG MZ7LH480', 'device/vendor': 'ATA     ', 'device/wwid': 'naa.5002538E40A1B2C3', 'device/scsi_device/0:0:0:0/x': '',
      },
    },
    {
      // A SAS disk with an NAA 6 (registered extended) identifier: WWN and vendor extension.
      name: 'sdb',
      under: 'pci0000:00/0000:02:00.0/host1/target1:0:3/1:0:3:0',
      attrs: {
        dev: '8:16', removable: '0', size: '7814037168', ro: '0', 'queue/rotational': '1',
        'device/model': 'ST4000NM0025', 'device/vendor': 'SEAGATE', 'device/wwid': 'naa.6000c29ab4c1d2e3f40718293a4b5c6d', 'device/scsi_device/1:0:3:0/x': '',
      },
    },
    {
      // NVMe: the serial and model on the controller (device/), the wwid on the namespace.
      name: 'nvme0n1',
      under: 'pci0000:00/0000:01:00.0/nvme/nvme0',
      attrs: {
        dev: '259:0', removable: '0', size: '937703088', ro: '0', 'queue/rotational': '0',
        'device/model': 'SAMSUNG MZQL2480HCJR-00A07', 'device/serial': '  S64HNE0R123456  ', wwid: 'eui.36344830526004440025384500000001',
      },
    },
    {
      // virtio-blk: a serial attribute on the disk, the virtio PCI vendor, no SCSI address, no wwid.
      name: 'vda',
      under: 'pci0000:00/0000:00:04.0/virtio1',
      attrs: { dev: '254:0', removable: '0', size: '41943040', ro: '0', 'queue/rotational': '1', serial: 'VIRTIO-SERIAL-1', 'device/vendor': '0x1af4' },
    },
  ])
  // VPD page 0x80 (SPC-4 7.8.16): qualifier/type, page code, length, then the serial, space-padded.
  const serial = Buffer.from('S455NX0M123456      ', 'latin1')
  const page = Buffer.concat([Buffer.from([0x00, 0x80, 0x00, serial.length]), serial])
  writeFileSync(join(root, 'devices', 'pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0', 'block', 'sda', 'device', 'vpd_pg80'), page)
  const sources = { sysBlockDir: block, ...NOTHING_IN_USE, udevDataDir: join(root, 'no-udev'), byPathDir: join(root, 'no-by-path') }
  const devices = Object.fromEntries((await readBlockDevices(sources)).map((d) => [d.name, d]))
  t.match(devices['sda'], {
    vendor: 'ATA', serials: ['S455NX0M123456'], wwns: ['0x5002538e40a1b2c3'], wwnWithExtension: '0x5002538e40a1b2c3', wwnVendorExtension: null,
    rotational: false, hctl: '0:0:0:0', byPaths: [],
  })
  t.same(devices['sdb']?.wwns, ['0x6000c29ab4c1d2e3', '0x6000c29ab4c1d2e3f40718293a4b5c6d'])
  t.match(devices['sdb'], {
    vendor: 'SEAGATE', wwnWithExtension: '0x6000c29ab4c1d2e3f40718293a4b5c6d', wwnVendorExtension: '0xf40718293a4b5c6d', rotational: true, hctl: '1:0:3:0',
  })
  t.match(devices['nvme0n1'], {
    vendor: null, serials: ['S64HNE0R123456'], wwns: ['eui.36344830526004440025384500000001'], wwnWithExtension: null, rotational: false, hctl: null,
  })
  t.match(devices['vda'], { vendor: '0x1af4', serials: ['VIRTIO-SERIAL-1'], wwns: [], rotational: true, hctl: null })
})

t.test('udev\'s database and /dev/disk/by-path, when there: serials, WWNs and by-path names as lsblk and ironic-python-agent read them', async (t) => {
  const root = join(tmp.path, 'sys-udev')
  const block = fakeSysfs(root, [
    {
      name: 'sda',
      under: 'pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0',
      attrs: { dev: '8:0', removable: '0', size: '937703088', ro: '0', 'device/wwid': 'naa.5002538e40a1b2c3', 'device/scsi_device/0:0:0:0/x': '' },
    },
    { name: 'sdb', under: 'pci0000:00/0000:02:00.0/host1/target1:0:3/1:0:3:0', attrs: { dev: '8:16', removable: '0', size: '2048', ro: '0' } },
  ])
  const udevDataDir = join(root, 'udev')
  mkdirSync(udevDataDir)
  writeFileSync(join(udevDataDir, 'b8:0'), [
    'S:disk/by-id/ata-SAMSUNG_MZ7LH480_S455NX0M123456',
    'S:disk/by-path/pci-0000:00:17.0-ata-1.0',
    'W:12',
    'E:ID_SERIAL=SAMSUNG_MZ7LH480_S455NX0M123456',
    'E:ID_SERIAL_SHORT=S455NX0M123456',
    'E:ID_WWN=0x5002538e40a1b2c3',
    'E:ID_WWN_WITH_EXTENSION=0x5002538e40a1b2c3',
    'G:systemd',
  ].join('\n') + '\n')
  writeFileSync(join(udevDataDir, 'b8:16'), 'E:ID_SCSI_SERIAL=ZC1ABC23\nE:ID_SERIAL=35000c500a1b2c3d4\nE:ID_WWN=0x5000c500a1b2c3d4\n' +
    'E:ID_WWN_WITH_EXTENSION=0x5000c500a1b2c3d4f00d\nE:ID_WWN_VENDOR_EXTENSION=0xf00d\n')
  const byPathDir = join(root, 'by-path')
  mkdirSync(byPathDir)
  symlinkSync('../../sda', join(byPathDir, 'pci-0000:00:17.0-ata-1'))
  symlinkSync('../../sda1', join(byPathDir, 'pci-0000:00:17.0-ata-1-part1'))
  symlinkSync('../../sdb', join(byPathDir, 'pci-0000:02:00.0-sas-0x5000c500a1b2c3d5-lun-0'))
  const devices = Object.fromEntries((await readBlockDevices({ sysBlockDir: block, ...NOTHING_IN_USE, udevDataDir, byPathDir })).map((d) => [d.name, d]))
  t.match(devices['sda'], {
    serials: ['S455NX0M123456'],
    wwns: ['0x5002538e40a1b2c3'],
    byPaths: ['/dev/disk/by-path/pci-0000:00:17.0-ata-1', '/dev/disk/by-path/pci-0000:00:17.0-ata-1.0'],
  })
  t.match(devices['sdb'], {
    serials: ['ZC1ABC23', '35000c500a1b2c3d4'],
    wwns: ['0x5000c500a1b2c3d4f00d', '0x5000c500a1b2c3d4'],
    wwnWithExtension: '0x5000c500a1b2c3d4f00d',
    wwnVendorExtension: '0xf00d',
    byPaths: ['/dev/disk/by-path/pci-0000:02:00.0-sas-0x5000c500a1b2c3d5-lun-0'],
  })
  t.same(parseUdevData('E:A=b=c\nE:=x\nS:\nS:disk/by-id/y\nX:z\n'), { properties: new Map([['A', 'b=c']]), links: ['disk/by-id/y'] })
  t.same(wwnsOfWwid('sdc', 't10.ATA     QEMU HARDDISK'), {}, 'a T10 vendor identifier gives no WWN')
  t.same(wwnsOfWwid('sdc', undefined), {})
})

t.test('the real /sys/block and /proc can be read (nothing is chosen for use here)', { skip: process.platform !== 'linux' }, async (t) => {
  const devices = await readBlockDevices()
  t.ok(devices.length > 0)
  t.ok(devices.every((d) => typeof d.name === 'string' && Number.isInteger(d.size512)))
  const choice = pickAutoDisk(devices)
  t.ok(choice.disk === undefined || !/^(loop|zram|ram)/.test(choice.disk.name))
  // The disk this machine runs from, if it has one, is never the choice.
  const root = devices.find((d) => d.mounts.some((m) => m.mountPoint === '/'))
  if (root !== undefined) {
    t.not(choice.disk?.name, root.name, `${root.name} holds / and is not chosen`)
    t.ok(choice.skipped.some((s) => s.name === root.name), choice.skipped.find((s) => s.name === root.name)?.reason ?? 'not said')
  }
  const free = (name: string): boolean => devices.some((d) => d.name === name && d.mounts.length === 0 && d.swaps.length === 0 && d.holders.length === 0)
  t.ok(choice.disk === undefined || free(choice.disk.name), 'the choice, if any, is free')
})

t.test('freeDisks: every disk that may be written now, in natural order (erase_devices_metadata erases these)', async (t) => {
  const free = freeDisks([
    disk('sdb'), disk('sda', { mounts: [{ device: 'sda1', mountPoint: '/' }] }), disk('loop0'), disk('nvme10n1'), disk('nvme2n1'),
    disk('sdc', { removable: true }), disk('sdd', { holders: [{ device: 'sdd', holder: 'md0' }] }),
  ])
  t.same(free.map((d) => d.name), ['nvme2n1', 'nvme10n1', 'sdb'])
})
