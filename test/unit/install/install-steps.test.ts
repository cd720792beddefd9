import t from 'tap'
import { InstallSteps } from '../../../agent/install/install-steps.js'
import type { InstallEvent } from '../../../agent/report/progress.js'

t.test('progress at most every 200 ms, the latest sent before the next step change; steps end and fail', async (t) => {
  const events: InstallEvent[] = []
  let now = 10_000
  const steps = new InstallSteps((event) => events.push(event), () => now)
  steps.enter('download', 'write')
  for (let i = 1; i <= 10; i++) {
    now += 50
    steps.progress('download', i * 100, 1000)
  }
  const sent = events.filter((e) => e.type === 'progress')
  t.same(sent.map((e) => e.type === 'progress' ? e.bytes : 0), [100, 500, 900], 'one in four, 200 ms apart')
  steps.enter('verify')
  const after = events.slice(events.findIndex((e) => e.type === 'progress' && e.bytes === 900) + 1)
  t.same(after.map((e) => e.type === 'step' ? `${e.step} ${e.status}` : `progress ${e.type === 'progress' ? e.bytes : ''}`),
    ['progress 1000', 'download done', 'write done', 'verify doing'])
  now += 10
  steps.progress('verify', 1, 2)
  steps.progress('verify', 2, 2)
  steps.fail()
  t.same(events.slice(-2).map((e) => e.type === 'step' ? `${e.step} ${e.status}` : e.type), ['verify doing', 'verify error'], 'within 200 ms: not sent, and dropped on failure')
})
