import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runInstall, type InstallOptions } from '../../agent/install/run-install.js'
import type { InstallRequest } from '../../agent/payload/install-request.js'
import type { InstallEvent } from '../../agent/report/progress.js'
import { attachLoop, blkidAt, dirtyDisks, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, makeImage, sha, startImageServer } from '../helpers/image-server.js'
import { serveFile, startScriptedServer } from '../helpers/scripted-server.js'
import { expectInstallError, type TapTest } from '../helpers/tap.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeGptImage(10 * MiB + 512 * 25) // a GPT disk image, not a multiple of any slab
const imageSha512 = sha('sha512', image)

const tmp = tempDir()
t.teardown(tmp.remove)

function request (url: string, overrides: Partial<InstallRequest> = {}): InstallRequest {
  return {
    source: 'install-start',
    imageUrl: url,
    imageType: 'raw',
    checksum: { type: 'sha512', hex: imageSha512 },
    httpHeaders: [],
    metadata: {},
    ...overrides,
  }
}

const fast: InstallOptions['downloadTuning'] = { retryBaseDelayMs: 5, idleTimeoutMs: 2000, connectTimeoutMs: 2000, maxAttempts: 3 }

/** The install's result as independent tools see it: the image's data in place, a clean GPT, a config-2 filesystem. */
function expectInstalled (t: TapTest, disk: string, diskBytes = DISK_BYTES): void {
  const data = gptDataRange(image)
  t.ok(readRange(disk, data.offset, data.length).equals(image.subarray(data.offset, data.offset + data.length)), 'the partition data equals the image\'s')
  const verify = sgdiskVerify(disk)
  t.ok(verify.clean, 'sgdisk -v finds no problem')
  if (!verify.clean) t.comment(verify.report)
  // sgdisk places partition 2 (config-2) in the last 64 MiB of free space, ending at the last usable LBA.
  const configDrive = execFileSync('sgdisk', ['-i', '2', disk], { encoding: 'utf8' })
  t.match(configDrive, /Partition name: 'config-2'/)
  const first = Number(/First sector: (\d+)/.exec(configDrive)?.[1])
  t.equal(first % 2048, 0, 'config-2 starts on a MiB boundary')
  t.ok(first * 512 >= diskBytes - 64 * MiB, 'config-2 lies in the last 64 MiB')
  t.match(blkidAt(disk, first * 512), { LABEL: 'config-2', TYPE: 'iso9660' })
}

