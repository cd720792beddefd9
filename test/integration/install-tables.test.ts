/**
 * Issue 11, found by a review of the first fixes: images whose tables passed the agent's checks but
 * that `sgdisk -v` still flagged once installed, or whose install left what the promise rules out.
 * Each failed on the code it was written against.
 *
 * Promise: INSTALLED ⇒ `sgdisk -v` clean and the image's data region equal to the image; a refusal
 * made from the image alone (memory mode) leaves the disk untouched.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { promises as fs, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { runInstall, type InstallOptions, type InstallResult } from '../../agent/install/run-install.js'
import type { MountRunner, PartitionLocation } from '../../agent/install/config-drive-mount-check.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { isInstallError } from '../../agent/errors/install-error.js'
import { oldGptDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { makeImage, sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError, type TapTest } from '../helpers/tap.js'

const MiB = 1024 * 1024
const SECTOR = 512
const DISK_BYTES = 16 * MiB
const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 2 }

const tmp = tempDir()
t.teardown(tmp.remove)
let count = 0

function request (url: string, image: Buffer): InstallRequest {
  return { source: 'install-start', imageUrl: url, imageType: 'raw', checksum: { type: 'sha256', hex: sha('sha256', image) }, httpHeaders: [], metadata: {} }
}

/** A dirty disk file holding an old GPT (partition 1 OLD_OS_ROOT over the disk; made once, copied). */
const oldGptDisk = oldGptDisks(tmp.path, DISK_BYTES)

function imageFile (sizeBytes: number): string {
  const file = join(tmp.path, `image-${count++}.raw`)
  writeFileSync(file, makeImage(sizeBytes))
  return file
}

/** Writes MBR record `slot` (0-3) of the 512-byte table at `at` (LBA 0, or an EBR). */
function setRecord (image: Buffer, at: number, slot: number, type: number, startLba: number, sizeLba: number): void {
  const record = at + 446 + slot * 16
  image.fill(0, record, record + 16)
  image.set([0xfe, 0xff, 0xff], record + 1)
  image[record + 4] = type
  image.set([0xfe, 0xff, 0xff], record + 5)
  image.writeUInt32LE(startLba, record + 8)
  image.writeUInt32LE(sizeLba, record + 12)
}

/**
 * Installs `image` in memory mode onto a fresh old-GPT disk. The promise: either INSTALLED with
 * `sgdisk -v` clean, or refused (PARTITION_TABLE_INVALID) with the disk exactly as it was.
 */
async function expectCleanOrRefused (t: TapTest, image: Buffer): Promise<void> {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const before = readFileSync(disk)
  let result: InstallResult | undefined
  try {
    result = await runInstall({ request: request(server.url(), image), diskPath: disk, downloadTuning: fast })
  } catch (err) {
    t.ok(isInstallError(err), 'an InstallError')
    t.equal((err as { code?: string }).code, 'PARTITION_TABLE_INVALID')
    t.ok(readFileSync(disk).equals(before), 'refused before any write: the disk is as it was')
    return
  }
  const verify = sgdiskVerify(disk)
  const { kind } = result.partitionTable
  t.ok(verify.clean, `INSTALLED (${kind}, config-2 at byte ${result.configDrive.partition.offsetBytes}) ⇒ sgdisk -v clean; it says:\n${verify.report}`)
}

t.test('a hybrid MBR whose data record overlaps its 0xEE record is refused before any write (sgdisk -v: "MBR partitions 1 and 2 overlap")', async (t) => {
  const file = imageFile(8 * MiB)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', file], { stdio: 'ignore' })
  execFileSync('sgdisk', ['-h', '1', file], { stdio: 'ignore' }) // hybrid: 0xEE over LBA 1-2047, 0x83 over partition 1
  const image = readFileSync(file)
  setRecord(image, 0, 1, 0x83, 1, 2000) // the hybrid's data record now over the GPT itself
  await expectCleanOrRefused(t, image)
})

