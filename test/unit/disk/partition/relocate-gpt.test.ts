/**
 * relocateBackupGpt on GPT images with 512-byte sectors, made by sgdisk, grown into larger sparse
 * disk files the way the install leaves them (the head held back, written last). Referees: `sgdisk -v`
 * (no problem), `sgdisk -p` (same partitions), and `sgdisk -e` run on a copy (same headers).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { detectPartitionTable, HeadOverlay, relocateBackupGpt } from '../../../../agent/disk/partition-table.js'
import { readRange, tempDir } from '../../../helpers/disk-files.js'
import { GiB, growInto, headerFields, MemoryIo, mbrRecords, MiB, readHeaderAt, run, sgdiskImage, sgdiskPartitions, sgdiskVerify, TiB, withHead, writeAt } from './fixtures/partition-tools.js'

const tmp = tempDir('byoi-gpt-')
t.teardown(tmp.remove)

const IMAGE_BYTES = 64 * MiB
const IMAGE_SECTORS = IMAGE_BYTES / 512
const image = join(tmp.path, 'gpt-512.img')
sgdiskImage(image, IMAGE_BYTES, ['-o', '-n', '1:0:+16M', '-t', '1:ef00', '-c', '1:EFI system', '-n', '2:0:0', '-c', '2:root'])
// Boot code in the MBR (GRUB's boot.img lives there on BIOS+GPT): it must survive.
writeAt(image, Buffer.alloc(440, 0xb0), 0)
const imagePartitions = sgdiskPartitions(image)
let serial = 0
const path = (name: string): string => join(tmp.path, `${serial++}-${name}`)
// sgdisk sleeps a second after each write (DiskSync): references are made once and only read.
const references = new Map<string, string>()
function sgdiskMoved (source: string, diskBytes: number): string {
  const key = `${source}@${diskBytes}`
  let reference = references.get(key)
  if (reference === undefined) {
    reference = path('reference.img')
    growInto(source, reference, diskBytes)
    run('sgdisk', ['-e', reference])
    references.set(key, reference)
  }
  return reference
}

for (const [label, diskBytes] of [['1 GiB', GiB], ['3 TiB (sparse)', 3 * TiB]] as const) {
  t.test(`a 64 MiB GPT image on a ${label} disk: the backup moves to the end, as sgdisk -e moves it`, async (t) => {
    const disk = path('disk.img')
    const reference = sgdiskMoved(image, diskBytes)
    growInto(image, disk, diskBytes)
    t.match(sgdiskVerify(disk), /doesn't reside\nat the end of the disk/, 'before: sgdisk sees the backup in the middle')

    const { result, head } = await withHead(disk, IMAGE_BYTES, async (head, io) => await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }))
    const lastLba = diskBytes / 512 - 1
    t.match(result, { kind: 'gpt', moved: true, repairedFromBackup: false, sectorBytes: 512, backupLba: lastLba, previousBackupLba: IMAGE_SECTORS - 1, lastUsableLba: lastLba - 33, protectiveMbr: 'resized' })

    t.match(sgdiskVerify(disk), /No problems found/)
    t.same(sgdiskPartitions(disk), imagePartitions, 'sgdisk -p: the same partitions')
    const primary = readHeaderAt(disk, 1n, 512)
    const backup = readHeaderAt(disk, BigInt(lastLba), 512)
    t.match(primary, { signature: 'EFI PART', headerCrcOk: true, myLba: 1n, alternateLba: BigInt(lastLba), lastUsableLba: BigInt(lastLba - 33), entriesLba: 2n })
    t.match(backup, { signature: 'EFI PART', headerCrcOk: true, myLba: BigInt(lastLba), alternateLba: 1n, entriesLba: BigInt(lastLba - 32) })
    // sgdisk -e wrote the same headers, CRCs included (same entries, same fields), and the same backup entries.
    t.same(primary, readHeaderAt(reference, 1n, 512), 'primary header as sgdisk -e writes it')
    t.same(backup, readHeaderAt(reference, BigInt(lastLba), 512), 'backup header as sgdisk -e writes it')
    t.ok(readRange(disk, (lastLba - 32) * 512, 32 * 512).equals(readRange(reference, (lastLba - 32) * 512, 32 * 512)), 'backup entries as sgdisk -e writes them')
    t.ok(readRange(disk, 1024, 32 * 512).equals(readRange(image, 1024, 32 * 512)), 'primary entries unchanged')
    // The protective MBR: the same record as sgdisk's (size min(N − 1, 2^32 − 1), gdisk's CHS).
    const records = mbrRecords(head)
    t.same(records, mbrRecords(readRange(reference, 0, 512)), 'protective MBR record as sgdisk -e writes it')
    t.equal(records[0]?.size, Math.min(lastLba, 0xffffffff))
    if (diskBytes > 2 * TiB) t.equal(records[0]?.chs, '000200ffffff', 'end CHS FF FF FF past cylinder 1023')
    t.ok(head.subarray(0, 440).equals(Buffer.alloc(440, 0xb0)), 'boot code kept')
    // One difference from sgdisk -e, on purpose: the old backup header is zeroed (gdisk leaves it).
    t.notOk(readRange(disk, IMAGE_BYTES - 512, 8).toString('latin1') === 'EFI PART', 'stale backup header zeroed')
    t.equal(readRange(reference, IMAGE_BYTES - 512, 8).toString('latin1'), 'EFI PART', 'sgdisk -e leaves it')
  })
}

t.test('an image as large as the disk: nothing to do, nothing written', async (t) => {
  const data = readFileSync(image)
  const head = Buffer.from(data.subarray(0, MiB))
  data.fill(0, 0, MiB)
  const io = new MemoryIo(data)
  const result = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
  t.match(result, { kind: 'gpt', moved: false, repairedFromBackup: false, backupLba: IMAGE_SECTORS - 1, protectiveMbr: 'unchanged' })
  t.same(io.writes, [])
  t.ok(head.equals(readFileSync(image).subarray(0, MiB)), 'head unchanged')
})

t.test('a second run finds the backup at the end and changes nothing', async (t) => {
  const data = Buffer.alloc(256 * MiB)
  readFileSync(image).copy(data)
  const head = Buffer.from(data.subarray(0, MiB))
  data.fill(0, 0, MiB)
  const io = new MemoryIo(data)
  t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { moved: true })
  t.ok(io.writes.every((w) => w.offset >= head.length), 'no disk write below the head')
  const afterFirst = Buffer.from(head)
  io.writes.length = 0
  t.match(await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }), { moved: false, protectiveMbr: 'unchanged' })
  t.same(io.writes, [])
  t.ok(head.equals(afterFirst))
})

/** Flips the bits of one byte of a file. */
function flip (file: string, offset: number): void {
  writeAt(file, readRange(file, offset, 1).map((b) => b ^ 0xff), offset)
}

