/**
 * Pure tests over buffers: detectPartitionTable, checkSectorSize, and the header fields and CRCs
 * relocateBackupGpt and addConfigDrivePartition write, for 512- and 4096-byte sectors, on a disk in
 * memory. The GPTs are written by the test from the spec (craftGptImage); sgdisk vouches for one.
 */
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import type { TableKind } from '../../../../agent/disk/partition-table.js'
import { addConfigDrivePartition, checkSectorSize, detectPartitionTable, HeadOverlay, readBytes, relocateBackupGpt } from '../../../../agent/disk/partition-table.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { craftGptImage, fixHeaderCrc, headerFields, LINUX_FS_TYPE_BYTES, mbrRecords, MemoryIo, MiB, sgdiskPartitions, sgdiskVerify } from './fixtures/partition-tools.js'

const tmp = tempDir('byoi-buf-')
t.teardown(tmp.remove)

t.test('the crafted GPT is one sgdisk finds no problem with', async (t) => {
  const file = join(tmp.path, 'crafted.img')
  writeFileSync(file, craftGptImage({ sectorBytes: 512, imageSectors: 8192, partitions: [{ firstLba: 2048, lastLba: 4095, name: 'one' }, { firstLba: 4096, lastLba: 8158 }] }))
  t.match(sgdiskVerify(file), /No problems found/)
  t.match(sgdiskPartitions(file), [{ number: 1, start: 2048, end: 4095, name: 'one' }, { number: 2, start: 4096, end: 8158 }])
})

function mbrWith (records: Array<[boot: number, type: number, start: number, size: number]>, signature = true): Buffer {
  const head = Buffer.alloc(MiB)
  records.forEach(([boot, type, start, size], i) => {
    head.writeUInt8(boot, 446 + 16 * i)
    head.writeUInt8(type, 446 + 16 * i + 4)
    head.writeUInt32LE(start, 446 + 16 * i + 8)
    head.writeUInt32LE(size, 446 + 16 * i + 12)
  })
  if (signature) head.set([0x55, 0xaa], 510)
  return head
}

function withPrimaryHeader (head: Buffer, sectorBytes: number, valid = true): Buffer {
  const image = craftGptImage({ sectorBytes, imageSectors: 64, partitions: [], entryCount: 4 })
  image.copy(head, sectorBytes, sectorBytes, sectorBytes + 92)
  if (!valid) head.writeUInt8(head.readUInt8(sectorBytes + 60) ^ 0xff, sectorBytes + 60)
  return head
}

t.test('detectPartitionTable', async (t) => {
  const cases: Array<[string, Buffer, TableKind]> = [
    ['zeros', Buffer.alloc(MiB), { kind: 'none' }],
    ['a head of 10 bytes', Buffer.alloc(10, 0xff), { kind: 'none' }],
    ['a plain MBR', mbrWith([[0x80, 0x83, 2048, 4096]]), { kind: 'mbr' }],
    ['a plain MBR with four primaries', mbrWith([[0, 0x83, 2048, 10], [0, 0x07, 4096, 10], [0, 0x0c, 8192, 10], [0, 0x05, 9000, 10]]), { kind: 'mbr' }],
    ['55 AA without partitions', mbrWith([]), { kind: 'none' }],
    ['a bad boot indicator (a FAT boot sector, not an MBR)', mbrWith([[0x12, 0x83, 2048, 4096]]), { kind: 'none' }],
    ['an MBR record starting at LBA 0', mbrWith([[0, 0x83, 0, 4096]]), { kind: 'none' }],
    ['protective MBR + GPT header at 512', withPrimaryHeader(mbrWith([[0, 0xee, 1, 100]]), 512), { kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: true }],
    ['protective MBR + GPT header at 4096', withPrimaryHeader(mbrWith([[0, 0xee, 1, 100]]), 4096), { kind: 'gpt', sectorBytes: 4096, hybridMbr: false, headerFound: true }],
    ['a damaged header at 512, a valid one at 4096', withPrimaryHeader(withPrimaryHeader(mbrWith([[0, 0xee, 1, 100]]), 4096), 512, false), { kind: 'gpt', sectorBytes: 4096, hybridMbr: false, headerFound: true }],
    ['a damaged header at 512 only', withPrimaryHeader(mbrWith([[0, 0xee, 1, 100]]), 512, false), { kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: true }],
    ['hybrid MBR + GPT header', withPrimaryHeader(mbrWith([[0, 0xee, 1, 2047], [0x80, 0x0c, 2048, 4096]]), 512), { kind: 'gpt', sectorBytes: 512, hybridMbr: true, headerFound: true }],
    ['GPT header without any MBR', withPrimaryHeader(Buffer.alloc(MiB), 512), { kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: true }],
    ['a plain MBR before a stale GPT header (Linux reads the MBR)', withPrimaryHeader(mbrWith([[0, 0x83, 2048, 4096]]), 512), { kind: 'mbr' }],
    ['protective MBR, no header anywhere', mbrWith([[0, 0xee, 1, 100]]), { kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: false }],
  ]
  for (const [what, head, expected] of cases) t.same(detectPartitionTable(head), expected, what)
})

