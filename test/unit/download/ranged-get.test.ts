import { createServer, type Server, type Socket } from 'node:net'
import t from 'tap'
import { fetchRange, type RangeOptions } from '../../../agent/download/ranged-get.js'
import { expectInstallError, type TapTest } from '../../helpers/tap.js'
import { captureLog, sendBody, serveFile, startScriptedServer, testFile, type Handler } from '../../helpers/scripted-server.js'

const FILE = testFile(100_000)
const ETAG = '"v1"'
const HEADERS = [{ name: 'X-Token', value: 't0k3n-secret' }]

function options (url: string, start: number, end: number, more: Partial<RangeOptions> = {}): RangeOptions {
  return { url, headers: HEADERS, start, end, retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

const serve = (file = FILE, etag = ETAG): Handler => (req, res) => serveFile(req, res, file, { etag })

t.test('a range in the middle: exactly its bytes, the size and the validator', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const result = await fetchRange(options(server.url(), 10_000, 20_000))
  t.equal(result.kind, 'range')
  if (result.kind !== 'range') return
  t.ok(result.data.equals(FILE.subarray(10_000, 20_000)), 'bytes 10000 to 19999')
  t.same({ ...result, data: undefined }, { kind: 'range', data: undefined, totalBytes: FILE.length, validator: ETAG, attempts: 1 })
  t.equal(server.requests[0]?.headers.range, 'bytes=10000-19999')
  t.equal(server.requests[0]?.headers['if-range'], undefined, 'no If-Range without a validator')
  t.equal(server.requests[0]?.headers['accept-encoding'], 'identity')
})

t.test('a range past the end of the file is clipped there', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const result = await fetchRange(options(server.url(), 90_000, 120_000))
  t.ok(result.kind === 'range' && result.data.equals(FILE.subarray(90_000)), 'the last 10000 bytes')
  t.equal(result.totalBytes, FILE.length)
})

t.test('a range wholly past the end (HTTP 416) fails at once, the file\'s size in the log', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const log = captureLog()
  await expectInstallError(t, fetchRange(options(server.url(), 100_000, 100_512, { logger: log.logger })), 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1, 'not retried')
  t.match(log.lines().find((l) => l.msg === 'range fetch failed'), { reason: /HTTP 416: bytes 100000-100511 lie past the end of the file, of 100000 bytes/ })
})

t.test('through a redirect to another origin: the range asked there, the customer\'s headers and credentials not', async (t) => {
  const other = await startScriptedServer(serve())
  t.teardown(other.close)
  const server = await startScriptedServer((_req, res) => { res.writeHead(302, { location: other.url('/bucket/image.qcow2?X-Amz-Signature=abc') }).end() })
  t.teardown(server.close)
  const log = captureLog()
  const result = await fetchRange(options(`http://user:pw-secret@127.0.0.1:${server.port}/image.qcow2`, 0, 512, { logger: log.logger }))
  t.ok(result.kind === 'range' && result.data.equals(FILE.subarray(0, 512)))
  t.equal(server.requests[0]?.headers['x-token'], 't0k3n-secret', 'sent to the original origin')
  t.ok(server.requests[0]?.headers.authorization !== undefined, 'the URL credentials as Basic auth there')
  const forwarded = other.requests[0]?.headers
  t.equal(forwarded?.range, 'bytes=0-511')
  t.equal(forwarded?.['x-token'], undefined, 'not sent to the other origin')
  t.equal(forwarded?.authorization, undefined, 'nor the URL credentials')
  for (const secret of ['t0k3n-secret', 'pw-secret', 'abc']) t.notMatch(log.text(), secret, `${secret} not logged`)
})

const BIG_BYTES = 64 * 1024 * 1024

/**
 * A server without ranges whose body (64 MiB, far more than socket buffers hold) is written as the
 * client takes it: resolves, once the connection closed, with the body bytes written by then.
 */
async function bigServerWithoutRanges (t: TapTest, etag = ETAG): Promise<{ url: string; written: Promise<number> }> {
  const chunk = Buffer.alloc(64 * 1024)
  let closed: (written: number) => void = () => {}
  const server = await startScriptedServer((_req, res) => {
    let written = 0
    res.on('close', () => { closed(written) })
    res.writeHead(200, { etag, 'content-length': String(BIG_BYTES) })
    const more = (): void => {
      while (written < BIG_BYTES && !res.destroyed) {
        written += chunk.length
        if (!res.write(chunk)) {
          res.once('drain', more)
          return
        }
      }
      if (written >= BIG_BYTES) res.end()
    }
    more()
  })
  t.teardown(server.close)
  return { url: server.url(), written: new Promise((resolve) => { closed = resolve }) }
}

t.test('a server that does not do ranges (200): kind \'whole\', the body dropped unread', async (t) => {
  const server = await bigServerWithoutRanges(t)
  const result = await fetchRange(options(server.url, 0, 512))
  t.same(result, { kind: 'whole', totalBytes: BIG_BYTES, validator: ETAG, attempts: 1 })
  const written = await server.written
  t.ok(written < BIG_BYTES, `the connection was closed before the server could send the body (${written} bytes written)`)
})

t.test('If-Range matching: 206, the validator given kept', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const result = await fetchRange(options(server.url(), 512, 1024, { validator: ETAG, totalBytes: FILE.length }))
  t.ok(result.kind === 'range' && result.data.equals(FILE.subarray(512, 1024)))
  t.equal(result.validator, ETAG)
  t.equal(server.requests[0]?.headers['if-range'], ETAG)
})

