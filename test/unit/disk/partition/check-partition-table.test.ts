/**
 * checkPartitionTable's verdicts: a table that fails its checks is PARTITION_TABLE_INVALID (the
 * image's fault); any other error while checking it goes up as it is, so that the install reports
 * it as INTERNAL_ERROR, never as a bad image.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { checkPartitionTable, HeadOverlay } from '../../../../agent/disk/partition-table.js'
import { isInstallError } from '../../../../agent/errors/install-error.js'
import { tempDir } from '../../../helpers/disk-files.js'
import { expectInstallError } from '../../../helpers/tap.js'
import { craftGptImage, HEAD_BYTES, MemoryIo, sfdiskImage } from './fixtures/partition-tools.js'

const SECTOR = 512
const IMAGE_SECTORS = 8192 // 4 MiB

/** A GPT image whose primary header fails its CRC: checking it reads the backup, at the image's last LBA (past the head). */
function damagedPrimary (): Buffer {
  const image = craftGptImage({ sectorBytes: SECTOR, imageSectors: IMAGE_SECTORS, partitions: [{ firstLba: 2048, lastLba: 4095 }] })
  image.writeUInt32LE(image.readUInt32LE(SECTOR + 16) ^ 1, SECTOR + 16)
  return image
}

async function check (image: Buffer, io = new MemoryIo(image)): Promise<unknown> {
  return await checkPartitionTable(new HeadOverlay(Buffer.from(image.subarray(0, HEAD_BYTES)), io), { imageBytes: image.length, diskPath: '/dev/test' })
}

t.test('a damaged primary GPT is checked from the image\'s backup; with both damaged, PARTITION_TABLE_INVALID', async (t) => {
  t.match(await check(damagedPrimary()), { kind: 'gpt' }, 'the backup is valid')
  const image = damagedPrimary()
  const backup = (IMAGE_SECTORS - 1) * SECTOR
  image.writeUInt32LE(image.readUInt32LE(backup + 16) ^ 1, backup + 16)
  const message = await expectInstallError(t, check(image), 'PARTITION_TABLE_INVALID')
  t.match(message,
    /^Bad format image, its partition table is not valid: the primary GPT is not valid \(GPT header at LBA 1 fails its CRC\) and no valid backup was found/)
})

t.test('an MBR\'s logical partitions that leave their container: PARTITION_TABLE_INVALID', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const path = join(dir.path, 'mbr.img')
  sfdiskImage(path, IMAGE_SECTORS * SECTOR, 'label: dos\nstart=2048, size=4096, type=5\nstart=4096, size=1024, type=83\n')
  const image = readFileSync(path)
  // The first EBR's logical record, made to run past its extended container.
  image.writeUInt32LE(8192, 2048 * SECTOR + 446 + 12)
  const message = await expectInstallError(t, check(image), 'PARTITION_TABLE_INVALID')
  t.match(message, /logical partition 5 \(LBA \d+-\d+\) does not lie inside its extended partition 1/)
})

t.test('an unexpected error while checking the partition table is not reported as PARTITION_TABLE_INVALID', async (t) => {
  const image = damagedPrimary()
  const bug = new TypeError('Cannot read properties of undefined (reading \'length\')')
  const io = new MemoryIo(image)
  io.read = async () => { throw bug }
  const err = await check(image, io).then(() => undefined, (e: unknown) => e)
  t.equal(err, bug, 'the error goes up as it is (the install reports INTERNAL_ERROR)')
  t.notOk(isInstallError(err), 'not an InstallError: no PARTITION_TABLE_INVALID')
})
