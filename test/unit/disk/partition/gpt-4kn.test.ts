/**
 * 4Kn: GPT images made by sgdisk on a loop device with 4096-byte logical sectors, installed onto a
 * larger 4Kn loop device opened with Disk (which reads the sector size from sysfs). Referees:
 * `sgdisk -v`/`-p`/`-i` on the device, and `sgdisk -e` on a copy. Also the sector-size refusals.
 * Only the loop devices attached here are detached.
 */
import t from 'tap'
import { join } from 'node:path'
import { Disk } from '../../../../agent/disk/disk.js'
import { addConfigDrivePartition, checkSectorSize, detectPartitionTable, HeadOverlay, relocateBackupGpt } from '../../../../agent/disk/partition-table.js'
import { attachLoop, readRange, tempDir } from '../../../helpers/disk-files.js'
import { GiB, growInto, headerFields, mbrRecords, MiB, run, sgdiskImage, sgdiskInfo, sgdiskPartitions, sgdiskVerify, sparseFile, takeHead, writeAt } from './fixtures/partition-tools.js'

const tmp = tempDir('byoi-4kn-')
t.teardown(tmp.remove)
let serial = 0
const path = (name: string): string => join(tmp.path, `${serial++}-${name}`)

const IMAGE_BYTES = 64 * MiB
const DISK_BYTES = GiB
const LAST_LBA = DISK_BYTES / 4096 - 1

/** Runs `fn` with a 4Kn loop device over `file`, detached afterwards whatever happens. */
async function withLoop<T> (file: string, fn: (device: string) => Promise<T> | T): Promise<T> {
  const loop = attachLoop(file, 4096)
  try {
    return await fn(loop.device)
  } finally {
    loop.detach()
  }
}

const image = path('gpt-4096.img')
sparseFile(image, IMAGE_BYTES)
const imagePartitions = await withLoop(image, (device) => {
  run('sgdisk', ['-o', '-n', '1:0:+16M', '-t', '1:ef00', '-n', '2:0:0', '-c', '2:root', device])
  return sgdiskPartitions(device)
})
// sgdisk -e on a copy, on a 4Kn device too: the reference for the headers.
const reference = path('reference.img')
growInto(image, reference, DISK_BYTES)
await withLoop(reference, (device) => run('sgdisk', ['-e', device]))

t.test('sgdisk made a 4Kn GPT: header at byte 4096, entries at LBA 2..5, first usable LBA 6', async (t) => {
  const head = readRange(image, 0, MiB)
  t.same(detectPartitionTable(head), { kind: 'gpt', sectorBytes: 4096, hybridMbr: false, headerFound: true })
  t.match(headerFields(head, 4096), { signature: 'EFI PART', headerCrcOk: true, myLba: 1n, firstUsableLba: 6n, entriesLba: 2n, alternateLba: BigInt(IMAGE_BYTES / 4096 - 1) })
  t.equal(head.subarray(512, 4096).every((b) => b === 0), true, 'the rest of LBA 0 is zero')
})

t.test('a 4Kn image on a larger 4Kn disk: backup moved as sgdisk -e moves it, then the config-2 partition', async (t) => {
  const disk = path('disk.img')
  growInto(image, disk, DISK_BYTES)
  const head = takeHead(disk, IMAGE_BYTES)
  const added = await withLoop(disk, async (device) => {
    const io = await Disk.open(device)
    try {
      t.equal(io.kind, 'block')
      t.equal(io.logicalSectorBytes, 4096)
      const table = detectPartitionTable(head)
      checkSectorSize(table, io.logicalSectorBytes, device)
      const moved = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
      t.match(moved, { kind: 'gpt', moved: true, sectorBytes: 4096, backupLba: LAST_LBA, lastUsableLba: DISK_BYTES / 4096 - 6, previousBackupLba: IMAGE_BYTES / 4096 - 1, protectiveMbr: 'resized' })
      // Same headers and protective MBR as sgdisk -e on a 4Kn device.
      const ref = await withLoop(reference, (refDevice) => ({ sector0: readRange(refDevice, 0, 4096), primary: readRange(refDevice, 4096, 512), backup: readRange(refDevice, LAST_LBA * 4096, 512) }))
      t.same(headerFields(head, 4096), headerFields(ref.primary, 0), 'primary header as sgdisk -e writes it')
      const backup = Buffer.alloc(512)
      await io.read(backup, LAST_LBA * 4096)
      t.same(headerFields(backup, 0), headerFields(ref.backup, 0), 'backup header as sgdisk -e writes it')
      t.same(mbrRecords(head), mbrRecords(ref.sector0), 'protective MBR as sgdisk -e writes it, sizes in 4096-byte sectors')
      t.match(mbrRecords(head)[0], { type: 0xee, start: 1, size: LAST_LBA })

      const added = await addConfigDrivePartition(new HeadOverlay(head, io))
      await io.write(head, 0)
      await io.sync()
      return added
    } finally {
      await io.close()
    }
  })
  const lastUsable = DISK_BYTES / 4096 - 6
  const start = Math.ceil((lastUsable + 1 - 64 * MiB / 4096) / 256) * 256
  t.same(added, { table: 'gpt', number: 3, reused: false, offsetBytes: start * 4096, sizeBytes: (lastUsable + 1 - start) * 4096, uniqueGuid: added.uniqueGuid })
  t.equal(added.offsetBytes % MiB, 0)
  t.ok(added.offsetBytes >= DISK_BYTES - 64 * MiB)

  await withLoop(disk, (device) => {
    t.match(sgdiskVerify(device), /No problems found/)
    const partitions = sgdiskPartitions(device)
    t.same(partitions.slice(0, 2), imagePartitions)
    t.match(partitions[2], { number: 3, start, end: lastUsable, name: 'config-2' })
    t.match(sgdiskInfo(device, 3), { typeGuid: '0FC63DAF-8483-4772-8E79-3D69D8477DE4', uniqueGuid: added.uniqueGuid, first: start, last: lastUsable, name: 'config-2' })
  })
})

