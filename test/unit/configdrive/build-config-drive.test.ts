import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildConfigDrive } from '../../../agent/configdrive/build-config-drive.js'
import { readFatLabel } from '../../../agent/configdrive/read-fat.js'
import { readIsoVolumeId } from '../../../agent/configdrive/read-iso-volume-id.js'
import { tempDir } from '../../helpers/disk-files.js'
import { blkid, bufferReader, pseudoRandomBytes } from './referees.js'

const tmp = tempDir('byoi-configdrive-')
t.teardown(tmp.remove)

const MiB = 1024 * 1024
const UUID = '3f2504e0-4f89-41d3-9a0c-0305e82c3301'
const request = { hostname: 'h', userData: '#!/bin/sh\necho hi\n', metadata: { a: 'b' }, sshKey: 'ssh-ed25519 AAAA' }

t.test('ISO 9660 on 512-byte disks, FAT on 4Kn, either when forced', async (t) => {
  const iso = buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * MiB, uuid: UUID })
  t.equal(iso.filesystem, 'iso9660')
  t.equal(await readIsoVolumeId(bufferReader(iso.image)), 'config-2')
  t.ok(iso.image.length < MiB, 'the ISO is the size of its content')

  const fat = buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 64 * MiB, uuid: UUID })
  t.equal(fat.filesystem, 'fat')
  t.equal(fat.image.length, 64 * MiB, 'the FAT fills the partition')
  t.equal(fat.image.readUInt16LE(11), 4096, 'BPB_BytsPerSec = the disk\'s logical sector size')
  t.equal(await readFatLabel(bufferReader(fat.image)), 'config-2')

  const forcedFat = buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * MiB, uuid: UUID, force: 'fat' })
  t.equal(forcedFat.filesystem, 'fat')
  t.equal(forcedFat.image.readUInt16LE(11), 512)
  const path = join(tmp.path, 'forced.fat')
  writeFileSync(path, forcedFat.image)
  t.equal(blkid(path).TYPE, 'vfat')

  t.equal(buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 64 * MiB, force: 'iso9660' }).filesystem, 'iso9660')
  t.equal(buildConfigDrive(request, { sectorBytes: 2048, partitionBytes: 64 * MiB }).filesystem, 'iso9660', 'isofs mounts up to 2048-byte sectors')
})

t.test('the files are returned, the same as in the image', async (t) => {
  const drive = buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * MiB, uuid: UUID })
  t.same(drive.files.map((file) => file.path), ['openstack/latest/meta_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data.json'])
  t.ok(buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * MiB, uuid: UUID }).image.equals(drive.image), 'deterministic given the uuid')
  const withNetwork = buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * MiB, uuid: UUID, networkData: { links: [] } })
  t.ok(withNetwork.files.some((file) => file.path === 'openstack/latest/network_data.json'))
})

t.test('a smaller partition: the FAT takes its size, rounded down to whole sectors', async (t) => {
  const drive = buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 8 * MiB + 1000, uuid: UUID })
  t.equal(drive.image.length, 8 * MiB)
  const big = buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 200 * MiB, uuid: UUID })
  t.equal(big.image.length, 64 * MiB, 'at most 64 MiB')
})

t.test('content that does not fit: CONFIGDRIVE_FAILED', async (t) => {
  const heavy = { ...request, userData: pseudoRandomBytes(3 * MiB).toString('latin1') }
  const failed = { code: 'CONFIGDRIVE_FAILED', message: 'Could not create configdrive on disk.' }
  t.throws(() => buildConfigDrive(heavy, { sectorBytes: 512, partitionBytes: 2 * MiB }), failed, 'ISO larger than the partition')
  t.throws(() => buildConfigDrive(heavy, { sectorBytes: 4096, partitionBytes: 2 * MiB }), failed, 'FAT: content larger than the partition')
  const huge = { ...request, userData: 'x'.repeat(65 * MiB) }
  t.throws(() => buildConfigDrive(huge, { sectorBytes: 512, partitionBytes: 128 * MiB }), failed, 'over 64 MiB (ISO)')
  t.throws(() => buildConfigDrive(huge, { sectorBytes: 4096, partitionBytes: 128 * MiB }), failed, 'over 64 MiB (FAT)')
  t.throws(() => buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 64 * 1024 }), failed, 'a partition too small for a FAT')
  t.throws(() => buildConfigDrive(request, { sectorBytes: 520, partitionBytes: 64 * MiB }), failed, 'an odd sector size')
  t.throws(() => buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 0 }), failed, 'no partition')
  try {
    buildConfigDrive(heavy, { sectorBytes: 512, partitionBytes: 2 * MiB })
  } catch (err) {
    t.match((err as Error).cause, { message: /partition holds/ }, 'the cause, for the log, says why')
  }
})
