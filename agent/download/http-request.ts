/**
 * One GET of the image's URL and what its answer may be taken as, shared by the whole-file
 * download (http-download) and the ranged fetch (ranged-get): the options resolved once, the
 * headers per origin, redirects followed by hand, a connection per request or one kept across a
 * run of them (connection.ts), the checks of an answer's framing and coding, and failures put in
 * words safe for a log.
 */
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { Connection, type KeptConnection } from './connection.js'
import { LowSpeedWatch } from './low-speed-watch.js'
import { httpUrl, urlCredentials } from './request-url.js'
import { errors } from '../errors/install-error.js'
import { safeUrl } from '../report/redact.js'
import { AttemptFailure } from './attempt-failure.js'
import {
  errorCode, honoursRetryAfter, isRedirectStatus, isRetryableError, isRetryableStatus, parseRetryAfterMs,
} from './retry-policy.js'
import { userAgent } from './user-agent.js'
import { headerValue, parseContentLength, type ResponseHeaders } from './validators.js'

/** What every request of the image's URL is made with: download()'s options and fetchRange()'s alike. */
export interface RequestOptions {
  url: string
  headers: Array<{ name: string; value: string }>
  signal?: AbortSignal
  logger?: Logger
  /** Default 30_000 (30 s). */
  connectTimeoutMs?: number
  /** No byte for this long fails that attempt (headers or body); default 60_000 (60 s). undici's timers tick every ~0.5 s, so it fires up to ~1 s late. */
  idleTimeoutMs?: number
  /**
   * Low-speed limit (curl's --speed-limit): an attempt whose body brings less than this on average
   * over lowSpeedTimeMs fails and is retried like a stall. Default 10_240 (10 KiB/s); 0 turns it off.
   */
  lowSpeedLimitBytesPerSecond?: number
  /** The window of the low-speed limit (curl's --speed-time); default 60_000 (60 s). */
  lowSpeedTimeMs?: number
  /** The whole download (every attempt and wait) must end within this, else DOWNLOAD_FAILED, not retried; default none. */
  deadlineMs?: number
  /**
   * Default 6: the first try and 5 retries in a row; an attempt that delivered at least 1 MiB starts
   * the count again (at most 10 × this many attempts in all).
   */
  maxAttempts?: number
  /** First backoff delay, doubled per attempt, with jitter; default 1000 (1 s). */
  retryBaseDelayMs?: number
  /** Cap on any wait between attempts, Retry-After included; default 30_000 (30 s). */
  maxRetryDelayMs?: number
  /** Default 5. */
  maxRedirects?: number
}

const DEFAULT_CONNECT_TIMEOUT_MS = 30_000 // 30 s
const DEFAULT_IDLE_TIMEOUT_MS = 60_000 // 60 s without a byte
/**
 * Below 10 KiB/s for a whole minute no image arrives in useful time (2 GiB would take 2.4 days),
 * while a slow but real link, even 1 Mbit/s (~120 KiB/s), stays ten times above it; averaged
 * over 60 s, a few seconds of congestion do not trip it.
 */
const DEFAULT_LOW_SPEED_LIMIT_BYTES_PER_SECOND = 10 * 1024 // 10 KiB/s
const DEFAULT_LOW_SPEED_TIME_MS = 60_000 // 60 s
/** Node's timers take at most 2^31 − 1 ms (24.8 days); a longer one would fire at once. */
export const MAX_DEADLINE_MS = 2 ** 31 - 1
const DEFAULT_MAX_ATTEMPTS = 6 // the first try + 5 retries
const DEFAULT_RETRY_BASE_DELAY_MS = 1000 // 1 s, doubled per attempt
const DEFAULT_MAX_RETRY_DELAY_MS = 30_000 // 30 s
const DEFAULT_MAX_REDIRECTS = 5

/** Request headers the requests own: a customer's own versions of them are dropped. */
const OWN_HEADERS = new Set(['accept-encoding', 'range', 'if-range'])

