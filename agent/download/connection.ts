/**
 * The connections requests are made on: an undici Agent with the watch of its sockets and the
 * framing errors it reported (a server that sent more bytes than a response announced).
 *
 * A request of its own gets a Connection used once and closed with its response: what the
 * connection reports after the body is about that body (http-request's closeAfterBody). A run of
 * requests to one server (a parallel download's worker, fetching part after part) shares a
 * KeptConnection: the connection stays open between them (measured over loopback: a new
 * connection per 8 MiB part cost about 18 ms each, 0.6 s of a 1 GiB download at 4 connections;
 * on a real network a TLS handshake and TCP's slow start come on top). Bytes past a response on a
 * connection kept alive are where the next response would start: undici reports them as a
 * framing error, before the next answer or at once when no request waits, and the run fails on
 * it, as a request of its own would.
 */
import { Agent } from 'undici'
import { errors } from '../errors/install-error.js'
import { AttemptFailure } from './attempt-failure.js'
import { ConnectionWatch } from './connection-watch.js'
import { errorCode } from './retry-policy.js'

export interface ConnectionTimeouts {
  connectTimeoutMs: number
  idleTimeoutMs: number
}

export class Connection {
  readonly agent: Agent
  /** Garbage the connection reported after a response: a body longer than announced. */
  readonly framingErrors: unknown[] = []
  private readonly watch: ConnectionWatch

  constructor (timeouts: ConnectionTimeouts) {
    this.watch = new ConnectionWatch({ connect: { timeout: timeouts.connectTimeoutMs } })
    this.agent = new Agent({
      // One connection per origin: a request made as the one before ends waits for its
      // connection instead of opening another (undici frees it a tick after the body's end).
      connections: 1,
      connect: this.watch.connect,
      headersTimeout: timeouts.idleTimeoutMs,
      bodyTimeout: timeouts.idleTimeoutMs,
    })
    this.agent.on('disconnect', (_origin, _targets, err) => {
      if (isFramingError(err)) this.framingErrors.push(err)
    })
  }

  /** The bytes read whole: closes, and fails when the server sent more than it announced (see closeAfterBody). */
  async close (statusCode?: number): Promise<void> {
    const excess = this.watch.excessBytes()
    await this.agent.close()
    const excessBytes = await excess
    if (this.framingErrors.length > 0 || excessBytes > 0) {
      const more = excessBytes > 0 ? ` (${excessBytes} more at least)` : ''
      throw new AttemptFailure(`the server sent more bytes than it announced${more}`, { retryable: false, statusCode }, this.framingErrors[0])
    }
  }

  /** Drops it, whatever it was doing: the rest of a body is never received. */
  async destroy (): Promise<void> {
    await this.agent.destroy().catch(() => {})
  }
}

/** Connections kept open across a run of requests; one at a time (requests of a run are made one after another). */
export class KeptConnection {
  private current: Connection | undefined

  /** The open connection, or a new one. */
  connection (timeouts: ConnectionTimeouts): Connection {
    this.current ??= new Connection(timeouts)
    return this.current
  }

  /**
   * A body read whole: the run goes on on this connection, unless it reported garbage, which
   * fails the request (not retried: the server's framing cannot be trusted).
   */
  checkAfterBody (statusCode: number): void {
    const current = this.current
    if (current === undefined || current.framingErrors.length === 0) return
    this.current = undefined
    void current.destroy()
    throw new AttemptFailure('the server sent more bytes than it announced', { retryable: false, statusCode }, current.framingErrors[0])
  }

  /** A request failed or was dropped: its connection goes, the next request opens another. */
  async drop (): Promise<void> {
    const current = this.current
    this.current = undefined
    await current?.destroy()
  }

  /**
   * The run is over, every body read whole: the connection closes, and what the server sent past
   * its responses fails the run as DOWNLOAD_FAILED (logged), as it fails a request of its own.
   */
  async close (subject: { shownUrl: string; logger?: { error: (fields: object, message: string) => void } }, what: string): Promise<void> {
    const current = this.current
    this.current = undefined
    if (current === undefined) return
    try {
      await current.close()
    } catch (err) {
      if (!(err instanceof AttemptFailure)) throw err
      subject.logger?.error({ url: subject.shownUrl, reason: err.message }, `${what} failed`)
      throw errors.downloadFailed(subject.shownUrl, err)
    }
  }
}

export function isFramingError (err: unknown): boolean {
  const code = errorCode(err)
  if (code === undefined) return false
  return code.startsWith('HPE_') || (code === 'UND_ERR_SOCKET' && err instanceof Error && err.message === 'bad response')
}
