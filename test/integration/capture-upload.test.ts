import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { EXIT_INSTALL_FAILED, EXIT_OK, EXIT_USAGE } from '../../agent/cli.js'
import { cli } from '../helpers/run-cli.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { parsePayloadJson } from '../../agent/payload/payload-json.js'
import { planCapture, type CapturePlan } from '../../agent/capture/capture-qcow2.js'
import { uploadCapture } from '../../agent/capture/upload-capture.js'
import { Disk } from '../../agent/disk/disk.js'
import { tempDir } from '../helpers/disk-files.js'
import { qemuImg } from '../helpers/qcow2-fixtures.js'
import { captureLog } from '../helpers/scripted-server.js'
import { expectInstallError } from '../helpers/tap.js'
import { startWebDav } from '../helpers/webdav-server.js'

/**
 * A capture uploaded with HTTP PUT to nginx's WebDAV (Debian's nginx-light, started here on
 * 127.0.0.1): the file nginx stored is the qcow2 (qemu-img check clean, compare equal to the
 * disk), its sha512 the result's; the customer's header opens the door and is never logged; a
 * refusal (401, 413) is CAPTURE_UPLOAD_REFUSED at once; a connection dropped mid-upload is retried
 * with a new pass over the disk.
 */

const MiB = 1024 * 1024
const dir = tempDir()
t.teardown(dir.remove)

/** A 48 MiB disk with random data in three places, zeros elsewhere, and its capture planned. */
async function plannedDisk (): Promise<{ path: string; plan: CapturePlan; close: () => Promise<void> }> {
  const path = join(dir.path, `disk-${Math.random().toString(16).slice(2)}.img`)
  writeFileSync(path, '')
  truncateSync(path, 48 * MiB)
  const fd = openSync(path, 'r+')
  const pieces = [[0, 3 * MiB], [20 * MiB + 4096, MiB], [48 * MiB - 70_000, 70_000]] as const
  for (const [offset, bytes] of pieces) writeSync(fd, randomBytes(bytes), 0, bytes, offset)
  closeSync(fd)
  const disk = await Disk.open(path, { readOnly: true })
  return { path, plan: await planCapture(disk), close: async () => { await disk.close() } }
}

t.test('PUT to WebDAV: the stored file is the capture, clean and equal to the disk; the token never logged', async (t) => {
  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const { path, plan, close } = await plannedDisk()
  t.teardown(close)
  const log = captureLog()
  const result = await uploadCapture(plan, {
    url: `${dav.origin}/images/server-a.qcow2`, headers: [{ name: 'X-Upload-Token', value: dav.token }], logger: log.logger,
  })
  const stored = join(dav.root, 'images', 'server-a.qcow2')
  t.equal(result.attempts, 1)
  t.equal(result.bytes, readFileSync(stored).length, 'the whole file stored')
  t.equal(result.digestHex, createHash('sha512').update(readFileSync(stored)).digest('hex'), 'the digest is of the bytes stored')
  const check = JSON.parse(qemuImg(['check', '--output=json', '-f', 'qcow2', stored])) as Record<string, unknown>
  t.match(check, { 'check-errors': 0 })
  qemuImg(['compare', '-q', '-f', 'raw', '-F', 'qcow2', path, stored])
  t.pass('qemu-img compare: equal to the disk')
  t.notOk(log.text().includes(dav.token), 'the header\'s value is in no log line')
})

t.test('a wrong token: 401, CAPTURE_UPLOAD_REFUSED, not retried', async (t) => {
  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const { plan, close } = await plannedDisk()
  t.teardown(close)
  const log = captureLog()
  const message = await expectInstallError(t, uploadCapture(plan, {
    url: `${dav.origin}/a.qcow2`, headers: [{ name: 'X-Upload-Token', value: 'wrong' }], logger: log.logger, retryBaseDelayMs: 5,
  }), 'CAPTURE_UPLOAD_REFUSED')
  t.equal(message, `Could not upload image to: \`${dav.origin}/a.qcow2\`, the server answered HTTP 401.`)
  t.equal(log.lines().filter((l) => l.msg === 'upload starts').length, 1, 'one attempt')
})