t.test('an MBR whose logical partition (EBR chain) runs past its extended container is refused before any write', async (t) => {
  const file = imageFile(8 * MiB)
  execFileSync('sfdisk', ['-q', file], {
    input: 'label: dos\nstart=2048, size=4096, type=83\nstart=6144, size=8192, type=5\nstart=8192, size=2048, type=83\nstart=12288, size=1024, type=83\n',
  })
  const image = readFileSync(file)
  // The second EBR (LBA 10240) describes logical 6 at LBA 12288; it now ends at LBA 22287, past the
  // extended container (6144-14335) and over where the agent puts config-2 (from LBA 14336).
  const ebr2 = 10240 * SECTOR
  t.equal(image.readUInt32LE(ebr2 + 446 + 8), 2048, 'the second EBR as sfdisk wrote it')
  image.writeUInt32LE(10000, ebr2 + 446 + 12)
  await expectCleanOrRefused(t, image)
})

t.test('an MBR image the size of the disk, its config-2 (reused by label) ending on the last sector: ' +
  'installed as the image lays it out, sfdisk -V clean', async (t) => {
  const file = imageFile(DISK_BYTES)
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=8192, type=83\nstart=10240, type=83\n' })
  const dir = join(tmp.path, `iso-${count++}`)
  await fs.mkdir(join(dir, 'openstack'), { recursive: true })
  await fs.writeFile(join(dir, 'openstack', 'x'), 'x')
  const iso = join(tmp.path, `config-${count++}.iso`)
  execFileSync('genisoimage', ['-quiet', '-V', 'config-2', '-J', '-R', '-o', iso, dir], { stdio: 'ignore' })
  const image = readFileSync(file)
  readFileSync(iso).copy(image, 10240 * SECTOR)
  // Kept as the image lays it out (fdisk's default layout): an MBR disk has no backup GPT for its
  // last partition to overlap, which is what `sgdisk -v` (converting to GPT in memory) objects to.
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const result = await runInstall({ request: request(server.url(), image), diskPath: disk, downloadTuning: fast })
  t.match(result, { code: 'INSTALLED', partitionTable: { kind: 'mbr' }, configDrive: { partition: { reused: true, number: 2 } } })
  t.match(execFileSync('sfdisk', ['-V', disk], { encoding: 'utf8' }), /No errors detected/, 'sfdisk -V: the MBR is sound')
  t.ok(readRange(disk, 512, 10240 * SECTOR - 512).equals(image.subarray(512, 10240 * SECTOR)), 'partition 1 and the gap as in the image')
})

t.test('an MBR record with a type but a size of 0 is refused before any write (fuzz: mbr zero size)', async (t) => {
  const file = imageFile(3 * MiB)
  execFileSync('sfdisk', ['-q', file], { input: 'label: dos\nstart=2048, size=2048, type=83\nstart=4096, size=2048, type=83\n' })
  const image = readFileSync(file)
  setRecord(image, 0, 2, 0x83, 6144, 0) // record 3: type 0x83, start 6144, no sectors
  await expectCleanOrRefused(t, image)
})

t.test('a valid GPT behind a plain (non-protective) MBR is refused before any write (fuzz: gpt mbr not protective)', async (t) => {
  const file = imageFile(8 * MiB)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', file], { stdio: 'ignore' })
  const image = readFileSync(file)
  setRecord(image, 0, 0, 0x83, 2048, 4096) // the 0xEE record replaced: Linux reads an MBR disk now
  await expectCleanOrRefused(t, image)
})

/** Rewrites both CRCs of the GPT header at `lba` after its entries changed. */
function fixHeaderCrc (image: Buffer, lba: number): void {
  const header = image.subarray(lba * SECTOR, lba * SECTOR + 92)
  header.writeUInt32LE(0, 16)
  header.writeUInt32LE(crc32(header), 16)
}

t.test('a primary GPT whose header is intact but whose entry array is damaged is repaired from the image\'s own backup, in both modes', async (t) => {
  const file = imageFile(8 * MiB)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', file], { stdio: 'ignore' })
  const image = readFileSync(file)
  image.write('XX', 2 * SECTOR + 200, 'latin1') // in the primary entry array (LBA 2), past entry 1
  fixHeaderCrc(image, 1) // the header itself stays valid: only its entries CRC no longer matches
  for (const stream of [false, true]) {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = oldGptDisk()
    const result = await runInstall({ request: request(server.url(), image), diskPath: disk, stream, downloadTuning: fast }).catch((err: unknown) => err)
    t.match(result, { code: 'INSTALLED', partitionTable: { repairedFromBackup: true } },
      `${stream ? 'stream' : 'memory'} mode: repaired from the image's backup, as Linux and gdisk read it`)
    if ((result as { code?: string }).code === 'INSTALLED') t.ok(sgdiskVerify(disk).clean, 'sgdisk -v clean')
  }
})

