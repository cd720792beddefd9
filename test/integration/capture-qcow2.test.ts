import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { captureQcow2 } from '../../agent/capture/capture-qcow2.js'
import { Disk } from '../../agent/disk/disk.js'
import { DELETED_MARKERS, DISK_BYTES, KEPT_MARKER, makeCaptureDisk, MiB } from '../helpers/capture-disk.js'
import { attachLoop, tempDir } from '../helpers/disk-files.js'
import { qemuImg } from '../helpers/qcow2-fixtures.js'

/**
 * A disk captured as a qcow2, checked by qemu-img: a GPT disk with an ext4 partition (files kept,
 * files deleted), a partition of raw data, and data outside any partition. The qcow2 must be clean
 * (`qemu-img check`), equal to the disk with the ext4's free blocks zeroed (`qemu-img compare`
 * against a copy zeroed by dumpe2fs's list), hold no byte of the deleted files, and the source
 * disk must not change.
 */

function sha256File (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

t.test('a GPT disk with ext4 and raw partitions: clean, equal to the disk less its free blocks, no deleted byte, source untouched', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const made = makeCaptureDisk(dir.path)
  const disk = made.path
  t.ok(readFileSync(made.fsImage).includes(DELETED_MARKERS[0] as string), 'the deleted file\'s bytes are still in the filesystem image')
  const before = sha256File(disk)

  const output = join(dir.path, 'capture.qcow2')
  const handle = await open(output, 'w')
  const source = await Disk.open(disk, { readOnly: true })
  let result
  try {
    result = await captureQcow2(source, async (chunk) => { await handle.write(chunk) })
  } finally {
    await source.close()
    await handle.close()
  }
  t.equal(sha256File(disk), before, 'the source disk did not change')
  t.equal(result.bytes, readFileSync(output).length, 'the result says the file\'s size')
  t.equal(result.digestHex, createHash('sha512').update(readFileSync(output)).digest('hex'), 'and its sha512')
  t.match(result.notes.join('\n'), /partition 1: ext2\/3\/4, \d+ MiB free left out/)

  const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', output])) as Record<string, unknown>
  t.match(check, { 'check-errors': 0 }, 'qemu-img check: clean')
  t.notOk('leaks' in check || 'corruptions' in check)

  const reference = made.reference
  t.equal(result.freeBytes, made.freeBytes, 'the free bytes left out are dumpe2fs\'s')
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', reference, output]) // throws on a difference
  t.pass('qemu-img compare: equal to the disk with its free blocks zeroed')

  const captured = readFileSync(output)
  t.ok(captured.includes(KEPT_MARKER), 'the kept file is in the image')
  for (const deleted of DELETED_MARKERS) t.notOk(captured.includes(deleted), `no byte of a deleted file (${deleted})`)
  t.ok(captured.length < 40 * MiB, `the image is as small as the data: ${(captured.length / MiB).toFixed(1)} MiB for a ${DISK_BYTES / MiB} MiB disk`)
})

t.test('a source disk in use (a filesystem on it mounted) is refused; once unmounted it is captured', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const image = join(dir.path, 'fs.img')
  writeFileSync(image, '')
  truncateSync(image, 32 * MiB)
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', image], { stdio: ['ignore', 'ignore', 'pipe'] })
  const loop = attachLoop(image)
  t.teardown(loop.detach)
  const mountPoint = join(dir.path, 'mnt')
  mkdirSync(mountPoint)
  execFileSync('mount', ['-t', 'ext4', loop.device, mountPoint])
  let mounted = true
  t.teardown(() => { if (mounted) execFileSync('umount', [mountPoint]) })
  const err = await Disk.open(loop.device, { readOnly: true }).then(() => undefined, (e: unknown) => e)
  t.match(err, { code: 'DISK_UNAVAILABLE', message: /in use/ }, 'refused while mounted')
  execFileSync('umount', [mountPoint])
  mounted = false
  const source = await Disk.open(loop.device, { readOnly: true })
  try {
    const result = await captureQcow2(source, async () => {})
    t.match(result.notes.join('\n'), /the disk: ext2\/3\/4, \d+ MiB free left out/, 'a filesystem on the whole disk is read too')
  } finally {
    await source.close()
  }
})
