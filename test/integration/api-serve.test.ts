/**
 * The service for real: listening on 127.0.0.1 (port 0), a real install onto a sparse file, the
 * event stream read to its end with undici, the report URL's messages received by a local server,
 * the saved state, secrets nowhere; and HTTPS with a throwaway certificate.
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { startService } from '../../agent/api/start-service.js'
import type { InstallStatus } from '../../agent/service/job-status.js'
import { STEP_NAMES } from '../../agent/report/progress.js'
import { makeDirtyDisk, readRange, sgdiskVerify, tempDir } from '../helpers/disk-files.js'
import { gptDataRange, makeGptImage, sha, startImageServer } from '../helpers/image-server.js'
import {
  AUTH,
  captureServiceLog,
  installStartBody,
  quietLogger,
  readEvents,
  startReportReceiver,
  TOKEN,
  waitFor,
  type SseEvent,
} from '../unit/api/api-test-helpers.js'

const MiB = 1024 * 1024
const DISK_BYTES = 64 * MiB
const image = makeGptImage(12 * MiB)
const tmp = tempDir()
t.teardown(tmp.remove)

const BASIC = 'Basic dXNlcjpzZWNyZXQtcGFzcw==' // user:secret-pass
const SECRETS = ['dXNlcjpzZWNyZXQtcGFzcw==', 'secret-pass', 'url-secret-456', 'sig-secret-123', 'report-secret-789', TOKEN]

/** A control plane stand-in: records each POSTed report. */
t.test('an install through the API: 202, live events to the end, status, report URL, saved state, no secret anywhere', async (t) => {
  const images = await startImageServer({ image, authorization: BASIC })
  t.teardown(images.close)
  const receiver = await startReportReceiver()
  t.teardown(receiver.close)
  const disk = join(tmp.path, 'disk.img')
  makeDirtyDisk(disk, DISK_BYTES)
  const stateDir = join(tmp.path, 'state')
  const log = captureServiceLog()
  const service = await startService({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    disk: { path: disk, auto: false, sizeBytes: null, model: null },
    stateDir,
    logger: log.logger,
    reportUrl: receiver.url.replace('http://', 'http://control:report-secret-789@'),
    installOptions: { downloadTuning: { retryBaseDelayMs: 5, maxAttempts: 2 } },
  })
  t.teardown(service.close)
  t.match(service.url, /^http:\/\/127\.0\.0\.1:\d+$/)

  // The stream opened before the job: it waits for it, then follows it to its end.
  const events: SseEvent[] = []
  const streamed = readEvents(service.url, { onEvent: (e) => events.push(e) })
  await waitFor('the first event', () => events.length > 0)

  const url = images.url('/image.raw?X-Amz-Signature=sig-secret-123').replace('http://', 'http://user:url-secret-456@')
  const body = installStartBody(url, [
    { key: 'httpHeaders0Key', value: 'Authorization' },
    { key: 'httpHeaders0Value', value: BASIC },
    { key: 'imageCheckSum', value: sha('sha512', image) },
    { key: 'imageCheckSumType', value: 'sha512' },
  ])
  const start = await request(`${service.url}/install/start`, {
    method: 'POST',
    headers: { ...AUTH, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  t.equal(start.statusCode, 202)
  const { jobId } = await start.body.json() as { jobId: string }
  t.match(jobId, /^[0-9a-f-]{36}$/)

  const stream = await streamed
  t.equal(stream.statusCode, 200)
  t.match(stream.contentType, /^text\/event-stream/)
  const names = stream.events.map((e) => e.event)
  t.equal(names[0], 'status', 'the current status at once')
  t.match(stream.events[0]?.data, { state: 'idle' })
  t.match(stream.events[1], { event: 'status', data: { state: 'running', jobId } })
  t.equal(names.at(-1), 'result', 'ends after the result')
  const expectedMessage = `Image installed on ${disk}: ${image.length} bytes of raw written from memory, sha512 verified.`
  t.same(stream.events.at(-1)?.data, { jobId, state: 'done', result: { code: 'INSTALLED', message: expectedMessage } })
  const steps = stream.events.filter((e) => e.event === 'step').map((e) => e.data as { name: string; status: string })
  t.same(steps.filter((s) => s.status === 'done').map((s) => s.name), [...STEP_NAMES], 'every step done, in order')
  t.same(steps.filter((s) => s.status === 'doing').map((s) => s.name), [...STEP_NAMES])
  const progress = stream.events.filter((e) => e.event === 'progress').map((e) => e.data as { bytes: number; totalBytes: number | null })
  t.ok(progress.length > 0, `${progress.length} progress events`)
  t.ok(progress.some((p) => p.bytes === image.length && p.totalBytes === image.length), 'the download\'s last progress')
  // Each event's id names its job and grows; EventSource reconnecting with the result's id gets 204.
  const ids = stream.events.map((e) => /^(.+):([0-9a-f]{8}):(\d+)$/.exec(e.id))
  t.same(ids.map((m) => m?.[1]), ['idle', ...stream.events.slice(1).map(() => jobId)], 'each id names its job')
  t.ok(ids.every((m, i) => i === 0 || Number(m?.[3]) > Number(ids[i - 1]?.[3])), 'ids increase')
  const again = await request(`${service.url}/install/events`, { headers: { ...AUTH, 'last-event-id': stream.events.at(-1)?.id ?? '' } })
  t.equal(again.statusCode, 204, 'the result seen: 204')
  await again.body.dump()

  // The status, after.
  const statusAnswer = await request(`${service.url}/install/status`, { headers: AUTH })
  const statusText = await statusAnswer.body.text()
  const status = JSON.parse(statusText) as InstallStatus
  t.match(status, { state: 'done', jobId, disk: { path: disk, auto: false }, result: { code: 'INSTALLED', message: expectedMessage } })
  t.ok(
    status.steps.every((s) => s.status === 'done' && s.startedAt !== null && s.endedAt !== null && s.startedAt <= s.endedAt),
    'each step done with its times',
  )
  t.ok(status.startedAt !== null && status.endedAt !== null)

  // The disk, as independent tools see it.
  const data = gptDataRange(image)
  t.ok(readRange(disk, data.offset, data.length).equals(image.subarray(data.offset, data.offset + data.length)), 'the image\'s data is on the disk')
  t.ok(sgdiskVerify(disk).clean, 'sgdisk -v finds no problem')

  // The report URL got each step change and the result, in order, with the URL's credentials as Basic.
  await waitFor('the result report', () => receiver.messages.some((m) => m.event === 'result'))
  const reported = receiver.messages
  t.same(reported.map((m) => m.sequence), reported.map((_, i) => i + 1), 'numbered in order')
  t.equal(reported.filter((m) => m.event === 'step').length, 2 * STEP_NAMES.length, 'each step change')
  t.match(reported.at(-1), { event: 'result', jobId, state: 'done', result: { code: 'INSTALLED', message: expectedMessage }, status: { state: 'done' } })
  t.equal(receiver.headers[0]?.authorization, `Basic ${Buffer.from('control:report-secret-789').toString('base64')}`)

  // The state saved for a restart.
  await service.runner.idle()
  const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { status: InstallStatus }
  t.same(saved.status, status)

  // No secret in the log, the status, the events or the reports.
  t.match(log.text(), /install started/)
  t.match(log.text(), /X-Amz-Signature=REDACTED/, 'the URL is logged in its safe form')
  for (const [what, text] of [['log', log.text()], ['status', statusText], ['events', stream.text], ['reports', receiver.raw.join('\n')]] as const) {
    for (const secret of SECRETS) t.notMatch(text, secret, `${what} holds no ${secret.slice(0, 6)}…`)
  }
  t.equal(images.requests[0]?.authorization, BASIC, 'the customer\'s header was sent to the image server')
})

t.test('HTTPS when a certificate and key are given', async (t) => {
  const dir = join(tmp.path, 'tls')
  execFileSync('mkdir', ['-p', dir])
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' })
  const cert = readFileSync(join(dir, 'cert.pem'))
  const service = await startService({
    host: '127.0.0.1',
    port: 0,
    token: TOKEN,
    disk: { path: join(tmp.path, 'none.img'), auto: false, sizeBytes: null, model: null },
    stateDir: join(tmp.path, 'tls-state'),
    logger: quietLogger(),
    tls: { cert, key: readFileSync(join(dir, 'key.pem')) },
  })
  t.teardown(service.close)
  t.match(service.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  const dispatcher = new Agent({ connect: { ca: cert } })
  t.teardown(() => dispatcher.close())
  const health = await request(`${service.url}/health`, { dispatcher })
  t.equal(health.statusCode, 200)
  t.same(await health.body.json(), { status: 'ok' })
  const status = await request(`${service.url}/install/status`, { dispatcher, headers: AUTH })
  t.equal(status.statusCode, 200)
  t.match(await status.body.json(), { state: 'idle' })
  const refused = await request(`${service.url}/install/status`, { dispatcher })
  t.equal(refused.statusCode, 401)
  await refused.body.dump()
  // Plain HTTP to the TLS port gets nothing useful.
  await t.rejects(request(service.url.replace('https:', 'http:') + '/health', { headersTimeout: 2000 }).then(async (r) => {
    await r.body.dump()
    if (r.statusCode === 200) throw new Error('unexpected')
    throw new Error(`HTTP ${r.statusCode}`)
  }))
})