t.test('too large for the server: 413, CAPTURE_UPLOAD_REFUSED', async (t) => {
  const dav = await startWebDav(dir.path, { maxBodyBytes: MiB })
  t.teardown(dav.close)
  const { plan, close } = await plannedDisk()
  t.teardown(close)
  const message = await expectInstallError(t, uploadCapture(plan, {
    url: `${dav.origin}/a.qcow2`, headers: [{ name: 'X-Upload-Token', value: dav.token }], retryBaseDelayMs: 5,
  }), 'CAPTURE_UPLOAD_REFUSED')
  t.match(message, /HTTP 413/)
})

t.test('a connection dropped mid-upload: the upload starts again, the stored file whole', async (t) => {
  let attempt = 0
  let stored = Buffer.alloc(0)
  const server = createServer((req: IncomingMessage, res) => {
    attempt++
    const chunks: Buffer[] = []
    let received = 0
    req.on('data', (chunk: Buffer) => {
      received += chunk.length
      if (attempt === 1 && received > 2 * MiB) req.socket.destroy() // the first attempt cut after 2 MiB
      else chunks.push(chunk)
    })
    req.on('end', () => {
      stored = Buffer.concat(chunks)
      res.writeHead(201).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const { plan, close } = await plannedDisk()
  t.teardown(close)
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/a.qcow2`
  const result = await uploadCapture(plan, { url, headers: [], retryBaseDelayMs: 5 })
  t.equal(result.attempts, 2, 'the second attempt went through')
  t.equal(stored.length, plan.layout.fileBytes)
  t.equal(result.digestHex, createHash('sha512').update(stored).digest('hex'))
  const file = join(dir.path, 'retried.qcow2')
  writeFileSync(file, stored)
  execFileSync('qemu-img', ['check', '-q', '-f', 'qcow2', file])
  t.pass('qemu-img check: clean')
})


t.test('byoi-agent capture --json: done, the stored file\'s size and digest, install payloads our own parser takes', async (t) => {
  const dav = await startWebDav(dir.path)
  t.teardown(dav.close)
  const { path, close } = await plannedDisk()
  await close()
  const url = `${dav.origin}/captures/a.qcow2`
  const run = await cli(['capture', '--disk', path, '--upload', url, '--header', `X-Upload-Token: ${dav.token}`, '--json', '--log-level', 'debug'])
  t.equal(run.code, EXIT_OK, run.stdout)
  interface Result { status: string; code: string; bytes: number; digest: { hex: string }; payloads: { installStart: unknown; reinstall: unknown } }
  const result = JSON.parse(run.stdout) as Result
  const stored = readFileSync(join(dav.root, 'captures', 'a.qcow2'))
  const hex = createHash('sha512').update(stored).digest('hex')
  t.match(result, { status: 'done', code: 'CAPTURED', bytes: stored.length, digest: { type: 'sha512', hex } })
  for (const payload of [result.payloads.installStart, result.payloads.reinstall]) {
    const request = parseInstallRequest(parsePayloadJson(JSON.stringify(payload), 'payload'))
    t.match(request, { imageUrl: url, imageType: 'qcow2', checksum: { type: 'sha512', hex: result.digest.hex } }, 'an install payload for the image as it is')
  }
  t.notOk(run.stderr.includes(dav.token), 'the header\'s value never logged, even at debug')
  for (const line of ['scan: doing', 'scan: done', 'upload: doing', 'upload: done']) t.ok(run.stderr.includes(`${line}\n`), `progress: ${line}`)
  t.match(run.stderr, /^upload +100%/m, 'the upload\'s progress reaches 100 %')

  const refused = await cli(['capture', '--disk', path, '--upload', url, '--header', 'X-Upload-Token: nope'])
  t.equal(refused.code, EXIT_INSTALL_FAILED)
  t.equal(refused.stdout, `Could not upload image to: \`${url}\`, the server answered HTTP 401.\n`)
  const usage = await cli(['capture', '--disk', path, '--upload', url, '--header', 'no colon here'])
  t.equal(usage.code, EXIT_USAGE)
  t.notOk(usage.stderr.includes('no colon here'), 'a bad header is not repeated back')
})

t.test('an upload URL that is not one, or not http(s): CAPTURE_UPLOAD_FAILED, nothing sent', async (t) => {
  const { plan, close } = await plannedDisk()
  t.teardown(close)
  for (const url of ['not a url', 'ftp://127.0.0.1/a.qcow2']) {
    await expectInstallError(t, uploadCapture(plan, { url, headers: [] }), 'CAPTURE_UPLOAD_FAILED')
  }
})
