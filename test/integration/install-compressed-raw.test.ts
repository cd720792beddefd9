/**
 * Compressed raw images (gzip, zstd and xz, made by their own tools; the decoders' own tests cover
 * each format's corners): installed byte-equal to the decompressed image in both modes, the checksum
 * over the file as downloaded; a stream cut short, a corrupt one and a decompression bomb fail with
 * their messages, and no disk boots after.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { StreamCompression } from '../../agent/image/stream-decoder.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import type { InstallEvent } from '../../agent/report/progress.js'
import { dirtyDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha, startImageServer } from '../helpers/image-server.js'
import { expectInstallError } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeGptImage(10 * MiB + 512 * 25)
const gzip = (input: Buffer): Buffer => execFileSync('gzip', ['-c', '-1'], { input, maxBuffer: 1 << 30 })
const COMPRESSORS: ReadonlyArray<[kind: StreamCompression, compress: (input: Buffer) => Buffer]> = [
  ['gzip', gzip],
  ['zstd', (input) => execFileSync('zstd', ['-c', '-q', '-1'], { input, maxBuffer: 1 << 30 })],
  ['xz', (input) => execFileSync('xz', ['-c', '-0'], { input, maxBuffer: 1 << 30 })],
]

const tmp = tempDir()
t.teardown(tmp.remove)

function request (url: string, file: Buffer): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'raw',
    checksum: { type: 'sha512', hex: sha('sha512', file) },
    httpHeaders: [],
    metadata: {},
  }
}

const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3 }

const newDisk = dirtyDisks(tmp.path, DISK_BYTES)

const isZero = (bytes: Buffer): boolean => bytes.every((b) => b === 0)

for (const [kind, compress] of COMPRESSORS) {
  const compressed = compress(image)
  // A valid GPT image (random data: ~10 MiB compressed) then zeros: 256 MiB decoded, for a 64 MiB disk (made once, for both modes).
  let bombFile: Buffer | undefined
  const makeBomb = (): Buffer => (bombFile ??= compress(Buffer.concat([image, Buffer.alloc(256 * MiB - image.length)])))
  for (const stream of [false, true]) {
    const mode = stream ? 'streamed' : 'from memory'

    t.test(`${kind}, ${mode}: the disk holds the decompressed image; the checksum is the file's`, async (t) => {
      const server = await startImageServer({ image: compressed, resetAfter: [Math.floor(compressed.length / 2)] })
      t.teardown(server.close)
      const disk = newDisk()
      const events: InstallEvent[] = []
      const result = await runInstall({
        request: request(server.url(`/image.raw.${kind}`), compressed), diskPath: disk, stream, onEvent: (e) => events.push(e), downloadTuning: fast,
      })
      t.equal(result.bytes, compressed.length, 'the bytes downloaded: the compressed file')
      t.equal(result.imageBytes, image.length, 'the bytes written: the image')
      t.equal(result.mode, stream ? 'stream' : 'memory')
      t.equal(result.message, `Image installed on ${disk}: ${compressed.length} bytes of ${kind}-compressed raw (${image.length} bytes of disk) ` +
        `written ${stream ? 'while streaming' : 'from memory'}, sha512 verified.`)
      t.equal(server.requests.length, 2, 'the download was cut once and resumed, the decoder going on')
      const data = gptDataRange(image)
      t.ok(readRange(disk, data.offset, data.length).equals(image.subarray(data.offset, data.offset + data.length)), 'the partition data equals the image\'s')
      t.ok(sgdiskVerify(disk).clean, 'sgdisk -v finds no problem')
      const note = `The image is ${kind}-compressed: verified, now decompressed`
      if (!stream) t.ok(events.some((e) => e.type === 'note' && e.message.startsWith(note)), 'the note says how')
    })

    t.test(`${kind}, ${mode}: a stream cut short is COMPRESSED_IMAGE_INVALID and the disk does not boot`, async (t) => {
      const cut = compressed.subarray(0, compressed.length - 1000)
      const server = await startImageServer({ image: cut })
      t.teardown(server.close)
      const disk = newDisk()
      const install = runInstall({ request: request(server.url(), cut), diskPath: disk, stream, downloadTuning: fast })
      const message = await expectInstallError(t, install, 'COMPRESSED_IMAGE_INVALID')
      t.equal(message, `Bad format image, its ${kind} data cannot be decompressed: it ends before its end mark (truncated).`)
      t.ok(isZero(readRange(disk, 0, MiB)), 'the first MiB is zero')
      t.ok(isZero(readRange(disk, DISK_BYTES - MiB, MiB)), 'the last MiB is zero')
    })

    t.test(`${kind}, ${mode}: a corrupt byte is COMPRESSED_IMAGE_INVALID and the disk does not boot`, async (t) => {
      const corrupt = Buffer.from(compressed)
      const at = Math.floor(corrupt.length * 0.7)
      corrupt.writeUInt8(corrupt.readUInt8(at) ^ 0xff, at)
      const server = await startImageServer({ image: corrupt })
      t.teardown(server.close)
      const disk = newDisk()
      const install = runInstall({ request: request(server.url(), corrupt), diskPath: disk, stream, downloadTuning: fast })
      const message = await expectInstallError(t, install, 'COMPRESSED_IMAGE_INVALID')
      t.match(message, new RegExp(`^Bad format image, its ${kind} data cannot be decompressed: it cannot be decoded \\(.+\\)\\.$`))
      t.ok(isZero(readRange(disk, 0, MiB)), 'the first MiB is zero')
      t.ok(isZero(readRange(disk, DISK_BYTES - MiB, MiB)), 'the last MiB is zero')
    })

    t.test(`${kind}, ${mode}: a decompression bomb stops at the disk's size`, async (t) => {
      const bomb = makeBomb()
      t.ok(bomb.length < 16 * MiB, `${bomb.length} bytes of ${kind}, a quarter of the disk`)
      const server = await startImageServer({ image: bomb })
      t.teardown(server.close)
      const disk = newDisk()
      const install = runInstall({ request: request(server.url(), bomb), diskPath: disk, stream, downloadTuning: fast })
      const message = await expectInstallError(t, install, 'IMAGE_TOO_BIG_FOR_DISK')
      t.match(message, new RegExp(`^Image is too big for disk, got: \\d+ bytes while disk ${disk} holds ${DISK_BYTES} bytes\\.$`))
      t.ok(isZero(readRange(disk, 0, MiB)), 'the first MiB is zero')
    })
  }
}

t.test('from memory, the budget holds the compressed bytes: an image larger than the budget stays in memory mode', async (t) => {
  const sparse = Buffer.from(image)
  const data = gptDataRange(sparse)
  sparse.fill(0, data.offset + MiB, data.offset + data.length - MiB) // mostly zeros: ~2 MiB of gzip for 10 MiB
  const file = gzip(sparse)
  const memoryLimitBytes = 4 * MiB
  t.ok(file.length < memoryLimitBytes && sparse.length > memoryLimitBytes,
    `${file.length} bytes of gzip, ${sparse.length} decoded, a budget of ${memoryLimitBytes}`)
  const server = await startImageServer({ image: file })
  t.teardown(server.close)
  const disk = newDisk()
  const result = await runInstall({ request: request(server.url(), file), diskPath: disk, memoryLimitBytes, downloadTuning: fast })
  t.equal(result.mode, 'memory', 'verified before any write')
  t.ok(readRange(disk, data.offset, data.length).equals(sparse.subarray(data.offset, data.offset + data.length)), 'the partition data equals the image\'s')
})
