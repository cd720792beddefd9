import t from 'tap'
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { JobStateStore } from '../../../agent/service/job-state-store.js'
import { idleStatus, JobStatusTracker } from '../../../agent/service/job-status.js'
import { tempDir } from '../../helpers/disk-files.js'
import { captureServiceLog, FAKE_DISK } from '../api/api-test-helpers.js'

const tmp = tempDir()
t.teardown(tmp.remove)

t.test('saves coalesce; the file is the last status, complete, private; no temporary file is left', async (t) => {
  const dir = join(tmp.path, 'a', 'b')
  const store = new JobStateStore(dir)
  t.equal(await store.load(), undefined, 'nothing saved yet')
  const tracker = new JobStatusTracker('j', FAKE_DISK, Date.now())
  for (let i = 0; i < 100; i++) {
    tracker.apply({ type: 'progress', step: 'download', bytes: i, totalBytes: 100 }, Date.now())
    store.save(tracker.snapshot())
  }
  await store.flush()
  t.same(await store.load(), tracker.snapshot())
  t.same(readdirSync(dir), ['state.json'])
  t.equal(statSync(join(dir, 'state.json')).mode & 0o777, 0o600)
  t.equal(statSync(dir).mode & 0o777, 0o700)
  const file = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { version: number; savedAt: string }
  t.equal(file.version, 1)
  t.ok(!Number.isNaN(Date.parse(file.savedAt)))
})

t.test('a failed save is logged and never thrown', async (t) => {
  const blocker = join(tmp.path, 'not-a-dir')
  writeFileSync(blocker, 'x')
  const log = captureServiceLog()
  const store = new JobStateStore(join(blocker, 'state'), log.logger)
  store.save(idleStatus(FAKE_DISK))
  await store.flush()
  t.ok(log.lines().some((l) => l['level'] === 50 && l['msg'] === 'cannot save the state'))
})
