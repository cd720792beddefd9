import { createHash } from 'node:crypto'
import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, serveFile, startScriptedServer, testFile, type Handler } from '../../helpers/scripted-server.js'

const FILE = testFile(100_000)
const ETAG = '"v1"'
const HEADERS = [{ name: 'X-Token', value: 't0k3n' }]

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: HEADERS, retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

function redirect (location: string, statusCode = 302): Handler {
  return (_req, res) => { res.writeHead(statusCode, { location }).end() }
}

/** `/r/N` redirects to `/r/N-1`; `/r/0` serves the file. */
const chain: Handler = (req, res) => {
  const n = Number(/^\/r\/(\d+)$/.exec(req.url ?? '')?.[1] ?? '0')
  if (n === 0) serveFile(req, res, FILE, { etag: ETAG })
  else redirect(`/r/${n - 1}`)(req, res, 0)
}

t.test('a chain of 5 redirects (301, 302, 303, 307, 308) is followed', async (t) => {
  const statuses = [301, 302, 303, 307, 308]
  const server = await startScriptedServer([
    ...statuses.map((s, i) => redirect(`/hop${i + 1}`, s)),
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url('/hop0'), { digestType: 'sha256' }), sink)
  t.equal(result.digestHex, createHash('sha256').update(FILE).digest('hex'))
  t.equal(result.attempts, 1)
  t.same(server.requests.map((r) => r.path), ['/hop0', '/hop1', '/hop2', '/hop3', '/hop4', '/hop5'])
})

t.test('6 redirects with maxRedirects 5 fail, without retry', async (t) => {
  const server = await startScriptedServer(chain)
  t.teardown(server.close)
  const err: unknown = await download(options(server.url('/r/6')), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 6, 'the sixth redirect is not followed')
})

t.test('maxRedirects is honoured', async (t) => {
  const server = await startScriptedServer(chain)
  t.teardown(server.close)
  const ok = await download(options(server.url('/r/2'), { maxRedirects: 2 }), new RecordingSink())
  t.equal(ok.bytes, FILE.length)
  const err: unknown = await download(options(server.url('/r/3'), { maxRedirects: 2 }), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
})

t.test("the customer's headers are not sent to another origin", async (t) => {
  const other = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(other.close)
  const server = await startScriptedServer(redirect(other.url('/bucket/image.raw?X-Amz-Signature=abc')))
  t.teardown(server.close)
  const log = captureLog()
  const result = await download(options(`http://user:pw@127.0.0.1:${server.port}/image.raw`, { logger: log.logger }), new RecordingSink())
  t.equal(result.bytes, FILE.length)
  t.equal(server.requests[0]?.headers['x-token'], 't0k3n', 'sent to the original origin')
  t.ok(server.requests[0]?.headers.authorization !== undefined)
  const forwarded = other.requests[0]?.headers
  t.equal(forwarded?.['x-token'], undefined, 'not sent to the other origin')
  t.equal(forwarded?.authorization, undefined, 'nor the URL credentials')
  t.equal(forwarded?.['accept-encoding'], 'identity', 'our own headers still are')
  t.match(forwarded?.['user-agent'], /^byoi-agent\//)
  t.notMatch(log.text(), 'abc', 'the redirect target is logged without its signature')
})

t.test('a same-origin redirect keeps the headers', async (t) => {
  const server = await startScriptedServer([
    redirect('/elsewhere/image.raw', 307),
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  await download(options(server.url()), new RecordingSink())
  t.equal(server.requests[1]?.path, '/elsewhere/image.raw')
  t.equal(server.requests[1]?.headers['x-token'], 't0k3n')
})

t.test('another host name for the same address is another origin', async (t) => {
  const other = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(other.close)
  const server = await startScriptedServer(redirect(`http://localhost:${other.port}/image.raw`))
  t.teardown(server.close)
  await download(options(server.url()), new RecordingSink())
  t.equal(other.requests[0]?.headers['x-token'], undefined)
})

t.test('a redirect to ftp:// fails at once', async (t) => {
  const server = await startScriptedServer(redirect('ftp://127.0.0.1/image.raw'))
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
})

t.test('a redirect without Location fails at once', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(302).end() })
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
})

t.test('a retry starts again from the original URL, and resumes through the redirect', async (t) => {
  const target = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 40_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(target.close)
  const server = await startScriptedServer(redirect(target.url('/signed?sig=1')))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.attempts, 2)
  t.equal(server.requests.length, 2, 'the original URL is asked again')
  t.equal(target.requests[1]?.headers.range, 'bytes=40000-')
  t.equal(sink.count('rewind'), 0)
  t.ok(sink.data.equals(FILE))
})
