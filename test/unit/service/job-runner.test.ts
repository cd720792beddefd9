import t from 'tap'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { JobRunner, type InstallFunction, type JobChange, type ReportMessage } from '../../../agent/service/job-runner.js'
import { JobStateStore } from '../../../agent/service/job-state-store.js'
import type { InstallOptions, InstallResult } from '../../../agent/install/run-install.js'
import { parseInstallRequest } from '../../../agent/payload/parse-install-request.js'
import { isApiError } from '../../../agent/errors/api-error.js'
import { errors } from '../../../agent/errors/install-error.js'
import type { InstallEvent, StepName } from '../../../agent/report/progress.js'
import type { ReportSink } from '../../../agent/service/report-poster.js'
import { tempDir } from '../../helpers/disk-files.js'
import { captureServiceLog, FAKE_DISK, installStartBody, quietLogger } from '../api/api-test-helpers.js'

const tmp = tempDir()
t.teardown(tmp.remove)
let dirs = 0
const newStateDir = (): string => join(tmp.path, `state-${dirs++}`)

const request = parseInstallRequest(installStartBody('https://user:url-secret@example.invalid/a.raw', [
  { key: 'httpHeaders0Key', value: 'Authorization' },
  { key: 'httpHeaders0Value', value: 'Basic header-secret' },
]))

/** An install driven by hand: events, then success or failure; an abort rejects with CANCELLED_UNTOUCHED. */
class ManualInstall {
  readonly calls: InstallOptions[] = []
  private settle: { resolve: (r: InstallResult) => void; reject: (e: unknown) => void } | undefined

  readonly fn: InstallFunction = async (options) => {
    this.calls.push(options)
    options.onEvent?.({ type: 'step', step: 'preflight', status: 'doing', at: new Date().toISOString() })
    return new Promise<InstallResult>((resolve, reject) => {
      this.settle = { resolve, reject }
      options.signal?.addEventListener('abort', () => reject(errors.cancelledUntouched()), { once: true })
    })
  }

  emit (event: InstallEvent): void {
    this.calls.at(-1)?.onEvent?.(event)
  }

  succeed (message = 'Image installed.'): void {
    this.settle?.resolve({ code: 'INSTALLED', message, bytes: 10, mode: 'memory' } as unknown as InstallResult)
  }

  fail (err: unknown): void {
    this.settle?.reject(err)
  }
}

class RecordingReports implements ReportSink {
  readonly posts: Array<{ body: ReportMessage; keep: boolean }> = []
  closed = false
  post (body: unknown, options: { keep?: boolean } = {}): void {
    this.posts.push({ body: body as ReportMessage, keep: options.keep === true })
  }

  async close (): Promise<void> {
    this.closed = true
  }
}

const step = (name: StepName, status: 'doing' | 'done' | 'error'): InstallEvent => ({ type: 'step', step: name, status, at: new Date().toISOString() })

t.test('a job: status, changes to subscribers, result; then the next may start', async (t) => {
  const install = new ManualInstall()
  let now = 1000
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, now: () => now })
  const changes: JobChange[] = []
  const unsubscribe = runner.subscribe((c) => changes.push(c))
  t.equal(runner.status().state, 'idle')
  const { jobId } = runner.start(request)
  t.match(runner.status(), { state: 'running', jobId, disk: FAKE_DISK })
  t.equal(install.calls[0]?.diskPath, FAKE_DISK.path)
  t.equal(install.calls[0]?.request, request)
  t.ok(install.calls[0]?.signal instanceof AbortSignal)
  t.same(runner.status().steps[0], { name: 'preflight', status: 'doing', startedAt: runner.status().steps[0]?.startedAt, endedAt: null })

  // Progress reaches subscribers as the install sends it (the install throttles it); the status has the latest.
  install.emit(step('preflight', 'done'))
  install.emit(step('download', 'doing'))
  for (let i = 1; i <= 10; i++) {
    now += 200
    install.emit({ type: 'progress', step: 'download', bytes: i * 1000, totalBytes: 10_000 })
  }
  t.equal(runner.status().progress?.bytes, 10_000)
  const progressSent = changes.filter((c) => c.type === 'progress')
  t.same(progressSent.map((c) => c.type === 'progress' ? c.progress.bytes : undefined), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => i * 1000),
    'each progress change passed on, in order')
  install.emit(step('download', 'done'))

  t.throws(() => runner.start(request), { code: 'BUSY', message: `An install is already running, job ${jobId}.` })
  install.succeed()
  await runner.idle()
  t.match(runner.status(), { state: 'done', jobId, result: { code: 'INSTALLED', message: 'Image installed.' } })
  t.same(changes.map((c) => c.type), ['status', 'step', 'step', 'step', ...progressSent.map(() => 'progress'), 'step', 'result'])
  t.same(changes.at(-1), { type: 'result', jobId, state: 'done', result: { code: 'INSTALLED', message: 'Image installed.' } })
  unsubscribe()
  const heard = changes.length

  const second = runner.start(request)
  t.not(second.jobId, jobId, 'a new job id')
  t.same(runner.status().result, null)
  t.equal(changes.length, heard, 'an unsubscribed listener hears nothing more')
  install.fail(errors.downloadFailed('https://example.invalid/a.raw'))
  await runner.idle()
  t.match(runner.status(), { state: 'error', result: { code: 'DOWNLOAD_FAILED' } })
})

