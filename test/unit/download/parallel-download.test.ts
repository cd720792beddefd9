import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import t from 'tap'
import { FIRST_PART_BYTES, parallelDownload, type ParallelDownloadOptions } from '../../../agent/download/parallel-download.js'
import type { Slab } from '../../../agent/download/slab-feed.js'
import { expectInstallError } from '../../helpers/tap.js'
import { captureLog, RecordingSink, serveFile, startScriptedServer, testFile, type ServeFileOptions } from '../../helpers/scripted-server.js'

const PART = 64 * 1024
/** 15 whole parts and 3 bytes: the last part is short. */
const FILE = testFile(15 * PART + 3)
const ETAG = '"v1"'

function options (url: string, more: Partial<ParallelDownloadOptions> = {}): ParallelDownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, digestType: 'sha256', partBytes: PART, ...more }
}

function sha256 (data: Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

/** The part a request asked for (its index), or undefined for a request without `bytes=N-M`. */
function partOf (req: IncomingMessage): number | undefined {
  const match = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '')
  return match === null ? undefined : Number(match[1]) / PART
}

const serve = (more: ServeFileOptions = {}, file = FILE) => (req: IncomingMessage, res: ServerResponse): void => {
  serveFile(req, res, file, { etag: ETAG, ...more })
}

for (const connections of [1, 4, 8]) {
  t.test(`${connections} connection(s): the file byte for byte, its digest, one begin, no rewind`, async (t) => {
    const server = await startScriptedServer(serve())
    t.teardown(server.close)
    const sink = new RecordingSink()
    const progress: number[] = []
    const result = await parallelDownload(options(server.url(), { connections, onProgress: (p) => progress.push(p.bytes) }), sink)
    t.ok(sink.data.equals(FILE), 'byte-equal')
    t.match(result, { bytes: FILE.length, digestHex: sha256(FILE), contentLength: FILE.length, validator: ETAG, connections })
    t.same(sink.events.filter((e) => e.type !== 'write'), [{ type: 'begin', sizeBytes: FILE.length }])
    t.same(progress, [...progress].sort((a, b) => a - b), 'progress only grows')
    t.equal(progress.at(-1), FILE.length)
    if (connections === 1) {
      t.equal(server.requests.length, 1, 'one GET')
      t.equal(server.requests[0]?.headers.range, undefined)
      return
    }
    t.equal(server.requests.length, 16, 'one request per part')
    t.equal(result.attempts, 16)
    t.equal(server.requests[0]?.headers.range, `bytes=0-${PART - 1}`, 'the first part first')
    t.equal(server.requests[0]?.headers['if-range'], undefined, 'without If-Range: nothing is known yet')
    const later = server.requests.slice(1)
    t.ok(later.every((r) => r.headers['if-range'] === ETAG), 'every later part guarded by the first answer\'s ETag')
    t.same(later.map((r) => r.headers.range).sort(), Array.from({ length: 15 }, (_, i) => {
      const start = (i + 1) * PART
      return `bytes=${start}-${Math.min(start + PART, FILE.length) - 1}`
    }).sort(), 'every other part once')
    t.ok(result.peakPartsHeld <= connections + 1, 'a part per connection and one more held, at most')
    t.ok(server.connections() <= connections + 1, `each worker's parts on its kept connection: ${server.connections()} connections for 16 requests`)
    await server.allClosed()
    t.equal(server.openConnections(), 0, 'every kept connection closed at the end')
  })
}

t.test('bytes past a part\'s answer on a kept connection: DOWNLOAD_FAILED, as on a connection of its own', async (t) => {
  const server = await startScriptedServer((req, res) => {
    serve()(req, res)
    // After part 3's body, on the connection kept alive: where the next answer would start.
    if (partOf(req) === 3) res.once('finish', () => { req.socket.write('HTTP/1.1 200 OK\r\ngarbage') })
  })
  t.teardown(server.close)
  const log = captureLog()
  await expectInstallError(t, parallelDownload(options(server.url(), { connections: 2, logger: log.logger }), new RecordingSink()), 'DOWNLOAD_FAILED')
  t.ok(log.lines().some((l) => / failed$/.test(String(l.msg)) && /more bytes than it announced/.test(String(l.reason))), 'the log says why')
  await server.allClosed()
})

t.test('parts longer than the first: the first part short (FIRST_PART_BYTES), the others after it', async (t) => {
  const partBytes = 2 * FIRST_PART_BYTES
  const file = testFile(2 * partBytes + FIRST_PART_BYTES + 3)
  const server = await startScriptedServer(serve({}, file))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 4, partBytes }), sink)
  t.ok(sink.data.equals(file))
  t.match(result, { digestHex: sha256(file), connections: 3 })
  const first = FIRST_PART_BYTES
  t.equal(server.requests[0]?.headers.range, `bytes=0-${first - 1}`)
  t.same(server.requests.slice(1).map((r) => r.headers.range).sort(), [
    `bytes=${first}-${first + partBytes - 1}`,
    `bytes=${first + partBytes}-${first + 2 * partBytes - 1}`,
    `bytes=${first + 2 * partBytes}-${file.length - 1}`,
  ].sort())
})

