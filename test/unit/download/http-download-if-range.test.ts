import { createHash } from 'node:crypto'
import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { expectInstallError } from '../../helpers/tap.js'
import { RecordingSink, sendBody, serveFile, startScriptedServer, testFile } from '../../helpers/scripted-server.js'

const FILE = testFile(150_000)
const ETAG = '"v1"'
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT'

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, digestType: 'sha256', ifRange: ETAG, ...more }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

t.test('ifRange matching: asked as bytes=0- with If-Range, the 206 is the whole run', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: ETAG }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 1, validator: ETAG })
  t.equal(server.requests[0]?.headers.range, 'bytes=0-')
  t.equal(server.requests[0]?.headers['if-range'], ETAG)
  t.same(sink.events.filter((e) => e.type !== 'write'), [{ type: 'begin', sizeBytes: FILE.length }])
  t.ok(sink.data.equals(FILE))
})

t.test('ifRange a Last-Modified: the same, and the run\'s validator is the one given', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: 'W/"weak"', lastModified: LAST_MODIFIED }))
  t.teardown(server.close)
  const result = await download(options(server.url(), { ifRange: LAST_MODIFIED }), new RecordingSink())
  t.equal(result.digestHex, sha256(FILE))
  t.equal(result.validator, LAST_MODIFIED)
  t.equal(server.requests[0]?.headers['if-range'], LAST_MODIFIED)
})

t.test('ifRange not matching (200, another ETag): IMAGE_CHANGED, the sink never called, not retried', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, testFile(120_000, 3), { etag: '"v2"' }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const message = await expectInstallError(t, download(options(server.url()), sink), 'IMAGE_CHANGED')
  t.equal(message, `Could not download image located: \`${server.url()}\`, the image changed while it was being read: ` +
    'the server sent the whole file of another version.')
  t.same(sink.events, [], 'neither begin nor a slab')
  t.equal(server.requests.length, 1)
})

t.test('ifRange, a 200 without any validator: IMAGE_CHANGED (nothing shows it is the same file)', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const sink = new RecordingSink()
  await expectInstallError(t, download(options(server.url()), sink), 'IMAGE_CHANGED')
  t.same(sink.events, [])
})

t.test('ifRange, a server that ignores Range but shows the same ETag (200): the same file, taken whole', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: ETAG, ranges: false }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.equal(result.validator, ETAG)
})

t.test('ifRange, a 206 with another ETag: IMAGE_CHANGED, the sink never called', async (t) => {
  const server = await startScriptedServer((_req, res) => {
    sendBody(res.writeHead(206, { etag: '"v2"', 'content-range': `bytes 0-${FILE.length - 1}/${FILE.length}` }), FILE)
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const message = await expectInstallError(t, download(options(server.url()), sink), 'IMAGE_CHANGED')
  t.match(message, /the server sent bytes of another version \(another ETag\)\.$/)
  t.same(sink.events, [])
  t.equal(server.requests.length, 1, 'not retried')
})

t.test('ifRange, a reset in the middle: resumed with the same If-Range, every byte once', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 70_001 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.same(server.requests.map((r) => [r.headers.range, r.headers['if-range']]), [['bytes=0-', ETAG], ['bytes=70001-', ETAG]])
  t.equal(sink.count('rewind'), 0)
  t.ok(sink.data.equals(FILE), 'exact bytes, none twice')
})

t.test('ifRange, the file changed before a resume (200, another ETag): IMAGE_CHANGED, no rewind to the other file', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 70_001 }),
    (req, res) => serveFile(req, res, testFile(120_000, 3), { etag: '"v2"' }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  await expectInstallError(t, download(options(server.url()), sink), 'IMAGE_CHANGED')
  t.equal(sink.count('rewind'), 0)
  t.ok(sink.data.length <= 70_001 && sink.data.equals(FILE.subarray(0, sink.data.length)), 'only bytes of the version asked')
  t.equal(server.requests.length, 2)
})