t.test('checkSectorSize names both sizes', async (t) => {
  t.throws(() => checkSectorSize({ kind: 'gpt', sectorBytes: 512, hybridMbr: false }, 4096, '/dev/sda'), {
    code: 'SECTOR_SIZE_MISMATCH', message: 'Bad format image, its partition table uses 512-byte sectors but disk /dev/sda has 4096-byte sectors.',
  })
  t.throws(() => checkSectorSize({ kind: 'gpt', sectorBytes: 4096, hybridMbr: true }, 512, '/dev/nvme0n1'), {
    code: 'SECTOR_SIZE_MISMATCH', message: 'Bad format image, its partition table uses 4096-byte sectors but disk /dev/nvme0n1 has 512-byte sectors.',
  })
  t.doesNotThrow(() => checkSectorSize({ kind: 'gpt', sectorBytes: 512, hybridMbr: false }, 512, '/dev/sda'))
})

t.test('HeadOverlay: below head.length the head, above it the disk', async (t) => {
  const head = Buffer.alloc(1000, 1)
  const io = new MemoryIo(Buffer.alloc(4000, 2))
  t.same([...await readBytes(new HeadOverlay(head, io), 998, 4)], [1, 1, 2, 2])
  await new HeadOverlay(head, io).write(Buffer.from([7, 7, 7, 7]), 998)
  t.same([...head.subarray(996)], [1, 1, 7, 7])
  t.same(io.writes, [{ offset: 1000, length: 2 }])
  t.same([...io.data.subarray(998, 1004)], [2, 2, 7, 7, 2, 2], 'the disk under the head is not written')
  await t.rejects(readBytes(new HeadOverlay(head, io), 3999, 2), RangeError)
  await t.rejects(new HeadOverlay(head, io).write(Buffer.alloc(2), -1), RangeError)
  t.equal(io.writes.length, 1)
})

