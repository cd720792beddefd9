import t from 'tap'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import { isInstallError } from '../../agent/report/install-error.js'
import type { InstallEvent } from '../../agent/report/progress.js'
import { attachLoop, makeDirtyDisk, readRange, tempDir } from '../helpers/disk-files.js'
import { makeImage, sha, startImageServer } from '../helpers/image-server.js'
import type { TapTest } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeImage(10 * MiB + 12345) // not a multiple of any slab or sector
const imageSha512 = sha('sha512', image)

const tmp = tempDir()
t.teardown(tmp.remove)

function request (url: string, overrides: Partial<InstallRequest> = {}): InstallRequest {
  return { source: 'install-start', imageUrl: url, imageType: 'raw', checksum: { type: 'sha512', hex: imageSha512 }, httpHeaders: [], metadata: {}, ...overrides }
}

const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3 }

let diskCount = 0
function newDisk (sizeBytes = DISK_BYTES): string {
  const path = join(tmp.path, `disk-${diskCount++}.img`)
  makeDirtyDisk(path, sizeBytes)
  return path
}

async function expectFailure (t: TapTest, promise: Promise<unknown>, code: string): Promise<string> {
  try {
    await promise
  } catch (err) {
    t.ok(isInstallError(err), 'an InstallError')
    t.equal((err as { code: string }).code, code)
    return (err as Error).message
  }
  t.fail(`expected ${code}`)
  return ''
}

for (const stream of [false, true]) {
  const mode = stream ? 'stream' : 'memory'

  t.test(`${mode} mode: the installed bytes equal the image`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = newDisk()
    const events: InstallEvent[] = []
    const result = await runInstall({ request: request(server.url()), diskPath: disk, stream, onEvent: (e) => events.push(e), downloadTuning: fast })
    t.equal(result.mode, mode)
    t.equal(result.bytes, image.length)
    t.same(result.digest, { type: 'sha512', hex: imageSha512 })
    t.equal(result.message, `Image installed on ${disk}: ${image.length} bytes of raw written ${stream ? 'while streaming' : 'from memory'}, sha512 verified.`)
    t.ok(readRange(disk, 0, image.length).equals(image), 'disk holds the image')
    t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB, 0xa5)), 'bytes past the image are left alone')
    const steps = events.filter((e) => e.type === 'step' && e.status === 'done').map((e) => e.type === 'step' ? e.step : '')
    t.same(steps, stream ? ['preflight', 'download', 'write', 'verify', 'finish'] : ['preflight', 'download', 'verify', 'write', 'finish'])
  })

  t.test(`${mode} mode: a checksum mismatch ${stream ? 'zeroes the first and last MiB' : 'leaves the disk untouched'}`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const wrong = 'ab'.repeat(64)
    const message = await expectFailure(t, runInstall({ request: request(server.url(), { checksum: { type: 'sha512', hex: wrong } }), diskPath: disk, stream, downloadTuning: fast }), 'CHECKSUM_MISMATCH')
    t.equal(message, `Bad sha512 for downloaded file, got: ${imageSha512} while expecting ${wrong}.`)
    if (stream) {
      t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB is zero')
      t.ok(readRange(disk, DISK_BYTES - MiB, MiB).equals(Buffer.alloc(MiB)), 'last MiB is zero')
    } else {
      t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
    }
  })

  t.test(`${mode} mode: a connection reset mid-body resumes and the disk gets every byte once`, async (t) => {
    const server = await startImageServer({ image, resetAfter: { 0: 3 * MiB + 7 } })
    t.teardown(server.close)
    const disk = newDisk()
    const result = await runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: fast })
    t.equal(result.bytes, image.length)
    t.ok(readRange(disk, 0, image.length).equals(image), 'disk holds the image')
    t.equal(server.requests.length, 2)
    t.match(server.requests[1]?.range, /^bytes=\d+-$/, 'second request resumed with Range')
  })

  t.test(`${mode} mode: an announced size larger than the disk is refused before any write`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = newDisk(8 * MiB)
    const before = readRange(disk, 0, 8 * MiB)
    const message = await expectFailure(t, runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: fast }), 'IMAGE_TOO_BIG_FOR_DISK')
    t.equal(message, `Image is too big for disk, got: ${image.length} bytes while disk ${disk} holds ${8 * MiB} bytes.`)
    t.ok(readRange(disk, 0, 8 * MiB).equals(before), 'disk is exactly as it was')
  })

  t.test(`${mode} mode: a body without Content-Length that grows past the disk stops`, async (t) => {
    const server = await startImageServer({ image, chunked: true })
    t.teardown(server.close)
    const disk = newDisk(8 * MiB)
    const before = readRange(disk, 0, 8 * MiB)
    await expectFailure(t, runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: fast }), 'IMAGE_TOO_BIG_FOR_DISK')
    if (stream) t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB is zero')
    else t.ok(readRange(disk, 0, 8 * MiB).equals(before), 'disk is exactly as it was')
  })

  t.test(`${mode} mode: without a checksum the image is installed and says so`, async (t) => {
    const server = await startImageServer({ image, chunked: true })
    t.teardown(server.close)
    const disk = newDisk()
    const result = await runInstall({ request: request(server.url(), { checksum: undefined }), diskPath: disk, stream, downloadTuning: fast })
    t.equal(result.digest, undefined)
    t.match(result.message, /no checksum given\.$/)
    t.ok(readRange(disk, 0, image.length).equals(image))
  })
}

