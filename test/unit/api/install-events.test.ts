/**
 * GET /install/events as an EventSource client sees it: ids, the retry field, reconnects with
 * Last-Event-ID (a fresh snapshot mid-job, 204 once the client saw the result, anything odd as
 * no header), and undici's own EventSource following a job to its end and then stopping.
 */
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { Agent, EventSource, request, type Dispatcher } from 'undici'
import { buildApp } from '../../../agent/api/build-app.js'
import type { JobChange } from '../../../agent/service/job-runner.js'
import { parseInstallRequest } from '../../../agent/payload/parse-install-request.js'
import { AUTH, FakeJobs, installStartBody, parseSse, quietLogger, TOKEN, type SseEvent } from './api-test-helpers.js'

const URL_OK = 'https://images.example.invalid/debian.raw'
const ID = /^(job-\d+|idle):([0-9a-f]{8}):(\d+)$/

function appWith (jobs: FakeJobs, extra: { eventsRetryMs?: number } = {}): FastifyInstance {
  const app = buildApp({ jobs, token: TOKEN, logger: quietLogger(), ...extra })
  t.teardown(() => app.close())
  return app
}

/** The id's parts; fails the test when it is not an id. */
function idParts (id: string | undefined): { job: string; run: string; seq: number } {
  const match = ID.exec(id ?? '')
  if (match === null) throw new Error(`not an event id: ${JSON.stringify(id)}`)
  return { job: match[1] ?? '', run: match[2] ?? '', seq: Number(match[3]) }
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

async function until (what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

function startJob (jobs: FakeJobs): void {
  jobs.start(parseInstallRequest(installStartBody(URL_OK)))
}

const STEP: JobChange = { type: 'step', jobId: 'job-1', step: { name: 'preflight', status: 'doing', startedAt: '2030-01-01T10:00:00.000Z', endedAt: null } }
const PROGRESS: JobChange = { type: 'progress', jobId: 'job-1', progress: { step: 'download', bytes: 5, totalBytes: 10, bytesPerSecond: 1, etaSeconds: 5 } }

/** GET /install/events through inject, with this Last-Event-ID (if any); resolves when the stream ends. */
async function events (app: FastifyInstance, lastEventId?: string): Promise<{ statusCode: number; body: string; events: ReturnType<typeof parseSse> }> {
  const headers = lastEventId === undefined ? AUTH : { ...AUTH, 'last-event-id': lastEventId }
  const answer = await app.inject({ method: 'GET', url: '/install/events', headers })
  return { statusCode: answer.statusCode, body: answer.body, events: parseSse(answer.body) }
}

t.test('every event has an id, increasing, of its job; the retry field comes first', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const idle = await (async () => {
    const pending = events(app)
    await until('the stream', () => jobs.subscribers > 0)
    startJob(jobs)
    jobs.emit(STEP)
    jobs.emit(PROGRESS)
    jobs.emit({ type: 'note', jobId: 'job-1', message: 'streaming' })
    jobs.finish('INSTALLED', 'ok')
    return await pending
  })()
  t.equal(idle.statusCode, 200)
  t.ok(idle.body.startsWith('retry: 2000\nid: '), 'retry, then the first event\'s id')
  t.equal(idle.events.retry, 2000)
  t.same(idle.events.map((e) => e.event), ['status', 'status', 'step', 'progress', 'note', 'result'])
  const parts = idle.events.map((e) => idParts(e.id))
  t.same(parts.map((p) => p.job), ['idle', 'job-1', 'job-1', 'job-1', 'job-1', 'job-1'], 'each id names its job')
  t.equal(new Set(parts.map((p) => p.run)).size, 1, 'one run name')
  t.ok(parts.every((p, i) => i === 0 || p.seq > (parts[i - 1]?.seq ?? Infinity)), `increasing: ${parts.map((p) => p.seq).join(', ')}`)
  t.equal((idle.body.match(/^id: /gm) ?? []).length, idle.events.length, 'one id line per event')

  // A later stream: ids go on increasing (unique for the agent's lifetime).
  const after = await events(app)
  t.same(after.events.map((e) => e.event), ['status', 'result'])
  const afterParts = after.events.map((e) => idParts(e.id))
  t.ok((afterParts[0]?.seq ?? 0) > (parts.at(-1)?.seq ?? Infinity), 'after the last stream\'s ids')
  t.ok((afterParts[1]?.seq ?? 0) > (afterParts[0]?.seq ?? Infinity))
  t.equal(afterParts[0]?.run, parts[0]?.run)
})

t.test('a change is numbered once: two streams get the same id for it', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  startJob(jobs)
  const first = events(app)
  const second = events(app)
  await until('both streams', () => jobs.subscribers > 0)
  await sleep(20) // the second stream's snapshot
  jobs.emit(STEP)
  jobs.finish('INSTALLED', 'ok')
  const [a, b] = await Promise.all([first, second])
  t.same(a.events.map((e) => e.event), ['status', 'step', 'result'])
  t.same(b.events.map((e) => e.event), ['status', 'step', 'result'])
  t.not(a.events[0]?.id, b.events[0]?.id, 'each snapshot its own id')
  t.equal(a.events[1]?.id, b.events[1]?.id, 'the step: one id')
  t.equal(a.events[2]?.id, b.events[2]?.id, 'the result: one id')
  t.equal(jobs.subscribers, 0, 'the one subscription ended with the last stream')
})

