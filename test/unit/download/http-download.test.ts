import { createHash } from 'node:crypto'
import t from 'tap'
import { download, type DigestType, type DownloadOptions } from '../../../agent/download/http-download.js'
import { userAgent } from '../../../agent/download/user-agent.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import {
  captureLog, RecordingSink, sendBody, serveFile, startScriptedServer, testFile, writeRaw,
} from '../../helpers/scripted-server.js'

const FILE = testFile(200_000)
const ETAG = '"v1"'

/** Short waits so failure paths run fast; generous idle timeout where nothing should stall. */
function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

t.test('plain 200: bytes and sha256 equal to node:crypto over the file', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: ETAG }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 1, validator: ETAG })
  t.ok(sink.data.equals(FILE))
  t.equal(sink.count('rewind'), 0)
  t.equal(server.requests.length, 1)
})

t.test('every digest type equals node:crypto, lower-case hex', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  for (const type of ['md5', 'sha1', 'sha256', 'sha512'] as DigestType[]) {
    const result = await download(options(server.url(), { digestType: type }), new RecordingSink())
    t.equal(result.digestHex, createHash(type).update(FILE).digest('hex'), type)
  }
})

t.test('no digestType: digestHex is undefined', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const result = await download(options(server.url()), new RecordingSink())
  t.equal(result.digestHex, undefined)
})

t.test('custom headers arrive at the server, with accept-encoding identity and our User-Agent', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  await download(options(server.url(), {
    headers: [
      { name: 'X-Token', value: 't0k3n' },
      { name: 'Authorization', value: 'Bearer abc.def' },
      { name: 'Accept-Encoding', value: 'gzip' },
    ],
  }), new RecordingSink())
  const headers = server.requests[0]?.headers
  t.equal(headers?.['x-token'], 't0k3n')
  t.equal(headers?.authorization, 'Bearer abc.def')
  t.equal(headers?.['accept-encoding'], 'identity', 'the customer cannot ask for an encoding: the digest is over the bytes as sent')
  t.equal(headers?.['user-agent'], userAgent)
  t.match(userAgent, /^byoi-agent\/\d+\.\d+\.\d+/)
})

t.test("the customer's User-Agent replaces ours", async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  await download(options(server.url(), { headers: [{ name: 'User-Agent', value: 'curl/8.0' }] }), new RecordingSink())
  t.equal(server.requests[0]?.headers['user-agent'], 'curl/8.0')
})

t.test('credentials in the URL are sent as Basic auth', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  await download(options(`http://user:s%40cret@127.0.0.1:${server.port}/x`), new RecordingSink())
  t.equal(server.requests[0]?.headers.authorization, `Basic ${Buffer.from('user:s@cret').toString('base64')}`)
  t.equal(server.requests[0]?.path, '/x')
})

t.test('chunked body without Content-Length: the end of the body is the end', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { chunked: true }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: undefined, attempts: 1, validator: undefined })
  t.same(sink.events[0], { type: 'begin', sizeBytes: undefined })
  t.ok(sink.data.equals(FILE))
})

t.test('begin() receives the Content-Length, once, before any byte', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const sink = new RecordingSink()
  await download(options(server.url()), sink)
  t.same(sink.events[0], { type: 'begin', sizeBytes: FILE.length })
  t.equal(sink.count('begin'), 1)
})

t.test('begin() receives the Content-Range total from a server that only answers 206', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { alwaysPartial: true, etag: ETAG }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(sink.events[0], { type: 'begin', sizeBytes: FILE.length })
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 1, validator: ETAG })
})

t.test('onProgress counts up to the total', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const seen: Array<{ bytes: number; totalBytes: number | undefined }> = []
  await download(options(server.url(), { onProgress: (p) => seen.push(p) }), new RecordingSink())
  t.ok(seen.length > 0)
  t.same(seen.at(-1), { bytes: FILE.length, totalBytes: FILE.length })
  t.ok(seen.every((p, i) => i === 0 || p.bytes > (seen[i - 1]?.bytes ?? 0)), 'increasing')
})

t.test('an empty file is a download of 0 bytes', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, Buffer.alloc(0)))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.same(result, { bytes: 0, digestHex: sha256(Buffer.alloc(0)), contentLength: 0, attempts: 1, validator: undefined })
  t.same(sink.events, [{ type: 'begin', sizeBytes: 0 }])
})

t.test('204 No Content is a failure, not retried', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(204).end() })
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
})

t.test('a body longer than its Content-Length is never a success', async (t) => {
  const server = await startScriptedServer((req) => {
    writeRaw(req, 'HTTP/1.1 200 OK\nContent-Length: 1000\nETag: "v1"\n', testFile(1500))
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1, 'a broken server is not asked again')
  t.ok(sink.data.length <= 1000, 'never more than announced given to the sink')
})

t.test('a 206 body longer than its Content-Range is never a success', async (t) => {
  const file = testFile(1000)
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, file, { etag: ETAG, cutAfterBytes: 400 }),
    (req) => writeRaw(
      req,
      `HTTP/1.1 206 Partial Content\nContent-Range: bytes 400-999/1000\nContent-Length: 600\nETag: ${ETAG}\n`,
      Buffer.concat([file.subarray(400), Buffer.from('trailing garbage')]),
    ),
  ])
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 2)
})

