import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { blkidAt, dirtyDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 96 * MiB
const tmp = tempDir()
t.teardown(tmp.remove)

// A GPT raw image, and qcow2 files of it made by qemu-img: plain, zlib- and zstd-compressed.
const raw = makeGptImage(24 * MiB)
const rawFile = join(tmp.path, 'image.raw')
writeFileSync(rawFile, raw)
function qcow2Of (name: string, ...options: string[]): Buffer {
  const file = join(tmp.path, name)
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, rawFile, file])
  return readFileSync(file)
}
const fixtures = {
  plain: qcow2Of('plain.qcow2'),
  zlib: qcow2Of('zlib.qcow2', '-c'),
  zstd: qcow2Of('zstd.qcow2', '-c', '-o', 'compression_type=zstd'),
}

const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3 }
const newDisk = dirtyDisks(tmp.path, DISK_BYTES)
function request (url: string, file: Buffer, overrides: Partial<InstallRequest> = {}): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'qcow2',
    checksum: { type: 'sha256', hex: sha('sha256', file) },
    httpHeaders: [],
    metadata: {},
    ...overrides,
  }
}

for (const [name, file] of Object.entries(fixtures)) {
  t.test(`qcow2 (${name}): the disk holds what qemu-img convert makes, with a clean GPT and a ConfigDrive`, async (t) => {
    const server = await startImageServer({ image: file })
    t.teardown(server.close)
    const disk = newDisk()
    const result = await runInstall({ request: request(server.url(), file), diskPath: disk, downloadTuning: fast })
    t.equal(result.mode, 'memory')
    t.equal(result.imageBytes, raw.length, 'the virtual size')
    t.equal(result.message, `Image installed on ${disk}: ${file.length} bytes of qcow2 (${raw.length} bytes of disk) written from memory, sha256 verified.`)
    const converted = join(tmp.path, `${name}.converted.raw`)
    execFileSync('qemu-img', ['convert', '-O', 'raw', join(tmp.path, `${name}.qcow2`), converted])
    const reference = readFileSync(converted)
    const data = gptDataRange(reference)
    const dataOnDisk = readRange(disk, data.offset, data.length)
    t.ok(dataOnDisk.equals(reference.subarray(data.offset, data.offset + data.length)), 'equal to qemu-img convert -O raw over the data region')
    t.ok(sgdiskVerify(disk).clean, 'sgdisk -v finds no problem')
    t.match(blkidAt(disk, result.configDrive.partition.offsetBytes), { LABEL: 'config-2', TYPE: 'iso9660' })
  })
}

t.test('a qcow2 that grows past the memory budget with no size announced: refused, disk untouched (one announced over it streams)', async (t) => {
  const server = await startImageServer({ image: fixtures.plain, chunked: true })
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url(), fixtures.plain), diskPath: disk, memoryLimitBytes: 4 * MiB, downloadTuning: fast }),
    'QCOW2_TOO_BIG',
  )
  await server.close()
  t.equal(message, 'Could not download, qcow2 image is too big to download in memory.')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'grew past the budget')
})

t.test('a raw image declared qcow2 is refused before any write', async (t) => {
  const server = await startImageServer({ image: raw })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const message = await expectInstallError(t, runInstall({ request: request(server.url(), raw), diskPath: disk, downloadTuning: fast }), 'IMAGE_TYPE_MISMATCH')
  t.equal(message, 'Bad format image, expected: qcow2, got: raw.')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before))
})

t.test('a qcow2 whose virtual size exceeds the disk is refused before any write', async (t) => {
  const file = join(tmp.path, 'huge.qcow2')
  execFileSync('qemu-img', ['create', '-f', 'qcow2', file, '1G'])
  const huge = readFileSync(file)
  const server = await startImageServer({ image: huge })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url(), huge), diskPath: disk, downloadTuning: fast }),
    'IMAGE_TOO_BIG_FOR_DISK',
  )
  t.equal(message, `Image is too big for disk, got: ${1024 * MiB} bytes while disk ${disk} holds ${DISK_BYTES} bytes.`)
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before))
})

t.test('a qcow2 with a backing file is refused before any write', async (t) => {
  const base = join(tmp.path, 'base.qcow2')
  const overlay = join(tmp.path, 'overlay.qcow2')
  execFileSync('qemu-img', ['create', '-f', 'qcow2', base, '16M'])
  execFileSync('qemu-img', ['create', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay])
  const file = readFileSync(overlay)
  const server = await startImageServer({ image: file })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const message = await expectInstallError(t, runInstall({ request: request(server.url(), file), diskPath: disk, downloadTuning: fast }), 'QCOW2_UNSUPPORTED')
  t.equal(message, 'Bad format image, qcow2 feature not supported: backing file.')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before))
})
