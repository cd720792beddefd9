import t from 'tap'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildConfigDrive } from '../../../agent/configdrive/build-config-drive.js'
import { tempDir } from '../../helpers/disk-files.js'
import type { TapTest } from '../../helpers/tap.js'
import { cloudInitRead, run } from './referees.js'

// cloud-init's own reader (Debian's cloud-init, DataSourceConfigDrive.read_config_drive) over the
// tree extracted from our images: it must find the metadata and the user data we wrote.

const tmp = tempDir('byoi-cloudinit-')
t.teardown(tmp.remove)

const UUID = '6a1e4c8e-2f0b-4f7e-9d1c-3b5a7e9f0c2d'
const request = {
  hostname: 'web-1',
  userData: '#cloud-config\nwrite_files:\n  - path: /etc/motd\n    content: "Hi, sounds that BYOI is a success! ✓"\n',
  metadata: { role: 'web', owner: 'ops team' },
  sshKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBYOIbyoiBYOIbyoiBYOIbyoiBYOIbyoiBYOIbyoi me@example.invalid',
}

function check (t: TapTest, dir: string): void {
  const read = cloudInitRead(dir)
  t.equal(read.metadata.uuid, UUID)
  t.equal(read.metadata['instance-id'], UUID, 'uuid becomes the instance id')
  t.equal(read.metadata.hostname, 'web-1')
  t.equal(read.metadata.name, 'web-1')
  t.same(read.metadata.meta, { role: 'web', owner: 'ops team' })
  t.same(read.metadata.public_keys, { default: request.sshKey })
  t.equal(read.userdata, request.userData, 'user data verbatim')
}

t.test('ISO 9660 drive (512-byte disk), extracted with xorriso', async (t) => {
  const drive = buildConfigDrive(request, { sectorBytes: 512, partitionBytes: 64 * 1024 * 1024, uuid: UUID })
  t.equal(drive.filesystem, 'iso9660')
  const image = join(tmp.path, 'drive.iso')
  writeFileSync(image, drive.image)
  const dir = join(tmp.path, 'iso-tree')
  const extracted = run('xorriso', ['-osirrox', 'on', '-indev', image, '-extract', '/', dir])
  t.equal(extracted.status, 0, extracted.stderr)
  check(t, dir)
})

t.test('FAT drive (4Kn disk), extracted with mcopy -s', async (t) => {
  const drive = buildConfigDrive(request, { sectorBytes: 4096, partitionBytes: 64 * 1024 * 1024, uuid: UUID })
  t.equal(drive.filesystem, 'fat')
  const image = join(tmp.path, 'drive.fat')
  writeFileSync(image, drive.image)
  const dir = join(tmp.path, 'fat-tree')
  mkdirSync(dir)
  const copied = run('mcopy', ['-s', '-n', '-i', image, '::/openstack', dir])
  t.equal(copied.status, 0, copied.stderr)
  check(t, dir)
})

t.test('a minimal request: cloud-init still finds the drive, with no user data', async (t) => {
  const drive = buildConfigDrive({ metadata: {} }, { sectorBytes: 512, partitionBytes: 64 * 1024 * 1024, uuid: UUID })
  const image = join(tmp.path, 'minimal.iso')
  writeFileSync(image, drive.image)
  const dir = join(tmp.path, 'minimal-tree')
  t.equal(run('xorriso', ['-osirrox', 'on', '-indev', image, '-extract', '/', dir]).status, 0)
  const read = cloudInitRead(dir)
  t.equal(read.metadata.uuid, UUID)
  t.notOk(read.userdata, 'no user data')
})
