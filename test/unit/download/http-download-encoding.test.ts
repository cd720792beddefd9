import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, serveFile, startScriptedServer, testFile } from '../../helpers/scripted-server.js'

const FILE = testFile(50_000)

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

t.test('Content-Encoding gzip is refused before any byte reaches the sink, not retried', async (t) => {
  // As S3 answers for an object stored with `Content-Encoding: gzip`, though we asked for identity.
  const server = await startScriptedServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(FILE.length), 'content-encoding': 'gzip', etag: '"v1"' }).end(FILE)
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const log = captureLog()
  const url = `http://user:s3cret@127.0.0.1:${server.port}/image.raw`
  const err: unknown = await download(options(url, { logger: log.logger }), sink).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED', 'DOWNLOAD_REFUSED')
  t.equal((err as Error).message, `Could not download image located: \`http://127.0.0.1:${server.port}/image.raw\`, ` +
    'the server sent Content-Encoding gzip, expected: identity.')
  t.same(sink.events, [], 'begin() not called, no byte written')
  t.equal(server.requests.length, 1, 'not retried')
  t.match(log.lines().find((l) => l.msg === 'download failed'), { reason: /Content-Encoding gzip/ })
  t.notMatch(log.text(), 's3cret')
})

t.test('a 206 resume answered with Content-Encoding is refused too', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: '"v1"', cutAfterBytes: 20_000 }),
    (_req, res) => {
      res.writeHead(206, {
        'content-range': `bytes 20000-${FILE.length - 1}/${FILE.length}`,
        'content-length': String(FILE.length - 20_000),
        'content-encoding': 'br',
        etag: '"v1"',
      }).end(FILE.subarray(20_000))
    },
  ])
  t.teardown(server.close)
  const sink = new RecordingSink(1000) // the 20 000 bytes before the cut fill whole slabs
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED')
  t.match((err as Error).message, 'Content-Encoding br, expected: identity')
  t.equal(sink.data.length, 20_000, 'nothing of the encoded body given to the sink')
  t.equal(server.requests.length, 2)
})

t.test('Content-Encoding identity (any case) or empty is the image as it is', async (t) => {
  for (const value of ['identity', 'Identity', '']) {
    const server = await startScriptedServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(FILE.length), 'content-encoding': value }).end(FILE)
    })
    const sink = new RecordingSink()
    const result = await download(options(server.url()), sink)
    await server.close()
    t.equal(result.bytes, FILE.length, JSON.stringify(value))
    t.ok(sink.data.equals(FILE))
  }
})

t.test('an encoding name shown in the message is cut to a short printable token', async (t) => {
  const server = await startScriptedServer((_req, res) => {
    res.writeHead(200, { 'content-length': '3', 'content-encoding': `x-${'a'.repeat(200)}` }).end('abc')
  })
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED')
  t.ok((err as Error).message.length < 200, 'short')
})