/** A stream over a real connection, read as it comes; `close()` drops it as a client that went away. */
interface LiveStream { statusCode: number; events: SseEvent[]; ended: Promise<void>; close: () => void }

async function openLive (baseUrl: string, lastEventId?: string): Promise<LiveStream> {
  const controller = new AbortController()
  const headers = lastEventId === undefined ? AUTH : { ...AUTH, 'last-event-id': lastEventId }
  const answer = await request(`${baseUrl}/install/events`, { headers, signal: controller.signal })
  const live: LiveStream = { statusCode: answer.statusCode, events: [], ended: Promise.resolve(), close: () => controller.abort() }
  live.ended = (async () => {
    let text = ''
    try {
      for await (const chunk of answer.body) {
        text += (chunk as Buffer).toString('utf8')
        live.events.splice(0, live.events.length, ...parseSse(text.slice(0, text.lastIndexOf('\n\n') + 2)))
      }
    } catch (err) {
      if (!controller.signal.aborted) throw err
    }
  })()
  return live
}

t.test('a reconnect mid-job with Last-Event-ID: a fresh status snapshot, then the live events', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  startJob(jobs)
  const first = await openLive(url)
  await until('the first stream', () => jobs.subscribers > 0 && first.events.length === 1)
  jobs.emit(STEP)
  await until('the step', () => first.events.length === 2)
  const lastSeen = first.events[1]?.id ?? ''
  t.equal(first.events[1]?.event, 'step')
  first.close() // the connection drops
  await first.ended
  await until('the stream to be gone', () => jobs.subscribers === 0)

  // Missed while away.
  jobs.emit(PROGRESS)
  jobs.current = { ...jobs.current, progress: { step: 'download', bytes: 5, totalBytes: 10, bytesPerSecond: 1, etaSeconds: 5 } }

  const again = await openLive(url, lastSeen)
  t.equal(again.statusCode, 200)
  await until('the snapshot', () => again.events.length === 1)
  t.equal(again.events[0]?.event, 'status', 'the snapshot first')
  t.same(again.events[0]?.data, jobs.status(), 'the status as it is now, progress missed included')
  jobs.emit({ type: 'progress', jobId: 'job-1', progress: { step: 'download', bytes: 10, totalBytes: 10, bytesPerSecond: 1, etaSeconds: 0 } })
  jobs.finish('INSTALLED', 'ok')
  await again.ended
  t.same(again.events.map((e) => e.event), ['status', 'progress', 'result'], 'then live events to the end')
  const seqs = again.events.map((e) => idParts(e.id).seq)
  t.ok(seqs.every((seq) => seq > idParts(lastSeen).seq), 'ids after the last one seen')
  t.ok(seqs.every((seq, i) => i === 0 || seq > (seqs[i - 1] ?? Infinity)), 'increasing')
})

t.test('a reconnect after the result, with its id: 204 No Content, nothing subscribed', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  startJob(jobs)
  const pending = events(app)
  await until('the stream', () => jobs.subscribers > 0)
  jobs.emit(STEP)
  jobs.finish('CANCELLED', 'Install cancelled.')
  const live = await pending
  const result = live.events.at(-1)
  t.equal(result?.event, 'result')

  const done = await app.inject({ method: 'GET', url: '/install/events', headers: { ...AUTH, 'last-event-id': result?.id ?? '' } })
  t.equal(done.statusCode, 204)
  t.equal(done.body, '')
  t.equal(done.headers['content-type'], undefined)
  t.equal(jobs.subscribers, 0)

  // A stream opened after the end shows the end too (its snapshot holds the result): either id gets 204.
  const late = await events(app)
  t.same(late.events.map((e) => e.event), ['status', 'result'])
  for (const event of late.events) t.equal((await events(app, event.id)).statusCode, 204, `${event.event} ${event.id}`)
  t.equal((await events(app, result?.id)).statusCode, 204, 'again and again')

  // An id from before the end: the client missed the result, it gets it.
  const missed = await events(app, live.events[1]?.id)
  t.equal(missed.statusCode, 200)
  t.same(missed.events.map((e) => e.event), ['status', 'result'])
  t.match(missed.events[1]?.data, { jobId: 'job-1', state: 'error', result: { code: 'CANCELLED' } })

  // A new job: the old result's id no longer stops anything.
  startJob(jobs)
  const next = events(app, result?.id)
  await until('the stream', () => jobs.subscribers > 0)
  jobs.finish('INSTALLED', 'ok')
  const answer = await next
  t.equal(answer.statusCode, 200)
  t.same(answer.events.map((e) => e.event), ['status', 'result'])
  t.match(answer.events[0]?.data, { state: 'running', jobId: 'job-2' })
  t.equal((await events(app, answer.events[1]?.id)).statusCode, 204, 'job-2\'s result')
})