t.test('a 4Kn image with a damaged primary header is repaired from its backup', async (t) => {
  const disk = path('damaged.img')
  growInto(image, disk, DISK_BYTES)
  writeAt(disk, readRange(disk, 4096 + 60, 1).map((b) => b ^ 0xff), 4096 + 60) // a byte of the disk GUID
  const head = takeHead(disk, IMAGE_BYTES)
  await withLoop(disk, async (device) => {
    const io = await Disk.open(device)
    try {
      t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { moved: true, repairedFromBackup: true, sectorBytes: 4096 })
      await io.write(head, 0)
      await io.sync()
    } finally {
      await io.close()
    }
    t.match(sgdiskVerify(device), /No problems found/)
    t.same(sgdiskPartitions(device), imagePartitions)
  })
})

t.test('sector sizes that differ are refused before anything is written', async (t) => {
  t.test('a 512-byte GPT image on a 4Kn disk', async (t) => {
    const image512 = path('gpt-512.img')
    sgdiskImage(image512, IMAGE_BYTES, ['-o', '-n', '1:0:0'])
    const disk = path('disk.img')
    growInto(image512, disk, DISK_BYTES)
    const head = takeHead(disk, IMAGE_BYTES)
    const before = Buffer.from(head)
    await withLoop(disk, async (device) => {
      const table = detectPartitionTable(head)
      t.match(table, { kind: 'gpt', sectorBytes: 512 })
      t.throws(() => checkSectorSize(table, 4096, device), {
        code: 'SECTOR_SIZE_MISMATCH',
        message: `Bad format image, its partition table uses 512-byte sectors but disk ${device} has 4096-byte sectors.`,
      })
      const io = await Disk.open(device)
      try {
        await t.rejects(relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { code: 'GPT_MOVE_FAILED', cause: { message: "the image's GPT uses 512-byte sectors, the disk 4096-byte sectors" } })
        await t.rejects(addConfigDrivePartition(new HeadOverlay(head, io)), { code: 'CONFIGDRIVE_FAILED' })
      } finally {
        await io.close()
      }
    })
    t.ok(head.equals(before), 'head unchanged')
    t.ok(readRange(disk, DISK_BYTES - MiB, MiB).every((b) => b === 0), 'nothing written at the end')
  })

  t.test('a 4Kn GPT image on a 512-byte disk', async (t) => {
    const disk = path('disk.img')
    growInto(image, disk, DISK_BYTES)
    const head = takeHead(disk, IMAGE_BYTES)
    const io = await Disk.open(disk)
    try {
      t.equal(io.logicalSectorBytes, 512)
      t.throws(() => checkSectorSize(detectPartitionTable(head), io.logicalSectorBytes, disk), {
        code: 'SECTOR_SIZE_MISMATCH',
        message: `Bad format image, its partition table uses 4096-byte sectors but disk ${disk} has 512-byte sectors.`,
      })
      await t.rejects(relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { code: 'GPT_MOVE_FAILED' })
    } finally {
      await io.close()
    }
  })

  t.test('an MBR image and a matching GPT pass', async (t) => {
    t.doesNotThrow(() => checkSectorSize({ kind: 'mbr' }, 4096, '/dev/sda'))
    t.doesNotThrow(() => checkSectorSize({ kind: 'none' }, 4096, '/dev/sda'))
    t.doesNotThrow(() => checkSectorSize({ kind: 'gpt', sectorBytes: 4096, hybridMbr: false }, 4096, '/dev/sda'))
    t.doesNotThrow(() => checkSectorSize({ kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: false }, 4096, '/dev/sda'), 'no header found: the sector size is unknown, relocate decides')
  })
})
