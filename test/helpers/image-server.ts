import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface ImageServerOptions {
  /** The file served at every path. */
  image: Buffer
  /** Attempt numbers (0-based) whose body is cut by a socket reset after this many bytes. */
  resetAfter?: Record<number, number>
  /** Send no Content-Length (chunked). */
  chunked?: boolean
  /** Answer 401 unless this exact Authorization header is sent. */
  authorization?: string
}

export interface ImageServer {
  url: (path?: string) => string
  requests: IncomingMessage['headers'][]
  close: () => Promise<void>
}

/** A small HTTP server on 127.0.0.1 serving one image, with Range + ETag, and scripted resets. */
export async function startImageServer (options: ImageServerOptions): Promise<ImageServer> {
  const { image } = options
  const etag = `"${createHash('sha1').update(image).digest('hex')}"`
  const requests: IncomingMessage['headers'][] = []
  const server: Server = createServer((req, res) => {
    const attempt = requests.length
    requests.push(req.headers)
    if (options.authorization !== undefined && req.headers.authorization !== options.authorization) {
      res.writeHead(401, { 'content-type': 'text/plain' }).end('unauthorized')
      return
    }
    let start = 0
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    if (range !== null && req.headers['if-range'] === etag) start = Number(range[1])
    const body = image.subarray(start)
    const headers: Record<string, string> = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' }
    if (options.chunked !== true) headers['content-length'] = String(body.length)
    if (start > 0) headers['content-range'] = `bytes ${start}-${image.length - 1}/${image.length}`
    res.writeHead(start > 0 ? 206 : 200, headers)
    const cut = options.resetAfter?.[attempt]
    if (cut !== undefined) {
      res.write(body.subarray(0, cut), () => { setTimeout(() => res.socket?.destroy(), 20) })
      return
    }
    res.end(body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: (path = '/image.raw') => `http://127.0.0.1:${port}${path}`,
    requests,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/** Deterministic-size random image with a recognisable first sector. */
export function makeImage (sizeBytes: number): Buffer {
  const image = randomBytes(sizeBytes)
  image.write('BYOI-TEST-IMAGE', 0)
  return image
}

export function sha (type: 'md5' | 'sha1' | 'sha256' | 'sha512', data: Buffer): string {
  return createHash(type).update(data).digest('hex')
}
