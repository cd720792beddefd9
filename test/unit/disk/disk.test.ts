import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Disk } from '../../../agent/disk/disk.js'
import { tempDir } from '../../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)

t.test('a regular file: its size and 512-byte sectors', async (t) => {
  const path = join(tmp.path, 'f.img')
  writeFileSync(path, Buffer.alloc(4096))
  const disk = await Disk.open(path)
  t.teardown(() => disk.close())
  t.equal(disk.kind, 'file')
  t.equal(disk.sizeBytes, 4096)
  t.equal(disk.logicalSectorBytes, 512)
})

t.test('nothing is read or written outside the disk', async (t) => {
  const path = join(tmp.path, 'g.img')
  writeFileSync(path, Buffer.alloc(4096))
  const disk = await Disk.open(path)
  t.teardown(() => disk.close())
  await t.rejects(disk.write(Buffer.alloc(10), 4090), RangeError)
  await t.rejects(disk.write(Buffer.alloc(1), -1), RangeError)
  await t.rejects(disk.read(Buffer.alloc(1), 4096), RangeError)
  await disk.write(Buffer.alloc(6, 1), 4090)
  const back = Buffer.alloc(6)
  await disk.read(back, 4090)
  t.ok(back.equals(Buffer.alloc(6, 1)))
  await disk.zero(4090, 6)
  await disk.read(back, 4090)
  t.ok(back.equals(Buffer.alloc(6)))
})

t.test('refusals name the disk and the reason', async (t) => {
  await t.rejects(Disk.open(join(tmp.path, 'missing')), {
    code: 'DISK_UNAVAILABLE',
    message: `Could not open disk ${join(tmp.path, 'missing')}: no such file or device.`,
  })
  await t.rejects(Disk.open(tmp.path), { code: 'DISK_UNAVAILABLE', message: `Could not open disk ${tmp.path}: not a regular file or a block device.` })
  const empty = join(tmp.path, 'empty.img')
  writeFileSync(empty, '')
  await t.rejects(Disk.open(empty), { code: 'DISK_UNAVAILABLE' })
})
