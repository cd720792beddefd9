// A static file server on 127.0.0.1 for the demo and the benchmarks: Range + If-Range (ETag),
// optional Basic auth, an optional cap on each response's speed (--rate: as object stores and
// CDNs cap each connection). Prints "listening http://127.0.0.1:PORT" once ready.
// Usage: node dist/scripts/serve-files.js DIR [--port N] [--auth user:password] [--rate BYTES_PER_SEC]
import { createReadStream, promises as fs, type ReadStream } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, normalize } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { answerRange } from './byte-range.js'

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string', default: '0' }, auth: { type: 'string' }, rate: { type: 'string' } },
})
const root = positionals[0] ?? usage()
const expectedAuth = values.auth === undefined ? undefined : `Basic ${Buffer.from(values.auth).toString('base64')}`
const rateBytesPerSecond = values.rate === undefined ? undefined : Number(values.rate)
if (rateBytesPerSecond !== undefined && !(Number.isSafeInteger(rateBytesPerSecond) && rateBytesPerSecond > 0)) usage()
/** Chunks of a capped response: small, so that its pace is smooth. */
const RATED_CHUNK_BYTES = 64 * 1024

const server = createServer((req, res) => {
  serve(req, res).catch((err: unknown) => {
    // A malformed path (decodeURIComponent's URIError) is the client's; nothing may end the server.
    if (res.headersSent) res.destroy()
    else res.writeHead(err instanceof URIError ? 400 : 500).end()
  })
})

async function serve (req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
    res.writeHead(401, { 'www-authenticate': 'Basic realm="images"' }).end()
    return
  }
  const path = join(root, normalize(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)).replace(/^(\.\.[/\\])+/, ''))
  const stat = await fs.stat(path).catch(() => undefined)
  if (stat === undefined || !stat.isFile()) {
    res.writeHead(404).end()
    return
  }
  const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`
  const answer = answerRange(req.headers, stat.size, etag)
  res.writeHead(answer.status, { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', ...answer.headers })
  if (req.method === 'HEAD' || answer.status === 416) {
    res.end()
    return
  }
  if (rateBytesPerSecond !== undefined) {
    await sendAtRate(createReadStream(path, { start: answer.start, end: answer.end - 1, highWaterMark: RATED_CHUNK_BYTES }), res, rateBytesPerSecond)
    return
  }
  createReadStream(path, { start: answer.start, end: answer.end - 1, highWaterMark: 1024 * 1024 })
    .on('error', () => res.destroy()) // unreadable, or gone since the stat
    .pipe(res)
}

/**
 * A token bucket per response, empty at the start and never holding more than one chunk: each
 * chunk is written once the tokens for it (bytesPerSecond since the response began) have come, so
 * no response, however short, goes faster than the cap (a new connection gets no burst). The read
 * stream is paused meanwhile (for await pulls the next chunk only when asked).
 */
async function sendAtRate (stream: ReadStream, res: ServerResponse, bytesPerSecond: number): Promise<void> {
  const startedMs = performance.now()
  let sent = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      sent += chunk.length
      const waitMs = startedMs + (sent / bytesPerSecond) * 1000 - performance.now()
      if (waitMs > 0) await sleep(waitMs)
      if (res.destroyed) return // the client went away: the loop's end closes the file
      if (!res.write(chunk)) await drained(res)
    }
    res.end()
  } catch {
    res.destroy() // unreadable, or gone since the stat
  }
}

/** The response can take more, or is gone. */
async function drained (res: ServerResponse): Promise<void> {
  // Gone already: its 'close' has been emitted, waiting for it would never end (and would hold the server open).
  if (res.destroyed) return
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

server.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}`)
})
// Answers under way are cut: a paced one may have minutes to go, and the caller asked us to stop.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  })
}

function usage (): never {
  console.error('usage: serve-files DIR [--port N] [--auth user:password] [--rate BYTES_PER_SEC]')
  process.exit(2)
}