t.test('cancel: NOT_RUNNING when idle; aborts the running job, whose result says so', async (t) => {
  const install = new ManualInstall()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn })
  t.throws(() => runner.cancel(), { code: 'NOT_RUNNING' })
  const { jobId } = runner.start(request)
  t.same(runner.cancel(), { jobId })
  t.ok(install.calls[0]?.signal?.aborted)
  await runner.idle()
  t.match(runner.status(), { state: 'error', result: { code: 'CANCELLED_UNTOUCHED', message: 'Install cancelled, the disk was not modified.' } })
  t.equal(runner.status().steps[0]?.status, 'error', 'the step in progress ended in error')
})

t.test('an unexpected error is INTERNAL_ERROR; a failing subscriber breaks nothing', async (t) => {
  const install = new ManualInstall()
  const log = captureServiceLog()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: log.logger, install: install.fn })
  runner.subscribe(() => { throw new Error('subscriber bug') })
  runner.start(request)
  install.emit(step('preflight', 'done'))
  install.fail(new TypeError('bug'))
  await runner.idle()
  t.match(runner.status(), { state: 'error', result: { code: 'INTERNAL_ERROR' } })
  t.ok(log.lines().some((l) => l['msg'] === 'a status subscriber failed'))
  t.ok(log.lines().some((l) => l['msg'] === 'unexpected error from the install'))
})

t.test('the job log: a child with the job id; no header value, no URL credentials', async (t) => {
  const install = new ManualInstall()
  const log = captureServiceLog()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: log.logger, install: install.fn })
  const { jobId } = runner.start(request)
  install.succeed()
  await runner.idle()
  const started = log.lines().find((l) => l['msg'] === 'install started')
  t.match(started, { jobId, imageUrl: 'https://example.invalid/a.raw', httpHeaders: { Authorization: '[REDACTED]' } })
  t.notMatch(log.text(), 'url-secret')
  t.notMatch(log.text(), 'header-secret')
})

t.test('state: saved on each step change and at the end; read back by the next runner', async (t) => {
  const dir = newStateDir()
  const install = new ManualInstall()
  const store = new JobStateStore(dir, quietLogger())
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store })
  const { jobId } = runner.start(request)
  install.emit(step('preflight', 'done'))
  await store.flush()
  const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { version: number; status: { state: string; steps: Array<{ status: string }> } }
  t.equal(saved.version, 1)
  t.equal(saved.status.state, 'running')
  t.equal(saved.status.steps[0]?.status, 'done')
  install.succeed()
  await runner.close()
  const again = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store: new JobStateStore(dir) })
  t.same(again.status(), runner.status(), 'the last result, as it was')
  t.match(again.status(), { state: 'done', jobId })
})