const damages: Array<[string, (disk: string) => void]> = [
  ['a bad header CRC', (disk) => flip(disk, 512 + 60)], // a byte of the disk GUID
  ['bad entries (entries CRC)', (disk) => flip(disk, 1024 + 56)], // a byte of partition 1's name
  ['no header at all (LBA 1 zeroed)', (disk) => writeAt(disk, Buffer.alloc(512), 512)],
]
for (const [what, damage] of damages) {
  t.test(`a primary GPT with ${what} is repaired from the backup at the image's end`, async (t) => {
    const disk = path('damaged.img')
    const reference = sgdiskMoved(image, GiB)
    growInto(image, disk, GiB)
    damage(disk)
    const lastLba = GiB / 512 - 1
    const { result } = await withHead(disk, IMAGE_BYTES, async (head, io) => await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }))
    t.match(result, { kind: 'gpt', moved: true, repairedFromBackup: true, backupLba: lastLba, previousBackupLba: IMAGE_SECTORS - 1 })
    t.match(sgdiskVerify(disk), /No problems found/)
    t.same(sgdiskPartitions(disk), imagePartitions)
    t.same(readHeaderAt(disk, 1n, 512), readHeaderAt(reference, 1n, 512), 'the primary header sgdisk -e writes for the undamaged image')
    t.same(readHeaderAt(disk, BigInt(lastLba), 512), readHeaderAt(reference, BigInt(lastLba), 512))
    t.ok(readRange(disk, 1024, 32 * 512).equals(readRange(image, 1024, 32 * 512)), 'primary entries restored')
  })
}

t.test('a damaged primary without a valid backup: GPT_MOVE_FAILED, nothing written', async (t) => {
  const data = Buffer.alloc(256 * MiB)
  readFileSync(image).copy(data)
  data.writeUInt8(data.readUInt8(512 + 60) ^ 0xff, 512 + 60) // primary header CRC
  data.writeUInt8(data.readUInt8(IMAGE_BYTES - 512 + 60) ^ 0xff, IMAGE_BYTES - 512 + 60) // backup header CRC
  const head = Buffer.from(data.subarray(0, MiB))
  const before = Buffer.from(head)
  data.fill(0, 0, MiB)
  const io = new MemoryIo(data)
  const err = await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }).catch((e: unknown) => e)
  t.match(err, { code: 'GPT_MOVE_FAILED', message: 'Can not move backup GPT data structures to the end of disk.' })
  t.match((err as Error).cause, { message: /primary GPT is not valid \(GPT header at LBA 1 fails its CRC\) and no valid backup was found \(LBA 131071: GPT header at LBA 131071 fails its CRC\)/ })
  t.same(io.writes, [])
  t.ok(head.equals(before))
})

