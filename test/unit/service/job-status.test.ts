import t from 'tap'
import { asInstallStatus, idleStatus, interruptedStatus, JobStatusTracker, MAX_NOTES, RateMeter, RATE_WINDOW_MS } from '../../../agent/service/job-status.js'
import { STEP_NAMES } from '../../../agent/report/progress.js'
import { FAKE_DISK } from '../api/api-test-helpers.js'

const T0 = Date.parse('2030-01-01T00:00:00Z')
const iso = (ms: number): string => new Date(ms).toISOString()

t.test('idle: every step todo, nothing else', async (t) => {
  const status = idleStatus(FAKE_DISK)
  t.same(status, {
    state: 'idle',
    kind: null,
    jobId: null,
    disk: FAKE_DISK,
    startedAt: null,
    endedAt: null,
    steps: STEP_NAMES.map((name) => ({ name, status: 'todo', startedAt: null, endedAt: null })),
    progress: null,
    result: null,
    notes: [],
    capture: null,
  })
})

t.test('steps: doing sets startedAt, done and error set endedAt; a repeat changes nothing', async (t) => {
  const tracker = new JobStatusTracker('j', FAKE_DISK, T0)
  t.match(tracker.snapshot(), { state: 'running', jobId: 'j', startedAt: iso(T0) })
  t.same(
    tracker.apply({ type: 'step', step: 'preflight', status: 'doing', at: iso(T0 + 1) }, T0 + 1),
    { type: 'step', step: { name: 'preflight', status: 'doing', startedAt: iso(T0 + 1), endedAt: null } },
  )
  t.equal(tracker.apply({ type: 'step', step: 'preflight', status: 'doing', at: iso(T0 + 2) }, T0 + 2), undefined)
  t.same(
    tracker.apply({ type: 'step', step: 'preflight', status: 'done', at: iso(T0 + 3) }, T0 + 3),
    { type: 'step', step: { name: 'preflight', status: 'done', startedAt: iso(T0 + 1), endedAt: iso(T0 + 3) } },
  )
  tracker.apply({ type: 'step', step: 'download', status: 'doing', at: iso(T0 + 4) }, T0 + 4)
  t.same(tracker.apply({ type: 'note', message: 'hi' }, T0 + 5), { type: 'note', message: 'hi' })
  const snapshot = tracker.snapshot()
  t.same(snapshot.notes, ['hi'], 'the status keeps the notes')
  t.same(snapshot.steps.map((s) => s.status), ['done', 'doing', 'todo', 'todo', 'todo', 'todo', 'todo'])
  snapshot.steps[0]!.status = 'error'
  t.equal(tracker.snapshot().steps[0]?.status, 'done', 'a snapshot is a copy')
  snapshot.notes.push('more')
  t.same(tracker.snapshot().notes, ['hi'], 'notes too')
})

t.test('notes: at most MAX_NOTES kept; a saved status without notes (an older agent\'s) loads with none', async (t) => {
  const tracker = new JobStatusTracker('j', FAKE_DISK, T0)
  for (let i = 0; i < MAX_NOTES + 5; i++) t.ok(tracker.apply({ type: 'note', message: `n${i}` }, T0 + i), 'every note is still told live')
  t.equal(tracker.snapshot().notes.length, MAX_NOTES)
  const { notes: _notes, ...older } = tracker.snapshot()
  t.same(asInstallStatus(older)?.notes, [])
  t.equal(asInstallStatus({ ...older, notes: [1] }), undefined, 'notes that are not strings: refused')
})

t.test('progress: rate over a sliding window, ETA from the rate', async (t) => {
  const tracker = new JobStatusTracker('j', FAKE_DISK, T0)
  const MiB = 1024 * 1024
  t.same(
    tracker.apply({ type: 'progress', step: 'download', bytes: 0, totalBytes: 100 * MiB }, T0),
    { type: 'progress', progress: { step: 'download', bytes: 0, totalBytes: 100 * MiB, bytesPerSecond: 0, etaSeconds: null } },
  )
  // 10 MiB/s for 2 s.
  for (let i = 1; i <= 20; i++) tracker.apply({ type: 'progress', step: 'download', bytes: i * MiB, totalBytes: 100 * MiB }, T0 + i * 100)
  t.same(tracker.snapshot().progress, { step: 'download', bytes: 20 * MiB, totalBytes: 100 * MiB, bytesPerSecond: 10 * MiB, etaSeconds: 8 })
  // Then 1 MiB/s for 10 s: the 5-s window forgets the fast start.
  for (let i = 1; i <= 10; i++) tracker.apply({ type: 'progress', step: 'download', bytes: (20 + i) * MiB, totalBytes: 100 * MiB }, T0 + 2000 + i * 1000)
  t.same(tracker.snapshot().progress, { step: 'download', bytes: 30 * MiB, totalBytes: 100 * MiB, bytesPerSecond: MiB, etaSeconds: 70 })
  // Unknown size: no ETA.
  tracker.apply({ type: 'progress', step: 'write', bytes: 0, totalBytes: undefined }, T0 + 13_000)
  tracker.apply({ type: 'progress', step: 'write', bytes: 5 * MiB, totalBytes: undefined }, T0 + 14_000)
  t.same(
    tracker.snapshot().progress,
    { step: 'write', bytes: 5 * MiB, totalBytes: null, bytesPerSecond: 5 * MiB, etaSeconds: null },
    'a new step starts a new window',
  )
})

