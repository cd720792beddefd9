/**
 * checkEfiBootloader's verdicts: only bytes that are no readable EFI system partition (its FAT, the
 * GPT that locates it, a read outside it) mean "not in the image's ESP"; any other error inside the
 * lookup goes up as it is, so that the install reports it as INTERNAL_ERROR, never as a bad image.
 */
import t from 'tap'
import { crc32 } from 'node:zlib'
import { buildFat } from '../../../agent/configdrive/index.js'
import { HeadOverlay } from '../../../agent/disk/block-io.js'
import { EFI_SYSTEM_GUID } from '../../../agent/disk/efi-system-partition.js'
import { guidToBytes } from '../../../agent/disk/gpt.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { checkEfiBootloader } from '../../../agent/install/image-checks.js'
import { craftGptImage, fixHeaderCrc, HEAD_BYTES, MemoryIo, MiB } from '../disk/partition/fixtures/partition-tools.js'
import { expectInstallError } from '../../helpers/tap.js'

const SECTOR = 512
const IMAGE_SECTORS = 8192 // 4 MiB
const ESP = { firstLba: 2048, lastLba: 6143 } // 2 MiB at 1 MiB
const EFI_PATH = '\\EFI\\BOOT\\BOOTX64.EFI'

/** A 4 MiB GPT image whose one partition is an EFI system partition holding `esp` (a FAT, or whatever bytes). */
function imageWithEsp (esp: Buffer): Buffer {
  const image = craftGptImage({ sectorBytes: SECTOR, imageSectors: IMAGE_SECTORS, partitions: [ESP] })
  const lastLba = IMAGE_SECTORS - 1
  for (const headerLba of [1, lastLba]) {
    const header = headerLba * SECTOR
    const entriesOffset = Number(image.readBigUInt64LE(header + 72)) * SECTOR
    guidToBytes(EFI_SYSTEM_GUID).copy(image, entriesOffset)
    image.writeUInt32LE(crc32(image.subarray(entriesOffset, entriesOffset + 128 * 128)), header + 88)
    fixHeaderCrc(image, header)
  }
  esp.copy(image, ESP.firstLba * SECTOR)
  return image
}

function espFat (): Buffer {
  return buildFat([{ path: 'EFI/BOOT/BOOTX64.EFI', data: Buffer.from('MZ not really a PE') }], { sectorBytes: SECTOR, sizeBytes: 2 * MiB, label: 'ESP' })
}

async function check (image: Buffer, io = new MemoryIo(image)): Promise<void> {
  await checkEfiBootloader(EFI_PATH, new HeadOverlay(Buffer.from(image.subarray(0, HEAD_BYTES)), io), { imageBytes: image.length })
}

t.test('the file in the ESP: found, matched without regard to case', async (t) => {
  await t.resolves(check(imageWithEsp(espFat())))
  const image = imageWithEsp(espFat())
  const io = new HeadOverlay(Buffer.from(image.subarray(0, HEAD_BYTES)), new MemoryIo(image))
  await t.resolves(checkEfiBootloader('\\efi\\boot\\bootx64.efi', io, { imageBytes: image.length }))
})

t.test('an ESP that is no FAT: EFI_BOOTLOADER_NOT_FOUND, not in the ESP', async (t) => {
  const message = await expectInstallError(t, check(imageWithEsp(Buffer.alloc(2 * MiB))), 'EFI_BOOTLOADER_NOT_FOUND')
  t.equal(message, `Bad efiBootloaderPath, ${EFI_PATH} is not in the image's EFI system partition.`)
})

t.test('a FAT whose cluster chain leaves the partition: EFI_BOOTLOADER_NOT_FOUND', async (t) => {
  const fat = espFat()
  // The root directory's entry for EFI points at a cluster past the filesystem.
  const efiEntry = fat.indexOf(Buffer.from('EFI        ', 'latin1'))
  t.ok(efiEntry > 0 && efiEntry % 32 === 0, 'the EFI directory\'s entry')
  fat.writeUInt16LE(0xfff0, efiEntry + 26)
  await expectInstallError(t, check(imageWithEsp(fat)), 'EFI_BOOTLOADER_NOT_FOUND')
})

t.test('a GPT that cannot locate the ESP (both copies invalid): EFI_BOOTLOADER_NOT_FOUND', async (t) => {
  const image = imageWithEsp(espFat())
  image.writeUInt32LE(image.readUInt32LE(SECTOR + 16) ^ 1, SECTOR + 16) // primary header CRC
  const backup = (IMAGE_SECTORS - 1) * SECTOR
  image.writeUInt32LE(image.readUInt32LE(backup + 16) ^ 1, backup + 16) // backup header CRC
  await expectInstallError(t, check(image), 'EFI_BOOTLOADER_NOT_FOUND')
})

t.test('an unexpected error inside the EFI lookup is not reported as EFI_BOOTLOADER_NOT_FOUND', async (t) => {
  const image = imageWithEsp(espFat())
  const bug = new TypeError('Cannot read properties of undefined (reading \'length\')')
  // A bug's error from the reads of the ESP (past the head): the lookup must not take it for bad bytes.
  const io = new MemoryIo(image)
  io.read = async () => { throw bug }
  const err = await check(image, io).then(() => undefined, (e: unknown) => e)
  t.equal(err, bug, 'the error goes up as it is (the install reports INTERNAL_ERROR)')
  t.notOk(isInstallError(err), 'not an InstallError: no EFI_BOOTLOADER_NOT_FOUND')

  // The same inside the GPT's reads (the backup, past the head, read when the primary is damaged).
  const damaged = imageWithEsp(espFat())
  damaged.writeUInt32LE(damaged.readUInt32LE(SECTOR + 16) ^ 1, SECTOR + 16)
  const gptIo = new MemoryIo(damaged)
  gptIo.read = async () => { throw bug }
  const gptErr = await check(damaged, gptIo).then(() => undefined, (e: unknown) => e)
  t.equal(gptErr, bug, 'a bug while loading the GPT goes up as it is')
})

t.test('an abort during the lookup is the signal\'s reason, never "not found"', async (t) => {
  const image = imageWithEsp(espFat())
  const controller = new AbortController()
  const reason = new Error('cancelled')
  const io = new MemoryIo(image)
  io.read = async () => {
    controller.abort(reason)
    throw new RangeError('a read that failed because of the cancel')
  }
  const overlay = new HeadOverlay(Buffer.from(image.subarray(0, HEAD_BYTES)), io)
  const err = await checkEfiBootloader(EFI_PATH, overlay, { imageBytes: image.length, signal: controller.signal }).then(() => undefined, (e: unknown) => e)
  t.equal(err, reason)
})