t.test('a malformed or unknown Last-Event-ID counts as none', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs)
  startJob(jobs)
  jobs.finish('INSTALLED', 'ok')
  const fresh = await events(app)
  const { run, seq } = idParts(fresh.events[1]?.id)
  const other = run === 'ffffffff' ? '00000000' : 'ffffffff'
  const odd = [
    '', ' ', 'garbage', 'job-1', `job-1:${run}`, `job-1:${run}:`, `job-1:${run}:0`, `job-1:${run}:x`, `job-1:${run}:-1`,
    `job-1:${run}:${seq + 1000}`, `job-1:${run}:99999999999999999999`, `job-1:${other}:${seq}`, `job-2:${run}:${seq}`,
    `job-1:${run}:${seq}:extra`, '%', 'é', ':::', `job-1:${run.toUpperCase()}:${seq}`,
  ]
  for (const lastEventId of odd) {
    const answer = await events(app, lastEventId)
    t.equal(answer.statusCode, 200, JSON.stringify(lastEventId))
    t.same(answer.events.map((e) => e.event), ['status', 'result'], 'as with no header')
  }
  // While a job runs: the snapshot, then live events.
  startJob(jobs)
  const pending = events(app, 'garbage')
  await until('the stream', () => jobs.subscribers > 0)
  jobs.emit({ ...STEP, jobId: 'job-2' })
  jobs.finish('INSTALLED', 'ok')
  t.same((await pending).events.map((e) => e.event), ['status', 'step', 'result'])
  // A raw header that is not even text.
  const raw = await app.inject({ method: 'GET', url: '/install/events', headers: { ...AUTH, 'last-event-id': Buffer.from([0xff, 0xfe]).toString('latin1') } })
  t.equal(raw.statusCode, 200)
})

t.test('an agent restarted over an ended job: the last run\'s ids are unknown', async (t) => {
  const jobs = new FakeJobs()
  startJob(jobs)
  jobs.finish('INSTALLED', 'ok')
  const before = await events(appWith(jobs))
  const resultId = before.events[1]?.id
  const after = appWith(jobs) // another app: another run
  const answer = await events(after, resultId)
  t.equal(answer.statusCode, 200)
  t.same(answer.events.map((e) => e.event), ['status', 'result'])
  t.not(idParts(answer.events[0]?.id).run, idParts(resultId).run)
  t.equal((await events(after, answer.events[1]?.id)).statusCode, 204)
})

t.test('undici\'s EventSource follows a job, reconnects after the result and stops on 204', async (t) => {
  const jobs = new FakeJobs()
  const app = appWith(jobs, { eventsRetryMs: 50 })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  // EventSource sends no Authorization header of its own: a dispatcher adds it, and notes each request's Last-Event-ID.
  const sent: Array<string | undefined> = []
  const dispatcher: Dispatcher = new Agent().compose((dispatch) => (options, handler) => {
    const headers: Record<string, string> = { ...(options.headers as Record<string, string> | undefined), ...AUTH }
    sent.push(headers['last-event-id'])
    return dispatch({ ...options, headers }, handler)
  })
  t.teardown(() => dispatcher.close())
  const source = new EventSource(`${url}/install/events`, { dispatcher })
  t.teardown(() => source.close())
  const received: Array<{ type: string; id: string }> = []
  for (const type of ['status', 'step', 'result']) source.addEventListener(type, (event) => received.push({ type, id: (event as MessageEvent).lastEventId }))
  await until('the snapshot', () => received.length === 1)
  startJob(jobs)
  jobs.emit(STEP)
  jobs.finish('INSTALLED', 'ok')
  await until('the EventSource to close', () => source.readyState === EventSource.CLOSED)
  t.same(received.map((e) => e.type), ['status', 'status', 'step', 'result'])
  const resultId = received.at(-1)?.id
  t.same(sent, [undefined, resultId], 'one reconnect, with the result\'s id')
  await sleep(200) // four reconnection times: none comes
  t.equal(sent.length, 2, 'no more reconnects')
})
