import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { JobRunner, type CaptureFunction, type JobChange, type ReportMessage } from '../../../agent/service/job-runner.js'
import { JobStateStore } from '../../../agent/service/job-state-store.js'
import type { CaptureOutcome, CaptureRequest } from '../../../agent/capture/run-capture.js'
import { parseCaptureRequest } from '../../../agent/payload/parse-capture-request.js'
import { isApiError } from '../../../agent/errors/api-error.js'
import { errors } from '../../../agent/errors/install-error.js'
import type { InstallEvent, StepName } from '../../../agent/report/progress.js'
import type { ReportSink } from '../../../agent/service/report-poster.js'
import { tempDir } from '../../helpers/disk-files.js'
import { captureServiceLog, FAKE_DISK, installStartBody, quietLogger } from '../api/api-test-helpers.js'
import { parseInstallRequest } from '../../../agent/payload/parse-install-request.js'

const tmp = tempDir()
t.teardown(tmp.remove)
let dirs = 0
const newStateDir = (): string => join(tmp.path, `state-${dirs++}`)

const request = parseCaptureRequest({
  uploadURL: 'https://user:url-secret@dav.invalid/images/a.qcow2?X-Amz-Signature=sig-secret',
  httpHeaders: { Authorization: 'Bearer header-secret' },
})

const outcome: CaptureOutcome = {
  code: 'CAPTURED',
  message: 'Captured /dev/fake to `https://dav.invalid/images/a.qcow2`: 123 bytes of qcow2, sha512 ab.',
  bytes: 123,
  digest: { type: 'sha512', hex: 'ab' },
  format: 'qcow2',
  virtualSizeBytes: 4096,
  notes: ['partition 1: ext4'],
  payloads: {
    installStart: { templateName: 'byoi_64', userMetadata: [{ key: 'imageURL', value: 'https://dav.invalid/images/a.qcow2' }] },
    reinstall: { operatingSystem: 'byoi_64', customizations: { imageURL: 'https://dav.invalid/images/a.qcow2' } },
  },
}

/** A capture driven by hand; an abort rejects with CAPTURE_CANCELLED, as runCapture does. */
class ManualCapture {
  readonly calls: CaptureRequest[] = []
  private settle: { resolve: (r: CaptureOutcome) => void; reject: (e: unknown) => void } | undefined

  readonly fn: CaptureFunction = async (options) => {
    this.calls.push(options)
    options.onEvent?.(step('preflight', 'doing'))
    return await new Promise<CaptureOutcome>((resolve, reject) => {
      this.settle = { resolve, reject }
      options.signal?.addEventListener('abort', () => reject(errors.captureCancelled()), { once: true })
    })
  }

  emit (event: InstallEvent): void {
    this.calls.at(-1)?.onEvent?.(event)
  }

  succeed (): void {
    this.settle?.resolve(outcome)
  }

  fail (err: unknown): void {
    this.settle?.reject(err)
  }
}

class RecordingReports implements ReportSink {
  readonly posts: Array<{ body: ReportMessage; keep: boolean }> = []
  post (body: unknown, options: { keep?: boolean } = {}): void {
    this.posts.push({ body: body as ReportMessage, keep: options.keep === true })
  }

  async close (): Promise<void> {}
}

const step = (name: StepName, status: 'doing' | 'done' | 'error'): InstallEvent => ({ type: 'step', step: name, status, at: new Date().toISOString() })

