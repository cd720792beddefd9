import { createHash } from 'node:crypto'
import t from 'tap'
import { download, type DownloadOptions, type DownloadSink } from '../../../agent/download/http-download.js'
import type { Slab } from '../../../agent/download/slab-feed.js'
import { MemoryImage } from '../../../agent/image/memory-image.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { RecordingSink, sendBody, serveFile, startScriptedServer, testFile } from '../../helpers/scripted-server.js'

const FILE = testFile(150_000)
const ETAG = '"5f3e-abcdef"'
/** Well before any Date the server sends: a strong validator (RFC 9110 §8.8.2.2). */
const LAST_MODIFIED = 'Wed, 21 Oct 2015 07:28:00 GMT'

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, digestType: 'sha256', ...more }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

t.test('reset at an offset: resumed with Range + If-Range (ETag), every byte once', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 70_001 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.equal(server.requests[0]?.headers.range, undefined)
  t.equal(server.requests[1]?.headers.range, 'bytes=70001-')
  t.equal(server.requests[1]?.headers['if-range'], ETAG)
  t.equal(sink.count('rewind'), 0)
  t.equal(sink.count('begin'), 1)
  t.ok(sink.data.equals(FILE), 'exact bytes, none twice')
})

t.test('several resets: each attempt resumes where the last one stopped', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 20_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 30_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.same(server.requests.map((r) => r.headers.range), [undefined, 'bytes=20000-', 'bytes=50000-'])
  t.ok(sink.data.equals(FILE))
})

t.test('resume guarded by Last-Modified when there is no strong ETag', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: 'W/"weak"', lastModified: LAST_MODIFIED, cutAfterBytes: 60_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: 'W/"weak"', lastModified: LAST_MODIFIED }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.equal(server.requests[1]?.headers.range, 'bytes=60000-')
  t.equal(server.requests[1]?.headers['if-range'], LAST_MODIFIED)
  t.equal(sink.count('rewind'), 0)
})

t.test('no validator: no Range is sent, the sink is rewound and the file taken from byte 0', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { cutAfterBytes: 60_000 }),
    (req, res) => serveFile(req, res, FILE),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: undefined })
  t.equal(server.requests[1]?.headers.range, undefined, 'a Range without If-Range could splice two versions')
  t.equal(sink.count('rewind'), 1)
  t.equal(sink.count('begin'), 1)
  t.ok(sink.data.equals(FILE))
})

t.test('a Last-Modified as recent as the Date is no validator', async (t) => {
  const now = new Date().toUTCString()
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { lastModified: now, cutAfterBytes: 60_000 }),
    (req, res) => serveFile(req, res, FILE, { lastModified: now }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  await download(options(server.url()), sink)
  t.equal(server.requests[1]?.headers.range, undefined)
  t.equal(sink.count('rewind'), 1)
  t.ok(sink.data.equals(FILE))
})

t.test('the server ignores Range (answers 200): rewind, and the result is still exact', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, ranges: false, cutAfterBytes: 60_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, ranges: false }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=60000-', 'a resume was asked')
  t.same(sink.events.filter((e) => e.type !== 'write'), [{ type: 'begin', sizeBytes: FILE.length }, { type: 'rewind' }])
  t.ok(sink.data.equals(FILE))
})

t.test('the file changed between attempts (If-Range fails, 200): the new file, from byte 0', async (t) => {
  const newer = testFile(120_000, 7)
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 60_000 }),
    (req, res) => serveFile(req, res, newer, { etag: '"v2"' }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: newer.length, digestHex: sha256(newer), contentLength: newer.length, attempts: 2, validator: '"v2"' })
  t.equal(sink.count('rewind'), 1)
  t.ok(sink.data.equals(newer))
})

t.test('a 206 from the wrong offset fails that attempt; the next starts over with rewind', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 60_000 }),
    (_req, res) => sendBody(res.writeHead(206, { etag: ETAG, 'content-range': `bytes 50000-${FILE.length - 1}/${FILE.length}` }), FILE.subarray(50_000)),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 3, validator: ETAG })
  t.equal(server.requests[2]?.headers.range, undefined, 'from scratch')
  t.equal(sink.count('rewind'), 1)
  t.ok(sink.data.equals(FILE))
})

