// A static file server on 127.0.0.1 for the demo and the benchmarks: Range + If-Range (ETag),
// optional Basic auth. Prints "listening http://127.0.0.1:PORT" once ready.
// Usage: node dist/scripts/serve-files.js DIR [--port N] [--auth user:password]
import { createReadStream, promises as fs } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join, normalize } from 'node:path'
import { parseArgs } from 'node:util'
import { answerRange } from './byte-range.js'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { port: { type: 'string', default: '0' }, auth: { type: 'string' } } })
const root = positionals[0] ?? usage()
const expectedAuth = values.auth === undefined ? undefined : `Basic ${Buffer.from(values.auth).toString('base64')}`

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
  createReadStream(path, { start: answer.start, end: answer.end - 1, highWaterMark: 1024 * 1024 })
    .on('error', () => res.destroy()) // unreadable, or gone since the stat
    .pipe(res)
}

server.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${(server.address() as AddressInfo).port}`)
})
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => server.close(() => process.exit(0)))

function usage (): never {
  console.error('usage: serve-files DIR [--port N] [--auth user:password]')
  process.exit(2)
}
