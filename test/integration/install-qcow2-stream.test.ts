import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import type { InstallEvent } from '../../agent/report/progress.js'
import { blkidAt, dirtyDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha } from '../helpers/image-server.js'
import { serveFile, startScriptedServer, type ServeFileOptions } from '../helpers/scripted-server.js'
import { expectInstallError } from '../helpers/tap.js'

/**
 * qcow2 images over a memory budget far smaller than their file, installed by streaming: the
 * tables read first with Range requests (a server that serves them) or from the stream (one that
 * does not), the file downloaded once, the disk equal to `qemu-img convert -O raw` of it. And what
 * may go wrong: a checksum that does not match (the disk left unbootable), a file changed between
 * its tables and its body, tables placed after their data with no Range, a header refused before
 * any write.
 */

const MiB = 1024 * 1024
const DISK_BYTES = 96 * MiB
const BUDGET = 2 * MiB
const tmp = tempDir()
t.teardown(tmp.remove)

const raw = makeGptImage(24 * MiB)
const rawFile = join(tmp.path, 'image.raw')
writeFileSync(rawFile, raw)
function qcow2Of (name: string, ...options: string[]): { file: string; bytes: Buffer } {
  const file = join(tmp.path, name)
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, rawFile, file])
  return { file, bytes: readFileSync(file) }
}
/** The image grown after it was made: its L1 table moves past the data. */
function grown (): { file: string; bytes: Buffer } {
  const { file } = qcow2Of('grown.qcow2', '-o', 'cluster_size=4k')
  execFileSync('qemu-img', ['resize', '-q', file, String(32 * MiB)])
  return { file, bytes: readFileSync(file) }
}
const fixtures = {
  plain: qcow2Of('plain.qcow2'),
  zlib: qcow2Of('zlib.qcow2', '-c'),
  zstd: qcow2Of('zstd.qcow2', '-c', '-o', 'compression_type=zstd'),
  'extended L2': qcow2Of('extl2.qcow2', '-o', 'extended_l2=on'),
  'L1 table after the data': grown(),
}

// One connection: these tests count the one GET of the body beside the Range reads of the tables (parallel ranges: their own test below).
const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3, connections: 1 }
const newDisk = dirtyDisks(tmp.path, DISK_BYTES)
function request (url: string, file: Buffer, overrides: Partial<InstallRequest> = {}): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'qcow2',
    checksum: { type: 'sha256', hex: sha('sha256', file) },
    httpHeaders: [{ name: 'X-Secret', value: 'hunter2' }],
    metadata: {},
    ...overrides,
  }
}

async function serve (file: Buffer, options: ServeFileOptions = {}): Promise<Awaited<ReturnType<typeof startScriptedServer>>> {
  const server = await startScriptedServer((req, res) => { serveFile(req, res, file, { etag: `"${sha('sha1', file)}"`, ...options }) })
  t.teardown(server.close)
  return server
}

function converted (file: string): Buffer {
  const out = `${file}.converted`
  execFileSync('qemu-img', ['convert', '-O', 'raw', file, out])
  return readFileSync(out)
}

for (const ranges of [true, false]) {
  for (const [name, fixture] of Object.entries(fixtures)) {
    const way = ranges ? 'tables read first by Range' : 'a server without Range'
    t.test(`qcow2 (${name}) over a ${BUDGET}-byte budget, ${way}: equal to qemu-img convert`, async (t) => {
      const server = await serve(fixture.bytes, { ranges })
      const disk = newDisk()
      const notes: string[] = []
      const onEvent = (event: InstallEvent): void => { if (event.type === 'note') notes.push(event.message) }
      // Without Range, the grown image's data before its L1 table is kept: the budget must hold it (--stream then).
      const holds = !ranges && name === 'L1 table after the data'
      const result = await runInstall({
        request: request(server.url(), fixture.bytes), diskPath: disk, memoryLimitBytes: holds ? 32 * MiB : BUDGET, stream: holds,
        downloadTuning: fast, onEvent,
      })
      const reference = converted(fixture.file)
      t.equal(result.mode, 'stream')
      t.equal(result.imageBytes, reference.length)
      t.equal(result.message,
        `Image installed on ${disk}: ${fixture.bytes.length} bytes of qcow2 (${reference.length} bytes of disk) written while streaming, sha256 verified.`)
      // The partition's data as the image made it (a grown image has zeros after it; the GPT moved).
      const data = gptDataRange(raw)
      t.ok(readRange(disk, data.offset, data.length).equals(reference.subarray(data.offset, data.offset + data.length)), 'the data region as qemu-img makes it')
      t.ok(sgdiskVerify(disk).clean, 'sgdisk -v finds no problem')
      t.match(blkidAt(disk, result.configDrive.partition.offsetBytes), { LABEL: 'config-2' })
      const whole = server.requests.filter((r) => r.headers.range === undefined)
      const ranged = server.requests.filter((r) => r.headers.range !== undefined && r.headers.range !== 'bytes=0-')
      t.equal(whole.length, 1, 'the file downloaded once')
      if (ranges) {
        t.ok(ranged.length >= 2, `${ranged.length} Range requests for the tables`)
        const ofTheBody = ranged.every((r) => r.headers['if-range'] !== undefined && r.headers['x-secret'] === 'hunter2')
        t.ok(ofTheBody, 'each of the body\'s version, with the customer\'s headers')
        t.match(notes.join('\n'), /tables were read first/)
      } else {
        t.match(notes.join('\n'), /does not serve byte ranges/)
      }
    })
  }
}

