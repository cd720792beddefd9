import t from 'tap'
import { EventIds } from '../../../agent/api/event-ids.js'

const RUN = '0badc0de'

t.test('ids name the job and the run, and count up across jobs', async (t) => {
  const ids = new EventIds(RUN)
  t.equal(ids.run, RUN)
  t.same(
    [ids.next(null), ids.next('job-1'), ids.next('job-1'), ids.next('job-2')],
    ['idle:0badc0de:1', 'job-1:0badc0de:2', 'job-1:0badc0de:3', 'job-2:0badc0de:4'],
  )
  t.match(new EventIds().run, /^[0-9a-f]{8}$/, 'a random run name by default')
  t.not(new EventIds().run, new EventIds().run)
  t.throws(() => new EventIds('nope'), RangeError)
})

t.test('a job id with a line break or a colon cannot break the stream nor the id', async (t) => {
  const ids = new EventIds(RUN)
  const id = ids.next('a:b\nc')
  t.equal(id, 'a%3Ab%0Ac:0badc0de:1')
  t.same(ids.parse(id), { job: 'a%3Ab%0Ac', seq: 1 })
  t.equal(ids.next(''), 'idle:0badc0de:2', 'an empty job id counts as none')
})

t.test('parse: only ids this run sent', async (t) => {
  const ids = new EventIds(RUN)
  for (let i = 0; i < 5; i++) ids.next('job-1')
  t.same(ids.parse('job-1:0badc0de:3'), { job: 'job-1', seq: 3 })
  t.same(ids.parse('job-1:0badc0de:5'), { job: 'job-1', seq: 5 })
  const refused = [
    undefined, '', 'garbage', 'job-1', 'job-1:0badc0de', ':0badc0de:1', 'job-1:0badc0de:', 'job-1:0badc0de:0',
    'job-1:0badc0de:03', 'job-1:0badc0de:-1', 'job-1:0badc0de:1.5', 'job-1:0badc0de:6', 'job-1:0badc0de:99999999999999999',
    'job-1:feedface:3', 'job-1:0BADC0DE:3', 'a:job-1:0badc0de:3', ' job-1:0badc0de:3', 'job-1:0badc0de:3 ', 'job-1:0badc0de:3\n',
  ]
  for (const text of refused) t.equal(ids.parse(text), undefined, JSON.stringify(text))
})

t.test('sawEnd: an id sent after the job ended, and only of that job', async (t) => {
  const ids = new EventIds(RUN)
  const step = ids.next('job-1') // 1
  t.notOk(ids.sawEnd(step, 'job-1'), 'no end yet')
  const result = ids.next('job-1', { ended: true }) // 2: the end
  const laterSnapshot = ids.next('job-1', { ended: true }) // 3: a stream opened after the end
  const laterResult = ids.next('job-1', { ended: true }) // 4
  t.ok(ids.sawEnd(result, 'job-1'), 'the result')
  t.ok(ids.sawEnd(laterSnapshot, 'job-1'), 'a snapshot of the ended job')
  t.ok(ids.sawEnd(laterResult, 'job-1'), 'a later copy of the result')
  t.notOk(ids.sawEnd(step, 'job-1'), 'an event before the end')
  t.notOk(ids.sawEnd(result, 'job-2'), 'another job is the current one')
  t.notOk(ids.sawEnd('job-1:feedface:2', 'job-1'), 'another run\'s id')
  t.notOk(ids.sawEnd('garbage', 'job-1'))
  t.notOk(ids.sawEnd(undefined, 'job-1'))

  // The next job: its own end; the last job's result no longer counts.
  ids.next('job-2') // 5
  const result2 = ids.next('job-2', { ended: true }) // 6
  t.ok(ids.sawEnd(result2, 'job-2'))
  t.notOk(ids.sawEnd(result, 'job-2'))
  t.notOk(ids.sawEnd(result2, 'job-1'))
})

t.test('an agent restarted: the last run\'s ids are unknown', async (t) => {
  const before = new EventIds('00000001')
  before.next('job-1')
  const result = before.next('job-1', { ended: true })
  const after = new EventIds('00000002')
  after.next('job-1', { ended: true })
  after.next('job-1', { ended: true })
  t.equal(after.parse(result), undefined)
  t.notOk(after.sawEnd(result, 'job-1'))
})