/** DOWNLOAD_REFUSED's REASON for a Content-Length that cannot frame the body. */
const INVALID_CONTENT_LENGTH = 'an invalid Content-Length'

/** Longest piece of a server's reason phrase or of an error message that goes to a log. */
const MAX_LOGGED_TEXT = 120

/** The options, resolved once. */
export interface Job {
  /** What the log lines name: 'download' ("download failed"), 'range fetch'. */
  subject: string
  url: URL
  shownUrl: string
  /** Sent to the original URL's origin (scheme + host + port): the customer's headers and ours. */
  originHeaders: string[]
  /** Sent anywhere else a redirect leads: ours only. */
  foreignHeaders: string[]
  signal: AbortSignal | undefined
  /** Aborted when deadlineMs has passed (undefined: no deadline). */
  deadline: AbortSignal | undefined
  /** For requests and waits: the caller's signal and the deadline. */
  attemptSignal: AbortSignal | undefined
  logger: Logger | undefined
  connectTimeoutMs: number
  idleTimeoutMs: number
  lowSpeedLimitBytesPerSecond: number
  lowSpeedTimeMs: number
  deadlineMs: number | undefined
  maxAttempts: number
  retryBaseDelayMs: number
  maxRetryDelayMs: number
  maxRedirects: number
}

/** One response, with the connection that holds it (its own, or a kept one; see send()). */
export interface Answer {
  url: URL
  statusCode: number
  statusText: string
  headers: ResponseHeaders
  body: Dispatcher.ResponseData['body']
  connection: Connection
  /** The run's kept connection this response came on; undefined for a connection of its own. */
  kept: KeptConnection | undefined
}