t.test('qcow2 (zlib) over the budget, its body over 4 parallel ranges of 64 KiB: equal to qemu-img convert, every part of the tables\' version', async (t) => {
  const { bytes, file } = fixtures.zlib
  const server = await serve(bytes)
  const disk = newDisk()
  const result = await runInstall({
    request: request(server.url(), bytes), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: { ...fast, connections: 4, partBytes: 64 * 1024 },
  })
  const reference = converted(file)
  t.equal(result.mode, 'stream')
  const data = gptDataRange(raw)
  t.ok(readRange(disk, data.offset, data.length).equals(reference.subarray(data.offset, data.offset + data.length)), 'the data region as qemu-img makes it')
  t.equal(server.requests.filter((r) => r.headers.range === undefined).length, 0, 'no GET of the whole file')
  t.equal(server.requests[0]?.headers.range, 'bytes=0-65535', 'the first part first')
  t.ok(server.requests.slice(1).every((r) => r.headers['if-range'] !== undefined), 'every later request guarded by the first answer\'s ETag')
})

t.test('--stream: a qcow2 within the budget streams too; with no size announced it is held in memory', async (t) => {
  const { bytes } = fixtures.zstd
  const sized = await serve(bytes)
  const result = await runInstall({ request: request(sized.url(), bytes), diskPath: newDisk(), stream: true, downloadTuning: fast })
  t.equal(result.mode, 'stream')
  const chunked = await serve(bytes, { chunked: true })
  const notes: string[] = []
  const held = await runInstall({
    request: request(chunked.url(), bytes), diskPath: newDisk(), stream: true, downloadTuning: fast,
    onEvent: (event) => { if (event.type === 'note') notes.push(event.message) },
  })
  t.equal(held.mode, 'memory')
  t.match(notes.join('\n'), /announced no size/)
})

t.test('a checksum that does not match: CHECKSUM_MISMATCH, the first and last MiB zero', async (t) => {
  for (const ranges of [true, false]) {
    const { bytes } = fixtures.zlib
    const server = await serve(bytes, { ranges })
    const disk = newDisk()
    await expectInstallError(t, runInstall({
      request: request(server.url(), bytes, { checksum: { type: 'sha256', hex: '0'.repeat(64) } }),
      diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast,
    }), 'CHECKSUM_MISMATCH')
    t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB is zero')
    t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB)), 'last MiB is zero')
  }
})

t.test('the file changed between its tables and its body: IMAGE_CHANGED', async (t) => {
  const { bytes } = fixtures.plain
  // Another version of the same size: one L2 entry's flag bit flipped.
  const l1 = Number(bytes.readBigUInt64BE(40))
  const l2 = Number(bytes.readBigUInt64BE(l1) & 0x00fffffffffffe00n)
  const other = Buffer.from(bytes)
  other[l2 + 8 * 20] = (other[l2 + 8 * 20] ?? 0) ^ 0x80

  t.test('the server has validators: the Range requests see another version', async (t) => {
    // The body is one version; every request after it, the other (If-Range then fails).
    const server = await startScriptedServer((req, res, index) => {
      const file = index === 0 ? bytes : other
      serveFile(req, res, file, { etag: `"${sha('sha1', file)}"` })
    })
    t.teardown(server.close)
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const install = runInstall({ request: request(server.url(), bytes), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast })
    const message = await expectInstallError(t, install, 'IMAGE_CHANGED')
    t.match(message, /changed while it was being read/)
    t.notMatch(message, /hunter2/)
    t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk untouched')
  })

  t.test('no validators: the tables met in the stream differ from those read first', async (t) => {
    const server = await startScriptedServer((req, res, index) => { serveFile(req, res, index === 0 ? other : bytes) })
    t.teardown(server.close)
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const install = runInstall({ request: request(server.url(), other), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast })
    await expectInstallError(t, install, 'IMAGE_CHANGED')
    t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk untouched: the tables come first in the stream')
  })
})

t.test('no Range and tables after more data than the budget: QCOW2_TOO_BIG', async (t) => {
  const { bytes } = fixtures['L1 table after the data']
  const server = await serve(bytes, { ranges: false })
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const install = runInstall({ request: request(server.url(), bytes), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast })
  const message = await expectInstallError(t, install, 'QCOW2_TOO_BIG')
  t.equal(message, 'Could not download, qcow2 image is too big to download in memory.')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk untouched: all of it came before the L1 table')
})

t.test('a header refused (a backing file) is refused before any write, tables read first', async (t) => {
  const base = join(tmp.path, 'overlay.qcow2')
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', fixtures.plain.file, '-F', 'qcow2', base])
  const bytes = Buffer.concat([readFileSync(base), Buffer.alloc(4 * MiB)])
  const server = await serve(bytes)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  await expectInstallError(t, runInstall({ request: request(server.url(), bytes), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast }),
    'QCOW2_UNSUPPORTED')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk untouched')
})

t.test('raw declared qcow2, over the budget: IMAGE_TYPE_MISMATCH before any write', async (t) => {
  const server = await serve(raw)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  await expectInstallError(t, runInstall({ request: request(server.url(), raw), diskPath: disk, memoryLimitBytes: BUDGET, downloadTuning: fast }),
    'IMAGE_TYPE_MISMATCH')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'the disk untouched')
})
