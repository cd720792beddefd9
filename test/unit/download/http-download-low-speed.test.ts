import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import t from 'tap'
import { download, type DownloadOptions } from '../../../agent/download/http-download.js'
import { isInstallError } from '../../../agent/errors/install-error.js'
import { captureLog, RecordingSink, serveFile, startScriptedServer, testFile } from '../../helpers/scripted-server.js'

const FILE = testFile(100_000)
const ETAG = '"v1"'

function options (url: string, more: Partial<DownloadOptions> = {}): DownloadOptions {
  return { url, headers: [], retryBaseDelayMs: 5, idleTimeoutMs: 10_000, ...more }
}

/** 200 with the whole Content-Length announced, then `bytesPerTick` every 10 ms: a trickle that never stalls. */
function trickle (res: ServerResponse, bytesPerTick: number): void {
  res.writeHead(200, { 'content-length': String(FILE.length), etag: ETAG })
  let sent = 0
  const timer = setInterval(() => {
    if (res.destroyed || sent >= FILE.length) {
      clearInterval(timer)
      return
    }
    res.write(FILE.subarray(sent, sent + bytesPerTick))
    sent += bytesPerTick
  }, 10)
  res.on('close', () => clearInterval(timer))
}

t.test('a body slower than the low-speed limit fails the attempt, which is resumed', async (t) => {
  const server = await startScriptedServer([
    (_req, res) => trickle(res, 100), // about 10 KB/s: never idle, far below the limit
    (req, res) => serveFile(req, res, FILE, { etag: ETAG }),
  ])
  t.teardown(server.close)
  const log = captureLog()
  const sink = new RecordingSink()
  const tuned = options(server.url(), { digestType: 'sha256', lowSpeedLimitBytesPerSecond: 1_000_000, lowSpeedTimeMs: 200, logger: log.logger })
  const result = await download(tuned, sink)
  t.equal(result.attempts, 2)
  t.equal(result.digestHex, createHash('sha256').update(FILE).digest('hex'))
  t.ok(sink.data.equals(FILE))
  t.match(server.requests[1]?.headers.range, /^bytes=\d+-$/, 'resumed')
  t.match(log.lines().find((l) => l.msg === 'download attempt failed; retrying'), { reason: /below the low-speed limit of 1000000 bytes\/s/ })
})

t.test('a body above the low-speed limit passes', async (t) => {
  const server = await startScriptedServer((_req, res) => trickle(res, 20_000))
  t.teardown(server.close)
  const result = await download(options(server.url(), { lowSpeedLimitBytesPerSecond: 1000, lowSpeedTimeMs: 20 }), new RecordingSink())
  t.equal(result.attempts, 1)
})

t.test('a low-speed limit of 0 turns the check off', async (t) => {
  const server = await startScriptedServer((_req, res) => trickle(res, 10_000))
  t.teardown(server.close)
  const result = await download(options(server.url(), { lowSpeedLimitBytesPerSecond: 0, lowSpeedTimeMs: 1 }), new RecordingSink())
  t.equal(result.attempts, 1)
})

t.test('the deadline fails the download at once, mid-body, not retried', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { etag: ETAG, stallAfterBytes: 1000 }))
  t.teardown(server.close)
  const log = captureLog()
  const err: unknown = await download(options(server.url(), { deadlineMs: 300, logger: log.logger }), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', 'DOWNLOAD_FAILED')
  t.equal(server.requests.length, 1, 'not retried')
  t.match(log.lines().find((l) => l.msg === 'download failed'), { reason: /deadline of 300 ms/ })
})

t.test('the deadline also ends a wait between attempts', async (t) => {
  const server = await startScriptedServer((_req, res) => { res.writeHead(503, { 'retry-after': '30' }).end() })
  t.teardown(server.close)
  const err: unknown = await download(options(server.url(), { deadlineMs: 300 }), new RecordingSink()).catch((e: unknown) => e)
  t.ok(isInstallError(err) && err.code === 'DOWNLOAD_FAILED', 'DOWNLOAD_FAILED, not AbortError')
  t.equal(server.requests.length, 1)
})

t.test('the caller\'s abort still wins over the deadline: AbortError', async (t) => {
  const server = await startScriptedServer((req, res) => serveFile(req, res, FILE, { stallAfterBytes: 1000 }))
  t.teardown(server.close)
  const controller = new AbortController()
  const aborting = options(server.url(), { deadlineMs: 60_000, signal: controller.signal, onProgress: () => controller.abort() })
  const err: unknown = await download(aborting, new RecordingSink()).catch((e: unknown) => e)
  t.equal((err as Error).name, 'AbortError')
})
