import t from 'tap'
import type { BlockDeviceInfo } from '../../../agent/disk/auto-disk.js'
import { pickAutoDisk } from '../../../agent/disk/auto-disk.js'
import { diskKindOf, formDiskGroups, pickDiskByGroup, pickDiskByHints } from '../../../agent/disk/disk-choice.js'
import { parseHintsText } from '../../../agent/disk/root-device-hints.js'

const GiB = 1024 ** 3
const disk = (name: string, extra: Partial<BlockDeviceInfo> = {}): BlockDeviceInfo => ({
  name, removable: false, size512: (100 * GiB) / 512, virtual: false, partition: false, readOnly: false, model: null, mounts: [], swaps: [], holders: [],
  vendor: null, serials: [], wwns: [], wwnWithExtension: null, wwnVendorExtension: null, rotational: null, hctl: null, byPaths: [], ...extra,
})
const ROOT_MOUNT = { mounts: [{ device: 'sda1', mountPoint: '/' }] }

/** A server as OVH sells them: two NVMe for the system, two big HDDs for data; a USB stick and loop devices about. */
const server = [
  disk('sdb', { size512: (3726 * GiB) / 512, rotational: true, model: 'HGST HUS726T4TAL', serials: ['V6KB2'] }),
  disk('nvme1n1', { size512: (894 * GiB) / 512, rotational: false, model: 'SAMSUNG MZQL2960', serials: ['S64F2'] }),
  disk('sda', { size512: (3726 * GiB) / 512, rotational: true, model: 'HGST HUS726T4TAL', serials: ['V6KB1'] }),
  disk('nvme0n1', { size512: (894 * GiB) / 512, rotational: false, model: 'SAMSUNG MZQL2960', serials: ['S64F1'] }),
  disk('sdc', { removable: true, size512: (30 * GiB) / 512, model: 'USB Stick', serials: ['V6KB1'] }),
  disk('loop0', { virtual: true }),
  disk('loop1', { virtual: true }),
]

t.test('hints: exactly one free disk matches; the why names the disk, the hints and what tells it apart', async (t) => {
  const choice = pickDiskByHints(server, parseHintsText('serial=s64f2'))
  t.same(choice, {
    disk: { name: 'nvme1n1', path: '/dev/nvme1n1', sizeBytes: 894 * GiB, model: 'SAMSUNG MZQL2960' },
    why: '/dev/nvme1n1 chosen by root device hints serial=s64f2 (size 894 GiB, model SAMSUNG MZQL2960, serial S64F2)',
  })
  t.equal(pickDiskByHints(server, parseHintsText('rotational=true,name=sdb')).disk?.path, '/dev/sdb')
  t.equal(pickDiskByHints(server, parseHintsText('size>=1000,serial=<or> V6KB2 <or> nope')).disk?.path, '/dev/sdb')
  // The USB stick shares sda's serial; it is never considered (removable).
  t.equal(pickDiskByHints(server, parseHintsText('serial=V6KB1')).disk?.path, '/dev/sda')
})

t.test('hints: none match: each disk and why, the devices never considered grouped', async (t) => {
  const choice = pickDiskByHints(server, parseHintsText('model=<in> intel,size>=100'))
  t.equal(choice.disk, undefined)
  t.equal('refusal' in choice && choice.refusal,
    'no disk matches the root device hints model=<in> intel, size>=100: nvme0n1: model is "SAMSUNG MZQL2960"; nvme1n1: model is "SAMSUNG MZQL2960"; ' +
    'sda: model is "HGST HUS726T4TAL"; sdb: model is "HGST HUS726T4TAL"; ' +
    'not considered: loop0, loop1 (not a disk (loop, RAM, optical, floppy, device-mapper, md or network device)); sdc (removable)')
})

t.test('hints: two match: refused, both named with what tells them apart', async (t) => {
  const choice = pickDiskByHints(server, parseHintsText('rotational=false'))
  t.equal('refusal' in choice && choice.refusal,
    '2 disks match the root device hints rotational=false: nvme0n1 (size 894 GiB, model SAMSUNG MZQL2960, serial S64F1); ' +
    'nvme1n1 (size 894 GiB, model SAMSUNG MZQL2960, serial S64F2); add a hint that tells them apart (serial, wwn, by_path)')
})

