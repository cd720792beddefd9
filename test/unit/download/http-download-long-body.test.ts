import { createServer, type Server, type Socket } from 'node:net'
import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, testFile } from '../../helpers/scripted-server.js'
import type { TapTest } from '../../helpers/tap.js'

const BODY = testFile(300_000)

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

/**
 * A raw `net` server on 127.0.0.1: each connection gets `head` (CRLF line ends added), then
 * `body`, then `extra` (after `extraDelayMs`, when given), then the server closes.
 */
async function rawServer (t: TapTest, head: string, body: Buffer, extra: Buffer, extraDelayMs?: number): Promise<{ url: string; connections: () => number }> {
  let connections = 0
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    connections++
    sockets.add(socket)
    socket.on('error', () => {})
    socket.once('data', () => {
      const start = Buffer.from(`${head.replace(/\n/g, '\r\n')}\r\n`)
      if (extraDelayMs === undefined) {
        socket.end(Buffer.concat([start, body, extra]))
        return
      }
      socket.write(Buffer.concat([start, body]))
      setTimeout(() => socket.end(extra), extraDelayMs)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  return { url: `http://127.0.0.1:${port}/image.raw`, connections: () => connections }
}

const cases = [
  { name: 'HTTP/1.0', head: `HTTP/1.0 200 OK\nContent-Length: ${BODY.length}\n` },
  { name: 'HTTP/1.1 with Connection: close', head: `HTTP/1.1 200 OK\nContent-Length: ${BODY.length}\nConnection: close\n` },
]

for (const { name, head } of cases) {
  t.test(`${name}: a body longer than its Content-Length is refused, not truncated`, async (t) => {
    const server = await rawServer(t, head, BODY, Buffer.from('trailing garbage'))
    const sink = new RecordingSink()
    const log = captureLog()
    const err: unknown = await download(options(server.url, { logger: log.logger }), sink).catch((e: unknown) => e)
    t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', 'DOWNLOAD_FAILED')
    t.equal(server.connections(), 1, 'not retried')
    t.match(log.lines().find((l) => l.msg === 'download failed'), { reason: /more bytes than it announced/ })
  })

  t.test(`${name}: extra bytes that come later, before the close, are refused too`, async (t) => {
    const server = await rawServer(t, head, BODY, Buffer.from('x'), 100)
    const err: unknown = await download(options(server.url), new RecordingSink()).catch((e: unknown) => e)
    t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', 'DOWNLOAD_FAILED')
    t.equal(server.connections(), 1, 'not retried')
  })

  t.test(`${name}: a body of exactly its Content-Length is the image`, async (t) => {
    const server = await rawServer(t, head, BODY, Buffer.alloc(0))
    const sink = new RecordingSink()
    const result = await download(options(server.url), sink)
    t.equal(result.bytes, BODY.length)
    t.ok(sink.data.equals(BODY))
  })
}

/** A sink that takes its time: undici's parser is paused by backpressure while the server has already closed. */
class SlowSink extends RecordingSink {
  override async write (chunk: Buffer): Promise<void> {
    await super.write(chunk)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

for (const { name, head } of [
  { name: 'HTTP/1.0', head: 'HTTP/1.0 200 OK\nContent-Length: LENGTH\n' },
  { name: 'HTTP/1.1 with Connection: close', head: 'HTTP/1.1 200 OK\nContent-Length: LENGTH\nConnection: close\n' },
]) {
  t.test(`${name}: a server that closes while a slow sink still holds the body back gets every byte, no crash ` +
    '(undici asserted on a \'close\' before its parser had read the rest)', async (t) => {
    const body = testFile(8 * 1024 * 1024)
    const server = await rawServer(t, head.replace('LENGTH', String(body.length)), body, Buffer.alloc(0))
    const sink = new SlowSink()
    const result = await download(options(server.url), sink)
    t.equal(result.bytes, body.length)
    t.ok(sink.data.equals(body), 'every byte, in order')
    t.equal(server.connections(), 1, 'one connection, no retry')
  })
}
