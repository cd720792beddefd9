/**
 * Issue 11, items 1–3: the image's partition tables come from the image alone, and every problem
 * with them (or with the ConfigDrive) is found before the first write. Each target disk first holds
 * an old GPT (a partition named OLD_OS_ROOT over the whole disk, its backup at the disk's last LBA),
 * so that "untouched" and "the old table came back" can both be seen.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { crc32, gzipSync } from 'node:zlib'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { oldGptDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { makeGptImage, makeImage, sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError, type TapTest } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 16 * MiB
const SECTOR = 512
const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 2 }

const tmp = tempDir()
t.teardown(tmp.remove)

let count = 0
/** A dirty disk file holding an old GPT: partition 1 `OLD_OS_ROOT` over the disk, backup at its last LBA (made once, copied). */
const oldGptDisk = oldGptDisks(tmp.path, DISK_BYTES)

function request (url: string, image: Buffer, overrides: Partial<InstallRequest> = {}): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'raw',
    checksum: { type: 'sha256', hex: sha('sha256', image) },
    httpHeaders: [],
    metadata: {},
    ...overrides,
  }
}

/** Installs `image` from a fresh server onto a fresh old-GPT disk in both modes, expecting `code` and the disk exactly as it was. */
async function expectRefusedUntouched (t: TapTest, image: Buffer, code: string, overrides: Partial<InstallRequest> = {}): Promise<string[]> {
  const messages: string[] = []
  for (const stream of [false, true]) {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = oldGptDisk()
    const before = readFileSync(disk)
    const install = runInstall({ request: request(server.url(), image, overrides), diskPath: disk, stream, downloadTuning: fast })
    messages.push(await expectInstallError(t, install, code))
    t.ok(readFileSync(disk).equals(before), `${stream ? 'stream' : 'memory'} mode: the disk is exactly as it was`)
  }
  return messages
}

// GPT fields (formats.md 2.2, 2.3).
const HEADER_CRC = 16
const ENTRIES_LBA = 72
const ENTRY_COUNT = 80
const ENTRIES_CRC = 88

/** Applies `edit` to the entry array of both GPT copies of `image` and recomputes every CRC, as a hostile partitioner would. */
function editGptEntries (image: Buffer, edit: (array: Buffer) => void): Buffer {
  const out = Buffer.from(image)
  for (const headerLba of [1, out.length / SECTOR - 1]) {
    const header = out.subarray(headerLba * SECTOR, headerLba * SECTOR + 92)
    const entriesAt = Number(header.readBigUInt64LE(ENTRIES_LBA)) * SECTOR
    const array = out.subarray(entriesAt, entriesAt + header.readUInt32LE(ENTRY_COUNT) * 128)
    edit(array)
    header.writeUInt32LE(crc32(array), ENTRIES_CRC)
    header.writeUInt32LE(0, HEADER_CRC)
    header.writeUInt32LE(crc32(header), HEADER_CRC)
  }
  return out
}

/** A GPT image (sgdisk) of `sizeBytes` with the given partitions (`first:last:name`). */
function gptImage (sizeBytes: number, partitions: string[]): Buffer {
  const file = join(tmp.path, `image-${count++}.raw`)
  writeFileSync(file, makeImage(sizeBytes))
  const args = ['-o']
  partitions.forEach((p, i) => {
    const [first, last, name] = p.split(':')
    args.push('-n', `${i + 1}:${first}:${last}`, '-c', `${i + 1}:${name}`)
  })
  execFileSync('sgdisk', [...args, file], { stdio: 'ignore' })
  return readFileSync(file)
}

function setEntryLbas (array: Buffer, index: number, firstLba: number, lastLba: number): void {
  array.writeBigUInt64LE(BigInt(firstLba), index * 128 + 32)
  array.writeBigUInt64LE(BigInt(lastLba), index * 128 + 40)
}

// ── 1. the image's tables come from the image only ──────────────────────────────────────────

t.test('item 1: a protective MBR without any GPT header is refused, the old disk\'s backup GPT is not adopted', async (t) => {
  const image = makeGptImage(4 * MiB)
  image.fill(0, SECTOR, 2 * SECTOR) // primary header
  image.fill(0, image.length - SECTOR) // backup header
  for (const stream of [false, true]) {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = oldGptDisk()
    const before = readFileSync(disk)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url(), image), diskPath: disk, stream, downloadTuning: fast }),
      'PARTITION_TABLE_INVALID',
    )
    t.match(message,
      /^Bad format image, its partition table is not valid: the primary GPT is not valid \(no GPT signature at LBA 1\) and no valid backup was found/)
    if (stream) {
      // The head alone cannot tell (the image's backup at its end might have repaired it): checked
      // once streamed, before the head is written; the disk is then made unbootable.
      const zeroed = readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)) && readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB))
      t.ok(zeroed, 'stream mode: the first and last MiB are zero')
    } else {
      t.ok(readFileSync(disk).equals(before), 'memory mode: the disk is exactly as it was')
    }
  }
})