t.test('hints: a disk in use is never chosen, even the only one that matches', async (t) => {
  const devices = server.map((d) => d.name === 'sda' ? { ...d, ...ROOT_MOUNT } : d)
  const alone = pickDiskByHints(devices, parseHintsText('serial=V6KB1'))
  t.equal(alone.disk, undefined)
  t.equal('refusal' in alone && alone.refusal,
    'no disk that is free matches the root device hints serial=V6KB1 (a disk in use is never chosen): ' +
    'sda matches but is in use: partition sda1 mounted at /; ' +
    'nvme0n1: serial is "S64F1"; nvme1n1: serial is "S64F2"; sdb: serial is "V6KB2"; ' +
    'not considered: loop0, loop1 (not a disk (loop, RAM, optical, floppy, device-mapper, md or network device)); sdc (removable)')
  // Two match, one of them in use: the free one, and the why says the other was passed over.
  const other = pickDiskByHints(devices, parseHintsText('model=HGST HUS726T4TAL'))
  t.equal('why' in other && other.why,
    '/dev/sdb chosen by root device hints model=HGST HUS726T4TAL (size 3726 GiB, model HGST HUS726T4TAL, serial V6KB2); ' +
    'sda matches but is in use: partition sda1 mounted at / (never chosen)')
  t.match(pickDiskByHints([], parseHintsText('serial=x')), { disk: undefined, refusal: 'no disk matches the root device hints serial=x: no disk at all' })
})

t.test('groups: one kind and size each, numbered in the natural order of their first disk; group 1 starts with --disk auto\'s disk', async (t) => {
  const groups = formDiskGroups(server)
  t.same(groups.map((g) => ({ id: g.id, kind: g.kind, sizeBytes: g.sizeBytes, disks: g.disks.map((d) => d.name) })), [
    { id: 1, kind: 'NVMe', sizeBytes: 894 * GiB, disks: ['nvme0n1', 'nvme1n1'] },
    { id: 2, kind: 'HDD', sizeBytes: 3726 * GiB, disks: ['sda', 'sdb'] },
  ])
  t.equal(groups[0]?.disks[0]?.name, pickAutoDisk(server).disk?.name)
  // An SSD and an HDD of one size are two groups; so are two sizes of one kind; sysfs that does not say is HDD.
  const mixed = formDiskGroups([
    disk('sda', { rotational: false }), disk('sdb', { rotational: true }), disk('sdc', { rotational: false, size512: 4096 }),
    disk('sdd'), disk('sde', { rotational: false }),
  ])
  t.same(mixed.map((g) => `${g.id}:${g.kind}:${g.disks.map((d) => d.name).join('+')}`), ['1:SSD:sda+sde', '2:HDD:sdb+sdd', '3:SSD:sdc'])
  t.equal(diskKindOf(disk('nvme0n1', { rotational: true })), 'NVMe')
  t.same(formDiskGroups([disk('loop0', { virtual: true })]), [])
})

t.test('pickDiskByGroup: the group\'s first disk not in use; a group that does not exist or has no free disk is refused', async (t) => {
  t.same(pickDiskByGroup(server, 1), {
    disk: { name: 'nvme0n1', path: '/dev/nvme0n1', sizeBytes: 894 * GiB, model: 'SAMSUNG MZQL2960' },
    why: '/dev/nvme0n1 chosen as the first free disk of disk group 1 (NVMe, 894 GiB: nvme0n1, nvme1n1)',
  })
  t.equal(pickDiskByGroup(server, 2).disk?.path, '/dev/sda')
  const rescueOnSda = server.map((d) => d.name === 'sda' ? { ...d, ...ROOT_MOUNT } : d)
  t.same(pickDiskByGroup(rescueOnSda, 2), {
    disk: { name: 'sdb', path: '/dev/sdb', sizeBytes: 3726 * GiB, model: 'HGST HUS726T4TAL' },
    why: '/dev/sdb chosen as the first free disk of disk group 2 (HDD, 3726 GiB: sda, sdb); sda is in use: partition sda1 mounted at /',
  })
  t.same(formDiskGroups(rescueOnSda).map((g) => g.disks.length), [2, 2], 'a disk in use keeps its place in its group')
  t.same(pickDiskByGroup(server, 3), {
    disk: undefined,
    refusal: 'disk group 3 does not exist: this server has group 1 (NVMe, 894 GiB: nvme0n1, nvme1n1), group 2 (HDD, 3726 GiB: sda, sdb)',
  })
  const allBusy = server.map((d) => d.name === 'sda' ? { ...d, ...ROOT_MOUNT } : d.name === 'sdb' ? { ...d, holders: [{ device: 'sdb', holder: 'md0' }] } : d)
  t.same(pickDiskByGroup(allBusy, 2), {
    disk: undefined,
    refusal: 'disk group 2 (HDD, 3726 GiB: sda, sdb) has no disk that is not in use: sda is in use: partition sda1 mounted at /; sdb is in use: held by md0',
  })
  t.same(pickDiskByGroup([], 1), { disk: undefined, refusal: 'disk group 1 does not exist: this server has no disk that can be chosen' })
})
