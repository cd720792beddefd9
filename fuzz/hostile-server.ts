/**
 * A scripted HTTP server on 127.0.0.1 (port 0) that writes its answers byte for byte on the TCP
 * socket, so it can say what node:http would refuse to: two Content-Lengths, a body longer than
 * announced, a gzip body never asked for, a Content-Range that lies.
 */
import { createHash } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { gzipSync } from 'node:zlib'
import type { Behaviour } from './behaviour.js'

export interface RawRequest {
  method: string
  path: string
  headers: Map<string, string>
}

export interface HostileServer {
  url: (path?: string) => string
  requests: RawRequest[]
  close: () => Promise<void>
}

const DISK_HINT_BYTES = 64 * 1024 * 1024 // the suite's disks: an announced size just over one of them

export async function startHostileServer (file: Buffer, behaviour: Behaviour): Promise<HostileServer> {
  const requests: RawRequest[] = []
  const sockets = new Set<Socket>()
  const timers = new Set<NodeJS.Timeout>()
  const etag = `"${createHash('sha1').update(file).digest('hex')}"`
  const gzipped = behaviour.kind === 'gzip' ? gzipSync(file) : undefined
  let origin = ''

  const answer = async (socket: Socket, req: RawRequest, attempt: number): Promise<void> => {
    const write = async (data: Buffer | string): Promise<void> => {
      if (socket.destroyed) return
      if (!socket.write(data)) await new Promise<void>((resolve) => { socket.once('drain', resolve); socket.once('close', resolve) })
    }
    const head = (status: string, headers: Array<[string, string | number]>, version = 'HTTP/1.1'): string =>
      `${version} ${status}\r\n${headers.map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`
    const rangeStart = (): number | undefined => {
      const m = /^bytes=(\d+)-$/.exec(req.headers.get('range') ?? '')
      const ifRange = req.headers.get('if-range')
      if (m === null || (ifRange !== undefined && ifRange !== etag)) return undefined
      return Number(m[1])
    }
    /** 200, or 206 from a Range; `cut` closes (or resets) after that many body bytes; `stall` keeps the socket silent. */
    const serve = async (options: { ranges: boolean; cut?: number; reset?: boolean; stall?: number }): Promise<void> => {
      const start = options.ranges ? rangeStart() : undefined
      if (start !== undefined && start >= file.length) {
        await write(head('416 Range Not Satisfiable', [['content-range', `bytes */${file.length}`], ['content-length', 0]]))
        return
      }
      const body = file.subarray(start ?? 0)
      const headers: Array<[string, string | number]> = [['content-type', 'application/octet-stream'], ['content-length', body.length]]
      if (options.ranges) headers.push(['etag', etag], ['accept-ranges', 'bytes'])
      if (start !== undefined) headers.push(['content-range', `bytes ${start}-${file.length - 1}/${file.length}`])
      await write(head(start !== undefined ? '206 Partial Content' : '200 OK', headers))
      const until = options.cut ?? options.stall
      await write(body.subarray(0, until))
      if (options.stall !== undefined) return await new Promise<void>((resolve) => socket.once('close', resolve))
      if (options.cut !== undefined) {
        if (options.reset === true) socket.resetAndDestroy()
        else socket.end()
      }
    }

    const b = behaviour
    switch (b.kind) {
      case 'ok':
        if (!b.chunked) return await serve({ ranges: true })
        await write(head('200 OK', [['content-type', 'application/octet-stream'], ['transfer-encoding', 'chunked']]))
        for (let at = 0; at < file.length; at += 256 * 1024) {
          const piece = file.subarray(at, at + 256 * 1024)
          await write(`${piece.length.toString(16)}\r\n`)
          await write(piece)
          await write('\r\n')
        }
        return await write('0\r\n\r\n')
      case 'short-body':
        return await serve({ ranges: b.ranges, cut: attempt < b.cutAttempts ? Math.max(0, file.length - b.missingBytes) : undefined })
      case 'long-body': {
        const body = Buffer.concat([file, Buffer.alloc(b.extraBytes, 0x5a)])
        const version = b.framing === 'http1.0' ? 'HTTP/1.0' : 'HTTP/1.1'
        const headers: Array<[string, string | number]> = [['content-type', 'application/octet-stream'], ['content-length', file.length]]
        if (b.framing === 'close') headers.push(['connection', 'close'])
        await write(head('200 OK', headers, version))
        await write(body)
        if (b.framing !== 'keep-alive') socket.end()
        return
      }
      case 'gzip':
        await write(head('200 OK', [['content-type', 'application/octet-stream'], ['content-encoding', 'gzip'], ['content-length', gzipped?.length ?? 0]]))
        return await write(gzipped ?? Buffer.alloc(0))
      case 'content-length': {
        const n = file.length
        const values: Record<typeof b.variant, string[]> = {
          huge: ['99999999999999999999999'],
          'over-safe': ['9007199254740993'],
          'over-disk': [String(DISK_HINT_BYTES + 512)],
          malformed: ['12abc'],
          negative: ['-1'],
          'duplicate-same': [String(n), String(n)],
          'duplicate-different': [String(n), String(n + 1)],
          'too-small': [String(n - 4096)],
          list: [`${n}, ${n + 7}`],
        }
        const lengths = values[b.variant].map((v): [string, string] => ['content-length', v])
        await write(head('200 OK', [['content-type', 'application/octet-stream'], ...lengths, ['connection', 'close']]))
        await write(file)
        socket.end()
        return
      }
      case 'stall':
        if (attempt >= b.attempts) return await serve({ ranges: true })
        if (b.beforeHeaders) return await new Promise<void>((resolve) => socket.once('close', resolve))
        return await serve({ ranges: true, stall: b.afterBytes })
      case 'trickle': {
        await write(head('200 OK', [['content-type', 'application/octet-stream'], ['content-length', file.length]]))
        let at = 0
        await new Promise<void>((resolve) => {
          const timer = setInterval(() => {
            if (socket.destroyed || at >= file.length) {
              clearInterval(timer)
              timers.delete(timer)
              resolve()
              return
            }
            socket.write(file.subarray(at, at + 1))
            at++
          }, b.intervalMs)
          timers.add(timer)
        })
        return
      }
      case 'redirect-loop': {
        const to = b.pair ? (req.path === '/a' ? '/b' : '/a') : req.path
        return await write(head('302 Found', [['location', `${origin}${to}`], ['content-length', 0]]))
      }
      case 'redirect-chain': {
        const hop = Number(/^\/hop(\d+)$/.exec(req.path)?.[1] ?? 0)
        if (hop < b.hops) return await write(head('302 Found', [['location', `/hop${hop + 1}`], ['content-length', 0]]))
        return await serve({ ranges: true })
      }
      case 'storm': {
        if (attempt >= b.count) return await serve({ ranges: true })
        const status = b.statuses[attempt % b.statuses.length] ?? 500
        const text = 'server is having a bad day'
        const headers: Array<[string, string | number]> = [['content-type', 'text/plain'], ['content-length', text.length]]
        if (b.retryAfter) headers.push(['retry-after', 1])
        return await write(head(`${status} Storm`, headers) + text)
      }
      case 'reset':
        return await serve({ ranges: b.ranges, cut: attempt < b.attempts ? b.afterBytes : undefined, reset: true })
      case 'wrong-range': {
        if (attempt === 0) return await serve({ ranges: true, cut: b.afterBytes, reset: true })
        const start = rangeStart()
        if (start === undefined) return await serve({ ranges: true })
        const wrong: Record<typeof b.answer, () => [string, Array<[string, string | number]>, Buffer]> = {
          'full-200': () => ['200 OK', [['content-length', file.length]], file],
          'wrong-start': () => {
            const s = Math.max(0, start - 4096)
            return [
              '206 Partial Content',
              [['content-range', `bytes ${s}-${file.length - 1}/${file.length}`], ['content-length', file.length - s]],
              file.subarray(s),
            ]
          },
          'wrong-total': () => [
            '206 Partial Content',
            [['content-range', `bytes ${start}-${file.length + 511}/${file.length + 512}`], ['content-length', file.length + 512 - start]],
            Buffer.concat([file.subarray(start), Buffer.alloc(512)]),
          ],
          'no-content-range': () => ['206 Partial Content', [['content-length', file.length - start]], file.subarray(start)],
          416: () => ['416 Range Not Satisfiable', [['content-range', `bytes */${file.length}`], ['content-length', 0]], Buffer.alloc(0)],
          'past-end': () => [
            '206 Partial Content',
            [['content-range', `bytes ${file.length}-${file.length + 1023}/${file.length + 1024}`], ['content-length', 1024]],
            Buffer.alloc(1024, 0x77),
          ],
        }
        const [status, headers, body] = wrong[b.answer]()
        await write(head(status, [['content-type', 'application/octet-stream'], ['etag', etag], ...headers]))
        return await write(body)
      }
    }
  }

  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let pending = Buffer.alloc(0)
    let busy = Promise.resolve()
    socket.on('data', (data: Buffer) => {
      pending = Buffer.concat([pending, data])
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const lines = pending.subarray(0, end).toString('latin1').split('\r\n')
        pending = pending.subarray(end + 4)
        const [method = '', path = ''] = (lines[0] ?? '').split(' ')
        const headers = new Map<string, string>()
        for (const line of lines.slice(1)) {
          const colon = line.indexOf(':')
          if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
        }
        const req = { method, path, headers }
        const attempt = requests.length
        requests.push(req)
        busy = busy.then(async () => await answer(socket, req, attempt)).catch(() => { socket.destroy() })
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  origin = `http://127.0.0.1:${port}`
  return {
    url: (path = '/image') => `${origin}${path}`,
    requests,
    close: async () => {
      for (const timer of timers) clearInterval(timer)
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
