/**
 * addConfigDrivePartition on GPT (512-byte sectors; 4Kn is in gpt-4kn.test.ts) and MBR images,
 * after relocateBackupGpt, as the install runs them. Referees: `sgdisk -v`, `sgdisk -p`, `sgdisk -i`
 * (GPT) and `sfdisk --dump` (MBR).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddedPartition } from '../../../../agent/disk/partition-table.js'
import { addConfigDrivePartition, HeadOverlay, relocateBackupGpt } from '../../../../agent/disk/partition-table.js'
import { readRange, tempDir } from '../../../helpers/disk-files.js'
import type { Disk } from '../../../../agent/disk/disk.js'
import { GiB, growInto, MemoryIo, MiB, run, sfdiskDump, sfdiskImage, sgdiskImage, sgdiskInfo, sgdiskPartitions, sgdiskVerify, TiB, withHead } from './fixtures/partition-tools.js'

const tmp = tempDir('byoi-cd-')
t.teardown(tmp.remove)
let serial = 0
const path = (name: string): string => join(tmp.path, `${serial++}-${name}`)

const IMAGE_BYTES = 64 * MiB
const LINUX_FS = '0FC63DAF-8483-4772-8E79-3D69D8477DE4'
const gptImage = path('gpt.img')
sgdiskImage(gptImage, IMAGE_BYTES, ['-o', '-n', '1:0:+16M', '-t', '1:ef00', '-n', '2:0:0', '-c', '2:root'])
const gptPartitions = sgdiskPartitions(gptImage)

/** The install's order: relocate, then add. */
async function install (disk: string, options: Parameters<typeof addConfigDrivePartition>[1] = {}): Promise<AddedPartition> {
  const { result } = await withHead(disk, IMAGE_BYTES, async (head: Buffer, io: Disk) => {
    await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
    return await addConfigDrivePartition(new HeadOverlay(head, io), options)
  })
  return result
}

for (const [label, diskBytes] of [['1 GiB', GiB], ['3 TiB (sparse)', 3 * TiB]] as const) {
  t.test(`GPT, 512-byte sectors, ${label}: a config-2 entry in the last 64 MiB`, async (t) => {
    const disk = path('disk.img')
    growInto(gptImage, disk, diskBytes)
    const added = await install(disk)
    const lastUsable = diskBytes / 512 - 34
    // The last 64 MiB of the free space, start aligned up to 1 MiB, end at the last usable LBA.
    const start = Math.ceil((lastUsable + 1 - 64 * MiB / 512) / 2048) * 2048
    t.same(added, { table: 'gpt', number: 3, reused: false, offsetBytes: start * 512, sizeBytes: (lastUsable + 1 - start) * 512, uniqueGuid: added.uniqueGuid })
    t.equal(added.offsetBytes % MiB, 0, 'aligned to 1 MiB')
    t.ok(added.offsetBytes >= diskBytes - 64 * MiB && added.offsetBytes + added.sizeBytes <= diskBytes, 'within the last 64 MiB of the disk')

    t.match(sgdiskVerify(disk), /No problems found/)
    const partitions = sgdiskPartitions(disk)
    t.same(partitions.slice(0, 2), gptPartitions, 'the image\'s partitions unchanged')
    t.match(partitions[2], { number: 3, start, end: lastUsable, code: '8300', name: 'config-2' })
    const info = sgdiskInfo(disk, 3)
    t.match(info, { typeGuid: LINUX_FS, uniqueGuid: added.uniqueGuid, first: start, last: lastUsable, name: 'config-2' })
    const guids = [1, 2].map((n) => sgdiskInfo(disk, n).uniqueGuid)
    t.notOk(guids.includes(info.uniqueGuid), 'a unique GUID of its own')
    t.match(info.uniqueGuid, /^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/, 'a random (v4) GUID')

    // A second install step finds it by name and changes nothing.
    const before = readRange(disk, 0, MiB)
    const again = await install(disk)
    t.same(again, { ...added, reused: true })
    t.ok(readRange(disk, 0, MiB).equals(before))
  })
}

t.test('GPT: two installs give different unique GUIDs', async (t) => {
  const guids = new Set<string | undefined>()
  for (let i = 0; i < 2; i++) {
    const disk = path('disk.img')
    growInto(gptImage, disk, GiB)
    guids.add((await install(disk)).uniqueGuid)
  }
  t.equal(guids.size, 2)
})

t.test('GPT: an image already holding a config-2 partition: reused, no new entry, nothing written', async (t) => {
  const withConfig = path('with-config.img')
  sgdiskImage(withConfig, IMAGE_BYTES, ['-o', '-n', '1:0:+16M', '-n', '2:0:+16M', '-c', '2:Config-2', '-n', '3:0:0'])
  const data = Buffer.alloc(GiB)
  readFileSync(withConfig).copy(data)
  const head = Buffer.from(data.subarray(0, MiB))
  data.fill(0, 0, MiB)
  const io = new MemoryIo(data)
  await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
  const headBefore = Buffer.from(head)
  io.writes.length = 0
  const added = await addConfigDrivePartition(new HeadOverlay(head, io))
  t.match(added, { table: 'gpt', number: 2, reused: true, offsetBytes: 34816 * 512, sizeBytes: 16 * MiB })
  t.same(io.writes, [])
  t.ok(head.equals(headBefore))
})