/** Resolves the options; an unusable URL fails as DOWNLOAD_FAILED (logged), a bad number is the caller's bug (RangeError). */
export function prepare (options: RequestOptions, subject: string): Job {
  const shownUrl = safeUrl(options.url)
  const refuse = (reason: string): never => {
    options.logger?.error({ url: shownUrl, reason }, `${subject} failed`)
    throw errors.downloadFailed(shownUrl, new AttemptFailure(reason, { retryable: false }))
  }
  const url = httpUrl(options.url)
  if (typeof url === 'string') return refuse(url)
  const maxAttempts = options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS
  if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`)
  const lowSpeedLimitBytesPerSecond = options.lowSpeedLimitBytesPerSecond ?? DEFAULT_LOW_SPEED_LIMIT_BYTES_PER_SECOND
  const lowSpeedTimeMs = options.lowSpeedTimeMs ?? DEFAULT_LOW_SPEED_TIME_MS
  if (!(lowSpeedLimitBytesPerSecond >= 0)) throw new RangeError(`lowSpeedLimitBytesPerSecond must be 0 or more, got ${lowSpeedLimitBytesPerSecond}`)
  if (!(lowSpeedTimeMs > 0)) throw new RangeError(`lowSpeedTimeMs must be positive, got ${lowSpeedTimeMs}`)
  const { deadlineMs } = options
  if (deadlineMs !== undefined && !(Number.isSafeInteger(deadlineMs) && deadlineMs > 0 && deadlineMs <= MAX_DEADLINE_MS)) {
    throw new RangeError(`deadlineMs must be an integer from 1 to ${MAX_DEADLINE_MS}, got ${deadlineMs}`)
  }
  // The clock starts now, with the download: it covers every attempt and every wait.
  const deadline = deadlineMs === undefined ? undefined : AbortSignal.timeout(deadlineMs)
  const attemptSignal = deadline === undefined ? options.signal : options.signal === undefined ? deadline : AbortSignal.any([options.signal, deadline])
  return {
    subject,
    url,
    shownUrl,
    originHeaders: originHeaders(url, options.headers),
    foreignHeaders: ['user-agent', userAgent, 'accept-encoding', 'identity'],
    signal: options.signal,
    deadline,
    attemptSignal,
    logger: options.logger,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    idleTimeoutMs: options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    lowSpeedLimitBytesPerSecond,
    lowSpeedTimeMs,
    deadlineMs,
    maxAttempts,
    retryBaseDelayMs: options.retryBaseDelayMs ?? DEFAULT_RETRY_BASE_DELAY_MS,
    maxRetryDelayMs: options.maxRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS,
    maxRedirects: options.maxRedirects ?? DEFAULT_MAX_REDIRECTS,
  }
}

/**
 * The headers for the original origin, as a flat name/value list (duplicates kept, in the order
 * given): the customer's, then ours. `accept-encoding: identity` because the digest is over the
 * bytes as sent; the customer's User-Agent wins over ours; credentials in the URL become Basic
 * auth unless an Authorization header was given.
 */
function originHeaders (url: URL, headers: RequestOptions['headers']): string[] {
  const list: string[] = []
  let hasUserAgent = false
  let hasAuthorization = false
  for (const { name, value } of headers) {
    const lower = name.toLowerCase()
    if (OWN_HEADERS.has(lower)) continue
    if (lower === 'user-agent') hasUserAgent = true
    if (lower === 'authorization') hasAuthorization = true
    list.push(name, value)
  }
  if (!hasUserAgent) list.push('user-agent', userAgent)
  list.push('accept-encoding', 'identity')
  const credentials = urlCredentials(url)
  if (!hasAuthorization && credentials !== undefined) list.push('authorization', credentials)
  return list
}

/**
 * The answer to a GET of the job's URL with `rangeHeaders` (sent at every hop), its redirects
 * followed. Each attempt starts again from the original URL: a redirect target (often a presigned
 * URL) may have expired.
 */
export async function requestFollowingRedirects (job: Job, rangeHeaders: string[], kept?: KeptConnection): Promise<Answer> {
  let url = job.url
  for (let redirects = 0; ; redirects++) {
    const answer = await send(job, url, rangeHeaders, kept)
    const { statusCode } = answer
    if (!isRedirectStatus(statusCode)) return answer
    await dispose(answer)
    const location = headerValue(answer.headers, 'location')
    if (location === undefined) throw new AttemptFailure(`HTTP ${statusCode} without a Location`, { retryable: false, statusCode })
    if (redirects >= job.maxRedirects) throw new AttemptFailure(`more than ${job.maxRedirects} redirects`, { retryable: false, statusCode })
    let next: URL
    try {
      next = new URL(location, url)
    } catch {
      throw new AttemptFailure(`HTTP ${statusCode} with an invalid Location`, { retryable: false, statusCode })
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new AttemptFailure(`HTTP ${statusCode} to a ${next.protocol} URL; only http and https are followed`, { retryable: false, statusCode })
    }
    job.logger?.debug({ statusCode, from: safeUrl(url.href), to: safeUrl(next.href), sameOrigin: next.origin === job.url.origin }, 'following redirect')
    url = next
  }
}

/**
 * One GET on a connection of its own, closed with its response: the connection then carries this
 * one response only, so what it reports after the body (see closeAfterBody) is about this body;
 * or on `kept`, the run's connection, open from the request before.
 * The customer's headers go to the original origin only, never to another one a redirect names.
 */
async function send (job: Job, url: URL, rangeHeaders: string[], kept: KeptConnection | undefined): Promise<Answer> {
  const connection = kept?.connection(job) ?? new Connection(job)
  const headers = [...(url.origin === job.url.origin ? job.originHeaders : job.foreignHeaders), ...rangeHeaders]
  try {
    const path = `${url.pathname}${url.search}`
    const response = await connection.agent.request({ origin: url.origin, path, method: 'GET', headers, signal: job.attemptSignal })
    // Body errors reach us through iteration; one destroyed before it is read must not be "unhandled".
    response.body.on('error', noop)
    const { statusCode, statusText, body } = response
    return { url, statusCode, statusText, headers: response.headers, body, connection, kept }
  } catch (err) {
    if (kept === undefined) await connection.destroy()
    else await kept.drop()
    if (isContentLengthParseError(err)) {
      throw new AttemptFailure(
        `the answer's Content-Length could not be parsed (malformed, out of range, or given twice): ${shorten(err.message)}`,
        { retryable: false, refusal: INVALID_CONTENT_LENGTH }, err)
    }
    // On a kept connection, bytes past the last response are read as the start of this one.
    if (kept !== undefined && connection.framingErrors.length > 0) {
      throw new AttemptFailure('the server sent more bytes than it announced', { retryable: false }, connection.framingErrors[0])
    }
    throw err
  }
}