const newDisk = dirtyDisks(tmp.path, DISK_BYTES)


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
    expectInstalled(t, disk)
    t.equal(result.configDrive.filesystem, 'iso9660')
    t.equal(result.partitionTable.kind, 'gpt')
    t.ok(result.partitionTable.moved, 'the backup GPT moved to the end')
    t.ok(readRange(disk, DISK_BYTES / 2, MiB).equals(Buffer.alloc(MiB, 0xa5)), 'free space between image and config-2 is left alone')
    const steps = events.filter((e) => e.type === 'step' && e.status === 'done').map((e) => e.type === 'step' ? e.step : '')
    t.same(steps, stream
      ? ['preflight', 'download', 'write', 'verify', 'gpt', 'configdrive', 'finish']
      : ['preflight', 'download', 'verify', 'write', 'gpt', 'configdrive', 'finish'])
  })

  t.test(`${mode} mode: a checksum mismatch ${stream ? 'zeroes the first and last MiB' : 'leaves the disk untouched'}`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const wrong = 'ab'.repeat(64)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url(), { checksum: { type: 'sha512', hex: wrong } }), diskPath: disk, stream, downloadTuning: fast }),
      'CHECKSUM_MISMATCH',
    )
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
    // One connection: the resume of its one GET is what is tested (parts are fetched again whole).
    const result = await runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: { ...fast, connections: 1 } })
    t.equal(result.bytes, image.length)
    expectInstalled(t, disk)
    t.equal(server.requests.length, 2)
    t.match(server.requests[1]?.range, /^bytes=\d+-$/, 'second request resumed with Range')
  })

  t.test(`${mode} mode: over 4 parallel ranges (1 MiB parts), the installed bytes equal the image`, async (t) => {
    const server = await startScriptedServer((req, res) => serveFile(req, res, image, { etag: '"parts"' }))
    t.teardown(server.close)
    const disk = newDisk()
    const result = await runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: { ...fast, connections: 4, partBytes: MiB } })
    t.equal(result.bytes, image.length)
    expectInstalled(t, disk)
    t.equal(server.requests.length, Math.ceil(image.length / MiB), 'one request per part')
    t.ok(server.requests.slice(1).every((r) => r.headers['if-range'] === '"parts"'))
  })

  t.test(`${mode} mode: an announced size larger than the disk is refused before any write`, async (t) => {
    const server = await startImageServer({ image })
    t.teardown(server.close)
    const disk = newDisk(8 * MiB)
    const before = readRange(disk, 0, 8 * MiB)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: fast }),
      'IMAGE_TOO_BIG_FOR_DISK',
    )
    t.equal(message, `Image is too big for disk, got: ${image.length} bytes while disk ${disk} holds ${8 * MiB} bytes.`)
    t.ok(readRange(disk, 0, 8 * MiB).equals(before), 'disk is exactly as it was')
  })

  t.test(`${mode} mode: a body without Content-Length that grows past the disk stops`, async (t) => {
    // A GPT made for 6 MiB, then 4 MiB more: the head says nothing wrong, the body outgrows the 8 MiB disk.
    const grown = Buffer.concat([makeGptImage(6 * MiB), makeImage(4 * MiB)])
    const server = await startImageServer({ image: grown, chunked: true })
    t.teardown(server.close)
    const disk = newDisk(8 * MiB)
    const before = readRange(disk, 0, 8 * MiB)
    await expectInstallError(
      t,
      runInstall({ request: request(server.url(), { checksum: undefined }), diskPath: disk, stream, downloadTuning: fast }),
      'IMAGE_TOO_BIG_FOR_DISK',
    )
    if (stream) t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB is zero')
    else t.ok(readRange(disk, 0, 8 * MiB).equals(before), 'disk is exactly as it was')
  })

  t.test(`${mode} mode: a GPT made for a larger disk is refused by its head, before any write`, async (t) => {
    const server = await startImageServer({ image, chunked: true })
    t.teardown(server.close)
    const disk = newDisk(8 * MiB)
    const before = readRange(disk, 0, 8 * MiB)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url()), diskPath: disk, stream, downloadTuning: fast }),
      stream ? 'PARTITION_TABLE_INVALID' : 'IMAGE_TOO_BIG_FOR_DISK',
    )
    if (stream) t.match(message, /^Bad format image, its partition table is not valid: .*beyond the disk's last LBA 16383\.$/)
    t.ok(readRange(disk, 0, 8 * MiB).equals(before), 'disk is exactly as it was')
  })

  t.test(`${mode} mode: without a checksum the image is installed and says so`, async (t) => {
    const server = await startImageServer({ image, chunked: true })
    t.teardown(server.close)
    const disk = newDisk()
    const result = await runInstall({ request: request(server.url(), { checksum: undefined }), diskPath: disk, stream, downloadTuning: fast })
    t.equal(result.digest, undefined)
    t.match(result.message, /no checksum given\.$/)
    expectInstalled(t, disk)
  })
}

t.test('memory mode: an image over the memory budget streams to the disk instead', async (t) => {
  for (const chunked of [false, true]) {
    const server = await startImageServer({ image, chunked })
    const disk = newDisk()
    const events: InstallEvent[] = []
    const result = await runInstall({
      request: request(server.url()),
      diskPath: disk,
      memoryLimitBytes: 4 * MiB,
      onEvent: (e) => events.push(e),
      downloadTuning: fast,
    })
    await server.close()
    t.equal(result.mode, 'stream', chunked ? 'switched mid-way' : 'chosen from Content-Length')
    expectInstalled(t, disk)
    t.ok(events.some((e) => e.type === 'note' && e.message.includes('memory budget')), 'the switch is told')
  }
})

t.test('a qcow2 file declared raw is refused before any write', async (t) => {
  const qcow = Buffer.concat([Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]), Buffer.alloc(2 * MiB - 8, 1)])
  const server = await startImageServer({ image: qcow })
  t.teardown(server.close)
  for (const stream of [false, true]) {
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url(), { checksum: undefined }), diskPath: disk, stream, downloadTuning: fast }),
      'IMAGE_TYPE_MISMATCH',
    )
    t.equal(message, 'Bad format image, expected: raw, got: qcow2.')
    // Streamed too: the first MiB is checked before any byte reaches the disk.
    t.ok(readRange(disk, 0, DISK_BYTES).equals(before), `${stream ? 'stream' : 'memory'} mode: the disk is exactly as it was`)
  }
})