t.test('a GPT image without a protective MBR gets one (Linux would not read the GPT otherwise)', async (t) => {
  const disk = path('no-pmbr.img')
  growInto(image, disk, GiB)
  writeAt(disk, Buffer.alloc(512), 0)
  const { result, head } = await withHead(disk, IMAGE_BYTES, async (head, io) => {
    t.match(detectPartitionTable(head), { kind: 'gpt', sectorBytes: 512, hybridMbr: false })
    return await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
  })
  t.match(result, { moved: true, protectiveMbr: 'created' })
  t.match(mbrRecords(head)[0], { type: 0xee, start: 1, size: GiB / 512 - 1 })
  t.match(sgdiskVerify(disk), /No problems found/)
  t.same(sgdiskPartitions(disk), imagePartitions)
})

t.test('hybrid MBRs keep their entries', async (t) => {
  t.test('made by sgdisk -h (the 0xEE record ends before the hybrid partition): as sgdisk -e leaves it', async (t) => {
    const hybrid = path('hybrid.img')
    sgdiskImage(hybrid, IMAGE_BYTES, ['-o', '-n', '1:0:+16M', '-t', '1:0700', '-n', '2:0:0', '-h', '1'])
    const before = mbrRecords(readRange(hybrid, 0, 512))
    t.match(before, [{ type: 0xee }, { type: 0x07 }, { type: 0 }, { type: 0 }])
    const disk = path('disk.img')
    const reference = sgdiskMoved(hybrid, GiB)
    growInto(hybrid, disk, GiB)
    const { result, head } = await withHead(disk, IMAGE_BYTES, async (head, io) => {
      t.match(detectPartitionTable(head), { kind: 'gpt', sectorBytes: 512, hybridMbr: true })
      return await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES })
    })
    t.match(result, { moved: true, protectiveMbr: 'unchanged' })
    t.same(mbrRecords(head), before)
    t.same(mbrRecords(head), mbrRecords(readRange(reference, 0, 512)))
    t.match(sgdiskVerify(disk), /No problems found/)
  })

  t.test('an 0xEE record that reached the image end grows to the disk end; the others stay', async (t) => {
    // Records: 0xEE over LBA 1..2047, partition 1 as FAT (0x07, bootable), 0xEE from partition 2 to the image's end.
    const hybrid = path('hybrid-end.img')
    growInto(image, hybrid, IMAGE_BYTES)
    const sector0 = readRange(hybrid, 0, 512)
    sector0.fill(0, 446, 510)
    record(0x00, 0xee, 1, 2047).copy(sector0, 446)
    record(0x80, 0x07, 2048, 32768).copy(sector0, 462)
    record(0x00, 0xee, 34816, IMAGE_SECTORS - 34816).copy(sector0, 478)
    writeAt(hybrid, sector0, 0)
    const disk = path('disk.img')
    const reference = sgdiskMoved(hybrid, GiB)
    growInto(hybrid, disk, GiB)
    const { result, head } = await withHead(disk, IMAGE_BYTES, async (head, io) => await relocateBackupGpt(new HeadOverlay(head, io), { imageBytes: IMAGE_BYTES }))
    t.match(result, { moved: true, protectiveMbr: 'resized' })
    const records = mbrRecords(head)
    t.same(records.slice(0, 2), mbrRecords(sector0).slice(0, 2), 'the first 0xEE and the FAT record are kept, bootable flag included')
    t.match(records[2], { type: 0xee, start: 34816, size: GiB / 512 - 34816 })
    t.same(records.map((r) => [r.boot, r.type, r.start, r.size]), mbrRecords(readRange(reference, 0, 512)).map((r) => [r.boot, r.type, r.start, r.size]), 'the same records as sgdisk -e (OptimizeEESize)')
    t.match(sgdiskVerify(disk), /No problems found/)
  })
})

/** An MBR record with the CHS fields left at zero (Linux and gdisk use the LBAs). */
function record (boot: number, type: number, startLba: number, sizeLba: number): Buffer {
  const r = Buffer.alloc(16)
  r.writeUInt8(boot, 0)
  r.writeUInt8(type, 4)
  r.writeUInt32LE(startLba, 8)
  r.writeUInt32LE(sizeLba, 12)
  return r
}
t.test('headers read independently agree with what detectPartitionTable says', async (t) => {
  const head = readRange(image, 0, MiB)
  t.same(detectPartitionTable(head), { kind: 'gpt', sectorBytes: 512, hybridMbr: false, headerFound: true })
  t.match(headerFields(head, 512), { headerSize: 92, headerCrcOk: true, revision: 0x10000, entryCount: 128, entrySize: 128, firstUsableLba: 34n, lastUsableLba: BigInt(IMAGE_SECTORS - 34) })
})