/**
 * undici (llhttp) refuses a header block whose Content-Length it cannot take: malformed, past
 * 2^64, or given twice (even equal). It then rejects the request, before any response, with
 * UND_ERR_RES_CONTENT_LENGTH_MISMATCH (the code it also gives a body cut short; before a response
 * there is no body, so here it is the header) or, for a bad first character, a code-less
 * HTTPParserError whose reason names the header. Every attempt would get the same answer.
 * (The one other way to get that code before a response: a header block cut off after its
 * Content-Length, refused the same way.)
 */
function isContentLengthParseError (err: unknown): err is Error {
  if (!(err instanceof Error)) return false
  if (errorCode(err) === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return true
  return err.name === 'HTTPParserError' && /content-length/i.test(err.message)
}

/** Drops a response we will not read (or stopped reading) and its connection: the rest of its body is never received. */
export async function dispose (answer: Answer): Promise<void> {
  answer.body.destroy()
  if (answer.kept === undefined) await answer.connection.destroy()
  else await answer.kept.drop()
}

/**
 * A body longer than its Content-Length is never a success. HTTP/1.1 frames the body by that
 * length, so the extra bytes reach the client where the next response would start. On a
 * connection kept alive, undici reports them (a parser error, or "bad response" when no request
 * waits); closing the agent waits for the connection's close, by which time what already arrived
 * has been reported (extra bytes that arrive later still are indistinguishable from a new
 * message). On a connection the server closes after the response (HTTP/1.0, `Connection: close`)
 * undici stops at the announced length and drops the rest: the ConnectionWatch counts it, reading
 * on until the server's close (at most 1 s).
 */
export async function closeAfterBody (answer: Answer): Promise<void> {
  // A kept connection stays open for the run's next request: what it reported so far is checked
  // now, the rest when the run closes it (KeptConnection.close).
  if (answer.kept !== undefined) answer.kept.checkAfterBody(answer.statusCode)
  else await answer.connection.close(answer.statusCode)
}

/**
 * The bytes as sent are the image: we ask for `accept-encoding: identity`, but a server may
 * answer with an encoding anyway (S3 does for an object stored with `Content-Encoding: gzip`),
 * and undici's request API does not decode. Such a body written as the image would be garbage
 * with a matching digest, so any coding but identity is refused before a byte reaches the sink.
 */
export function refuseEncoding (answer: Answer): void {
  const value = answer.headers['content-encoding']
  if (value === undefined) return
  const codings = (Array.isArray(value) ? value.join(',') : value).split(',').map((c) => c.trim()).filter((c) => c !== '')
  if (codings.every((c) => c.toLowerCase() === 'identity')) return
  // A token as the server wrote it (RFC 9110 §8.4.1), shortened: printable, never the whole header.
  const shown = codings.join(', ').replace(/[^\x21-\x7e, ]/g, '').slice(0, 40) || 'an unreadable coding'
  throw new AttemptFailure(`Content-Encoding ${shown} instead of identity`,
    { retryable: false, statusCode: answer.statusCode, refusal: `Content-Encoding ${shown}, expected: identity` })
}

/**
 * The Content-Length of a body we would take: undefined when absent (the body's end is its end);
 * refused when present but not one safe integer. A value past 2^53 − 1 is no size a disk has and
 * no number this code can count to; it used to read as "absent", so each attempt failed when the
 * body ended early and was retried. Two values that differ cannot both frame the body.
 */
export function announcedLength (answer: Answer): number | undefined {
  const value = answer.headers['content-length']
  if (value === undefined) return undefined
  const values = Array.isArray(value) ? value : [value]
  const lengths = new Set(values.map((v) => parseContentLength(v)))
  const [length] = lengths
  if (lengths.size === 1 && length !== undefined) return length
  const shown = values.join(', ').replace(/[^\x20-\x7e]/g, '').slice(0, 60)
  throw new AttemptFailure(`Content-Length ${shown} is not one size in bytes (at most ${Number.MAX_SAFE_INTEGER})`,
    { retryable: false, statusCode: answer.statusCode, refusal: INVALID_CONTENT_LENGTH })
}

/** An answer that is neither a body to take nor a redirect: retried when its status may pass, after its Retry-After when it gives one. */
export function statusFailure (answer: Answer): AttemptFailure {
  const { statusCode, headers } = answer
  const retryAfterMs = honoursRetryAfter(statusCode) ? parseRetryAfterMs(headerValue(headers, 'retry-after'), Date.now()) : undefined
  return new AttemptFailure(statusLine(answer), { retryable: isRetryableStatus(statusCode), statusCode, retryAfterMs })
}

/** Watches one body's speed; `arrived` throws the attempt's failure when it is below the low-speed limit. */
export interface BodySpeed {
  /** A chunk of `bytes` arrived (before it is taken: a chunk that fails the limit is not taken). */
  arrived: (bytes: number) => void
  /** The chunk was taken: waiting on the network again. */
  waiting: () => void
}

/** The low-speed limit over one body, from now; nothing is watched when the limit is 0. */
export function watchBodySpeed (job: Job): BodySpeed {
  const { lowSpeedLimitBytesPerSecond: limit, lowSpeedTimeMs } = job
  if (limit <= 0) return { arrived: noop, waiting: noop }
  const watch = new LowSpeedWatch({ limitBytesPerSecond: limit, windowMs: lowSpeedTimeMs, nowMs: Date.now() })
  return {
    arrived: (bytes) => {
      const slowBytesPerSecond = watch.arrived(Date.now(), bytes)
      if (slowBytesPerSecond === undefined) return
      const slow = `${Math.round(slowBytesPerSecond)} bytes/s over the last ${lowSpeedTimeMs / 1000} s`
      throw new AttemptFailure(`${slow}, below the low-speed limit of ${limit} bytes/s`, { retryable: true })
    },
    waiting: () => { watch.waiting(Date.now()) },
  }
}

/** A network or protocol error as an attempt failure: its code and message, nothing else of it. */
export function fromError (err: unknown): AttemptFailure {
  const code = errorCode(err)
  const message = err instanceof Error ? err.message : String(err)
  const failure = new AttemptFailure(shorten(message === '' ? (code ?? 'unknown error') : message), { retryable: isRetryableError(err) })
  failure.code = code
  return failure
}

/** "HTTP 404 Not Found", the reason phrase cut short and limited to printable ASCII. */
export function statusLine (answer: Answer): string {
  const reason = shorten(answer.statusText.replace(/[^\x20-\x7e]/g, '')).trim()
  return reason === '' ? `HTTP ${answer.statusCode}` : `HTTP ${answer.statusCode} ${reason}`
}

function shorten (text: string): string {
  return text.length > MAX_LOGGED_TEXT ? `${text.slice(0, MAX_LOGGED_TEXT)}…` : text
}

/** A function, not a property read: TypeScript would keep `aborted` narrowed across awaits. */
export function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

/** The signal's reason when it is an Error, else a DOMException named AbortError. */
export function abortError (signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason
  return reason instanceof Error ? reason : new DOMException('The download was aborted', 'AbortError')
}

function noop (): void {}
