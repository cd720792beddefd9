/**
 * The image server of the e2e harness: files from one folder on 127.0.0.1, with what a customer's
 * server has (ETag, Range with If-Range, Basic auth), and one fault to script: cut the connection
 * once, mid-body, after a given number of bytes (the download must resume from there).
 */
import { createReadStream, promises as fs } from 'node:fs'
import { answerRange } from '../../scripts/byte-range.js'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { basename, join } from 'node:path'

export interface ImageServerOptions {
  dir: string
  /** `user:password`: every request needs `Authorization: Basic …` with it. */
  basicAuth?: string
  /** The first GET of the image is cut (socket destroyed) after this many body bytes. */
  cutOnceAfterBytes?: number
}

export interface ServedRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  status: number
  /** Body bytes sent, and whether the connection was cut on purpose. */
  sentBytes: number
  cut: boolean
}

export interface ImageServer {
  port: number
  requests: ServedRequest[]
  close: () => Promise<void>
}

export async function startImageServer (options: ImageServerOptions): Promise<ImageServer> {
  const expectedAuth = options.basicAuth === undefined ? undefined : `Basic ${Buffer.from(options.basicAuth).toString('base64')}`
  const requests: ServedRequest[] = []
  let cutDone = false
  const server: Server = createServer((req, res) => {
    (async () => {
      const path = new URL(req.url ?? '/', 'http://image-server').pathname
      const entry: ServedRequest = { method: req.method ?? '', path, headers: req.headers, status: 0, sentBytes: 0, cut: false }
      requests.push(entry)
      const answer = (status: number, headers: Record<string, string> = {}): void => {
        entry.status = status
        res.writeHead(status, headers).end()
      }
      if (expectedAuth !== undefined && req.headers.authorization !== expectedAuth) {
        answer(401, { 'www-authenticate': 'Basic realm="images"' })
        return
      }
      const file = join(options.dir, basename(decodeURIComponent(path)))
      const stat = await fs.stat(file).catch(() => undefined)
      if (stat === undefined || !stat.isFile()) {
        answer(404)
        return
      }
      const etag = `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`
      const ranged = answerRange(req.headers, stat.size, etag)
      entry.status = ranged.status
      res.writeHead(ranged.status, { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream', ...ranged.headers })
      if (ranged.status === 416) {
        res.end()
        return
      }
      const { start, end } = ranged
      if (req.method === 'HEAD') {
        res.end()
        return
      }
      const cutAt = !cutDone && req.method === 'GET' && options.cutOnceAfterBytes !== undefined ? options.cutOnceAfterBytes : undefined
      if (cutAt !== undefined) cutDone = true
      const body = createReadStream(file, { start, end: (cutAt === undefined ? end : Math.min(end, start + cutAt)) - 1, highWaterMark: 1024 * 1024 })
      body.on('data', (chunk) => { entry.sentBytes += chunk.length })
      body.on('error', () => res.destroy())
      if (cutAt === undefined) {
        body.pipe(res)
        return
      }
      // The fault: the headers promised the whole file; the socket goes after cutAt bytes.
      body.pipe(res, { end: false })
      body.on('end', () => {
        entry.cut = true
        setTimeout(() => res.socket?.destroy(), 100)
      })
    })().catch((err: unknown) => {
      // A malformed path (decodeURIComponent's URIError) is the client's; nothing may end the harness.
      if (res.headersSent) res.destroy()
      else res.writeHead(err instanceof URIError ? 400 : 500).end()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    port,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
