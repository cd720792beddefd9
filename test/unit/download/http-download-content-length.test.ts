import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, startScriptedServer, testFile, writeRaw } from '../../helpers/scripted-server.js'

const BODY = testFile(1500)

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

/** A server whose every answer has this head (LF line ends, turned to CRLF) and BODY, then closes. */
async function rawServer (head: string): Promise<Awaited<ReturnType<typeof startScriptedServer>>> {
  return await startScriptedServer((req) => writeRaw(req, head, BODY))
}

t.test('a Content-Length of 2^60 is refused at once, not retried as an unknown size', async (t) => {
  // Not a safe integer: it used to be read as "no Content-Length", and each attempt then failed when the body ended early.
  const server = await rawServer(`HTTP/1.1 200 OK\nContent-Length: ${2n ** 60n}\n`)
  t.teardown(server.close)
  const sink = new RecordingSink()
  const log = captureLog()
  const err: unknown = await download(options(server.url(), { logger: log.logger }), sink).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED', 'DOWNLOAD_REFUSED')
  t.equal((err as Error).message, `Could not download image located: \`${server.url()}\`, the server sent an invalid Content-Length.`)
  t.equal(server.requests.length, 1, 'not retried')
  t.same(sink.events, [], 'begin() not called')
  t.match(log.lines().find((l) => l.msg === 'download failed'), { reason: /Content-Length 1152921504606846976/ })
})

t.test('two different Content-Length headers are refused at once', async (t) => {
  const server = await rawServer('HTTP/1.1 200 OK\nContent-Length: 1000\nContent-Length: 1500\n')
  t.teardown(server.close)
  const sink = new RecordingSink()
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED')
  t.match((err as Error).message, 'an invalid Content-Length')
  t.equal(server.requests.length, 1, 'not retried')
  t.same(sink.events, [])
})

t.test('a malformed Content-Length is refused at once', async (t) => {
  for (const value of ['12a', '-1', '99999999999999999999999']) {
    const server = await rawServer(`HTTP/1.1 200 OK\nContent-Length: ${value}\n`)
    const sink = new RecordingSink()
    const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
    await server.close()
    t.ok(isInstallError(err) && err.code === 'DOWNLOAD_REFUSED', value)
    t.equal(server.requests.length, 1, `${value}: not retried`)
    t.same(sink.events, [])
  }
})

t.test('the largest safe Content-Length reaches begin(), which may refuse it (too big for the disk)', async (t) => {
  const server = await rawServer(`HTTP/1.1 200 OK\nContent-Length: ${Number.MAX_SAFE_INTEGER}\n`)
  t.teardown(server.close)
  const tooBig = new Error('image too big for disk')
  const sink = new RecordingSink()
  let announced: number | undefined
  sink.begin = (sizeBytes) => {
    announced = sizeBytes
    throw tooBig
  }
  const err: unknown = await download(options(server.url()), sink).catch((e: unknown) => e)
  t.equal(err, tooBig, "the sink's own error")
  t.equal(announced, Number.MAX_SAFE_INTEGER)
  t.equal(server.requests.length, 1)
})