t.test('a file of one part: the first answer is the whole download', async (t) => {
  const small = testFile(1000)
  const server = await startScriptedServer(serve({}, small))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url()), sink)
  t.ok(sink.data.equals(small))
  t.match(result, { bytes: 1000, digestHex: sha256(small), connections: 1 })
  t.equal(server.requests.length, 1)
})

t.test('early parts arriving last: still delivered and hashed in order', async (t) => {
  // Parts 1 and 2 are answered only once part 4 has been sent whole: parts 3 and 4 arrive before them.
  let releaseEarly: () => void = () => {}
  const partFourSent = new Promise<void>((resolve) => { releaseEarly = resolve })
  const finished: number[] = []
  const server = await startScriptedServer((req, res) => {
    const part = partOf(req) ?? -1
    res.once('finish', () => {
      finished.push(part)
      if (part === 4) releaseEarly()
    })
    if (part === 1 || part === 2) void partFourSent.then(() => serve()(req, res))
    else serve()(req, res)
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 4 }), sink)
  t.ok(finished.indexOf(4) < finished.indexOf(1) && finished.indexOf(3) < finished.indexOf(2), 'parts 3 and 4 were sent before parts 1 and 2')
  t.ok(sink.data.equals(FILE), 'the sink got them in order')
  t.equal(result.digestHex, sha256(FILE), 'the digest is over the bytes in order')
})

t.test('a part whose connection is cut mid-way is fetched again, the file byte-equal', async (t) => {
  let cut = false
  const server = await startScriptedServer((req, res) => {
    if (partOf(req) === 5 && !cut) {
      cut = true
      serve({ cutAfterBytes: PART / 2 })(req, res)
      return
    }
    serve()(req, res)
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 4 }), sink)
  t.ok(sink.data.equals(FILE))
  t.equal(result.digestHex, sha256(FILE))
  t.equal(server.requests.filter((r) => r.headers.range === `bytes=${5 * PART}-${6 * PART - 1}`).length, 2, 'part 5 asked twice')
  t.equal(result.attempts, 17, 'one attempt more than parts')
  t.equal(sink.count('rewind'), 0, 'nothing else fetched again')
})

t.test('a server without Range: one GET of the whole file after the first answer (a 200) is dropped', async (t) => {
  const server = await startScriptedServer(serve({ ranges: false }))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 4 }), sink)
  t.ok(sink.data.equals(FILE))
  t.match(result, { digestHex: sha256(FILE), connections: 1 })
  t.equal(server.requests.length, 2)
  t.equal(server.requests[1]?.headers.range, undefined, 'the download: a plain GET')
})

t.test('a server without a validator: one connection (parts of two answers could be of two versions)', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 4 }), sink)
  t.ok(sink.data.equals(FILE))
  t.match(result, { digestHex: sha256(FILE), connections: 1, validator: undefined })
  t.equal(server.requests.length, 2, 'the first part, then one GET')
  t.equal(server.requests[1]?.headers.range, undefined)
})

t.test('a weak ETag is no validator either: one connection', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: 'W/"weak"' }))
  t.teardown(server.close)
  const result = await parallelDownload(options(server.url(), { connections: 4 }), new RecordingSink())
  t.equal(result.connections, 1)
  t.equal(result.digestHex, sha256(FILE))
})

t.test('a Last-Modified a second older than Date is a validator: parts', async (t) => {
  const lastModified = new Date(Date.now() - 60_000).toUTCString()
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { lastModified }))
  t.teardown(server.close)
  const result = await parallelDownload(options(server.url(), { connections: 4 }), new RecordingSink())
  t.match(result, { connections: 4, validator: lastModified, digestHex: sha256(FILE) })
  t.ok(server.requests.slice(1).every((r) => r.headers['if-range'] === lastModified))
})

t.test('an empty file: one GET says so (no byte 0 to ask for)', async (t) => {
  const server = await startScriptedServer(serve({}, Buffer.alloc(0)))
  t.teardown(server.close)
  const result = await parallelDownload(options(server.url(), { connections: 4 }), new RecordingSink())
  t.match(result, { bytes: 0, connections: 1 })
})