t.test('state: the result is on the disk before it is told ' +
  '(a kill after the install but before the save would zero an installed disk at the next start)', async (t) => {
  const dir = newStateDir()
  const install = new ManualInstall()
  const store = new JobStateStore(dir, quietLogger())
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store })
  const savedAtResult: string[] = []
  runner.subscribe((event) => {
    if (event.type !== 'result') return
    const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { status: { state: string } }
    savedAtResult.push(saved.status.state)
  })
  runner.start(request)
  install.emit(step('preflight', 'done'))
  install.succeed()
  await runner.idle()
  await runner.close()
  t.same(savedAtResult, ['done'], 'when the result is told, the state file already says done')
})

t.test('state: a job saved as running, not yet writing, is reported INTERRUPTED_UNTOUCHED after a restart, and posted', async (t) => {
  const dir = newStateDir()
  const install = new ManualInstall()
  const store = new JobStateStore(dir)
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store })
  const { jobId } = runner.start(request)
  install.emit(step('preflight', 'done'))
  install.emit(step('download', 'doing'))
  await store.flush()
  // The agent dies here: the runner is dropped without close().

  const reports = new RecordingReports()
  const restarted = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store: new JobStateStore(dir), reporter: reports })
  const message = 'Install interrupted: the agent stopped during the install, the disk was not modified.'
  t.match(restarted.status(), { state: 'error', jobId, result: { code: 'INTERRUPTED_UNTOUCHED', message } })
  t.same(restarted.status().steps.map((s) => s.status), ['done', 'error', 'todo', 'todo', 'todo', 'todo', 'todo'])
  t.match(reports.posts, [{ body: { event: 'result', jobId, state: 'error', result: { code: 'INTERRUPTED_UNTOUCHED', message } }, keep: true }])
  await restarted.close()
  const third = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, store: new JobStateStore(dir) })
  t.match(third.status(), { state: 'error', result: { code: 'INTERRUPTED_UNTOUCHED' } }, 'the interrupted result was saved')
  // A new install may start.
  third.start(request)
  install.succeed()
  await third.idle()
  t.equal(third.status().state, 'done')
  install.fail(new Error('unused'))
})

t.test('state: an unreadable or foreign file is ignored', async (t) => {
  for (const content of ['{not json', JSON.stringify({ version: 99, status: {} }), JSON.stringify({ version: 1, status: { state: 'running' } })]) {
    const dir = newStateDir()
    const store = new JobStateStore(dir)
    const log = captureServiceLog()
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'state.json'), content)
    const runner = await JobRunner.open({ disk: FAKE_DISK, logger: log.logger, store: new JobStateStore(dir, log.logger) })
    t.equal(runner.status().state, 'idle', content)
    t.equal(await store.load(), undefined)
    t.ok(log.lines().some((l) => l['level'] === 40), 'a warning')
  }
})

t.test('report: each step change and the result, in order, numbered', async (t) => {
  const install = new ManualInstall()
  const reports = new RecordingReports()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn, reporter: reports })
  const { jobId } = runner.start(request)
  install.emit(step('preflight', 'done'))
  install.emit({ type: 'progress', step: 'download', bytes: 1, totalBytes: 2 })
  install.emit({ type: 'note', message: 'n' })
  install.succeed()
  await runner.close()
  t.same(reports.posts.map((p) => [p.body.event, p.body.sequence, p.keep]), [['step', 1, false], ['step', 2, false], ['result', 3, true]])
  t.match(reports.posts[0]?.body, { event: 'step', jobId, step: { name: 'preflight', status: 'doing' }, status: { state: 'running', jobId } })
  t.match(reports.posts[2]?.body, { event: 'result', jobId, state: 'done', result: { code: 'INSTALLED' }, status: { state: 'done' } })
  t.ok(reports.closed, 'close() closes the reporter')
})

t.test('close: cancels the running job, waits for it; no job starts afterwards', async (t) => {
  const install = new ManualInstall()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn })
  runner.start(request)
  await runner.close()
  t.ok(install.calls[0]?.signal?.aborted)
  t.match(runner.status(), { state: 'error', result: { code: 'CANCELLED_UNTOUCHED' } })
  try {
    runner.start(request)
    t.fail('started')
  } catch (err) {
    t.ok(isApiError(err), 'the service\'s own refusal')
    t.match(err, { code: 'SHUTTING_DOWN' })
  }
})

