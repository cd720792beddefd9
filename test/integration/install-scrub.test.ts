/**
 * Scrub on install, for real: a GPT disk whose ext4 partition is a baked system's root, served
 * over HTTP and installed with the payload's `scrub`; the kernel mounts the root (a loop device at
 * the partition's offset: the image's first MiB is still held back) and the agent makes it a
 * fresh clone. Checked with e2fsprogs on the installed partition: machine-id empty, host keys,
 * cloud-init state, leases, logs, histories and the listed paths gone, the rest kept, e2fsck
 * clean; links pointing out of the guest followed inside it only (a host folder they name stays
 * whole); no loop device or mount left. And the failures: no root filesystem, one the kernel
 * will not mount: SCRUB_FAILED, the disk unbootable.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall } from '../../agent/install/run-install.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { makeCaptureDisk, MiB, OS_FILES, PART1_BYTES, PART1_START } from '../helpers/capture-disk.js'
import { readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { startImageServer } from '../helpers/image-server.js'
import { expectInstallError } from '../helpers/tap.js'
import { installStartBody } from '../unit/api/api-test-helpers.js'

const dir = tempDir()
t.teardown(dir.remove)
const outside = join(dir.path, 'host-folder')
mkdirSync(outside)
writeFileSync(join(outside, 'precious'), 'the rescue system\'s own file\n')
const mountDirs = join(dir.path, 'mounts')
mkdirSync(mountDirs)

/** debugfs on the installed partition 1 (copied out: debugfs reads a filesystem image). */
function installedFs (disk: string): { cat: (path: string) => string | undefined; ls: (path: string) => string[]; e2fsck: () => void } {
  const image = join(dir.path, `part1-${Math.random().toString(16).slice(2)}.img`)
  writeFileSync(image, readRange(disk, PART1_START, PART1_BYTES))
  const debugfs = (request: string): string => execFileSync('debugfs', ['-R', request, image], {
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 16 * MiB,
  })
  return {
    cat: (path) => {
      const stat = debugfs(`stat ${path}`)
      return stat.includes('Inode:') ? debugfs(`cat ${path}`) : undefined
    },
    ls: (path) => debugfs(`ls -p ${path}`).split('\n').map((line) => line.split('/')[5] ?? '').filter((name) => name !== '' && name !== '.' && name !== '..'),
    e2fsck: () => { execFileSync('e2fsck', ['-fn', image], { stdio: 'ignore' }) },
  }
}

function loopsOver (file: string): string {
  return execFileSync('losetup', ['-j', file], { encoding: 'utf8' }).trim()
}

async function install (source: string, scrub: string, target: string): ReturnType<typeof runInstall> {
  const server = await startImageServer({ image: readFileSync(source) })
  try {
    const request = parseInstallRequest(installStartBody(server.url('/os.raw'), [{ key: 'scrub', value: scrub }]))
    writeFileSync(target, '')
    truncateSync(target, 200 * MiB)
    return await runInstall({ request, diskPath: target, scrub: { tmpDir: mountDirs } })
  } finally {
    await server.close()
  }
}

