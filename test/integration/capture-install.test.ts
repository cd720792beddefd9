import { execFileSync } from 'node:child_process'
import { readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { runCapture } from '../../agent/capture/run-capture.js'
import { runInstall } from '../../agent/install/run-install.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { parsePayloadJson } from '../../agent/payload/payload-json.js'
import { DELETED_MARKERS, DISK_BYTES, KEPT_MARKER, makeCaptureDisk, MiB, PART1_BYTES, PART1_START, PART2_BYTES, PART2_START } from '../helpers/capture-disk.js'
import { readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { startWebDav } from '../helpers/webdav-server.js'

/**
 * The lifecycle without a VM: a disk captured to nginx's WebDAV, then installed from the capture's
 * own payload (its header added, as a customer would) on another, larger disk. The new disk's
 * partitions must be the captured ones (the ext4 as the source less its free blocks, fsck clean,
 * the kept file there and no deleted byte; the raw partition byte for byte), its GPT valid with
 * the backup at its new end.
 */

// One source disk and one WebDAV server for both formats.
const dir = tempDir()
t.teardown(dir.remove)
const made = makeCaptureDisk(dir.path)
const dav = await startWebDav(dir.path)
t.teardown(dav.close)
const header = { name: 'X-Upload-Token', value: dav.token }

t.test('capture, then install the captured image elsewhere: the same partitions, the free space zero', async (t) => {
  const captured = await runCapture({ diskPath: made.path, uploadUrl: `${dav.origin}/images/a.qcow2`, headers: [header], checksumType: 'sha256' })

  // The customer's payload: the capture's, with the header the image server needs.
  const payload = captured.payloads.installStart
  const userMetadata = [...payload.userMetadata, { key: 'httpHeaders0Key', value: header.name }, { key: 'httpHeaders0Value', value: header.value }]
  const request = parseInstallRequest(parsePayloadJson(JSON.stringify({ ...payload, userMetadata }), 'payload'))
  const target = join(dir.path, 'server-b.img')
  writeFileSync(target, '')
  truncateSync(target, DISK_BYTES + 96 * MiB)
  const installed = await runInstall({ request, diskPath: target })
  t.match(installed, { code: 'INSTALLED', digest: { type: 'sha256', hex: captured.digest.hex } }, 'installed, the capture\'s digest verified')

  const part1 = readRange(target, PART1_START, PART1_BYTES)
  t.ok(part1.equals(readRange(made.reference, PART1_START, PART1_BYTES)), 'the ext4 partition: the source less its free blocks')
  t.ok(readRange(target, PART2_START, PART2_BYTES).equals(readRange(made.path, PART2_START, PART2_BYTES)), 'the raw partition byte for byte')
  const ext4 = join(dir.path, 'installed-part1.img')
  writeFileSync(ext4, part1)
  execFileSync('e2fsck', ['-fn', ext4], { stdio: 'ignore' }) // exit status 0: clean
  t.pass('e2fsck -fn: clean')
  const all = readFileSync(target)
  t.ok(all.includes(KEPT_MARKER), 'the kept file is there')
  for (const deleted of DELETED_MARKERS) t.notOk(all.includes(deleted), `no byte of a deleted file (${deleted})`)
  t.match(sgdiskVerify(target), { clean: true }, 'the GPT is valid, its backup at the new disk\'s end')
})

t.test('raw, zstd-compressed (a .raw.zst sent chunked): zstd -d gives the disk less its free blocks; installed back as imageType raw', async (t) => {
  const captured = await runCapture({
    diskPath: made.path, uploadUrl: `${dav.origin}/images/a.raw.zst`, format: 'raw', compress: 'zstd', headers: [header], checksumType: 'sha512',
  })
  const stored = join(dav.root, 'images', 'a.raw.zst')
  t.equal(captured.bytes, readFileSync(stored).length, 'the whole file stored')
  t.ok(captured.bytes < 20 * MiB, `compressed: ${(captured.bytes / MiB).toFixed(1)} MiB for ${DISK_BYTES / MiB} MiB`)
  const decoded = join(dir.path, 'decoded.raw')
  execFileSync('zstd', ['-q', '-d', '-o', decoded, stored]) // checks the frame's content checksum
  t.ok(readFileSync(decoded).equals(readFileSync(made.reference)), 'zstd -d: the disk, its free blocks zeroed, byte for byte')
  const payload = captured.payloads.reinstall
  t.match(payload.customizations, { imageType: 'raw', imageCheckSumType: 'sha512' })

  const customizations = { ...payload.customizations, httpHeaders: { [header.name]: header.value } }
  const request = parseInstallRequest(parsePayloadJson(JSON.stringify({ ...payload, customizations }), 'payload'))
  const target = join(dir.path, 'server-c.img')
  writeFileSync(target, '')
  truncateSync(target, DISK_BYTES + 32 * MiB)
  const installed = await runInstall({ request, diskPath: target })
  t.match(installed, { code: 'INSTALLED', digest: { type: 'sha512', hex: captured.digest.hex } })
  const part1 = readRange(target, PART1_START, PART1_BYTES)
  t.ok(part1.equals(readRange(made.reference, PART1_START, PART1_BYTES)), 'the ext4 partition as captured')
  t.match(sgdiskVerify(target), { clean: true })
})

t.test('raw, gzip (--compress zlib with --format raw, a .raw.gz sent chunked): gzip -d gives the disk less its free blocks; installed back', async (t) => {
  const captured = await runCapture({
    diskPath: made.path, uploadUrl: `${dav.origin}/images/a.raw.gz`, format: 'raw', compress: 'zlib', headers: [header], checksumType: 'sha256',
  })
  const stored = join(dav.root, 'images', 'a.raw.gz')
  t.equal(captured.bytes, readFileSync(stored).length, 'the whole file stored')
  t.equal(captured.format, 'gzip-compressed raw')
  t.match(captured.message, /bytes of gzip-compressed raw, sha256 /)
  const decoded = join(dir.path, 'decoded-gz.raw')
  execFileSync('sh', ['-c', `gzip -t "$1" && gzip -dc "$1" > "$2"`, 'sh', stored, decoded]) // checks the CRC-32 and the size
  t.ok(readFileSync(decoded).equals(readFileSync(made.reference)), 'gzip -d: the disk, its free blocks zeroed, byte for byte')
  const payload = captured.payloads.reinstall
  const customizations = { ...payload.customizations, httpHeaders: { [header.name]: header.value } }
  const request = parseInstallRequest(parsePayloadJson(JSON.stringify({ ...payload, customizations }), 'payload'))
  const target = join(dir.path, 'server-d.img')
  writeFileSync(target, '')
  truncateSync(target, DISK_BYTES + 32 * MiB)
  const installed = await runInstall({ request, diskPath: target })
  t.match(installed, { code: 'INSTALLED', digest: { type: 'sha256', hex: captured.digest.hex } })
  t.match(installed.message, /gzip-compressed raw/)
  t.ok(readRange(target, PART1_START, PART1_BYTES).equals(readRange(made.reference, PART1_START, PART1_BYTES)), 'the ext4 partition as captured')
  t.match(sgdiskVerify(target), { clean: true })
})