t.test('a download that fails leaves the disk untouched and names the URL without credentials', async (t) => {
  const server = await startImageServer({ image, authorization: 'Basic c2VjcmV0' })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const url = server.url('/image.raw').replace('http://', 'http://user:hunter2@')
  const message = await expectInstallError(t, runInstall({ request: request(url), diskPath: disk, downloadTuning: fast }), 'DOWNLOAD_FAILED')
  t.equal(message, `Could not download image located: \`${server.url('/image.raw')}\`.`)
  t.notMatch(message, 'hunter2')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
})

t.test('the customer\'s headers reach the server', async (t) => {
  const server = await startImageServer({ image, authorization: 'Basic bG9naW46cGFzc3dvcmQ=' })
  t.teardown(server.close)
  const disk = newDisk()
  await runInstall({
    request: request(server.url(), { httpHeaders: [{ name: 'Authorization', value: 'Basic bG9naW46cGFzc3dvcmQ=' }] }),
    diskPath: disk,
    downloadTuning: fast,
  })
  expectInstalled(t, disk)
})

t.test('a missing disk is refused before downloading', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url()), diskPath: join(tmp.path, 'nope'), downloadTuning: fast }),
    'DISK_UNAVAILABLE',
  )
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
  await expectInstallError(t, promise, 'CANCELLED_UNTOUCHED')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'disk is exactly as it was')
})

const canLoop = process.getuid?.() === 0
const needsRoot = { skip: canLoop ? false : 'needs root for losetup' }
t.test('block devices: a 512-byte loop device, both modes', needsRoot, async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  for (const stream of [false, true]) {
    const loop = attachLoop(newDisk())
    try {
      const result = await runInstall({ request: request(server.url()), diskPath: loop.device, stream, downloadTuning: fast })
      t.equal(result.disk.logicalSectorBytes, 512, `${loop.device} reports 512-byte sectors`)
      t.equal(result.disk.sizeBytes, DISK_BYTES)
      expectInstalled(t, loop.device)
      const wrong = '00'.repeat(64)
      await expectInstallError(
        t,
        runInstall({ request: request(server.url(), { checksum: { type: 'sha512', hex: wrong } }), diskPath: loop.device, stream, downloadTuning: fast }),
        'CHECKSUM_MISMATCH',
      )
      if (stream) t.ok(readRange(loop.device, 0, MiB).equals(Buffer.alloc(MiB)), 'first MiB zeroed after a mismatch')
      else expectInstalled(t, loop.device)
    } finally {
      loop.detach()
    }
  }
})

t.test('block devices: a 4Kn loop device gets a 4Kn image with a FAT ConfigDrive, and refuses a 512-byte one untouched', needsRoot, async (t) => {
  const image4k = makeGptImage(10 * MiB, 4096)
  const server4k = await startImageServer({ image: image4k })
  const server512 = await startImageServer({ image })
  t.teardown(server4k.close)
  t.teardown(server512.close)
  for (const stream of [false, true]) {
    const loop = attachLoop(newDisk(), 4096)
    try {
      const result = await runInstall({
        request: request(server4k.url(), { checksum: { type: 'sha512', hex: sha('sha512', image4k) } }),
        diskPath: loop.device,
        stream,
        downloadTuning: fast,
      })
      t.equal(result.disk.logicalSectorBytes, 4096)
      t.equal(result.configDrive.filesystem, 'fat')
      const data = gptDataRange(image4k, 4096)
      const dataOnDisk = readRange(loop.device, data.offset, data.length)
      t.ok(dataOnDisk.equals(image4k.subarray(data.offset, data.offset + data.length)), 'partition data equals the image\'s')
      t.ok(sgdiskVerify(loop.device).clean, 'sgdisk -v finds no problem on the 4Kn device')
      t.match(blkidAt(loop.device, result.configDrive.partition.offsetBytes), { LABEL: 'config-2', TYPE: 'vfat' })

      const before = readRange(loop.device, 0, DISK_BYTES)
      const message = await expectInstallError(
        t,
        runInstall({ request: request(server512.url()), diskPath: loop.device, stream, downloadTuning: fast }),
        'SECTOR_SIZE_MISMATCH',
      )
      t.equal(message, `Bad format image, its partition table uses 512-byte sectors but disk ${loop.device} has 4096-byte sectors.`)
      t.ok(readRange(loop.device, 0, DISK_BYTES).equals(before), `${stream ? 'stream' : 'memory'} mode: refused before any write`)
    } finally {
      loop.detach()
    }
  }
})

