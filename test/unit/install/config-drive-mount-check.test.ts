import t from 'tap'
import { promises as fs } from 'node:fs'
import { dirname, join } from 'node:path'
import { configDriveFiles, type ConfigDriveFile } from '../../../agent/configdrive/index.js'
import {
  checkConfigDriveMount,
  commandMountRunner,
  mountCheckNote,
  type MountCheckOptions,
  type MountCheckTarget,
  type MountRunner,
} from '../../../agent/install/config-drive-mount-check.js'
import { tempDir } from '../../helpers/disk-files.js'
import { expectInstallError, type TapTest } from '../../helpers/tap.js'

const files = configDriveFiles(
  { hostname: 'web-1', userData: '#!/bin/sh\necho hi\n', metadata: { role: 'web' } },
  { uuid: '11111111-2222-4333-8444-555555555555' },
)
const DEVICE = '/dev/vda3'

function target (overrides: Partial<MountCheckTarget> = {}): MountCheckTarget {
  return {
    disk: { path: '/dev/vda', kind: 'block' },
    partition: { number: 3, offsetBytes: 2046 * 1024 * 1024, sizeBytes: 2 * 1024 * 1024 },
    filesystem: 'iso9660',
    files,
    ...overrides,
  }
}

/**
 * A mount runner that "mounts" by writing `shown` into the mount point (what the kernel would
 * show), and "unmounts" by emptying it; every call recorded.
 */
function fakeRunner (shown: ConfigDriveFile[], failMount?: Error): { runner: MountRunner; calls: string[]; mountPoints: string[] } {
  const calls: string[] = []
  const mountPoints: string[] = []
  return {
    calls,
    mountPoints,
    runner: {
      mount: async (device, dir, fsType) => {
        calls.push(`mount -o ro -t ${fsType} ${device}`)
        mountPoints.push(dir)
        if (failMount !== undefined) throw failMount
        for (const file of shown) {
          await fs.mkdir(join(dir, dirname(file.path)), { recursive: true })
          await fs.writeFile(join(dir, file.path), file.data)
        }
      },
      unmount: async (dir) => {
        calls.push('umount')
        for (const entry of await fs.readdir(dir)) await fs.rm(join(dir, entry), { recursive: true })
      },
    },
  }
}

function options (t: TapTest, runner: MountRunner, overrides: Partial<MountCheckOptions> = {}): MountCheckOptions & { tmpDir: string } {
  const tmp = tempDir()
  t.teardown(tmp.remove)
  return { runner, tmpDir: tmp.path, locate: async () => ({ status: 'found', device: DEVICE }), isRoot: () => true, ...overrides }
}

t.test('passes when every file written reads back the same through the mount', async (t) => {
  const fake = fakeRunner(files)
  const opts = options(t, fake.runner)
  const check = await checkConfigDriveMount(target(), opts)
  t.same(check, {
    status: 'passed',
    device: DEVICE,
    fsType: 'iso9660',
    files: ['openstack/latest/meta_data.json', 'openstack/latest/user_data', 'openstack/latest/vendor_data.json'],
  })
  t.same(fake.calls, [`mount -o ro -t iso9660 ${DEVICE}`, 'umount'])
  t.match(fake.mountPoints[0], /byoi-config-2-/)
  t.same(await fs.readdir(opts.tmpDir), [], 'the mount point is removed')
  t.equal(mountCheckNote(check), `config-2 mount check passed: ${DEVICE} mounted read-only (iso9660), 3 files equal to what was written.`)
})

t.test('a FAT ConfigDrive (4Kn disks) is mounted as vfat', async (t) => {
  const fake = fakeRunner(files)
  const check = await checkConfigDriveMount(target({ filesystem: 'fat' }), options(t, fake.runner))
  t.match(check, { status: 'passed', fsType: 'vfat' })
  t.same(fake.calls, [`mount -o ro -t vfat ${DEVICE}`, 'umount'])
})