t.test('scrub: the root made a fresh clone, the listed paths removed, the rest kept; links never leave the guest', async (t) => {
  const made = makeCaptureDisk(dir.path, 'baked', { os: { outside } })
  const target = join(dir.path, 'clone.img')
  const installed = await install(made.path, JSON.stringify({ paths: ['/opt/app', '/opt/link/precious', '/srv/none'] }), target)
  t.equal(installed.code, 'INSTALLED')
  t.same(installed.scrub, [
    'scrub: the root filesystem is partition 1 (ext4)',
    'scrub: /etc/machine-id emptied (a new one is made at first boot)',
    'scrub: /var/lib/dbus/machine-id removed',
    'scrub: SSH host keys removed from /etc/ssh (new ones are made at first boot)',
    'scrub: cloud-init\'s instance state removed (/var/lib/cloud): the clone is a new instance',
    'scrub: 1 DHCP lease file(s) removed',
    'scrub: systemd\'s random seed removed',
    'scrub: 4 log file(s) removed from /var/log',
    'scrub: 2 shell history file(s) removed',
    'scrub: /opt/app removed',
    // The link names a host folder: inside the guest, that path is not there.
    `scrub: /opt/link/precious not in the image (/${outside.split('/')[1] ?? ''} does not exist)`,
    'scrub: /srv/none not in the image (/srv does not exist)',
  ])
  const fs = installedFs(target)
  t.equal(fs.cat('/etc/machine-id'), '', 'machine-id empty')
  t.same(fs.ls('/etc/ssh'), ['sshd_config'], 'host keys gone, the configuration kept')
  t.same(fs.ls('/var/lib/cloud'), [])
  t.same(fs.ls('/var/lib/dhcp'), [])
  t.equal(fs.cat('/var/lib/systemd/random-seed'), undefined)
  t.same(fs.ls('/var/log').sort(), ['apt', 'empty-dir', 'journal'], 'the log folders kept, their files (and the link) gone')
  t.same(fs.ls('/var/log/journal/0123'), [])
  t.equal(fs.cat('/root/.bash_history'), undefined)
  t.equal(fs.cat('/home/alice/.bash_history'), undefined)
  t.equal(fs.cat('/home/alice/notes.txt'), OS_FILES['home/alice/notes.txt'], 'other files kept')
  t.equal(fs.cat('/etc/os-release'), OS_FILES['etc/os-release'])
  t.equal(fs.cat('/etc/hostname'), OS_FILES['etc/hostname'])
  t.same(fs.ls('/opt'), ['link'], '/opt/app gone; the link, not listed, kept')
  t.equal(fs.cat('/kept.bin')?.length, 3 * MiB, 'data kept')
  fs.e2fsck()
  t.pass('e2fsck -fn: clean')
  t.equal(readFileSync(join(outside, 'precious'), 'utf8'), 'the rescue system\'s own file\n', 'the host folder the links name is whole')
  t.same(readdirSync(outside), ['precious'])
  t.equal(loopsOver(target), '', 'no loop device left over the disk')
  t.same(readdirSync(mountDirs), [], 'no mount point left')
  t.match(sgdiskVerify(target), { clean: true }, 'the head written after the scrub')
})

t.test('scrub asked of an image without a root filesystem: SCRUB_FAILED, the disk unbootable', async (t) => {
  const made = makeCaptureDisk(dir.path, 'data-only')
  const target = join(dir.path, 'no-root.img')
  const message = await expectInstallError(t, install(made.path, 'true', target), 'SCRUB_FAILED')
  t.equal(message, 'Could not scrub the image: no root filesystem in the image (partition 1 (ext4) has no /etc/os-release), the disk was left unbootable.')
  t.ok(readRange(target, 0, MiB).equals(Buffer.alloc(MiB)), 'the first MiB zeroed')
  t.equal(loopsOver(target), '')
  t.same(readdirSync(mountDirs), [])
})

t.test('a root filesystem the kernel will not mount: SCRUB_FAILED naming it, the disk unbootable', async (t) => {
  const made = makeCaptureDisk(dir.path, 'broken', { os: { outside } })
  // The superblock's block size field made absurd (s_log_block_size = 30): the magic stays, mount refuses it.
  const bytes = readFileSync(made.path)
  bytes.writeUInt32LE(30, PART1_START + 1024 + 24)
  writeFileSync(made.path, bytes)
  const target = join(dir.path, 'broken-clone.img')
  const message = await expectInstallError(t, install(made.path, 'true', target), 'SCRUB_FAILED')
  t.match(message, /^Could not scrub the image: partition 1 \(ext4\) could not be mounted: .+, the disk was left unbootable\.$/)
  t.ok(readRange(target, 0, MiB).equals(Buffer.alloc(MiB)), 'the first MiB zeroed')
  t.equal(loopsOver(target), '')
  t.same(readdirSync(mountDirs), [])
})
