import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, openSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { eraseDiskMetadata, mergeRanges } from '../../agent/disk/erase-metadata.js'
import { readRange, tempDir } from '../helpers/disk-files.js'

const tmp = tempDir()
t.teardown(tmp.remove)
const MiB = 1024 * 1024

t.test('mergeRanges joins overlapping and touching ranges', async (t) => {
  t.same(mergeRanges([[10, 20], [0, 5], [5, 8], [15, 30], [40, 40]]), [[0, 8], [10, 30]])
})

t.test('erase_devices_metadata leaves nothing that blkid or sgdisk can find', async (t) => {
  const disk = join(tmp.path, 'disk.img')
  execFileSync('truncate', ['-s', `${64 * MiB}`, disk])
  execFileSync('sgdisk', ['-n', '1:2048:+20M', '-t', '1:8300', '-n', '2:0:0', '-t', '2:8300', disk], { stdio: 'ignore' })
  // ext4 in partition 1, an md 1.0 style marker (the RAID superblock at the end) in partition 2's last MiB.
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', `offset=${2048 * 512}`, disk, '20M'], { stdio: 'ignore' })
  const p2End = (64 * MiB) - 34 * 512
  const fd = openSync(disk, 'r+')
  writeSync(fd, Buffer.from('a marker past the first MiB'), 0, 27, 30 * MiB) // data in the middle: kept
  writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, p2End - 64 * 1024)
  closeSync(fd)
  t.match(execFileSync('blkid', ['-p', '-O', `${2048 * 512}`, disk], { encoding: 'utf8' }), /TYPE="ext4"/, 'before: ext4 seen')

  const erased = await eraseDiskMetadata(disk)
  t.equal(erased.table, 'gpt')
  t.same(erased.ranges[0], [0, 2048 * 512 + MiB], 'the disk\'s first MiB and partition 1\'s first, joined')
  const sgdisk = spawnSync('sgdisk', ['-v', disk], { encoding: 'utf8' })
  t.match(sgdisk.stdout + sgdisk.stderr, /(No valid GPT|Creating new GPT|not present|Problem)/i, 'sgdisk finds no GPT')
  const probe = spawnSync('blkid', ['-p', '-O', `${2048 * 512}`, disk], { encoding: 'utf8' })
  t.not(probe.status, 0, 'blkid finds no filesystem in partition 1')
  t.equal(readRange(disk, p2End - 64 * 1024, 4096).every((byte) => byte === 0), true, 'partition 2\'s end zeroed')
  t.equal(readRange(disk, 30 * MiB, 27).toString(), 'a marker past the first MiB', 'data between the metadata untouched (no full erase)')
})

t.test('a disk without a table: its first and last MiB', async (t) => {
  const disk = join(tmp.path, 'plain.img')
  execFileSync('truncate', ['-s', `${8 * MiB}`, disk])
  execFileSync('mkfs.ext4', ['-q', '-F', disk], { stdio: 'ignore' })
  const erased = await eraseDiskMetadata(disk)
  t.same(erased.ranges, [[0, MiB], [7 * MiB, 8 * MiB]])
  t.not(spawnSync('blkid', ['-p', disk]).status, 0, 'blkid finds nothing')
})