t.test('mounted, but a file differs or is missing: CONFIGDRIVE_FAILED, and still unmounted', async (t) => {
  const changed = files.map((file) => file.path.endsWith('user_data') ? { ...file, data: Buffer.from('#!/bin/sh\necho HI\n') } : file)
  const missing = files.filter((file) => !file.path.endsWith('meta_data.json'))
  const cases = [
    ['differs', changed, /openstack\/latest\/user_data holds 18 bytes that differ from the 18 written/],
    ['missing', missing, /openstack\/latest\/meta_data\.json cannot be read \(ENOENT\)/],
  ] as const
  for (const [name, shown, why] of cases) {
    const fake = fakeRunner(shown)
    const opts = options(t, fake.runner)
    const promise = checkConfigDriveMount(target(), opts)
    const message = await expectInstallError(t, promise, 'CONFIGDRIVE_FAILED')
    t.equal(message, 'Could not create configdrive on disk.')
    const cause = await promise.catch((err: unknown) => (err as Error).cause)
    t.match(String((cause as Error).message), why, `${name}: the cause names the file`)
    t.same(fake.calls, [`mount -o ro -t iso9660 ${DEVICE}`, 'umount'], `${name}: unmounted`)
    t.same(await fs.readdir(opts.tmpDir), [], `${name}: the mount point is removed`)
  }
})

t.test('the mount fails (no filesystem driver, say): skipped, with why; umount tried all the same', async (t) => {
  // As the command runner rejects (runCommand): its standard error as the message.
  const failure = new Error('mount: mounting /dev/vda3 on /tmp/x failed: No such device')
  const fake = fakeRunner(files, failure)
  const opts = options(t, fake.runner)
  const check = await checkConfigDriveMount(target(), opts)
  t.same(check, { status: 'skipped', reason: `mount -o ro -t iso9660 ${DEVICE} failed (mount: mounting /dev/vda3 on /tmp/x failed: No such device)` })
  t.same(fake.calls, [`mount -o ro -t iso9660 ${DEVICE}`, 'umount'])
  t.same(await fs.readdir(opts.tmpDir), [])
  t.equal(mountCheckNote(check), `config-2 mount check skipped: mount -o ro -t iso9660 ${DEVICE} failed ` +
    '(mount: mounting /dev/vda3 on /tmp/x failed: No such device); the ConfigDrive was read back and compared byte for byte instead.')
})

t.test('no partition node: skipped, nothing mounted', async (t) => {
  const fake = fakeRunner(files)
  const reason = 'no device node /dev/vda3 for partition 3 of /dev/vda (waited 5 s)'
  const check = await checkConfigDriveMount(target(), options(t, fake.runner, { locate: async () => ({ status: 'skipped', reason }) }))
  t.same(check, { status: 'skipped', reason })
  t.same(fake.calls, [])
})

t.test('not root: skipped, nothing mounted', async (t) => {
  const fake = fakeRunner(files)
  const check = await checkConfigDriveMount(target(), options(t, fake.runner, { isRoot: () => false }))
  t.same(check, { status: 'skipped', reason: 'not running as root, mount needs it' })
  t.same(fake.calls, [])
})

t.test('a regular file: not applicable, and no note', async (t) => {
  const fake = fakeRunner(files)
  const check = await checkConfigDriveMount(target({ disk: { path: '/tmp/disk.img', kind: 'file' } }), { runner: fake.runner })
  t.same(check, { status: 'not-applicable', reason: '/tmp/disk.img is a regular file, not a block device' })
  t.equal(mountCheckNote(check), undefined)
  t.same(fake.calls, [])
})

t.test('mount(8) missing: skipped, named', async (t) => {
  const tmp = tempDir()
  t.teardown(tmp.remove)
  const runner = commandMountRunner({ mount: '/nonexistent/mount', umount: '/nonexistent/umount' })
  const check = await checkConfigDriveMount(target(), {
    runner,
    tmpDir: tmp.path,
    locate: async () => ({ status: 'found', device: DEVICE }),
    isRoot: () => true,
  })
  t.same(check, { status: 'skipped', reason: `mount -o ro -t iso9660 ${DEVICE} failed (/nonexistent/mount not found)` })
  t.same(await fs.readdir(tmp.path), [], 'the mount point is removed')
})
