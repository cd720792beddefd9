import t from 'tap'
import { closeSync, openSync, writeSync } from 'node:fs'
import { Disk } from '../../../../agent/disk/disk.js'
import { HEAD_BYTES } from '../../../../agent/disk/boot-area.js'
import { openQcow2, writeQcow2 } from '../../../../agent/image/qcow2/index.js'
import { readRange, tempDir } from '../../../helpers/disk-files.js'
import { qcow2Cases } from '../../../helpers/qcow2-cases.js'
import { loadSource, MiB, qemuRaw } from '../../../helpers/qcow2-fixtures.js'

/**
 * Each fixture is installed onto a file full of 0xa5 bytes, one MiB larger than the guest disk,
 * and must equal `qemu-img convert -O raw` of the same qcow2 byte for byte: the head returned, the
 * rest on the target; the target's first MiB (written by the caller, later) and its tail untouched.
 */

const dir = tempDir('byoi-qcow2-')
t.teardown(dir.remove)
const { cases, build } = qcow2Cases(dir.path)
const FILL = 0xa5

function dirtyFile (path: string, sizeBytes: number): void {
  const fd = openSync(path, 'w')
  try {
    const block = Buffer.alloc(MiB, FILL)
    for (let at = 0; at < sizeBytes; at += MiB) writeSync(fd, block, 0, Math.min(MiB, sizeBytes - at), at)
  } finally {
    closeSync(fd)
  }
}

for (const [name, fixture] of Object.entries(cases)) {
  t.test(name, async (t) => {
    const file = build(fixture)
    const raw = qemuRaw(file)
    const image = await openQcow2(loadSource(file))
    t.equal(image.virtualSizeBytes, raw.length, 'virtual size as qemu-img sees it')

    const targetPath = `${file}.target`
    const targetBytes = raw.length + MiB
    dirtyFile(targetPath, targetBytes)
    const disk = await Disk.open(targetPath)
    let lastProgress = 0
    let monotonic = true
    let head: Buffer
    try {
      head = await writeQcow2(image, loadSource(file), disk, {
        onProgress: (bytes) => {
          if (bytes < lastProgress) monotonic = false
          lastProgress = bytes
        },
      })
    } finally {
      await disk.close()
    }

    t.equal(head.length, Math.min(HEAD_BYTES, raw.length), 'head length')
    t.ok(head.equals(raw.subarray(0, HEAD_BYTES)), 'the head is the guest\'s first MiB')
    const written = readRange(targetPath, 0, targetBytes)
    t.ok(written.subarray(0, HEAD_BYTES).every((b) => b === FILL), 'the target\'s first MiB is left to the caller')
    t.ok(written.subarray(HEAD_BYTES, raw.length).equals(raw.subarray(HEAD_BYTES)), 'the rest equals qemu-img convert -O raw')
    t.ok(written.subarray(raw.length).every((b) => b === FILL), 'nothing past the virtual size')
    t.ok(monotonic, 'progress never goes back')
    t.equal(lastProgress, raw.length, 'progress ends at the virtual size')
  })
}
