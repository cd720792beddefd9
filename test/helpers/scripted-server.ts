/**
 * A real node:http server on 127.0.0.1, port 0, scripted per request (as in undici's own tests:
 * request 0 cuts the body, request 1 answers 500, request 2 succeeds), plus a recording sink
 * and a log capture for the download tests.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino, type Logger } from 'pino'
import type { DownloadSink, Slab } from '../../agent/download/index.js'

export interface RecordedRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
}

/** Answers request number `index` (0-based). */
export type Handler = (req: IncomingMessage, res: ServerResponse, index: number) => void

export interface ScriptedServer {
  port: number
  /** `http://127.0.0.1:PORT` */
  origin: string
  url: (path?: string) => string
  /** Every request received, in order. */
  requests: RecordedRequest[]
  /** Connections open now (accepted, not yet closed). */
  openConnections: () => number
  /** Connections accepted so far. */
  connections: () => number
  /** Resolves once no connection is open (the test's timeout bounds the wait). */
  allClosed: () => Promise<void>
  close: () => Promise<void>
}

/**
 * `script` is one handler for every request, or one per request in order; a request beyond the
 * list gets 599 (a test that expects no such request sees it in `requests`).
 */
export async function startScriptedServer (script: Handler | Handler[]): Promise<ScriptedServer> {
  const requests: RecordedRequest[] = []
  const server: Server = createServer((req, res) => {
    const index = requests.length
    requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers })
    const handler = typeof script === 'function' ? script : script[index]
    if (handler === undefined) {
      res.writeHead(599, { 'content-type': 'text/plain' }).end('unscripted request')
      return
    }
    handler(req, res, index)
  })
  let open = 0
  let accepted = 0
  const idle: Array<() => void> = []
  server.on('connection', (socket) => {
    open++
    accepted++
    socket.once('close', () => {
      open--
      if (open > 0) return
      for (const resolve of idle.splice(0)) resolve()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const origin = `http://127.0.0.1:${port}`
  return {
    port,
    origin,
    url: (path = '/image.raw') => `${origin}${path}`,
    requests,
    openConnections: () => open,
    connections: () => accepted,
    allClosed: async () => {
      if (open > 0) await new Promise<void>((resolve) => { idle.push(resolve) })
    },
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

export interface ServeFileOptions {
  etag?: string
  lastModified?: string
  /** Honour `Range: bytes=N-` and `bytes=N-M` (guarded by If-Range when sent); default true. */
  ranges?: boolean
  /** Send no Content-Length (chunked transfer coding). */
  chunked?: boolean
  /** Cut this response (socket closed) after this many body bytes. */
  cutAfterBytes?: number
  /** Send this many body bytes, then nothing more, the socket left open. */
  stallAfterBytes?: number
  /** Answer 206 with a Content-Range even to a request without Range. */
  alwaysPartial?: boolean
}

/** A small file server: 200, or 206 for `Range: bytes=N-` or `bytes=N-M` (clipped at the end) when If-Range (if any) matches. */
export function serveFile (req: IncomingMessage, res: ServerResponse, file: Buffer, options: ServeFileOptions = {}): void {
  const headers: Record<string, string> = { 'content-type': 'application/octet-stream' }
  if (options.etag !== undefined) headers.etag = options.etag
  if (options.lastModified !== undefined) headers['last-modified'] = options.lastModified
  let start = 0
  let end = file.length // exclusive
  let partial = options.alwaysPartial === true
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
  if (options.ranges !== false && range !== null) {
    const ifRange = req.headers['if-range']
    if (ifRange === undefined || ifRange === options.etag || ifRange === options.lastModified) {
      start = Number(range[1])
      if (range[2] !== undefined && range[2] !== '') end = Math.min(end, Number(range[2]) + 1)
      partial = true
      if (start >= file.length) {
        res.writeHead(416, { 'content-range': `bytes */${file.length}` }).end()
        return
      }
    }
  }
  const body = file.subarray(start, end)
  if (options.chunked !== true) headers['content-length'] = String(body.length)
  if (partial) headers['content-range'] = `bytes ${start}-${end - 1}/${file.length}`
  res.writeHead(partial ? 206 : 200, headers)
  sendBody(res, body, options)
}

/** Writes `body`, cut or stalled as asked, else whole. */
export function sendBody (res: ServerResponse, body: Buffer, options: Pick<ServeFileOptions, 'cutAfterBytes' | 'stallAfterBytes' | 'chunked'> = {}): void {
  if (options.cutAfterBytes !== undefined) {
    res.flushHeaders()
    res.write(body.subarray(0, options.cutAfterBytes), () => res.destroy())
    return
  }
  if (options.stallAfterBytes !== undefined) {
    res.flushHeaders()
    res.write(body.subarray(0, options.stallAfterBytes))
    return
  }
  if (options.chunked === true) {
    // Several chunks, so the client sees chunked framing for real.
    const third = Math.ceil(body.length / 3)
    res.write(body.subarray(0, third))
    res.write(body.subarray(third, 2 * third))
    res.end(body.subarray(2 * third))
    return
  }
  res.end(body)
}

/** Bypasses node:http to write a response byte for byte (e.g. a body longer than its Content-Length). */
export function writeRaw (req: IncomingMessage, head: string, body: Buffer): void {
  const socket = req.socket
  socket.write(Buffer.concat([Buffer.from(head.replace(/\n/g, '\r\n') + '\r\n'), body]))
  socket.end()
}

export type SinkEvent = { type: 'begin'; sizeBytes: number | undefined } | { type: 'write'; bytes: number } | { type: 'rewind' }

/** A sink that keeps (copies of) the bytes and the order of calls; each slab a 'write'. */
export class RecordingSink implements DownloadSink {
  readonly events: SinkEvent[] = []
  private chunks: Buffer[] = []

  /** 64 KiB slabs: about one per chunk undici gives. */
  constructor (private readonly slabSize = 64 * 1024) {}

  slabBytes (): number {
    return this.slabSize
  }

  async take (slab: Slab): Promise<void> {
    await this.write(Buffer.from(slab.data))
    slab.release()
  }

  begin (sizeBytes: number | undefined): void {
    this.events.push({ type: 'begin', sizeBytes })
  }

  async write (chunk: Buffer): Promise<void> {
    this.events.push({ type: 'write', bytes: chunk.length })
    this.chunks.push(Buffer.from(chunk))
  }

  rewind (): void {
    this.events.push({ type: 'rewind' })
    this.chunks = []
  }

  get data (): Buffer {
    return Buffer.concat(this.chunks)
  }

  count (type: SinkEvent['type']): number {
    return this.events.filter((e) => e.type === type).length
  }
}

export interface LogCapture {
  logger: Logger
  /** Every line logged, as text (for "never contains a secret" checks). */
  text: () => string
  /** Parsed lines. */
  lines: () => Array<Record<string, unknown>>
}

/** A pino logger at trace level writing into memory. */
export function captureLog (): LogCapture {
  const out: string[] = []
  const logger = pino({ level: 'trace' }, { write: (line: string) => { out.push(line) } })
  return {
    logger,
    text: () => out.join(''),
    lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  }
}

/** Deterministic bytes for a test file. */
export function testFile (sizeBytes: number, seed = 1): Buffer {
  const file = Buffer.alloc(sizeBytes)
  let x = seed >>> 0 || 1
  for (let i = 0; i < sizeBytes; i++) {
    // xorshift32
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    file[i] = x & 0xff
  }
  return file
}
