/**
 * The read-only mount of config-2 at the end of an install, through runInstall. The kernel here
 * has no isofs or vfat and its loop devices show no partitions, so the real mount only happens in
 * the QEMU guest (test/e2e); here the "mount" extracts the partition's bytes, as they are on the
 * disk, with xorriso or mcopy (the referees), into the mount point.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { promises as fs, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { MountRunner, PartitionLocation } from '../../agent/install/config-drive-mount-check.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import type { InstallEvent } from '../../agent/report/progress.js'
import { attachLoop, blkidAt, makeDirtyDisk, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeGptImage(10 * MiB)
const USER_DATA = '#!/bin/sh\necho "mounted and read"\n'

const tmp = tempDir()
t.teardown(tmp.remove)
let count = 0

function newDisk (): string {
  const path = join(tmp.path, `disk-${count++}.img`)
  makeDirtyDisk(path, DISK_BYTES)
  return path
}

function request (url: string): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'raw',
    checksum: { type: 'sha512', hex: sha('sha512', image) },
    httpHeaders: [],
    metadata: { role: 'web' },
    hostname: 'web-1',
    userData: USER_DATA,
  }
}

const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3 }

/** The partition "device": a file holding the partition's bytes as they are on the disk after the install. */
function partitionFile (): InstallOptions['mountCheck'] {
  return {
    locate: async (disk, partition): Promise<PartitionLocation> => {
      const device = join(tmp.path, `partition-${count++}.img`)
      writeFileSync(device, readRange(disk.path, partition.offsetBytes, partition.sizeBytes))
      return { status: 'found', device }
    },
  }
}

/** Extracts the filesystem into the mount point (xorriso for ISO 9660, mcopy for FAT); `tamper` then edits it. */
function extractingRunner (calls: string[], tamper?: (dir: string) => Promise<void>): MountRunner {
  return {
    mount: async (device, dir, fsType) => {
      calls.push(`mount ${fsType}`)
      if (fsType === 'iso9660') execFileSync('xorriso', ['-osirrox', 'on', '-indev', device, '-extract', '/', dir], { stdio: 'ignore' })
      else execFileSync('mcopy', ['-s', '-i', device, '::/openstack', dir], { stdio: 'ignore', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } })
      await tamper?.(dir)
    },
    unmount: async (dir) => {
      calls.push('umount')
      for (const entry of await fs.readdir(dir)) await fs.rm(join(dir, entry), { recursive: true, force: true })
    },
  }
}

for (const filesystem of ['iso9660', 'fat'] as const) {
  t.test(`${filesystem}: the files read through the "mount" equal what was written: INSTALLED, noted, in the result`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const calls: string[] = []
    const events: InstallEvent[] = []
    const disk = newDisk()
    const result = await runInstall({
      request: request(server.url()),
      diskPath: disk,
      downloadTuning: fast,
      configDrive: { force: filesystem },
      mountCheck: { ...partitionFile(), runner: extractingRunner(calls), isRoot: () => true },
      onEvent: (event) => events.push(event),
    })
    const fsType = filesystem === 'fat' ? 'vfat' : 'iso9660'
    t.same(calls, [`mount ${fsType}`, 'umount'])
    t.match(result.configDrive.mountCheck, {
      status: 'passed',
      fsType,
      files: ['openstack/latest/meta_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data.json'],
    })
    const notes = events.flatMap((e) => e.type === 'note' ? [e.message] : [])
    t.match(notes, [/^config-2 mount check passed: \S+partition-\d+\.img mounted read-only \((iso9660|vfat)\), 3 files equal to what was written\.$/])
    const done = events.flatMap((e) => e.type === 'step' && e.status === 'done' ? [e.step] : [])
    t.equal(done.at(-1), 'finish')
  })
}

t.test('mounted, but user_data differs: CONFIGDRIVE_FAILED; the image stays, bootable, without config-2', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const calls: string[] = []
  const events: InstallEvent[] = []
  const disk = newDisk()
  const runner = extractingRunner(calls, async (dir) => {
    const file = join(dir, 'openstack', 'latest', 'user_data')
    await fs.chmod(file, 0o644)
    await fs.writeFile(file, '#!/bin/sh\necho "someone else"\n')
  })
  const message = await expectInstallError(t, runInstall({
    request: request(server.url()),
    diskPath: disk,
    downloadTuning: fast,
    mountCheck: { ...partitionFile(), runner, isRoot: () => true },
    onEvent: (e) => events.push(e),
  }), 'CONFIGDRIVE_FAILED')
  t.equal(message, 'Could not create configdrive on disk.')
  t.same(calls, ['mount iso9660', 'umount'], 'unmounted after the failed comparison')
  const data = gptDataRange(image)
  t.ok(readRange(disk, data.offset, data.length).equals(image.subarray(data.offset, data.offset + data.length)), 'the image\'s data is in place')
  t.ok(sgdiskVerify(disk).clean, 'sgdisk -v finds no problem: the backup GPT was rewritten for the table without config-2')
  const table = execFileSync('sgdisk', ['-p', disk], { encoding: 'utf8' })
  t.notMatch(table, /config-2/, 'no config-2 partition in the table')
  t.match(table, /^\s+1\s+2048\s/m, 'the image\'s partition 1 is there')
  t.match(events.filter((e) => e.type === 'step' && e.status === 'error'), [{ step: 'finish' }])
})

t.test('a regular file, nothing injected: the check does not apply, no note', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const events: InstallEvent[] = []
  const disk = newDisk()
  const result = await runInstall({ request: request(server.url()), diskPath: disk, downloadTuning: fast, onEvent: (e) => events.push(e) })
  t.same(result.configDrive.mountCheck, { status: 'not-applicable', reason: `${disk} is a regular file, not a block device` })
  t.same(events.filter((e) => e.type === 'note'), [])
})

const canLoop = process.getuid?.() === 0
const needsRoot = { skip: canLoop ? false : 'needs root for losetup' }
t.test('a loop device without partition scanning: skipped with why, noted, still INSTALLED', needsRoot, async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const loop = attachLoop(newDisk())
  t.teardown(loop.detach)
  const events: InstallEvent[] = []
  const result = await runInstall({
    request: request(server.url()),
    diskPath: loop.device,
    downloadTuning: fast,
    mountCheck: { nodeTimeoutMs: 500 },
    onEvent: (e) => events.push(e),
  })
  t.equal(result.code, 'INSTALLED')
  t.match(result.configDrive.mountCheck, { status: 'skipped', reason: /partition table|partition 2/ })
  const notes = events.flatMap((e) => e.type === 'note' ? [e.message] : [])
  t.match(notes, [/^config-2 mount check skipped: .+; the ConfigDrive was read back and compared byte for byte instead\.$/])
  t.match(blkidAt(loop.device, result.configDrive.partition.offsetBytes), { LABEL: 'config-2', TYPE: 'iso9660' })
  t.comment(notes[0] ?? '')
})