t.test('a 206 for a file of another size fails that attempt; the next starts over', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 60_000 }),
    (_req, res) => sendBody(
      res.writeHead(206, { etag: ETAG, 'content-range': `bytes 60000-${FILE.length + 99}/${FILE.length + 100}` }),
      Buffer.alloc(FILE.length + 100 - 60_000),
    ),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.equal(sink.count('rewind'), 1)
  t.ok(sink.data.equals(FILE))
})

t.test('a 206 without Content-Range fails that attempt; the next starts over', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 60_000 }),
    (_req, res) => sendBody(res.writeHead(206, { etag: ETAG }), FILE.subarray(60_000)),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.ok(sink.data.equals(FILE))
})

t.test('416 on a resume: rewind and retry from byte 0', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 60_000 }),
    (_req, res) => { res.writeHead(416, { 'content-range': `bytes */${FILE.length}` }).end() },
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 3, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=60000-')
  t.equal(server.requests[2]?.headers.range, undefined)
  t.equal(sink.count('rewind'), 1)
  t.ok(sink.data.equals(FILE))
})

t.test('416 to a request without Range fails at once', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(416).end() })
  t.teardown(server.close)
  const err: unknown = await download(options(server.url()), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1)
})

t.test('a server that only answers 206 resumes too', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, alwaysPartial: true, cutAfterBytes: 45_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, alwaysPartial: true }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=45000-')
  t.equal(sink.count('rewind'), 0)
})

t.test('a 206 that stops before the end of the file: the rest is asked for next', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => sendBody(res.writeHead(206, { etag: ETAG, 'content-range': `bytes 0-99999/${FILE.length}` }), FILE.subarray(0, 100_000)),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, attempts: 2, validator: ETAG })
  t.equal(server.requests[1]?.headers.range, 'bytes=100000-')
  t.ok(sink.data.equals(FILE))
})

t.test('a chunked first answer (size unknown) resumes and learns the size from Content-Range', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, chunked: true, cutAfterBytes: 30_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url()), sink)
  t.equal(result.digestHex, sha256(FILE))
  t.equal(server.requests[1]?.headers.range, 'bytes=30000-')
  t.same(sink.events[0], { type: 'begin', sizeBytes: undefined })
  t.ok(sink.data.equals(FILE))
})

t.test('attempts that make progress do not use up the retries, but the total stays bounded', async (t) => {
  const MiB = 1024 * 1024
  const big = testFile(5 * MiB + 100)
  // Every answer breaks after 1 MiB: 6 attempts in all, more than maxAttempts (3), each resumed.
  const server = await startScriptedServer((req, res) => serveFile(req, res, big, { etag: ETAG, cutAfterBytes: MiB }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await download(options(server.url(), { maxAttempts: 3 }), sink)
  t.equal(result.attempts, 6)
  t.ok(sink.data.equals(big), 'every byte once')

  // No progress at all: stops after maxAttempts in a row.
  const stuck = await startScriptedServer((_req, res) => { res.writeHead(503).end() })
  t.teardown(stuck.close)
  await t.rejects(download(options(stuck.url(), { maxAttempts: 3 }), new RecordingSink()), { code: 'DOWNLOAD_FAILED' })
  t.equal(stuck.requests.length, 3)
})

/** A sink that keeps the download's slabs in a MemoryImage (as the install's memory mode does). */
function memorySink (): DownloadSink & { image: MemoryImage, runs: number } {
  const image = new MemoryImage(1024 * 1024)
  const sink = {
    image,
    runs: 0,
    begin: () => { sink.runs++ },
    slabBytes: () => 16 * 1024,
    take: async (slab: Slab) => { image.adopt(slab.data) },
    rewind: () => { sink.runs++; image.clear() },
  }
  return sink
}

t.test('slabs kept in memory: resumed and restarted runs give the digest of the file, hashed where the slabs lie', async (t) => {
  const newer = testFile(120_000, 9)
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 40_000 }),
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 30_000 }), // resumed at 40000, cut again
    (req, res) => serveFile(req, res, newer, { etag: '"v2"' }), // the file changed: from byte 0
  ])
  t.teardown(server.close)
  const sink = memorySink()
  const result = await download(options(server.url()), sink)
  t.same(result, { bytes: newer.length, digestHex: sha256(newer), contentLength: newer.length, attempts: 3, validator: '"v2"' })
  t.equal(sink.runs, 2, 'two runs: the first, and the one after the rewind')
  t.ok(sink.image.read(0, newer.length).equals(newer))
})