t.test('GPT: a partition whose filesystem is labelled config-2 (isConfigDrive) is reused', async (t) => {
  const disk = path('disk.img')
  growInto(gptImage, disk, GiB)
  const asked: Array<[number, number]> = []
  const added = await install(disk, {
    isConfigDrive: async (offsetBytes, sizeBytes) => {
      asked.push([offsetBytes, sizeBytes])
      return offsetBytes === 34816 * 512
    },
  })
  t.same(asked, [[MiB, 16 * MiB], [34816 * 512, (131038 - 34816 + 1) * 512]])
  t.match(added, { number: 2, reused: true })
  t.same(sgdiskPartitions(disk), gptPartitions, 'no new entry')
})

t.test('GPT refusals: CONFIGDRIVE_FAILED with the reason as the cause', async (t) => {
  t.test('no free entry', async (t) => {
    const small = path('small-table.img')
    sgdiskImage(small, IMAGE_BYTES, ['-o', '-S', '4', '-n', '1:0:+8M', '-n', '2:0:+8M', '-n', '3:0:+8M', '-n', '4:0:+8M'])
    const disk = path('disk.img')
    growInto(small, disk, GiB)
    await t.rejects(install(disk), { code: 'CONFIGDRIVE_FAILED', message: 'Could not create configdrive on disk.', cause: { message: 'all 4 GPT partition entries are in use' } })
  })
  t.test('no free space (the image fills the disk)', async (t) => {
    const disk = path('disk.img')
    growInto(gptImage, disk, IMAGE_BYTES)
    await t.rejects(install(disk), { code: 'CONFIGDRIVE_FAILED', cause: { message: /^no room for a partition of at least 1048576 bytes after the last partition \(0 bytes free from LBA 131039\)$/ } })
  })
  t.test('less room than minSizeBytes', async (t) => {
    const disk = path('disk.img')
    growInto(gptImage, disk, IMAGE_BYTES + 3 * MiB)
    await t.rejects(install(disk, { minSizeBytes: 4 * MiB }), { code: 'CONFIGDRIVE_FAILED', cause: { message: /no room for a partition of at least 4194304 bytes/ } })
    const disk2 = path('disk.img')
    growInto(gptImage, disk2, IMAGE_BYTES + 3 * MiB)
    t.match(await install(disk2), { reused: false, sizeBytes: 3 * MiB - 33 * 512 }, 'smaller down to the minimum: what is left after the last partition, 1 MiB aligned')
    t.match(sgdiskVerify(disk2), /No problems found/)
  })
  t.test('more than 64 MiB asked', async (t) => {
    const disk = path('disk.img')
    growInto(gptImage, disk, GiB)
    await t.rejects(install(disk, { sizeBytes: 65 * MiB }), { code: 'CONFIGDRIVE_FAILED', cause: { message: /between 1 MiB and 64 MiB/ } })
  })
  t.test('a reused partition smaller than minSizeBytes', async (t) => {
    const disk = path('disk.img')
    growInto(gptImage, disk, GiB)
    await t.rejects(install(disk, { minSizeBytes: 32 * MiB, isConfigDrive: async (offset) => offset === MiB }), { code: 'CONFIGDRIVE_FAILED', cause: { message: 'the existing config-2 partition 1 holds 16777216 bytes, less than the 33554432 needed' } })
  })
  t.test('no partition table', async (t) => {
    const io = new MemoryIo(Buffer.alloc(8 * MiB))
    await t.rejects(addConfigDrivePartition(new HeadOverlay(Buffer.alloc(MiB), io)), { code: 'CONFIGDRIVE_FAILED', cause: { message: 'the image has no partition table (neither GPT nor MBR)' } })
    t.same(io.writes, [])
  })
})

// ── MBR ────────────────────────────────────────────────────────────────────────────────────────

function mbrScript (primaries: number): string {
  return 'label: dos\nlabel-id: 0x12345678\n' + ',8MiB,83\n'.repeat(primaries)
}