t.test('abort via AbortSignal mid-body rejects with AbortError, no retry', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { stallAfterBytes: 50_000 }))
  t.teardown(server.close)
  const controller = new AbortController()
  const sink = new RecordingSink(4096) // slabs that fill before the stall
  const write = sink.write.bind(sink)
  sink.write = async (chunk) => {
    await write(chunk)
    controller.abort()
  }
  const err: unknown = await download(options(server.url(), { signal: controller.signal }), sink).catch((e: unknown) => e)
  t.equal((err as Error).name, 'AbortError')
  t.equal(server.requests.length, 1)
})

t.test("abort with an Error as reason rethrows that Error", async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { stallAfterBytes: 50_000 }))
  t.teardown(server.close)
  const controller = new AbortController()
  const reason = new Error('job cancelled')
  const aborting = options(server.url(), { signal: controller.signal, onProgress: () => controller.abort(reason) })
  const err: unknown = await download(aborting, new RecordingSink()).catch((e: unknown) => e)
  t.equal(err, reason)
  t.equal(server.requests.length, 1)
})

t.test('abort while waiting to retry rejects at once with AbortError', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(503, { 'retry-after': '30' }).end() })
  t.teardown(server.close)
  const controller = new AbortController()
  const log = captureLog()
  const pending = download(options(server.url(), { signal: controller.signal, logger: log.logger }), new RecordingSink())
  // Abort once the first attempt has failed (the retry wait is 30 s).
  const poll = setInterval(() => { if (log.text().includes('retrying')) controller.abort() }, 5)
  const err: unknown = await pending.catch((e: unknown) => e)
  clearInterval(poll)
  t.equal((err as Error).name, 'AbortError')
  t.equal(server.requests.length, 1)
})

t.test('an already aborted signal sends no request', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const err: unknown = await download(options(server.url(), { signal: AbortSignal.abort() }), new RecordingSink()).catch((e: unknown) => e)
  t.equal((err as Error).name, 'AbortError')
  t.equal(server.requests.length, 0)
})

t.test('an error thrown by sink.write propagates unchanged and is not retried', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const boom = new Error('disk full')
  const sink = new RecordingSink()
  sink.write = async () => { throw boom }
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.equal(err, boom, 'the same object')
  t.equal(server.requests.length, 1)
})

t.test('an error thrown by sink.begin propagates unchanged, before any write', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const tooBig = new Error('image too big for disk')
  const sink = new RecordingSink()
  sink.begin = () => { throw tooBig }
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.equal(err, tooBig)
  t.equal(sink.count('write'), 0)
  t.equal(server.requests.length, 1)
})

t.test('an error thrown by sink.rewind propagates unchanged', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { cutAfterBytes: 10_000 }),
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const cannot = new Error('cannot rewind a pipe')
  const sink = new RecordingSink()
  sink.rewind = () => { throw cannot }
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.equal(err, cannot)
  t.equal(server.requests.length, 2)
})

t.test('a failure never shows credentials: not in the message, not in the log', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(404, 'Not Found').end('no such object') })
  t.teardown(server.close)
  const log = captureLog()
  const url = `http://user:secret@127.0.0.1:${server.port}/x?X-Amz-Signature=abc`
  const err: unknown = await download(options(url, {
    logger: log.logger,
    headers: [{ name: 'X-Auth-Token', value: 'h3ad3rv4lu3' }],
  }), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  const message = (err as Error).message
  t.notMatch(message, 'secret')
  t.notMatch(message, 'abc')
  t.match(message, `127.0.0.1:${server.port}/x`)
  t.equal(server.requests[0]?.headers['x-auth-token'], 'h3ad3rv4lu3', 'the header was sent')
  const logged = log.text()
  t.match(logged, 'HTTP 404', 'the cause is logged')
  for (const secret of ['secret', 'abc', 'h3ad3rv4lu3', Buffer.from('user:secret').toString('base64'), 'no such object']) {
    t.notMatch(logged, secret, `log holds no ${secret}`)
  }
})

t.test('an unsupported URL fails at once', async (t) => {
  for (const url of ['ftp://127.0.0.1/image.raw', 'not a url']) {
    const err: unknown = await download(options(url), new RecordingSink()).catch((e: unknown) => e)
    t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', url)
  }
})

t.test('a slow sink gets every byte once, in order (backpressure)', async (t) => {
  const server = await startScriptedServer((req, res) => sendBody(res.writeHead(200, { 'content-length': String(FILE.length) }), FILE, {}))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const write = sink.write.bind(sink)
  sink.write = async (chunk) => {
    await new Promise((resolve) => setTimeout(resolve, 1))
    await write(chunk)
  }
  const result = await download(options(server.url(), { digestType: 'sha256' }), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.ok(sink.data.equals(FILE))
})