t.test('the capture body: defaults, and refusals naming the field', async (t) => {
  t.match(request, { format: 'qcow2', compress: 'none', checksumType: 'sha512', httpHeaders: [{ name: 'Authorization', value: 'Bearer header-secret' }] })
  t.same(parseCaptureRequest({ uploadURL: 'http://h.invalid/a.raw.zst', imageType: 'raw', compression: 'zstd', imageCheckSumType: 'sha256' }), {
    uploadUrl: 'http://h.invalid/a.raw.zst', httpHeaders: [], format: 'raw', compress: 'zstd', checksumType: 'sha256',
  })
  const refusals: Array<[unknown, string, RegExp]> = [
    [{}, 'PAYLOAD_MISSING_FIELD', /uploadURL or s3/],
    [{ uploadURL: '' }, 'PAYLOAD_MISSING_FIELD', /uploadURL/],
    [[], 'PAYLOAD_BAD_FIELD', /request body/],
    [{ uploadURL: 'ftp://h.invalid/a' }, 'PAYLOAD_BAD_FIELD', /uploadURL/],
    [{ uploadURL: 'http://h.invalid/a', imageType: 'vmdk' }, 'PAYLOAD_BAD_FIELD', /imageType.*qcow2, raw/],
    [{ uploadURL: 'http://h.invalid/a', compression: 'xz' }, 'PAYLOAD_BAD_FIELD', /compression.*none, zstd, zlib/],
    [{ uploadURL: 'http://h.invalid/a', imageCheckSumType: 'md5' }, 'PAYLOAD_BAD_FIELD', /imageCheckSumType/],
    [{ uploadURL: 'http://h.invalid/a', httpHeaders: { Authorization: 'Bearer a\nsecret-in-value' } }, 'PAYLOAD_BAD_FIELD', /httpHeaders/],
    [{ uploadURL: 'http://h.invalid/a', httpHeaders: { Host: 'x' } }, 'PAYLOAD_BAD_FIELD', /httpHeaders/],
  ]
  const s3 = { endpoint: 'https://s3.example.invalid/', bucket: 'images', key: '/a/b.qcow2', accessKeyId: 'AKID', secretAccessKey: 's3-secret' }
  t.same(parseCaptureRequest({ s3 }), {
    s3: { endpoint: 'https://s3.example.invalid', region: 'us-east-1', bucket: 'images', key: 'a/b.qcow2', accessKeyId: 'AKID', secretAccessKey: 's3-secret' },
    httpHeaders: [], format: 'qcow2', compress: 'none', checksumType: 'sha512',
  })
  refusals.push(
    [{ s3, uploadURL: 'http://h.invalid/a' }, 'PAYLOAD_BAD_FIELD', /s3/],
    [{ s3, httpHeaders: { 'X-A': 'secret-b' } }, 'PAYLOAD_BAD_FIELD', /httpHeaders/],
    [{ s3: { ...s3, endpoint: 'https://s3.example.invalid/path' } }, 'PAYLOAD_BAD_FIELD', /s3\.endpoint/],
    [{ s3: { ...s3, endpoint: 'https://user:secret-p@s3.example.invalid' } }, 'PAYLOAD_BAD_FIELD', /s3\.endpoint/],
    [{ s3: { ...s3, bucket: 'Bad_Bucket' } }, 'PAYLOAD_BAD_FIELD', /s3\.bucket/],
    [{ s3: { ...s3, secretAccessKey: '' } }, 'PAYLOAD_MISSING_FIELD', /s3\.secretAccessKey/],
    [{ s3: { ...s3, key: '/' } }, 'PAYLOAD_MISSING_FIELD', /s3\.key/],
    [{ s3: { ...s3, extra: 1 } }, 'PAYLOAD_BAD_FIELD', /s3/],
  )
  for (const [body, code, field] of refusals) {
    let caught: unknown
    try {
      parseCaptureRequest(body)
    } catch (err) {
      caught = err
    }
    t.match(caught, { code, message: field }, JSON.stringify(body))
    t.notMatch(String((caught as Error | undefined)?.message), /secret-|s3-secret/, 'no value quoted')
  }
})