/** Installs `image` in memory mode onto a fresh old-GPT disk, expecting PARTITION_TABLE_INVALID with `message` and the disk exactly as it was. */
async function expectRefusedUntouched (t: TapTest, image: Buffer, message: string): Promise<void> {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const before = readFileSync(disk)
  const install = runInstall({ request: request(server.url(), image), diskPath: disk, downloadTuning: fast })
  t.equal(await expectInstallError(t, install, 'PARTITION_TABLE_INVALID'), message)
  t.ok(readFileSync(disk).equals(before), 'refused before any write: the disk is as it was')
}

t.test('a GPT partition that runs past the image\'s end (8 MiB image, partition 1 to 14.6 MiB) is refused before any write', async (t) => {
  const file = imageFile(DISK_BYTES)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:30000', file], { stdio: 'ignore' })
  const image = readFileSync(file).subarray(0, 8 * MiB) // cut short, as a truncated upload is
  // Past the image the disk holds its old bytes: no partition may take them for the image's.
  await expectRefusedUntouched(t, image,
    'Bad format image, its partition table is not valid: partition 1 (LBA 2048-30000) runs past the image\'s end (its last LBA is 16383).')
})

t.test('a 512-byte image (an MBR alone, partition 1 at LBA 2048-22047, wholly past the image) is refused before any write', async (t) => {
  const image = Buffer.alloc(SECTOR)
  setRecord(image, 0, 0, 0x83, 2048, 20000)
  image[510] = 0x55
  image[511] = 0xaa
  await expectRefusedUntouched(t, image,
    'Bad format image, its partition table is not valid: MBR partition 1 (LBA 2048-22047) runs past the image\'s end (its last LBA is 0).')
})

/** The partition "device": its bytes copied out of the disk file. */
function partitionFile (): NonNullable<InstallOptions['mountCheck']> {
  return {
    locate: async (disk, partition): Promise<PartitionLocation> => {
      const device = join(tmp.path, `partition-${count++}.img`)
      writeFileSync(device, readRange(disk.path, partition.offsetBytes, partition.sizeBytes))
      return { status: 'found', device }
    },
  }
}

t.test('a config-2 reused from the image, then the mount check fails: CONFIGDRIVE_FAILED, ' +
  'the image\'s own config-2 bytes written back, the rejected ConfigDrive gone', async (t) => {
  const file = imageFile(8 * MiB)
  execFileSync('sgdisk', ['-o', '-n', '1:2048:8191', '-n', '2:8192:0', '-c', '2:config-2', file], { stdio: 'ignore' })
  const image = readFileSync(file)
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = oldGptDisk()
  const mounted: string[] = []
  const runner: MountRunner = {
    mount: async (device) => { mounted.push(device) }, // mounts an empty directory: every file is missing
    unmount: async () => {},
  }
  await expectInstallError(t, runInstall({
    request: { ...request(server.url(), image), userData: '#!/bin/sh\necho rejected\n' },
    diskPath: disk,
    downloadTuning: fast,
    mountCheck: { ...partitionFile(), runner, isRoot: () => true },
  }), 'CONFIGDRIVE_FAILED')
  t.equal(mounted.length, 1, 'the mount check ran')
  const config2 = readRange(disk, 8192 * SECTOR, image.length - 8192 * SECTOR - 33 * SECTOR)
  t.notOk(config2.includes(Buffer.from('echo rejected')), 'the ConfigDrive the check rejected is not left where cloud-init reads it')
  t.ok(config2.equals(image.subarray(8192 * SECTOR, image.length - 33 * SECTOR)), '"keeps the verified image": the image\'s partition 2 is as in the image')
})
