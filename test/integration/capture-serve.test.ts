/**
 * A capture through the service for real: `POST /capture/start` on 127.0.0.1 (port 0), the
 * service's disk (a sparse file) uploaded to nginx's WebDAV, the event stream read to its end, the
 * status's outcome giving the stored file's size and digest and install payloads our own parser
 * takes, the state saved, the disk untouched, no secret anywhere. And the failures a capture has
 * of its own: a disk that changes size while it is read is CAPTURE_READ_FAILED, a cancel
 * CAPTURE_CANCELLED.
 */
import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { startService } from '../../agent/api/start-service.js'
import { runCapture } from '../../agent/capture/run-capture.js'
import { CAPTURE_STEP_NAMES } from '../../agent/report/progress.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { parseInstallRequest } from '../../agent/payload/parse-install-request.js'
import { DISK_BYTES, MiB, makeCaptureDisk } from '../helpers/capture-disk.js'
import { tempDir } from '../helpers/disk-files.js'
import { expectInstallError } from '../helpers/tap.js'
import { startWebDav } from '../helpers/webdav-server.js'
import { AUTH, captureServiceLog, readEvents, TOKEN, waitFor, type SseEvent } from '../unit/api/api-test-helpers.js'

const tmp = tempDir()
t.teardown(tmp.remove)

const sha512 = (data: Buffer): string => createHash('sha512').update(data).digest('hex')

t.test('POST /capture/start: the disk uploaded to WebDAV, followed live; the outcome in the status; the disk untouched; no secret', async (t) => {
  const dav = await startWebDav(join(tmp.path, 'dav'))
  t.teardown(dav.close)
  const made = makeCaptureDisk(tmp.path, 'serve')
  const before = sha512(readFileSync(made.path))
  const stateDir = join(tmp.path, 'state')
  const log = captureServiceLog()
  const service = await startService({
    host: '127.0.0.1', port: 0, token: TOKEN, disk: { path: made.path, auto: false, sizeBytes: null, model: null }, stateDir, logger: log.logger,
  })
  t.teardown(service.close)
  const events: SseEvent[] = []
  const streamed = readEvents(service.url, { onEvent: (e) => events.push(e) })
  await waitFor('the first event', () => events.length > 0)

  const url = `${dav.origin}/images/web-1.qcow2`
  const start = await request(`${service.url}/capture/start`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify({ uploadURL: url, httpHeaders: { 'X-Upload-Token': dav.token } }),
  })
  t.equal(start.statusCode, 202)
  const { jobId } = await start.body.json() as { jobId: string }
  const stream = await streamed
  t.match(stream.events[1], { event: 'status', data: { state: 'running', kind: 'capture', jobId } })
  const steps = stream.events.filter((e) => e.event === 'step').map((e) => e.data as { name: string; status: string })
  t.same(steps.filter((s) => s.status === 'done').map((s) => s.name), [...CAPTURE_STEP_NAMES], 'every step done, in order')
  const progress = stream.events.filter((e) => e.event === 'progress').map((e) => e.data as { step: string; bytes: number; totalBytes: number | null })
  t.ok(progress.some((p) => p.step === 'scan' && p.bytes === p.totalBytes), 'the scan\'s last progress')
  t.ok(progress.some((p) => p.step === 'upload' && p.bytes === p.totalBytes), 'the upload\'s last progress')

  const stored = readFileSync(join(dav.root, 'images', 'web-1.qcow2'))
  const hex = sha512(stored)
  const statusText = await (await request(`${service.url}/install/status`, { headers: AUTH })).body.text()
  const status = JSON.parse(statusText) as InstallStatus
  const message = `Captured ${made.path} to \`${url}\`: ${stored.length} bytes of qcow2, sha512 ${hex}.`
  t.match(status, { state: 'done', kind: 'capture', jobId, result: { code: 'CAPTURED', message } })
  t.same(stream.events.at(-1)?.data, { jobId, state: 'done', result: { code: 'CAPTURED', message } })
  t.match(status.capture, { bytes: stored.length, format: 'qcow2', digest: { type: 'sha512', hex }, virtualSizeBytes: DISK_BYTES })
  for (const payload of [status.capture?.payloads.installStart, status.capture?.payloads.reinstall]) {
    t.match(parseInstallRequest(payload), { imageUrl: url, imageType: 'qcow2', checksum: { type: 'sha512', hex } }, 'an install payload for it')
  }
  t.equal(sha512(readFileSync(made.path)), before, 'the disk unchanged')
  await service.runner.idle()
  const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { status: InstallStatus }
  t.same(saved.status, status, 'the outcome saved for a restart')
  for (const [what, text] of [['log', log.text()], ['status', statusText], ['events', stream.text]] as const) {
    t.notMatch(text, dav.token, `${what} holds no token`)
  }
})

t.test('a disk that changes size while it is captured: CAPTURE_READ_FAILED, nothing said captured', async (t) => {
  const dav = await startWebDav(join(tmp.path, 'dav-grow'))
  t.teardown(dav.close)
  const made = makeCaptureDisk(tmp.path, 'grow')
  let grown = false
  const capture = runCapture({
    diskPath: made.path,
    uploadUrl: `${dav.origin}/images/grow.qcow2`,
    headers: [{ name: 'X-Upload-Token', value: dav.token }],
    checksumType: 'sha256',
    onEvent: (event) => {
      if (event.type === 'progress' && event.step === 'upload' && !grown) {
        grown = true
        truncateSync(made.path, DISK_BYTES + MiB)
      }
    },
  })
  const message = await expectInstallError(t, capture, 'CAPTURE_READ_FAILED')
  t.equal(message, `Could not capture disk ${made.path}: it changed size (${DISK_BYTES} bytes, now ${DISK_BYTES + MiB}), nothing was captured.`)
})

t.test('a capture cancelled: CAPTURE_CANCELLED, the upload never completed', async (t) => {
  const dav = await startWebDav(join(tmp.path, 'dav-cancel'))
  t.teardown(dav.close)
  const made = makeCaptureDisk(tmp.path, 'cancel')
  const controller = new AbortController()
  const capture = runCapture({
    diskPath: made.path,
    uploadUrl: `${dav.origin}/images/cancel.qcow2`,
    headers: [{ name: 'X-Upload-Token', value: dav.token }],
    checksumType: 'sha256',
    signal: controller.signal,
    onEvent: (event) => { if (event.type === 'progress' && event.step === 'upload') controller.abort(new Error('stop')) },
  })
  const message = await expectInstallError(t, capture, 'CAPTURE_CANCELLED')
  t.equal(message, 'Capture cancelled, the disk was not modified and nothing was captured.')
})