t.test('If-Range not matching (200 with another ETag): IMAGE_CHANGED, not retried', async (t) => {
  const server = await startScriptedServer(serve(testFile(100_000, 5), '"v2"'))
  t.teardown(server.close)
  const message = await expectInstallError(t, fetchRange(options(server.url(), 0, 512, { validator: ETAG })), 'IMAGE_CHANGED')
  t.equal(message, `Could not download image located: \`${server.url()}\`, the image changed while it was being read: ` +
    'the server sent the whole file of another version.')
  t.equal(server.requests.length, 1)
})

t.test('If-Range sent, the server ignores Range but shows the same ETag (200): kind \'whole\', not a change', async (t) => {
  const server = await bigServerWithoutRanges(t)
  const result = await fetchRange(options(server.url, 0, 512, { validator: ETAG }))
  t.equal(result.kind, 'whole')
  t.ok(await server.written < BIG_BYTES, 'the body dropped unread')
})

t.test('a 206 with another ETag than the validator given: IMAGE_CHANGED', async (t) => {
  const server = await startScriptedServer((_req, res) => {
    sendBody(res.writeHead(206, { etag: '"v2"', 'content-range': `bytes 0-511/${FILE.length}`, 'content-length': '512' }), FILE.subarray(0, 512))
  })
  t.teardown(server.close)
  const message = await expectInstallError(t, fetchRange(options(server.url(), 0, 512, { validator: ETAG })), 'IMAGE_CHANGED')
  t.match(message, /the server sent bytes of another version \(another ETag\)\.$/)
  t.equal(server.requests.length, 1, 'not retried')
})

t.test('a 206 for a file of another size than the one read: IMAGE_CHANGED', async (t) => {
  const server = await startScriptedServer(serve())
  t.teardown(server.close)
  const message = await expectInstallError(t, fetchRange(options(server.url(), 0, 512, { validator: ETAG, totalBytes: FILE.length + 1 })), 'IMAGE_CHANGED')
  t.match(message, /its size is now 100000 bytes, not 100001\.$/)
})

t.test('a 206 whose Content-Range is not the range asked: retried, then DOWNLOAD_FAILED', async (t) => {
  const server = await startScriptedServer((_req, res) => {
    sendBody(res.writeHead(206, { etag: ETAG, 'content-range': `bytes 0-511/${FILE.length}` }), FILE.subarray(0, 512))
  })
  t.teardown(server.close)
  const log = captureLog()
  await expectInstallError(t, fetchRange(options(server.url(), 1024, 2048, { maxAttempts: 3, logger: log.logger })), 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 3, 'every attempt')
  t.match(log.lines().find((l) => l.msg === 'range fetch failed'), { reason: 'HTTP 206 for bytes 0-511 where bytes 1024-2047 were asked' })
})

t.test('a 206 cut short is retried, and the second answer taken', async (t) => {
  const server = await startScriptedServer([
    (req, res) => serveFile(req, res, FILE, { etag: ETAG, cutAfterBytes: 100 }),
    serve(),
  ])
  t.teardown(server.close)
  const result = await fetchRange(options(server.url(), 0, 4096))
  t.ok(result.kind === 'range' && result.data.equals(FILE.subarray(0, 4096)))
  t.equal(result.attempts, 2)
})

t.test('a 503 is retried (its Retry-After honoured), then the range taken', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => { res.writeHead(503, { 'retry-after': '0' }).end() },
    serve(),
  ])
  t.teardown(server.close)
  const result = await fetchRange(options(server.url(), 0, 100))
  t.ok(result.kind === 'range' && result.data.equals(FILE.subarray(0, 100)))
  t.equal(server.requests.length, 2)
})

/** A raw `net` server: each connection gets `response` (CRLF line ends added to its head), then the close. */
async function rawServer (t: TapTest, head: string, body: Buffer): Promise<{ url: string; connections: () => number }> {
  let connections = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('data', () => { socket.end(Buffer.concat([Buffer.from(`${head.replace(/\n/g, '\r\n')}\r\n`), body])) })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { url: `http://127.0.0.1:${port}/image.qcow2`, connections: () => connections }
}

t.test('a body longer than the range (no Content-Length, ended by the close): refused, not retried', async (t) => {
  const server = await rawServer(t, `HTTP/1.1 206 Partial Content\nContent-Range: bytes 0-99/${FILE.length}\nConnection: close\n`, FILE.subarray(0, 5000))
  const log = captureLog()
  await expectInstallError(t, fetchRange(options(server.url, 0, 100, { logger: log.logger })), 'DOWNLOAD_FAILED')
  t.equal(server.connections(), 1, 'not retried')
  t.match(log.lines().find((l) => l.msg === 'range fetch failed'), { reason: 'the body is longer than the 100 bytes of its Content-Range' })
})

t.test('a body longer than its Content-Length: refused, not retried', async (t) => {
  const server = await rawServer(t,
    `HTTP/1.1 206 Partial Content\nContent-Range: bytes 0-99/${FILE.length}\nContent-Length: 100\nConnection: close\n`, FILE.subarray(0, 5000))
  const log = captureLog()
  await expectInstallError(t, fetchRange(options(server.url, 0, 100, { logger: log.logger })), 'DOWNLOAD_FAILED')
  t.equal(server.connections(), 1, 'not retried')
  t.match(log.lines().find((l) => l.msg === 'range fetch failed'), { reason: /more bytes than it announced/ })
})

t.test('a range that is not start < end, integers from 0, is the caller\'s bug', async (t) => {
  for (const [start, end] of [[10, 10], [10, 5], [-1, 5], [0.5, 5]] as const) {
    await t.rejects(fetchRange(options('http://127.0.0.1:1/x', start, end)), RangeError, `${start} to ${end}`)
  }
})