t.test('the file changing mid-download (another ETag): IMAGE_CHANGED, no request left open', async (t) => {
  const changed = testFile(FILE.length, 7)
  const server = await startScriptedServer((req, res, index) => {
    if (index < 6) serve()(req, res)
    else serveFile(req, res, changed, { etag: '"v2"' })
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  const message = await expectInstallError(t, parallelDownload(options(server.url(), { connections: 4 }), sink), 'IMAGE_CHANGED')
  t.match(message, /the image changed while it was being read/)
  t.notOk(sink.data.equals(FILE), 'not the whole file')
  t.ok(FILE.subarray(0, sink.data.length).equals(sink.data), 'only bytes of the first version reached the sink')
  await server.allClosed()
  t.equal(server.openConnections(), 0)
})

t.test('a part answered 200 of the same version (Range ignored from then on): rewound, one GET', async (t) => {
  const server = await startScriptedServer((req, res, index) => serve(index < 4 ? {} : { ranges: false })(req, res))
  t.teardown(server.close)
  const sink = new RecordingSink()
  const result = await parallelDownload(options(server.url(), { connections: 2 }), sink)
  t.ok(sink.data.equals(FILE))
  t.match(result, { digestHex: sha256(FILE), connections: 1 })
  t.equal(sink.count('begin'), 1, 'begun once')
  t.ok(sink.count('rewind') <= 1)
  t.equal(server.requests.at(-1)?.headers['if-range'], ETAG, 'the download guarded by the parts\' ETag')
})

t.test('abort mid-way: rejects with the abort, every request closed', async (t) => {
  const controller = new AbortController()
  // Parts after the first send half their bytes and stall; the abort comes once three are stalled.
  let stalled = 0
  const server = await startScriptedServer((req, res) => {
    if (partOf(req) === 0) {
      serve()(req, res)
      return
    }
    serve({ stallAfterBytes: PART / 2 })(req, res)
    if (++stalled === 3) controller.abort()
  })
  t.teardown(server.close)
  const sink = new RecordingSink()
  await t.rejects(parallelDownload(options(server.url(), { connections: 4, signal: controller.signal }), sink), { name: 'AbortError' })
  await server.allClosed()
  t.equal(server.openConnections(), 0, 'no connection left open')
})

t.test('the deadline over every part: DOWNLOAD_FAILED, said as download() says it', async (t) => {
  const server = await startScriptedServer((req, res) => serve(partOf(req) === 0 ? {} : { stallAfterBytes: 10 })(req, res))
  t.teardown(server.close)
  const log = captureLog()
  await expectInstallError(t,
    parallelDownload(options(server.url(), { connections: 4, deadlineMs: 300, logger: log.logger }), new RecordingSink()), 'DOWNLOAD_FAILED')
  t.match(log.lines().find((l) => l.msg === 'download failed'), { reason: 'not done within the deadline of 300 ms' })
  await server.allClosed()
})

t.test('memory bounded: a slow sink holds the parts back, at most one per connection and one more', async (t) => {
  const connections = 2
  const window = connections + 1
  let releaseSink: () => void = () => {}
  const sinkGate = new Promise<void>((resolve) => { releaseSink = resolve })
  let sinkBytes = 0
  const tooFar: number[] = []
  const server = await startScriptedServer((req, res) => {
    const part = partOf(req) ?? 0
    // A part is asked only while the window has room: fewer than `window` parts past what the sink took.
    if (part >= Math.floor(sinkBytes / PART) + window) tooFar.push(part)
    if (server.requests.length === window) releaseSink()
    serve()(req, res)
  })
  t.teardown(server.close)
  class SlowSink extends RecordingSink {
    override async take (slab: Slab): Promise<void> {
      await sinkGate
      await super.take(slab)
      sinkBytes += slab.data.length
    }
  }
  const sink = new SlowSink(PART)
  const result = await parallelDownload(options(server.url(), { connections }), sink)
  t.ok(sink.data.equals(FILE))
  t.same(tooFar, [], 'no part asked past the window')
  t.equal(result.peakPartsHeld, window, 'the window filled, and no more')
})

t.test('secrets: the customer\'s header and the URL\'s credentials never logged, the header sent with every part', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const log = captureLog()
  const url = server.url('/image.raw?X-Amz-Signature=sig-secret').replace('http://', 'http://user:pw-secret@')
  const result = await parallelDownload(options(url, { connections: 4, headers: [{ name: 'X-Token', value: 'tok-secret' }], logger: log.logger }),
    new RecordingSink())
  t.equal(result.digestHex, sha256(FILE))
  t.ok(server.requests.every((r) => r.headers['x-token'] === 'tok-secret' && r.headers.authorization !== undefined))
  for (const secret of ['tok-secret', 'pw-secret', 'sig-secret']) t.notMatch(log.text(), secret, `${secret} not logged`)
  t.match(log.lines().find((l) => l.msg === 'download in parts'), { parts: 16, connections: 4 })
})

t.test('connections out of range: RangeError', async (t) => {
  for (const connections of [0, 17, 1.5]) {
    await t.rejects(parallelDownload(options('http://127.0.0.1:1/x', { connections }), new RecordingSink()), RangeError)
  }
})