for (const primaries of [1, 2, 3]) {
  t.test(`MBR with ${primaries} primar${primaries === 1 ? 'y' : 'ies'}: the next slot, type 83, the last 64 MiB`, async (t) => {
    const image = path('mbr.img')
    sfdiskImage(image, IMAGE_BYTES, mbrScript(primaries))
    const before = sfdiskDump(image)
    const disk = path('disk.img')
    growInto(image, disk, GiB)
    const added = await install(disk)
    // It ends 33 sectors before the disk's end (room for a backup GPT).
    const start = (GiB - 64 * MiB) / 512
    const size = 64 * MiB / 512 - 33
    t.same(added, { table: 'mbr', number: primaries + 1, reused: false, offsetBytes: start * 512, sizeBytes: size * 512 })
    const after = sfdiskDump(disk)
    t.equal(after.label, 'dos')
    t.same(after.partitions.slice(0, primaries).map(({ start, size, type }) => ({ start, size, type })), before.partitions.map(({ start, size, type }) => ({ start, size, type })), 'the image\'s partitions unchanged')
    t.match(after.partitions[primaries], { node: `${disk}${primaries + 1}`, start, size, type: '83' })
    t.match(run('sgdisk', ['-v', disk]), /No problems found/, 'sgdisk -v: nothing overlaps where a backup GPT would go')
    t.equal(after.partitions.length, primaries + 1)
    t.equal(readRange(disk, 440, 4).readUInt32LE(), 0x12345678, 'disk identifier kept')
    t.match(run('sfdisk', ['-V', disk]), /No errors detected/, 'sfdisk --verify: CHS and LBAs agree')
  })
}

t.test('MBR with four primaries: refused, the head unchanged', async (t) => {
  const image = path('mbr4.img')
  sfdiskImage(image, IMAGE_BYTES, mbrScript(4))
  const data = Buffer.alloc(GiB)
  readFileSync(image).copy(data)
  const head = Buffer.from(data.subarray(0, MiB))
  const before = Buffer.from(head)
  data.fill(0, 0, MiB)
  const io = new MemoryIo(data)
  t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { kind: 'mbr', moved: false })
  await t.rejects(addConfigDrivePartition(new HeadOverlay(head, io)), { code: 'CONFIGDRIVE_FAILED', message: 'Could not create configdrive on disk.', cause: { message: 'all four primary partitions are in use' } })
  t.same(io.writes, [])
  t.ok(head.equals(before))
})

t.test('MBR on a 3 TiB disk: the partition ends below 2 TiB (sector 2^32)', async (t) => {
  const image = path('mbr-big.img')
  sfdiskImage(image, IMAGE_BYTES, mbrScript(2))
  const disk = path('disk.img')
  growInto(image, disk, 3 * TiB)
  const added = await install(disk)
  const start = 2 ** 32 - 64 * MiB / 512
  t.same(added, { table: 'mbr', number: 3, reused: false, offsetBytes: start * 512, sizeBytes: 64 * MiB })
  t.ok(added.offsetBytes + added.sizeBytes <= 2 * TiB)
  t.match(sfdiskDump(disk).partitions[2], { start, size: 64 * MiB / 512, type: '83' })
  t.match(run('sfdisk', ['-V', disk]), /No errors detected/)
})

t.test('MBR: a primary whose filesystem is labelled config-2 is reused', async (t) => {
  const image = path('mbr-reuse.img')
  sfdiskImage(image, IMAGE_BYTES, mbrScript(3))
  const disk = path('disk.img')
  growInto(image, disk, GiB)
  const before = sfdiskDump(disk).partitions
  const asked: number[] = []
  const added = await install(disk, {
    isConfigDrive: async (offsetBytes) => {
      asked.push(offsetBytes)
      return offsetBytes === 17 * MiB
    },
  })
  t.same(asked, [MiB, 9 * MiB, 17 * MiB])
  t.same(added, { table: 'mbr', number: 3, reused: true, offsetBytes: 17 * MiB, sizeBytes: 8 * MiB })
  t.same(sfdiskDump(disk).partitions, before)
})

t.test('MBR with an extended partition: the container is not asked about, the 4th slot is used', async (t) => {
  const image = path('mbr-ext.img')
  sfdiskImage(image, IMAGE_BYTES, 'label: dos\n1: start=2048, size=8MiB, type=83\n2: size=32MiB, type=5\n3: size=8MiB, type=83\n5: start=20480, size=8MiB, type=83\n')
  const disk = path('disk.img')
  growInto(image, disk, GiB)
  const asked: number[] = []
  const added = await install(disk, { isConfigDrive: async (offsetBytes) => { asked.push(offsetBytes); return false } })
  t.same(asked, [MiB, 83968 * 512], 'the two primaries, not the extended container')
  t.same(added, { table: 'mbr', number: 4, reused: false, offsetBytes: GiB - 64 * MiB, sizeBytes: 64 * MiB - 33 * 512 })
  const partitions = sfdiskDump(disk).partitions
  t.same(partitions.map((p) => [p.node.slice(disk.length), p.start, p.size, p.type]), [
    ['1', 2048, 16384, '83'], ['2', 18432, 65536, '5'], ['3', 83968, 16384, '83'], ['4', (GiB - 64 * MiB) / 512, 131072 - 33, '83'], ['5', 20480, 16384, '83'],
  ])
})