t.test('item 1: an image shorter than a MiB gets nothing of the old disk: its head is zeros past its end, the old backup GPT is erased', async (t) => {
  // An MBR image of 900 KiB: partition 1 at LBA 64-1799 (sfdisk).
  const file = join(tmp.path, 'short-mbr.raw')
  writeFileSync(file, makeImage(900 * 1024))
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=64, size=1736, type=83\n', stdio: ['pipe', 'ignore', 'ignore'] })
  const image = readFileSync(file)
  for (const stream of [false, true]) {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = oldGptDisk()
    const result = await runInstall({ request: request(server.url(), image), diskPath: disk, stream, downloadTuning: fast })
    t.equal(result.partitionTable.kind, 'mbr', `${stream ? 'stream' : 'memory'} mode: installed as an MBR disk`)
    t.ok(readRange(disk, 512, image.length - 512).equals(image.subarray(512)), 'the image past its MBR is on the disk as written')
    const tail = readRange(disk, DISK_BYTES - 33 * SECTOR, 33 * SECTOR)
    t.notOk(tail.includes(Buffer.from('EFI PART')), 'no GPT header is left at the disk\'s end')
    t.notOk(readFileSync(disk).includes(Buffer.from('OLD_OS_ROOT', 'utf16le')), 'the old partition table is gone')
    const sfdisk = execFileSync('sfdisk', ['--dump', disk], { encoding: 'utf8' })
    t.match(sfdisk, /label: dos/)
    t.match(sfdisk, /start=\s*64, size=\s*1736, type=83/)
  }
})

// ── 2. problems with the tables or the ConfigDrive are found before the first write ─────────

t.test('item 2: a raw image without a partition table is refused before any write, saying what it holds', async (t) => {
  const gpt = makeGptImage(2 * MiB)
  const xz = (input: Buffer): Buffer => execFileSync('xz', ['-c', '-1'], { input, maxBuffer: 8 * MiB })
  const zstd = (input: Buffer): Buffer => execFileSync('zstd', ['-c', '-q'], { input, maxBuffer: 8 * MiB })
  for (const [name, bytes, what] of [
    ['zeros', Buffer.alloc(2 * MiB), 'zeros'],
    // A compressed image is decompressed (install-compressed-raw.test.ts): what it holds decoded is what is said.
    ['gzip of zeros', gzipSync(Buffer.alloc(2 * MiB)), 'zeros'],
    ['zstd of zeros', zstd(Buffer.alloc(2 * MiB)), 'zeros'],
    ['xz of random bytes', xz(makeImage(2 * MiB)), 'unrecognised data'],
    // Compressed twice: decoded once, it holds the other compression's file, not a partition table.
    ['zstd of an xz file', zstd(xz(gpt)), 'xz data'],
    ['xz of a zstd file', xz(zstd(gpt)), 'zstd data'],
    ['random', makeImage(2 * MiB), 'unrecognised data'],
    ['an HTML page', Buffer.from('<!DOCTYPE html>\n<html><body>Not found</body></html>\n'), 'text (an HTML page)'],
  ] as const) {
    const messages = await expectRefusedUntouched(t, bytes, 'NO_PARTITION_TABLE')
    for (const message of messages) {
      t.equal(message, `image provided format is not of type raw because no partition table was found. It seems to contain: \`${what}\``, name)
    }
  }
})

t.test('item 2: a qcow2 of virtual size 0 is refused before any write', async (t) => {
  const file = join(tmp.path, 'empty.qcow2')
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '0'])
  const image = readFileSync(file)
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const before = readFileSync(disk)
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url(), image, { imageType: 'qcow2' }), diskPath: disk, downloadTuning: fast }),
    'QCOW2_NO_PARTITION_TABLE',
  )
  t.equal(message, 'Bad format image, the qcow2\'s virtual disk has no partition table, it seems to contain: `nothing (0 bytes)`.')
  t.ok(readFileSync(disk).equals(before), 'the disk is exactly as it was')
})

t.test('item 2: a GPT with a partition past LastUsableLBA is refused before any write', async (t) => {
  const base = gptImage(4 * MiB, ['2048:4095:root'])
  const lastUsable = Number(base.readBigUInt64LE(SECTOR + 48))
  const image = editGptEntries(base, (array) => { setEntryLbas(array, 0, 2048, lastUsable + 1) })
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) {
    t.equal(message, 'Bad format image, its partition table is not valid: ' +
      `partition 1 (LBA 2048-${lastUsable + 1}) lies outside the usable LBAs 34-${lastUsable}.`)
  }
})

t.test('item 2: a GPT with overlapping partitions is refused before any write', async (t) => {
  const base = gptImage(4 * MiB, ['2048:4095:root', '4096:6143:data'])
  const image = editGptEntries(base, (array) => { setEntryLbas(array, 1, 4000, 6143) })
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) {
    t.equal(message, 'Bad format image, its partition table is not valid: partition 2 (LBA 4000-6143) overlaps partition 1 (LBA 2048-4095).')
  }
})