t.test('an MBR image gets its ConfigDrive in a new primary partition', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const file = join(dir.path, 'mbr.raw')
  const mbrImage = makeImage(8 * MiB)
  writeFileSync(file, mbrImage)
  execFileSync('sfdisk', ['--quiet', file], { input: 'label: dos\nstart=2048, type=83\n' })
  const withTable = readFileSync(file)
  const server = await startImageServer({ image: withTable })
  t.teardown(server.close)
  const disk = newDisk()
  const result = await runInstall({
    request: request(server.url(), { checksum: { type: 'sha512', hex: sha('sha512', withTable) } }),
    diskPath: disk,
    downloadTuning: fast,
  })
  t.equal(result.partitionTable.kind, 'mbr')
  t.equal(result.configDrive.partition.number, 2)
  const dump = execFileSync('sfdisk', ['--dump', disk], { encoding: 'utf8' })
  t.match(dump, /label: dos/)
  const { offsetBytes, sizeBytes } = result.configDrive.partition
  t.match(dump, new RegExp(`${disk}2 : start=\\s*${offsetBytes / 512}, size=\\s*${sizeBytes / 512}, type=83`))
  t.match(blkidAt(disk, result.configDrive.partition.offsetBytes), { LABEL: 'config-2', TYPE: 'iso9660' })
  t.ok(readRange(disk, MiB, 7 * MiB).equals(withTable.subarray(MiB)), 'the partition data is the image\'s')
})

t.test('efiBootloaderPath: present in the ESP passes, absent is refused before any write', async (t) => {
  const dir = tempDir()
  t.teardown(dir.remove)
  const file = join(dir.path, 'esp.raw')
  writeFileSync(file, Buffer.alloc(40 * MiB))
  execFileSync('sgdisk', ['-o', '-n', '1:2048:+34M', '-t', '1:ef00', '-n', '2:0:0', '-t', '2:8300', file], { stdio: 'ignore' })
  const esp = join(dir.path, 'esp.fat')
  execFileSync('mkfs.vfat', ['-C', esp, String(34 * 1024)], { stdio: 'ignore' })
  execFileSync('mmd', ['-i', esp, '::/EFI', '::/EFI/debian'])
  writeFileSync(join(dir.path, 'grubx64.efi'), 'MZ fake loader')
  execFileSync('mcopy', ['-i', esp, join(dir.path, 'grubx64.efi'), '::/EFI/debian/'])
  const withEsp = readFileSync(file)
  readFileSync(esp).copy(withEsp, MiB)
  const server = await startImageServer({ image: withEsp })
  t.teardown(server.close)
  const checksum = { type: 'sha512' as const, hex: sha('sha512', withEsp) }
  const ok = await runInstall({
    request: request(server.url(), { checksum, efiBootloaderPath: '\\EFI\\DEBIAN\\GRUBX64.EFI' }),
    diskPath: newDisk(),
    downloadTuning: fast,
  })
  t.equal(ok.code, 'INSTALLED', 'found, whatever the case')
  for (const stream of [false, true]) {
    const disk = newDisk()
    const before = readRange(disk, 0, DISK_BYTES)
    const message = await expectInstallError(
      t,
      runInstall({ request: request(server.url(), { checksum, efiBootloaderPath: '\\EFI\\BOOT\\BOOTX64.EFI' }), diskPath: disk, stream, downloadTuning: fast }),
      'EFI_BOOTLOADER_NOT_FOUND',
    )
    t.equal(message, "Bad efiBootloaderPath, \\EFI\\BOOT\\BOOTX64.EFI is not in the image's EFI system partition.")
    if (stream) t.ok(readRange(disk, 0, MiB).equals(Buffer.alloc(MiB)), 'stream mode: checked after writing, so the disk is made unbootable')
    else t.ok(readRange(disk, 0, DISK_BYTES).equals(before), 'memory mode: refused before any write')
  }
})

t.test('efiBootloaderPath on an image without an EFI system partition is refused before any write', async (t) => {
  const server = await startImageServer({ image })
  t.teardown(server.close)
  const disk = newDisk()
  const before = readRange(disk, 0, DISK_BYTES)
  const message = await expectInstallError(
    t,
    runInstall({ request: request(server.url(), { efiBootloaderPath: '\\EFI\\BOOT\\BOOTX64.EFI' }), diskPath: disk, downloadTuning: fast }),
    'EFI_BOOTLOADER_NOT_FOUND',
  )
  t.equal(message, 'Bad efiBootloaderPath, \\EFI\\BOOT\\BOOTX64.EFI is given but the image has no EFI system partition.')
  t.ok(readRange(disk, 0, DISK_BYTES).equals(before))
})
