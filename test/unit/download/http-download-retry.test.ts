import { createHash } from 'node:crypto'
import { createServer } from 'node:net'
import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, sendBody, serveFile, startScriptedServer, testFile } from '../../helpers/scripted-server.js'

const FILE = testFile(150_000)
const ETAG = '"v1"'

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

async function failure (promise: Promise<unknown>): Promise<unknown> {
  return await promise.then(() => undefined, (e: unknown) => e)
}

t.test('reset mid-body, then 500, then success (scripted per attempt)', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 40_000 }),
    (_req, res) => { res.writeHead(500).end() },
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 3, validator: ETAG })
  t.ok(sink.data.equals(FILE))
  t.equal(server.requests[2]?.headers.range, 'bytes=40000-', 'the third attempt resumes')
})

t.test('500 then success', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(500, 'Internal Server Error').end('oops') },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.equal(result.attempts, 2)
  t.equal(result.digestHex, sha256(FILE))
  t.equal(sink.count('begin'), 1)
  t.equal(server.requests.length, 2)
})

t.test('503 with Retry-After (seconds) waits what the server asked', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(503, { 'retry-after': '1' }).end() },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const log = captureLog()
  const result = await download(options(server.url(), { logger: log.logger }), new RecordingSink())
  t.equal(result.attempts, 2)
  const retry = log.lines().find((l) => l.msg === 'download attempt failed; retrying')
  t.match(retry, { statusCode: 503, retryAfterMs: 1000, delayMs: 1000, attempt: 1 })
})

t.test('Retry-After is capped by maxRetryDelayMs', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(503, { 'retry-after': '3600' }).end() },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const log = captureLog()
  await download(options(server.url(), { logger: log.logger, maxRetryDelayMs: 20 }), new RecordingSink())
  t.match(log.lines().find((l) => l.msg === 'download attempt failed; retrying'), { retryAfterMs: 3_600_000, delayMs: 20 })
})

t.test('429 with Retry-After as an HTTP date is retried', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(429, { 'retry-after': new Date(Date.now() - 5000).toUTCString() }).end() },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const log = captureLog()
  const result = await download(options(server.url(), { logger: log.logger }), new RecordingSink())
  t.equal(result.attempts, 2)
  t.match(log.lines().find((l) => l.msg === 'download attempt failed; retrying'), { statusCode: 429, retryAfterMs: 0, delayMs: 0 })
})

t.test('408 is retried', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(408).end() },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const result = await download(options(server.url()), new RecordingSink())
  t.equal(result.attempts, 2)
})

t.test('404 fails at once: the server saw exactly 1 request', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(404).end() })
  t.teardown(server.close)
  const log = captureLog()
  const err = await failure(download(options(server.url(), { logger: log.logger }), new RecordingSink()))
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
  t.match(log.lines().find((l) => l.msg === 'download failed'), { statusCode: 404, attempt: 1 })
})

t.test('401 without the header: DOWNLOAD_FAILED after 1 request', async (t) => {
  const server = await startScriptedServer((req, res) => {
    if (req.headers['x-token'] !== 't0k3n') {
      res.writeHead(401).end()
      return
    }
    serveFile(req, res, FILE)
  })
  t.teardown(server.close)
  const err = await failure(download(options(server.url()), new RecordingSink()))
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
  const ok = await download(options(server.url(), { headers: [{ name: 'x-token', value: 't0k3n' }] }), new RecordingSink())
  t.equal(ok.bytes, FILE.length, 'with the header it passes')
})

t.test('retries are exhausted after maxAttempts: DOWNLOAD_FAILED', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(502).end() })
  t.teardown(server.close)
  const err = await failure(download(options(server.url()), new RecordingSink()))
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 6, 'default: the first try and 5 retries')
})

t.test('a body shorter than its Content-Length is resumed', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => sendBody(res.writeHead(200, { 'content-length': '1000', etag: ETAG }), testFile(1000), { cutAfterBytes: 500 }),
    (req, res) => serveFile(req, res, testFile(1000), { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(result, { bytes: 1000, digestHex: sha256(testFile(1000)), contentLength: 1000, attempts: 2, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=500-')
  t.ok(sink.data.equals(testFile(1000)))
})

t.test('a body always shorter than its Content-Length: DOWNLOAD_FAILED after maxAttempts', async (t) => {
  const server = await startScriptedServer((_req, res) => {
    sendBody(res.writeHead(200, { 'content-length': '1000' }), testFile(1000), { cutAfterBytes: 500 })
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const err = await failure(download(options(server.url(), { maxAttempts: 3 }), sink))
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 3)
  t.equal(sink.count('rewind'), 2, 'no validator: each attempt starts over')
})

t.test('a stalled body fails after idleTimeoutMs, then resumes', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, stallAfterBytes: 30_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const log = captureLog()
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256', idleTimeoutMs: 200, logger: log.logger }), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=30000-')
  t.equal(sink.count('rewind'), 0)
  t.match(log.lines().find((l) => l.msg === 'download attempt failed; retrying'), { code: 'UND_ERR_BODY_TIMEOUT' })
})

t.test('stalled headers fail after idleTimeoutMs, then are retried', async (t) => {
  const server = await startScriptedServer([
    () => { /* never answers */ },
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const result = await download(options(server.url(), { idleTimeoutMs: 200 }), new RecordingSink())
  t.equal(result.attempts, 2)
})

t.test('connection refused is retried, then DOWNLOAD_FAILED', async (t) => {
  // A port that was just free: listen, note it, close.
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const address = probe.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  await new Promise<void>((resolve) => probe.close(() => resolve()))
  const log = captureLog()
  const err = await failure(download(options(`http://127.0.0.1:${port}/x`, { maxAttempts: 3, logger: log.logger }), new RecordingSink()))
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  const attempts = log.lines().filter((l) => l.code === 'ECONNREFUSED')
  t.equal(attempts.length, 3, 'three attempts, each logged with its errno code')
})
