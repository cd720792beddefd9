/**
 * `--report-url`: the job's step changes and its result POSTed as JSON to the control plane.
 *
 * `post()` only queues and returns: the install never waits on the network. One request at a
 * time, in order, each retried with exponential backoff on a network error, a timeout, 408, 429
 * or 5xx; other answers end that message's attempts. Everything is bounded: the attempts per
 * message, the time per attempt, and the queue (when full, the oldest step message is dropped; a
 * result never is). Failures are logged with the URL shown by `safeUrl`, never with its credentials.
 */
import type { Logger } from 'pino'
import { Agent, request } from 'undici'
import { safeUrl } from '../report/redact.js'
import { parseReportUrl } from './report-url.js'

export interface ReportPosterOptions {
  url: string
  logger?: Logger
  /** Attempts per message, the first included (default 5). */
  maxAttempts?: number
  /** Backoff before retry n (from 1): baseDelayMs · 2^(n−1), at most maxDelayMs (defaults 500 ms, 8 s). */
  baseDelayMs?: number
  maxDelayMs?: number
  /** Per attempt: connect, headers and body (default 10 s). */
  timeoutMs?: number
  /** Messages waiting at most (default 64). */
  maxQueued?: number
}

interface Queued {
  body: unknown
  /** A message that is never dropped when the queue is full (the result). */
  keep: boolean
}

/** What the job runner needs of a poster (tests give a recording one). */
export interface ReportSink {
  post: (body: unknown, options?: { keep?: boolean }) => void
  close: (timeoutMs?: number) => Promise<void>
}

const RETRY_STATUS = new Set([408, 425, 429])

export class ReportPoster implements ReportSink {
  private readonly url: URL
  private readonly shownUrl: string
  private readonly headers: Record<string, string>
  private readonly queue: Queued[] = []
  private sending: Promise<void> | undefined
  private readonly stop = new AbortController()
  /** Its own connection pool, closed with the poster, so no idle socket outlives it. */
  private readonly dispatcher = new Agent({ keepAliveTimeout: 10_000 }) // 10 s
  private readonly maxAttempts: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly timeoutMs: number
  private readonly maxQueued: number
  /** Messages delivered, and given up, since the start (for tests and the log). */
  delivered = 0
  failed = 0

  constructor (private readonly options: ReportPosterOptions) {
    const target = parseReportUrl(options.url)
    if (typeof target === 'string') throw new Error(`bad report URL ${safeUrl(options.url)}: ${target}`)
    this.headers = { 'content-type': 'application/json', 'user-agent': 'byoi-agent' }
    if (target.authorization !== undefined) this.headers['authorization'] = target.authorization
    this.url = target.url
    this.shownUrl = safeUrl(options.url)
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 5)
    this.baseDelayMs = options.baseDelayMs ?? 500 // 500 ms
    this.maxDelayMs = options.maxDelayMs ?? 8000 // 8 s
    this.timeoutMs = options.timeoutMs ?? 10_000 // 10 s
    this.maxQueued = Math.max(1, options.maxQueued ?? 64)
  }

  /** Queues one JSON message; returns at once. */
  post (body: unknown, options: { keep?: boolean } = {}): void {
    if (this.stop.signal.aborted) return
    if (this.queue.length >= this.maxQueued) {
      const victim = this.queue.findIndex((q) => !q.keep)
      if (victim >= 0) {
        this.queue.splice(victim, 1)
        this.failed++
        this.options.logger?.warn({ url: this.shownUrl, queued: this.queue.length }, 'report queue full: oldest step message dropped')
      }
    }
    this.queue.push({ body, keep: options.keep === true })
    this.sending ??= this.drain()
  }

  /**
   * Waits for the queue to empty, at most `timeoutMs`; then stops: the attempt in flight is
   * aborted and what is left is dropped (and logged).
   */
  async close (timeoutMs = 5000): Promise<void> {
    const sending = this.sending
    if (sending !== undefined) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([sending, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
      clearTimeout(timer)
    }
    this.stop.abort()
    if (this.queue.length > 0) this.options.logger?.warn({ url: this.shownUrl, dropped: this.queue.length }, 'report messages not delivered before shutdown')
    this.failed += this.queue.length
    this.queue.length = 0
    await this.sending
    await this.dispatcher.destroy()
  }

  private async drain (): Promise<void> {
    try {
      for (let next = this.queue.shift(); next !== undefined && !this.stop.signal.aborted; next = this.queue.shift()) {
        if (await this.deliver(next.body)) this.delivered++
        else this.failed++
      }
    } finally {
      this.sending = undefined
    }
  }

  private async deliver (body: unknown): Promise<boolean> {
    const payload = JSON.stringify(body)
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      let retry: boolean
      let reason: Record<string, unknown>
      try {
        const signal = AbortSignal.any([this.stop.signal, AbortSignal.timeout(this.timeoutMs)])
        const answer = await request(this.url, {
          method: 'POST',
          headers: this.headers,
          body: payload,
          signal,
          dispatcher: this.dispatcher,
          headersTimeout: this.timeoutMs,
          bodyTimeout: this.timeoutMs,
        })
        await answer.body.dump()
        if (answer.statusCode >= 200 && answer.statusCode < 300) return true
        retry = answer.statusCode >= 500 || RETRY_STATUS.has(answer.statusCode)
        reason = { statusCode: answer.statusCode }
      } catch (err) {
        if (this.stop.signal.aborted) return false
        retry = true
        reason = { error: { name: (err as Error).name, code: (err as { code?: unknown }).code } }
      }
      if (!retry || attempt === this.maxAttempts) {
        this.options.logger?.error({ url: this.shownUrl, attempts: attempt, ...reason }, 'report not delivered')
        return false
      }
      const delayMs = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1))
      this.options.logger?.warn({ url: this.shownUrl, attempt, delayMs, ...reason }, 'report attempt failed; retrying')
      if (!await sleep(delayMs, this.stop.signal)) return false
    }
    return false
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep (ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false)
  return new Promise((resolve) => {
    const done = (): void => { clearTimeout(timer); resolve(false) }
    const timer = setTimeout(() => { signal.removeEventListener('abort', done); resolve(true) }, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}