for (const sectorBytes of [512, 4096]) {
  t.test(`${sectorBytes}-byte sectors: the fields and CRCs written, on a disk in memory`, async (t) => {
    const imageSectors = 8 * MiB / sectorBytes
    const diskSectors = 12 * imageSectors // 96 MiB: room for the whole 64 MiB window
    const step = MiB / sectorBytes
    const image = craftGptImage({ sectorBytes, imageSectors, partitions: [{ firstLba: step, lastLba: 3 * step - 1, name: 'boot' }, { firstLba: 3 * step, lastLba: 6 * step - 1, name: 'root' }] })
    const entrySectors = 128 * 128 / sectorBytes // 32 or 4
    const firstUsable = 2 + entrySectors
    const data = Buffer.alloc(diskSectors * sectorBytes)
    image.copy(data)
    const head = Buffer.from(data.subarray(0, MiB))
    data.fill(0, 0, MiB)
    const io = new MemoryIo(data, sectorBytes)
    const entriesCrc = crc32(image.subarray(2 * sectorBytes, 2 * sectorBytes + 128 * 128))

    const moved = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length })
    const lastLba = diskSectors - 1
    t.same(moved, { kind: 'gpt', sectorBytes, moved: true, repairedFromBackup: false, backupLba: lastLba, lastUsableLba: diskSectors - firstUsable, previousBackupLba: imageSectors - 1, protectiveMbr: 'resized' })
    t.ok(io.writes.every((w) => w.offset >= head.length), 'no disk write below the head')
    const primary = headerFields(head, sectorBytes)
    t.match(primary, { headerCrcOk: true, myLba: 1n, alternateLba: BigInt(lastLba), firstUsableLba: BigInt(firstUsable), lastUsableLba: BigInt(diskSectors - firstUsable), entriesLba: 2n, entriesCrc })
    const backup = headerFields(await readBytes(new HeadOverlay(head, io), lastLba * sectorBytes, sectorBytes), 0)
    t.match(backup, { headerCrcOk: true, myLba: BigInt(lastLba), alternateLba: 1n, lastUsableLba: primary.lastUsableLba, entriesLba: primary.lastUsableLba + 1n, entriesCrc, diskGuid: primary.diskGuid })
    const backupEntries = await readBytes(new HeadOverlay(head, io), Number(backup.entriesLba) * sectorBytes, 128 * 128)
    t.equal(crc32(backupEntries), entriesCrc, 'backup entries CRC')
    t.match(mbrRecords(head)[0], { type: 0xee, start: 1, size: lastLba })
    t.notOk((await readBytes(new HeadOverlay(head, io), (imageSectors - 1) * sectorBytes, 8)).toString('latin1') === 'EFI PART', 'old backup header zeroed')

    io.writes.length = 0
    const added = await addConfigDrivePartition(new HeadOverlay(head, io))
    t.ok(io.writes.every((w) => w.offset >= head.length), 'no disk write below the head')
    const lastUsable = diskSectors - firstUsable
    const start = Math.ceil((lastUsable + 1 - 64 * MiB / sectorBytes) / step) * step
    t.same(added, { table: 'gpt', number: 3, reused: false, offsetBytes: start * sectorBytes, sizeBytes: (lastUsable + 1 - start) * sectorBytes, uniqueGuid: added.uniqueGuid })
    const entries = head.subarray(2 * sectorBytes, 2 * sectorBytes + 128 * 128)
    const entry = entries.subarray(2 * 128, 3 * 128)
    t.ok(entry.subarray(0, 16).equals(LINUX_FS_TYPE_BYTES), 'type 0FC63DAF-8483-4772-8E79-3D69D8477DE4, stored mixed-endian')
    t.equal(entry.readBigUInt64LE(32), BigInt(start))
    t.equal(entry.readBigUInt64LE(40), BigInt(lastUsable))
    t.equal(entry.readBigUInt64LE(48), 0n, 'no attributes')
    t.equal(entry.subarray(56, 56 + 16).toString('utf16le'), 'config-2')
    t.ok(entry.subarray(56 + 16).every((b) => b === 0))
    const unique = entry.subarray(16, 32)
    t.equal(unique[7]! >> 4, 4, 'a version 4 GUID (byte 7 holds the version, mixed-endian)')
    const newCrc = crc32(entries)
    t.match(headerFields(head, sectorBytes), { headerCrcOk: true, entriesCrc: newCrc })
    const backupAfter = headerFields(await readBytes(new HeadOverlay(head, io), lastLba * sectorBytes, sectorBytes), 0)
    t.match(backupAfter, { headerCrcOk: true, entriesCrc: newCrc })
    t.ok((await readBytes(new HeadOverlay(head, io), Number(backupAfter.entriesLba) * sectorBytes, 128 * 128)).equals(entries), 'both entry arrays equal')
  })
}

t.test('an image smaller than a MiB: the head is the whole image, the rest goes to the disk', async (t) => {
  const image = craftGptImage({ sectorBytes: 512, imageSectors: 128, partitions: [{ firstLba: 34, lastLba: 93 }] })
  const data = Buffer.alloc(8 * MiB)
  const head = Buffer.from(image)
  const io = new MemoryIo(data)
  t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }), { moved: true, backupLba: 8 * MiB / 512 - 1 })
  t.ok(io.writes.every((w) => w.offset >= head.length))
  t.match(await addConfigDrivePartition(new HeadOverlay(head, io), { minSizeBytes: MiB }), { number: 2, offsetBytes: MiB })
})

t.test('a header size above 92 bytes keeps its extra bytes', async (t) => {
  const image = craftGptImage({ sectorBytes: 512, imageSectors: 8192, partitions: [{ firstLba: 2048, lastLba: 4095 }] })
  image.writeUInt32LE(100, 512 + 12)
  image.write('EXTRA!!!', 512 + 92, 'latin1')
  fixHeaderCrc(image, 512)
  const data = Buffer.alloc(16 * MiB)
  image.copy(data)
  const head = Buffer.from(data.subarray(0, MiB))
  const io = new MemoryIo(data)
  // The image's own backup has a 92-byte header: only the primary is used.
  t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: image.length }), { moved: true })
  t.match(headerFields(head, 512), { headerSize: 100, headerCrcOk: true })
  t.equal(head.subarray(512 + 92, 512 + 100).toString('latin1'), 'EXTRA!!!')
  const backup = await readBytes(new HeadOverlay(head, io), (16 * MiB / 512 - 1) * 512, 512)
  t.match(headerFields(backup, 0), { headerSize: 100, headerCrcOk: true })
  t.equal(backup.subarray(92, 100).toString('latin1'), 'EXTRA!!!')
})