t.test('RateMeter: 0 for the first half second, reset when the bytes go back', async (t) => {
  const meter = new RateMeter()
  t.equal(meter.add(T0, 0), 0)
  t.equal(meter.add(T0 + 400, 4000), 0, 'under 0.5 s')
  t.equal(meter.add(T0 + 1000, 10_000), 10_000)
  t.equal(meter.add(T0 + 1100, 100), 0, 'the download restarted')
  t.equal(meter.add(T0 + 1600, 5100), 10_000)
  t.equal(meter.add(T0 + 1600 + RATE_WINDOW_MS * 3, 5100), 0, 'nothing moved over the window')
})

t.test('finish: done marks doing steps done; an error marks them error', async (t) => {
  const ok = new JobStatusTracker('j', FAKE_DISK, T0)
  ok.apply({ type: 'step', step: 'finish', status: 'doing', at: iso(T0) }, T0)
  ok.apply({ type: 'progress', step: 'write', bytes: 1, totalBytes: 1 }, T0)
  ok.finish({ code: 'INSTALLED', message: 'm' }, T0 + 10)
  t.match(ok.snapshot(), { state: 'done', endedAt: iso(T0 + 10), result: { code: 'INSTALLED', message: 'm' }, progress: { etaSeconds: 0 } })
  t.equal(ok.snapshot().steps[6]?.status, 'done')
  t.equal(ok.apply({ type: 'step', step: 'gpt', status: 'doing', at: iso(T0) }, T0), undefined, 'nothing changes after the end')

  const failed = new JobStatusTracker('j', FAKE_DISK, T0)
  failed.apply({ type: 'step', step: 'download', status: 'doing', at: iso(T0) }, T0)
  failed.finish({ code: 'DOWNLOAD_FAILED', message: 'm' }, T0 + 10)
  t.match(failed.snapshot(), { state: 'error', result: { code: 'DOWNLOAD_FAILED' } })
  t.same(failed.snapshot().steps.map((s) => s.status), ['todo', 'error', 'todo', 'todo', 'todo', 'todo', 'todo'])
})

t.test('interruptedStatus: a saved running job becomes an error', async (t) => {
  const tracker = new JobStatusTracker('j', FAKE_DISK, T0)
  tracker.apply({ type: 'step', step: 'preflight', status: 'done', at: iso(T0) }, T0)
  tracker.apply({ type: 'step', step: 'download', status: 'doing', at: iso(T0) }, T0)
  tracker.apply({ type: 'step', step: 'write', status: 'doing', at: iso(T0) }, T0)
  const status = interruptedStatus(tracker.snapshot(), { code: 'INTERRUPTED', message: 'x' }, T0 + 99)
  t.match(status, { state: 'error', jobId: 'j', endedAt: iso(T0 + 99), result: { code: 'INTERRUPTED', message: 'x' } })
  t.same(status.steps.map((s) => s.status), ['done', 'error', 'todo', 'error', 'todo', 'todo', 'todo'])
})

t.test('asInstallStatus accepts a status and refuses anything else', async (t) => {
  const good = new JobStatusTracker('j', FAKE_DISK, T0)
  good.apply({ type: 'progress', step: 'download', bytes: 1, totalBytes: undefined }, T0)
  const status = JSON.parse(JSON.stringify(good.snapshot())) as unknown
  t.same(asInstallStatus(status), status)
  t.same(asInstallStatus(idleStatus(FAKE_DISK)), idleStatus(FAKE_DISK))
  const bad: unknown[] = [
    null, [], 'x', {},
    { ...idleStatus(FAKE_DISK), state: 'paused' },
    { ...idleStatus(FAKE_DISK), steps: [] },
    { ...idleStatus(FAKE_DISK), disk: { path: 1 } },
    { ...idleStatus(FAKE_DISK), result: { code: 'NOPE', message: 'x' } },
    { ...idleStatus(FAKE_DISK), progress: { step: 'download', bytes: '1' } },
    { ...idleStatus(FAKE_DISK), jobId: 5 },
  ]
  for (const value of bad) t.equal(asInstallStatus(value), undefined, JSON.stringify(value).slice(0, 80))
})