t.test('item 2: a ConfigDrive that cannot be built is refused before the download', async (t) => {
  const image = makeGptImage(4 * MiB)
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const before = readFileSync(disk)
  // 70 MiB of metadata: no 64 MiB ConfigDrive can hold it.
  const metadata = { big: 'x'.repeat(70 * MiB) }
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url(), image, { metadata }), diskPath: disk, downloadTuning: fast }),
    'CONFIGDRIVE_FAILED',
  )
  t.equal(message, 'Could not create configdrive on disk.')
  t.equal(server.requests.length, 0, 'nothing was downloaded')
  t.ok(readFileSync(disk).equals(before), 'the disk is exactly as it was')
})

// ── 3. a config-2 partition reused from the image must lie where partitions may, alone ──────

t.test('item 3: a GPT entry named config-2 over the GPT itself (LBA 0-4095) is refused before any write', async (t) => {
  const base = gptImage(4 * MiB, ['2048:4095:root', '4096:6143:config-2'])
  const image = editGptEntries(base, (array) => { setEntryLbas(array, 1, 0, 4095) })
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  const lastUsable = Number(base.readBigUInt64LE(SECTOR + 48))
  for (const message of messages) {
    t.equal(message, `Bad format image, its partition table is not valid: partition 2 (LBA 0-4095) lies outside the usable LBAs 34-${lastUsable}.`)
  }
})

t.test('item 3: a GPT entry named config-2 overlapping another partition is refused before any write', async (t) => {
  const base = gptImage(4 * MiB, ['2048:4095:root', '4096:6143:config-2'])
  const image = editGptEntries(base, (array) => { setEntryLbas(array, 1, 3072, 6143) })
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) {
    t.equal(message, 'Bad format image, its partition table is not valid: partition 2 (LBA 3072-6143) overlaps partition 1 (LBA 2048-4095).')
  }
})

t.test('item 3: an MBR partition overlapping another is refused before any write', async (t) => {
  const file = join(tmp.path, 'overlap-mbr.raw')
  writeFileSync(file, makeImage(4 * MiB))
  execFileSync('sfdisk', ['-q', file], {
    input: 'label: dos\nstart=2048, size=2048, type=83\nstart=4096, size=2048, type=83\n',
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  const image = readFileSync(file)
  image.writeUInt32LE(3000, 446 + 16 + 8) // record 2 StartingLBA: into partition 1
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) {
    t.equal(message, 'Bad format image, its partition table is not valid: MBR partition 2 (LBA 3000-5047) overlaps partition 1 (LBA 2048-4095).')
  }
})

t.test('a valid GPT image onto the old-GPT disk: installed, sgdisk finds it clean, nothing of the old table left', async (t) => {
  const image = gptImage(4 * MiB, ['2048:4095:root'])
  for (const stream of [false, true]) {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = oldGptDisk()
    const result = await runInstall({ request: request(server.url(), image), diskPath: disk, stream, downloadTuning: fast })
    t.equal(result.code, 'INSTALLED')
    const verify = sgdiskVerify(disk)
    t.ok(verify.clean, 'sgdisk -v finds no problem')
    if (!verify.clean) t.comment(verify.report)
    t.notOk(readFileSync(disk).includes(Buffer.from('OLD_OS_ROOT', 'utf16le')), 'the old partition table is gone')
  }
})

t.test('an MBR record with a type but no sectors is refused before any write (sgdisk reads it as a partition ending before it starts)', async (t) => {
  const file = join(tmp.path, 'hollow-mbr.raw')
  writeFileSync(file, makeImage(4 * MiB))
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=2048, type=83\n', stdio: ['pipe', 'ignore', 'ignore'] })
  const image = readFileSync(file)
  image[446 + 16 + 4] = 0x83 // record 2: Linux, starting at 6144, 0 sectors
  image.writeUInt32LE(6144, 446 + 16 + 8)
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) t.equal(message, 'Bad format image, its partition table is not valid: MBR partition 2 has type 0x83 but no sectors.')
})

t.test('an MBR without a protective record over a valid GPT is refused before any write: two tables that disagree', async (t) => {
  const image = gptImage(4 * MiB, ['2048:4095:root'])
  // The protective record becomes a FAT32 partition: Linux reads the MBR, sgdisk and firmware may read the GPT.
  image[446 + 4] = 0x0c
  image.writeUInt32LE(2048, 446 + 8)
  image.writeUInt32LE(2048, 446 + 12)
  const messages = await expectRefusedUntouched(t, image, 'PARTITION_TABLE_INVALID')
  for (const message of messages) {
    t.equal(message, 'Bad format image, its partition table is not valid: LBA 0 holds an MBR with no protective (0xEE) partition, ' +
      'but a valid GPT header follows it (at byte 512): two partition tables that disagree.')
  }
})