t.test('memory mode: an image over the memory budget streams to the disk instead', async (t) => {
  for (const chunked of [false, true]) {
    const server = await startImageServer({ image, chunked })
    const disk = newDisk()
    const events: InstallEvent[] = []
    const result = await runInstall({ request: request(server.url()), diskPath: disk, memoryLimitBytes: 4 * MiB, onEvent: (e) => events.push(e), downloadTuning: fast })
    await server.close()
    t.equal(result.mode, 'stream', chunked ? 'switched mid-way' : 'chosen from Content-Length')
    t.ok(readRange(disk, 0, image.length).equals(image), 'disk holds the image')
    t.ok(events.some((e) => e.type === 'note' && e.message.includes('memory budget')), 'the switch is told')
  }
})

t.test('a qcow2 file declared raw is refused and never bootable', async (t) => {
  const qcow = Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.alloc(2 * MiB - 8, 1)])
  const server = await startImageServer({ image: qcow })
  t.teardown(server.close)
  for (const stream of [false, true]) {
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    await expectFailure(t, runInstall({ request: request(server.url(), { checksum: undefined }), diskPath: disk, stream, downloadTuning: fast }), 'IMAGE_TYPE_MISMATCH')
    if (stream) t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB is zero')
    else t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
  }
})

t.test('a download that fails leaves the disk untouched and names the URL without credentials', async (t) => {
  const server = await startImageServer({ image, authorization: 'Basic c2VjcmV0' })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const url = server.url('/image.raw').replace('http://', 'http://user:hunter2@')
  const message = await expectFailure(t, runInstall({ request: request(url), diskPath: disk, downloadTuning: fast }), 'DOWNLOAD_FAILED')
  t.equal(message, `Could not download image located: \`${server.url('/image.raw')}\`.`)
  t.notMatch(message, 'hunter2')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
})

t.test('the customer\'s headers reach the server', async (t) => {
  const server = await startImageServer({ image, authorization: 'Basic bG9naW46cGFzc3dvcmQ=' })
  t.teardown(server.close)
  const disk = newDisk()
  await runInstall({ request: request(server.url(), { httpHeaders: [{ name: 'Authorization', value: 'Basic bG9naW46cGFzc3dvcmQ=' }] }), diskPath: disk, downloadTuning: fast })
  t.ok(readRange(disk, 0, image.length).equals(image))
})

t.test('a missing disk is refused before downloading', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const message = await expectFailure(t, runInstall({ request: request(server.url()), diskPath: join(tmp.path, 'nope'), downloadTuning: fast }), 'DISK_UNAVAILABLE')
  t.equal(message, `Could not open disk ${join(tmp.path, 'nope')}: no such file or device.`)
  t.equal(server.requests.length, 0)
})

t.test('an abort before writing leaves the disk untouched', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const controller = new AbortController()
  const events: InstallEvent[] = []
  const promise = runInstall({
    request: request(server.url()),
    diskPath: disk,
    signal: controller.signal,
    downloadTuning: fast,
    onEvent: (e) => { events.push(e); if (e.type === 'step' && e.step === 'download' && e.status === 'doing') controller.abort() },
  })
  await expectFailure(t, promise, 'CANCELLED_UNTOUCHED')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
})

const canLoop = process.getuid?.() === 0
t.test('block devices: loop devices with 512- and 4096-byte sectors, both modes', { skip: canLoop ? false : 'needs root for losetup' }, async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  for (const sectorBytes of [512, 4096]) {
    for (const stream of [false, true]) {
      const file = newDisk()
      const loop = attachLoop(file, sectorBytes)
      try {
        const result = await runInstall({ request: request(server.url()), diskPath: loop.device, stream, downloadTuning: fast })
        t.equal(result.disk.logicalSectorBytes, sectorBytes, `${loop.device} reports ${sectorBytes}-byte sectors`)
        t.equal(result.disk.sizeBytes, DISK_BYTES)
        t.ok(readRange(loop.device, 0, image.length).equals(image), `${sectorBytes}/${stream ? 'stream' : 'memory'}: device holds the image`)
        const wrong = '00'.repeat(64)
        await expectFailure(t, runInstall({ request: request(server.url(), { checksum: { type: 'sha512', hex: wrong } }), diskPath: loop.device, stream, downloadTuning: fast }), 'CHECKSUM_MISMATCH')
        if (stream) t.ok(readRange(loop.device, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB zeroed after a mismatch')
        else t.ok(readRange(loop.device, 0, image.length).equals(image), 'device untouched after a mismatch')
      } finally {
        loop.detach()
      }
    }
  }
})