t.test('a capture job: kind, its steps, the service\'s disk, the outcome in the status; refusals of either kind while it runs', async (t) => {
  const capture = new ManualCapture()
  const log = captureServiceLog()
  const install = async (): Promise<never> => await Promise.reject(new Error('no install'))
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: log.logger, capture: capture.fn, install })
  const changes: JobChange[] = []
  runner.subscribe((c) => changes.push(c))
  const { jobId } = runner.startCapture(request)
  t.match(capture.calls[0], {
    diskPath: FAKE_DISK.path, uploadUrl: request.uploadUrl, headers: request.httpHeaders, format: 'qcow2', compress: 'none', checksumType: 'sha512',
  })
  t.match(runner.status(), { state: 'running', kind: 'capture', jobId, capture: null })
  t.same(runner.status().steps.map((s) => [s.name, s.status]), [['preflight', 'doing'], ['scan', 'todo'], ['upload', 'todo'], ['finish', 'todo']])

  const busy = (f: () => unknown): unknown => { try { return f() } catch (err) { return err } }
  const installBusy = busy(() => runner.start(parseInstallRequest(installStartBody('http://h.invalid/a.raw'))))
  t.ok(isApiError(installBusy))
  t.match(installBusy, { code: 'BUSY', message: `A capture is already running, job ${jobId}.` })
  t.match(busy(() => runner.startCapture(request)), { code: 'BUSY' })
  t.match(busy(() => runner.cancel('install')), { code: 'NOT_RUNNING', message: 'No install is running.' })

  capture.emit(step('preflight', 'done'))
  capture.emit(step('scan', 'doing'))
  capture.emit({ type: 'progress', step: 'scan', bytes: 2048, totalBytes: 4096 })
  t.match(runner.status().progress, { step: 'scan', bytes: 2048, totalBytes: 4096 })
  capture.emit(step('scan', 'done'))
  capture.emit(step('upload', 'doing'))
  capture.emit({ type: 'note', message: 'partition 1: ext4' })
  capture.succeed()
  await runner.idle()
  t.match(runner.status(), { state: 'done', kind: 'capture', result: { code: 'CAPTURED', message: outcome.message }, notes: ['partition 1: ext4'] })
  t.same(runner.status().capture, { bytes: 123, format: 'qcow2', digest: outcome.digest, virtualSizeBytes: 4096, payloads: outcome.payloads })
  t.same(runner.status().steps.map((s) => s.status), ['done', 'done', 'done', 'todo'])
  t.match(changes.at(-1), { type: 'result', jobId, state: 'done', result: { code: 'CAPTURED' } })
  t.throws(() => { (runner.status().capture as { bytes: number }).bytes = 1 }, 'the shared status is frozen, the capture too')
  for (const secret of ['url-secret', 'sig-secret', 'header-secret']) t.notMatch(log.text(), secret, `${secret} never logged`)
  t.match(log.text(), /capture started/)
  await runner.close()
})

t.test('a capture cancelled (API) ends CAPTURE_CANCELLED; an unexpected error CAPTURE_INTERNAL_ERROR', async (t) => {
  const capture = new ManualCapture()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), capture: capture.fn })
  const { jobId } = runner.startCapture(request)
  t.same(runner.cancel('capture'), { jobId })
  await runner.idle()
  t.match(runner.status(), { state: 'error', kind: 'capture', capture: null, result: { code: 'CAPTURE_CANCELLED' } })
  t.same(runner.status().steps.map((s) => s.status), ['error', 'todo', 'todo', 'todo'])
  runner.startCapture(request)
  capture.fail(new TypeError('a bug'))
  await runner.idle()
  const message = 'Capture failed on an internal error, the disk was not modified and nothing was captured.'
  t.match(runner.status().result, { code: 'CAPTURE_INTERNAL_ERROR', message })
  await runner.close()
})

t.test('state: a capture\'s outcome is saved and read back; one saved running is CAPTURE_INTERRUPTED after a restart, ' +
  'posted, its disk left alone', async (t) => {
  const dir = newStateDir()
  const capture = new ManualCapture()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), capture: capture.fn, store: new JobStateStore(dir) })
  runner.startCapture(request)
  capture.succeed()
  await runner.close()
  const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { status: { kind: string; capture: unknown }; diskWrite: unknown }
  t.equal(saved.status.kind, 'capture')
  t.same(saved.status.capture, runner.status().capture)
  t.equal(saved.diskWrite, null, 'a capture never records a write')
  const store = new JobStateStore(dir)
  const again = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), capture: capture.fn, store })
  t.same(again.status(), runner.status(), 'the capture\'s result as it was, outcome and all')

  const { jobId } = again.startCapture(request)
  capture.emit(step('preflight', 'done'))
  capture.emit(step('scan', 'doing'))
  await store.flush() // the running state is on the disk
  // The agent dies here.
  const reports = new RecordingReports()
  const log = captureServiceLog()
  const restarted = await JobRunner.open({ disk: FAKE_DISK, logger: log.logger, capture: capture.fn, store: new JobStateStore(dir), reporter: reports })
  const message = 'Capture interrupted: the agent stopped during the capture, the disk was not modified and nothing was captured.'
  t.match(restarted.status(), { state: 'error', kind: 'capture', jobId, result: { code: 'CAPTURE_INTERRUPTED', message }, capture: null })
  t.same(restarted.status().steps.map((s) => s.status), ['done', 'error', 'todo', 'todo'])
  t.match(reports.posts, [{ body: { event: 'result', jobId, state: 'error', result: { code: 'CAPTURE_INTERRUPTED' } }, keep: true }])
  t.notMatch(log.text(), /zero|unbootable/i, 'nothing done to the disk')
  await restarted.close()
})
