import t from 'tap'
import type { IncomingMessage } from 'node:http'
import { ReportPoster } from '../../../agent/service/report-poster.js'
import { startScriptedServer, type Handler } from '../../helpers/scripted-server.js'
import { captureServiceLog } from '../api/api-test-helpers.js'

const fast = { baseDelayMs: 5, maxDelayMs: 20, timeoutMs: 2000 }

async function bodyOf (req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString()
}

/** A server that records bodies and answers `statuses` in turn (then 204). */
async function receiver (statuses: number[] = []): Promise<{
  url: string
  bodies: unknown[]
  headers: IncomingMessage['headers'][]
  close: () => Promise<void>
}> {
  const bodies: unknown[] = []
  const headers: IncomingMessage['headers'][] = []
  let n = 0
  const handler: Handler = (req, res) => {
    const status = statuses[n++] ?? 204
    headers.push(req.headers)
    void bodyOf(req).then((text) => {
      if (status < 300) bodies.push(JSON.parse(text))
      res.writeHead(status).end()
    })
  }
  const server = await startScriptedServer(handler)
  return { url: server.url('/report'), bodies, headers, close: server.close }
}

t.test('messages arrive in order as JSON; 5xx and 429 are retried', async (t) => {
  const server = await receiver([500, 429, 200, 503])
  t.teardown(server.close)
  const log = captureServiceLog()
  const poster = new ReportPoster({ url: server.url, logger: log.logger, ...fast })
  poster.post({ n: 1 })
  poster.post({ n: 2 })
  poster.post({ n: 3 }, { keep: true })
  await poster.close()
  t.same(server.bodies, [{ n: 1 }, { n: 2 }, { n: 3 }])
  t.equal(server.headers.length, 6, '3 messages, 3 retries')
  t.match(server.headers[0], { 'content-type': 'application/json' })
  t.equal(poster.delivered, 3)
  t.equal(poster.failed, 0)
  t.equal(log.lines().filter((l) => l['msg'] === 'report attempt failed; retrying').length, 3)
})

t.test('attempts are bounded; a 4xx is not retried; the next message still goes', async (t) => {
  const server = await receiver([500, 500, 500, 400])
  t.teardown(server.close)
  const poster = new ReportPoster({ url: server.url, logger: captureServiceLog().logger, ...fast, maxAttempts: 3 })
  poster.post({ n: 1 })
  poster.post({ n: 2 })
  poster.post({ n: 3 })
  await poster.close()
  t.same(server.bodies, [{ n: 3 }])
  t.equal(server.headers.length, 5)
  t.equal(poster.failed, 2)
})

t.test('post() never waits; a dead endpoint is given up within the bounds, logged without credentials', async (t) => {
  const log = captureServiceLog()
  // Port 9 on 127.0.0.1: nothing listens there, so every connection is refused.
  const poster = new ReportPoster({ url: 'http://user:report-secret@127.0.0.1:9/report?token=tok-secret', logger: log.logger, ...fast, maxAttempts: 3 })
  const started = Date.now()
  for (let i = 0; i < 5; i++) poster.post({ i })
  t.ok(Date.now() - started < 50, 'post returns at once')
  await poster.close(10_000)
  t.equal(poster.failed, 5)
  t.notMatch(log.text(), 'report-secret')
  t.notMatch(log.text(), 'tok-secret')
  t.match(log.text(), /127\.0\.0\.1:9\/report\?token=REDACTED/)
})

t.test('URL credentials become a Basic header', async (t) => {
  const server = await receiver()
  t.teardown(server.close)
  const poster = new ReportPoster({ url: server.url.replace('http://', 'http://agent:p%40ss@'), ...fast })
  poster.post({ ok: true })
  await poster.close()
  t.equal(server.headers[0]?.authorization, `Basic ${Buffer.from('agent:p@ss').toString('base64')}`)
})

t.test('a full queue drops the oldest step message, never a result', async (t) => {
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  const bodies: unknown[] = []
  const server = await startScriptedServer((req, res) => {
    void bodyOf(req).then(async (text) => {
      await gate
      bodies.push(JSON.parse(text))
      res.writeHead(204).end()
    })
  })
  t.teardown(server.close)
  const poster = new ReportPoster({ url: server.url('/r'), logger: captureServiceLog().logger, ...fast, maxQueued: 3 })
  poster.post({ n: 0 }) // in flight
  await new Promise((resolve) => setTimeout(resolve, 50))
  poster.post({ n: 1 })
  poster.post({ result: true }, { keep: true })
  poster.post({ n: 2 })
  poster.post({ n: 3 }) // full: { n: 1 } goes
  release()
  await poster.close()
  t.same(bodies, [{ n: 0 }, { result: true }, { n: 2 }, { n: 3 }])
  t.equal(poster.failed, 1)
})

t.test('close() gives up after its timeout', async (t) => {
  const server = await startScriptedServer(() => { /* never answers */ })
  t.teardown(server.close)
  const poster = new ReportPoster({ url: server.url('/r'), logger: captureServiceLog().logger, ...fast, timeoutMs: 60_000 })
  poster.post({ n: 1 })
  poster.post({ n: 2 })
  const started = Date.now()
  await poster.close(100)
  t.ok(Date.now() - started < 2000, 'closed within bounds')
  t.equal(poster.failed, 2)
  poster.post({ n: 3 })
  t.equal(poster.delivered, 0, 'nothing is sent after close')
})

t.test('only http and https', async (t) => {
  t.throws(() => new ReportPoster({ url: 'ftp://x/y' }), /http or https/)
})
