import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, mkdirSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { captureQcow2 } from '../../agent/capture/capture-qcow2.js'
import { Disk } from '../../agent/disk/disk.js'
import { attachLoop, tempDir } from '../helpers/disk-files.js'
import { qemuImg } from '../helpers/qcow2-fixtures.js'

/**
 * A disk captured as a qcow2, checked by qemu-img: a GPT disk with an ext4 partition (files kept,
 * files deleted), a partition of raw data, and data outside any partition. The qcow2 must be clean
 * (`qemu-img check`), equal to the disk with the ext4's free blocks zeroed (`qemu-img compare`
 * against a copy zeroed by dumpe2fs's list), hold no byte of the deleted files, and the source
 * disk must not change.
 */

const MiB = 1024 * 1024
const PART1_START = MiB // sector 2048
const PART1_BYTES = 96 * MiB
const PART2_START = PART1_START + PART1_BYTES
const PART2_BYTES = 16 * MiB
const DISK_BYTES = 160 * MiB

function marker (text: string, bytes: number): Buffer {
  return Buffer.from(text.repeat(Math.ceil(bytes / text.length)).slice(0, bytes))
}

function sha256File (path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

/** The free blocks dumpe2fs lists for the filesystem in `image`, as byte ranges of that image. */
function dumpe2fsFree (image: string): Array<[number, number]> {
  const out = execFileSync('dumpe2fs', [image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  const blockBytes = Number(/^Block size:\s+(\d+)/m.exec(out)?.[1])
  const ranges: Array<[number, number]> = []
  for (const match of out.matchAll(/^\s+Free blocks: (.+)$/gm)) {
    for (const part of (match[1] ?? '').split(',').map((p) => p.trim())) {
      const [from, to] = part.split('-').map(Number) as [number, number | undefined]
      ranges.push([from * blockBytes, ((to ?? from) + 1) * blockBytes])
    }
  }
  return ranges
}

t.test('a GPT disk with ext4 and raw partitions: clean, equal to the disk less its free blocks, no deleted byte, source untouched', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  // The ext4 filesystem: two files kept, two deleted (their bytes stay in free blocks).
  const content = join(dir.path, 'content')
  mkdirSync(join(content, 'app'), { recursive: true })
  writeFileSync(join(content, 'app', 'VERSION'), '1\n')
  writeFileSync(join(content, 'kept.bin'), marker('KEPT-DATA-0123456789;', 3 * MiB))
  writeFileSync(join(content, 'secret.bin'), marker('DELETED-SECRET-abcdef;', 4 * MiB + 99))
  writeFileSync(join(content, 'app', 'old.log'), marker('DELETED-LOG-ghijkl;', 700_000))
  const fsImage = join(dir.path, 'part1.img')
  writeFileSync(fsImage, '')
  truncateSync(fsImage, PART1_BYTES)
  execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, fsImage], { stdio: ['ignore', 'ignore', 'pipe'] })
  for (const path of ['/secret.bin', '/app/old.log']) execFileSync('debugfs', ['-w', '-R', `rm ${path}`, fsImage], { stdio: 'ignore' })
  t.ok(readFileSync(fsImage).includes('DELETED-SECRET-abcdef;'), 'the deleted file\'s bytes are still in the filesystem image')

  // The disk: GPT, partition 1 the filesystem, partition 2 some random bytes, random bytes past the partitions.
  const disk = join(dir.path, 'disk.img')
  writeFileSync(disk, '')
  truncateSync(disk, DISK_BYTES)
  const partitions = ['-n', `1:${PART1_START / 512}:+${PART1_BYTES / MiB}M`, '-n', `2:${PART2_START / 512}:+${PART2_BYTES / MiB}M`]
  execFileSync('sgdisk', [...partitions, disk], { stdio: 'ignore' })
  const fd = openSync(disk, 'r+')
  writeSync(fd, readFileSync(fsImage), 0, PART1_BYTES, PART1_START)
  writeSync(fd, randomBytes(3 * MiB + 5), 0, 3 * MiB + 5, PART2_START + MiB)
  writeSync(fd, randomBytes(2 * MiB), 0, 2 * MiB, PART2_START + PART2_BYTES + 4 * MiB)
  closeSync(fd)
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

  // The reference: the disk with the filesystem's free blocks (dumpe2fs's list) zeroed.
  const reference = join(dir.path, 'reference.img')
  const bytes = readFileSync(disk)
  let freeBytes = 0
  for (const [start, end] of dumpe2fsFree(fsImage)) {
    bytes.fill(0, PART1_START + start, PART1_START + end)
    freeBytes += end - start
  }
  writeFileSync(reference, bytes)
  t.equal(result.freeBytes, freeBytes, 'the free bytes left out are dumpe2fs\'s')
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', reference, output]) // throws on a difference
  t.pass('qemu-img compare: equal to the disk with its free blocks zeroed')

  const captured = readFileSync(output)
  t.ok(captured.includes('KEPT-DATA-0123456789;'), 'the kept file is in the image')
  t.notOk(captured.includes('DELETED-SECRET-abcdef;'), 'no byte of the deleted file')
  t.notOk(captured.includes('DELETED-LOG-ghijkl;'), 'nor of the other one')
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
