import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, statSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { captureStream, planCapture } from '../../agent/capture/capture-qcow2.js'
import { runCapture } from '../../agent/capture/run-capture.js'
import { uploadCapture } from '../../agent/capture/upload-capture.js'
import { EXIT_OK, EXIT_USAGE } from '../../agent/cli.js'
import { Disk } from '../../agent/disk/disk.js'
import { runInstall } from '../../agent/install/run-install.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { parsePayloadJson } from '../../agent/payload/payload-json.js'
import { DISK_BYTES, KEPT_MARKER, makeCaptureDisk, MiB, PART1_BYTES, PART1_START, PART2_BYTES, PART2_START } from '../helpers/capture-disk.js'
import { readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { qemuImg } from '../helpers/qcow2-fixtures.js'
import { cli } from '../helpers/run-cli.js'
import { expectInstallError } from '../helpers/tap.js'
import { startWebDav } from '../helpers/webdav-server.js'

/**
 * A compressed qcow2 capture's lifecycle: a disk that changes between the two passes ends the
 * capture with CAPTURE_DISK_CHANGED (never a corrupt file, also through the upload); a zstd
 * capture uploaded to WebDAV by runCapture installs back (in memory and streamed) with the same
 * partitions; the CLI takes `--compress zlib` for a qcow2 and refuses it for a raw image.
 * (capture-qcow2-compressed.test.ts has qemu-img's verdicts on the files themselves.)
 */

const dir = tempDir()
t.teardown(dir.remove)
const made = makeCaptureDisk(dir.path)

/** A copy of the disk, and the offset of a cluster of its kept (compressible) file. */
function copyWithKeptCluster (name: string, clusterBytes: number): { path: string; keptOffset: number } {
  const path = join(dir.path, name)
  writeFileSync(path, readFileSync(made.path))
  const at = readFileSync(path).indexOf(KEPT_MARKER)
  t.ok(at > 0, 'the kept file is on the disk')
  return { path, keptOffset: (Math.floor(at / clusterBytes) + 8) * clusterBytes } // well inside the 3 MiB file
}

t.test('the disk changed between the passes: CAPTURE_DISK_CHANGED, the upload stopped, nothing stored as captured', async (t) => {
  const { path, keptOffset } = copyWithKeptCluster('changing.img', 65536)
  const disk = await Disk.open(path, { readOnly: true })
  t.teardown(async () => { await disk.close() })
  const plan = await planCapture(disk, { compression: 'zstd', diskName: path })
  const fd = openSync(path, 'r+')
  writeSync(fd, randomBytes(4096), 0, 4096, keptOffset + 1000) // a kept cluster now compresses worse
  closeSync(fd)

  const message = await expectInstallError(t, (async () => { for await (const chunk of captureStream(plan)) void chunk })(), 'CAPTURE_DISK_CHANGED')
  t.match(message, new RegExp(`^Could not capture ${path}: it changed while it was read \\(cluster ${keptOffset / 65536} `))

  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const headers = [{ name: 'X-Upload-Token', value: dav.token }]
  const upload = uploadCapture(plan, { url: `${dav.origin}/images/changed.qcow2`, headers, retryBaseDelayMs: 10 })
  await expectInstallError(t, upload, 'CAPTURE_DISK_CHANGED')
  const stored = join(dav.root, 'images', 'changed.qcow2')
  t.notOk(existsSync(stored) && statSync(stored).size === plan.layout.fileBytes, 'no whole file stored')
})

t.test('capture with zstd through the CLI\'s path (runCapture), then install it back: the same partitions', async (t) => {
  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const header = { name: 'X-Upload-Token', value: dav.token }
  const captured = await runCapture({
    diskPath: made.path, uploadUrl: `${dav.origin}/images/z.qcow2`, compress: 'zstd', headers: [header], checksumType: 'sha256',
  })
  const stored = join(dav.root, 'images', 'z.qcow2')
  t.equal(captured.bytes, statSync(stored).size, 'the whole file stored')
  t.match(captured.notes.join('\n'), /zstd-compressed/)
  const info = JSON.parse(qemuImg(['info', '--output=json', stored])) as { 'format-specific': { data: Record<string, unknown> } }
  t.match(info['format-specific'].data, { 'compression-type': 'zstd' })

  const payload = captured.payloads.installStart
  t.match(Object.fromEntries(payload.userMetadata.map(({ key, value }) => [key, value])), { imageType: 'qcow2' })
  const userMetadata = [...payload.userMetadata, { key: 'httpHeaders0Key', value: header.name }, { key: 'httpHeaders0Value', value: header.value }]
  const request = parseInstallRequest(parsePayloadJson(JSON.stringify({ ...payload, userMetadata }), 'payload'))
  // In memory, and streamed to the disk as it comes (tables first, then the plain and the compressed clusters).
  for (const stream of [false, true]) {
    const target = join(dir.path, `server-z-${stream ? 'streamed' : 'memory'}.img`)
    writeFileSync(target, '')
    truncateSync(target, DISK_BYTES + 64 * MiB)
    const installed = await runInstall({ request, diskPath: target, stream })
    t.match(installed, { code: 'INSTALLED', digest: { type: 'sha256', hex: captured.digest.hex } }, `installed (stream: ${stream}), the digest verified`)
    const part1 = readRange(target, PART1_START, PART1_BYTES)
    t.ok(part1.equals(readRange(made.reference, PART1_START, PART1_BYTES)), 'the ext4 partition: the source less its free blocks')
    t.ok(readRange(target, PART2_START, PART2_BYTES).equals(readRange(made.path, PART2_START, PART2_BYTES)), 'the raw partition byte for byte')
    const ext4 = join(dir.path, 'installed-z-part1.img')
    writeFileSync(ext4, part1)
    execFileSync('e2fsck', ['-fn', ext4], { stdio: 'ignore' })
    t.pass('e2fsck -fn: clean')
    t.match(sgdiskVerify(target), { clean: true }, 'the GPT is valid, its backup at the new disk\'s end')
  }
})

t.test('byoi-agent capture --compress zlib: a qcow2 of zlib clusters; --compress xz: bad usage', async (t) => {
  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const url = `${dav.origin}/images/cli.qcow2`
  const run = await cli(['capture', '--disk', made.path, '--upload', url, '--header', `X-Upload-Token: ${dav.token}`, '--compress', 'zlib', '--json'])
  t.equal(run.code, EXIT_OK, run.stdout)
  const stored = join(dav.root, 'images', 'cli.qcow2')
  t.match(JSON.parse(run.stdout), { status: 'done', code: 'CAPTURED', bytes: statSync(stored).size })
  const info = JSON.parse(qemuImg(['info', '--output=json', stored])) as { 'format-specific': { data: Record<string, unknown> } }
  t.match(info['format-specific'].data, { 'compression-type': 'zlib' })
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', made.reference, stored])
  t.pass('qemu-img compare: equal to the disk with its free blocks zeroed')

  const usage = await cli(['capture', '--disk', made.path, '--upload', url, '--format', 'raw', '--compress', 'xz'])
  t.equal(usage.code, EXIT_USAGE)
  t.match(usage.stderr, /Bad --compress xz: expected zstd, zlib or none\./)
})
