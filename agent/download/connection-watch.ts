/**
 * Counts the bytes a server sends past the end of a response whose connection it then closes.
 *
 * A response framed by Content-Length on a connection that is not kept alive (HTTP/1.0, or
 * `Connection: close`) ends where undici stops: it reads the announced bytes, then destroys the
 * socket and drops whatever followed. A server that sent more than it announced (a wrong
 * Content-Length, an image cut short on our side) would pass as a download of the announced size.
 *
 * So undici gets, through its public `connect` option, a pass-through of the real socket: when
 * undici lets go of it, the bytes it left unread are counted, and the real connection is read on
 * until the server closes it (at most `waitMs`), counting what else comes. A keep-alive
 * connection closed by the agent itself is not waited for: what already arrived is counted.
 */
import type { Socket } from 'node:net'
import { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { buildConnector } from 'undici'

export interface ConnectionWatchOptions {
  /** Passed to undici's connector (`timeout` is the connect timeout). */
  connect: buildConnector.BuildOptions
  /** How long to wait for the server's close after undici let go of a connection; default 1000 (1 s). */
  waitMs?: number
}

/** A server that said it would close does so right after its body: waiting longer only delays a success. */
const DEFAULT_WAIT_MS = 1000 // 1 s
/** Bytes held between the real socket and undici before the socket is paused. */
const PASS_THROUGH_BYTES = 1024 * 1024 // 1 MiB

export class ConnectionWatch {
  /** For undici's `connect` option. */
  readonly connect: buildConnector.connector
  private readonly sockets: WatchedSocket[] = []

  constructor (options: ConnectionWatchOptions) {
    const base = buildConnector(options.connect)
    const waitMs = options.waitMs ?? DEFAULT_WAIT_MS
    this.connect = (connectOptions, callback) => {
      base(connectOptions, (...args) => {
        if (args[0] !== null) {
          callback(...args)
          return
        }
        const socket = new WatchedSocket(args[1], waitMs)
        this.sockets.push(socket)
        // undici drives any stream with a socket's methods; this one forwards the rest (watched-socket below).
        callback(null, socket as unknown as Socket)
      })
    }
  }

  /**
   * Call once a body was read whole, before closing the agent: resolves, once every connection
   * is closed, with the bytes the server sent past the responses. A connection undici already let
   * go of (not kept alive) is read on until the server closes it; one still open (kept alive) is
   * counted as it is when the agent closes it.
   */
  async excessBytes (): Promise<number> {
    for (const socket of this.sockets) socket.countAtRelease()
    const counts = await Promise.all(this.sockets.map(async (socket) => await socket.settled))
    return counts.reduce((sum, n) => sum + n, 0)
  }
}

/**
 * The real socket's bytes passed through to undici, its writes passed back. undici uses a
 * socket's stream API (read, unshift, write, cork, destroy, events) and a few of its
 * properties, forwarded here.
 */
class WatchedSocket extends Duplex {
  /** Resolves with the bytes counted past undici's reading, once the real socket is closed. */
  readonly settled: Promise<number>
  private readonly inner: Socket | TLSSocket
  private readonly waitMs: number
  private resolveSettled: (bytes: number) => void = () => {}
  private released = false
  private countNow = false
  private excess = 0
  private timer: NodeJS.Timeout | undefined
  /** The server ended its side cleanly: the pass-through ends once undici has read it all. */
  private innerEnded = false
  private endPushed = false

  constructor (inner: Socket | TLSSocket, waitMs: number) {
    // 1 MiB between the socket and undici: at a socket's own 16 KiB, pausing and resuming the
    // real socket at every chunk tripled the CPU a fast download costs (512 MiB over loopback).
    super({ allowHalfOpen: false, readableHighWaterMark: PASS_THROUGH_BYTES })
    this.inner = inner
    this.waitMs = waitMs
    this.settled = new Promise((resolve) => { this.resolveSettled = resolve })
    inner.on('data', (chunk: Buffer) => {
      if (this.released) {
        // One byte past the response settles it: no need to read the rest.
        this.excess += chunk.length
        inner.destroy()
      } else if (!this.push(chunk)) {
        inner.pause()
      }
    })
    inner.on('end', () => {
      this.innerEnded = true
      if (this.released) {
        inner.destroy()
        return
      }
      // Not pushed yet: undici may be paused by backpressure, and an 'end' then trips its parser's
      // assert (a real socket's 'end' waits until undici reads again). The end is pushed when undici
      // next reads and finds nothing left (read() below); a 'readable' tells it to look.
      this.emit('readable')
    })
    inner.on('error', (err) => {
      if (!this.released) this.destroy(err)
    })
    inner.on('close', () => {
      clearTimeout(this.timer)
      // A server that closed after its last byte: undici may still be reading what the pass-through
      // holds (its parser paused by backpressure). A real socket says 'close' only once its 'end' was
      // read, and undici asserts that; so the pass-through ends by itself once drained (autoDestroy).
      if (!this.destroyed && (this.released || !this.innerEnded)) this.destroy()
      this.resolveSettled(this.excess)
    })
  }

  /** From now on, a release closes the real socket at once (the agent closes a kept-alive connection). */
  countAtRelease (): void {
    this.countNow = true
  }

  override _read (): void {
    this.inner.resume()
  }

  /** undici reads with no size, only while its parser runs: the server's end is pushed then, once all it sent was read. */
  override read (size?: number): ReturnType<Duplex['read']> {
    if (size === undefined && this.innerEnded && !this.endPushed && this.readableLength === 0 && !this.released) {
      this.endPushed = true
      this.push(null)
    }
    return super.read(size)
  }

  override _write (chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.inner.write(chunk, encoding, callback)
  }

  override _final (callback: (error?: Error | null) => void): void {
    this.inner.end()
    callback()
  }

  /** undici lets go: what it left unread was sent past the response it read. */
  override _destroy (error: Error | null, callback: (error?: Error | null) => void): void {
    this.released = true
    this.excess += this.readableLength
    if (this.countNow || this.excess > 0 || this.inner.readableEnded) {
      this.inner.destroy()
    } else {
      this.inner.resume()
      this.timer = setTimeout(() => this.inner.destroy(), this.waitMs)
      this.timer.unref()
    }
    callback(error)
  }

  /**
   * undici, at the end of a response on a connection not kept alive, destroys the socket and then
   * hands back the rest of the chunk it was parsing: bytes past the response.
   */
  override unshift (chunk: unknown, encoding?: BufferEncoding): void {
    if (!this.released) {
      super.unshift(chunk, encoding)
      return
    }
    const bytes = typeof chunk === 'string' ? Buffer.byteLength(chunk, encoding) : chunk instanceof Uint8Array ? chunk.length : 0
    if (bytes === 0) return
    this.excess += bytes
    this.inner.destroy()
  }

  // What undici reads of a socket besides its stream API.
  ref (): this { this.inner.ref(); return this }
  unref (): this { this.inner.unref(); return this }
  setTypeOfService (tos: number): this {
    const inner = this.inner as Socket & { setTypeOfService?: (tos: number) => unknown }
    inner.setTypeOfService?.(tos)
    return this
  }

  get alpnProtocol (): string | false | null | undefined { return 'alpnProtocol' in this.inner ? this.inner.alpnProtocol : undefined }
  get remoteAddress (): string | undefined { return this.inner.remoteAddress }
  get remotePort (): number | undefined { return this.inner.remotePort }
  get remoteFamily (): string | undefined { return this.inner.remoteFamily }
  get localAddress (): string | undefined { return this.inner.localAddress }
  get localPort (): number | undefined { return this.inner.localPort }
  get bytesRead (): number { return this.inner.bytesRead }
  get bytesWritten (): number { return this.inner.bytesWritten }
  get timeout (): number | undefined { return this.inner.timeout }
}