const reinstallWithGroup = (diskGroupId: number): ReturnType<typeof parseInstallRequest> => parseInstallRequest({
  operatingSystem: 'byoi_64',
  customizations: { imageURL: 'https://example.invalid/a.raw', imageType: 'raw' },
  storage: [{ diskGroupId }],
})

t.test('a fixed disk: diskGroupId 1 (or none) is taken, another refused before any job starts', async (t) => {
  const install = new ManualInstall()
  const runner = await JobRunner.open({ disk: FAKE_DISK, logger: quietLogger(), install: install.fn })
  t.throws(() => runner.start(reinstallWithGroup(2)), {
    code: 'PAYLOAD_BAD_FIELD',
    message: `Bad storage[0].diskGroupId, expected: 1 (the agent installs on ${FAKE_DISK.path}, the disk it was given; ` +
      'disk group 2 is chosen only under serve --disk auto).',
  })
  t.equal(runner.status().state, 'idle', 'no job')
  runner.start(reinstallWithGroup(1))
  t.equal(install.calls[0]?.diskPath, FAKE_DISK.path)
  install.succeed()
  await runner.idle()
})

t.test('serve --disk hints: the why of the disk chosen at start is each install\'s first note', async (t) => {
  const install = new ManualInstall()
  const why = `${FAKE_DISK.path} chosen by root device hints serial=ABC (size 1 GiB)`
  const runner = await JobRunner.open({ disk: FAKE_DISK, diskWhy: why, logger: quietLogger(), install: install.fn })
  runner.start(request)
  t.same(runner.status().notes, [why])
  install.succeed()
  await runner.idle()
  t.same(runner.status().notes, [why])
})

t.test('serve --disk auto: each install\'s disk chosen when it starts, shown in the status with why; a disk not chosen is the result', async (t) => {
  const install = new ManualInstall()
  const asked: Array<number | undefined> = []
  const chosenDisk = { path: '/dev/nvme91n1', auto: true, sizeBytes: 4096, model: 'FAST' }
  const runner = await JobRunner.open({
    disk: FAKE_DISK,
    logger: quietLogger(),
    install: install.fn,
    chooseDisk: async (req) => {
      asked.push(req.diskGroupId)
      if (req.diskGroupId === 9) throw errors.diskNotChosen('disk group 9 does not exist: this server has group 1 (NVMe, 1 GiB: nvme91n1)')
      return { disk: chosenDisk, why: '/dev/nvme91n1 chosen as the first free disk of disk group 2 (NVMe, 1 GiB: nvme91n1)' }
    },
  })
  const changes: JobChange[] = []
  runner.subscribe((c) => changes.push(c))
  const { jobId } = runner.start(reinstallWithGroup(2))
  t.same(runner.status().disk, FAKE_DISK, 'until chosen, the service\'s disk')
  await new Promise((resolve) => setImmediate(resolve))
  t.same(asked, [2])
  t.equal(install.calls[0]?.diskPath, '/dev/nvme91n1')
  t.match(runner.status(), { jobId, disk: chosenDisk, notes: ['/dev/nvme91n1 chosen as the first free disk of disk group 2 (NVMe, 1 GiB: nvme91n1)'] })
  t.same(changes.slice(0, 3).map((c) => c.type), ['status', 'status', 'note'], 'the new disk told, then why')
  install.succeed()
  await runner.idle()
  t.match(runner.status(), { state: 'done', disk: chosenDisk })

  runner.start(reinstallWithGroup(9))
  await runner.idle()
  t.equal(install.calls.length, 1, 'no install ran')
  t.match(runner.status(), {
    state: 'error',
    disk: FAKE_DISK,
    result: { code: 'DISK_NOT_CHOSEN', message: 'No disk to install on: disk group 9 does not exist: this server has group 1 (NVMe, 1 GiB: nvme91n1).' },
  })
  runner.start(request)
  await new Promise((resolve) => setImmediate(resolve))
  t.same(asked, [2, 9, undefined], 'no group asked: the chooser picks --disk auto\'s disk')
  install.succeed()
  await runner.idle()
})
