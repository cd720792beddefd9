/**
 * The HTTP image source: one GET (redirects followed by hand), retried with backoff, resumed
 * with `Range` + `If-Range` when a body breaks, the digest computed over the bytes as they
 * stream. Every byte of the file reaches the sink exactly once, in order, since its last rewind.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { ConnectionWatch } from './connection-watch.js'
import { LowSpeedWatch } from './low-speed-watch.js'
import { errors } from '../errors/install-error.js'
import { redactHeaders, safeUrl } from '../report/redact.js'
import { AttemptFailure, SinkError } from './attempt-failure.js'
import type { DigestType } from './running-digest.js'
import { SlabFeed, type DownloadSink } from './slab-feed.js'
import {
  errorCode, honoursRetryAfter, isRedirectStatus, isRetryableError, isRetryableStatus, parseRetryAfterMs, retryDelayMs,
} from './retry-policy.js'
import { userAgent } from './user-agent.js'
import {
  headerValue, ifRangeValidator, parseContentLength, parseContentRange, strongEtag, type ResponseHeaders,
} from './validators.js'

export type { DigestType, DownloadSink }

export interface DownloadOptions {
  url: string
  headers: Array<{ name: string; value: string }>
  /** Digest over the bytes as downloaded, as they stream. */
  digestType?: DigestType
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
  /** Called after each chunk the sink took; keep it cheap. */
  onProgress?: (p: { bytes: number; totalBytes: number | undefined }) => void
}

export interface DownloadResult {
  /** Bytes given to the sink since its last rewind: the size of the file. */
  bytes: number
  /** Lower-case hex digest of those bytes, when digestType was given. */
  digestHex: string | undefined
  /** The whole-file size the server announced, if it did. */
  contentLength: number | undefined
  attempts: number
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
/** An attempt that delivered this much before failing starts the count of failures in a row again. */
const PROGRESS_RESETS_BYTES = 1024 * 1024 // 1 MiB
/** However much progress is made, at most maxAttempts × this many attempts in all. */
const MAX_ATTEMPTS_FACTOR = 10

/** Request headers the download owns: a customer's own versions of them are dropped. */
const OWN_HEADERS = new Set(['accept-encoding', 'range', 'if-range'])

/** DOWNLOAD_REFUSED's REASON for a Content-Length that cannot frame the body. */
const INVALID_CONTENT_LENGTH = 'an invalid Content-Length'

/** Longest piece of a server's reason phrase or of an error message that goes to a log. */
const MAX_LOGGED_TEXT = 120

/** The options, resolved once. */
interface Job {
  url: URL
  shownUrl: string
  /** Sent to the original URL's origin (scheme + host + port): the customer's headers and ours. */
  originHeaders: string[]
  /** Sent anywhere else a redirect leads: ours only. */
  foreignHeaders: string[]
  digestType: DigestType | undefined
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
  onProgress: DownloadOptions['onProgress']
}

/** The bytes given to the sink since its last rewind, and what may guard resuming after them. */
interface Run {
  bytes: number
  /** The slabs and the digest between the body and the sink. */
  feed: SlabFeed
  /** Whole-file size announced by the answer that began this run. */
  totalBytes: number | undefined
  /** If-Range value from that answer; undefined: this run cannot be resumed, only restarted. */
  validator: string | undefined
  /** The next attempt must start from byte 0 (the server refused or botched a resume). */
  restart: boolean
  /** sink.begin has been called. */
  begun: boolean
}

/** One response, with the agent that holds its connection (one agent per request; see send()). */
interface Answer {
  url: URL
  statusCode: number
  statusText: string
  headers: ResponseHeaders
  body: Dispatcher.ResponseData['body']
  agent: Agent
  /** Garbage the connection reported after this response; see closeAfterBody(). */
  framingErrors: unknown[]
  /** The bytes sent past this response on a connection the server closes; see closeAfterBody(). */
  watch: ConnectionWatch
}

/** What one accepted response (200 or 206) brings. */
interface BodyPlan {
  /** The body starts at byte 0 of the file: a new run. */
  fromZero: boolean
  /** Bytes this body must carry, when announced. */
  expectedBytes: number | undefined
  /** Whole-file size, when announced. */
  totalBytes: number | undefined
  /** For a new run: the If-Range value that may resume it later. */
  validator: string | undefined
  /** A 206 that stops before the end of the file: the rest needs another request. */
  endsBeforeFileEnd: boolean
}

/**
 * Downloads `options.url` into `sink`. Resolves once the whole file went through the sink;
 * rejects with `errors.downloadFailed` (code DOWNLOAD_FAILED) when the download cannot be done,
 * with the sink's own error (unchanged) when the sink threw, with an AbortError (or the
 * signal's reason) when aborted.
 */
export async function download (options: DownloadOptions, sink: DownloadSink): Promise<DownloadResult> {
  const job = prepare(options)
  const { signal, logger } = job
  const run: Run = { bytes: 0, feed: new SlabFeed(sink, job.digestType), totalBytes: undefined, validator: undefined, restart: false, begun: false }
  logger?.debug({ url: job.shownUrl, headers: redactHeaders(Object.fromEntries(options.headers.map((h) => [h.name, h.value]))) }, 'download starts')

  try {
    // Attempts that moved the download on by at least PROGRESS_RESETS_BYTES do not use up the retries
    // (a long download over a flaky link keeps going), but the total stays bounded: never a hang.
    let failuresInARow = 0
    for (let attempt = 1; ; attempt++) {
      if (isAborted(signal)) throw abortError(signal)
      if (isAborted(job.deadline)) throw pastDeadline(job, run)
      const bytesBefore = run.bytes
      let complete = false
      try {
        await runAttempt(job, sink, run)
        complete = true
      } catch (err) {
        if (err instanceof SinkError) throw err.error
        if (isAborted(signal)) throw abortError(signal)
        if (isAborted(job.deadline)) throw pastDeadline(job, run)
        const failure = err instanceof AttemptFailure ? err : fromError(err)
        failure.attempt = attempt
        if (failure.restart) run.restart = true
        failuresInARow = run.bytes - bytesBefore >= PROGRESS_RESETS_BYTES ? 1 : failuresInARow + 1
        const logged = {
          url: job.shownUrl, attempt, maxAttempts: job.maxAttempts,
          statusCode: failure.statusCode, code: failure.code, reason: failure.message, bytes: run.bytes,
        }
        if (!failure.retryable || failuresInARow >= job.maxAttempts || attempt >= job.maxAttempts * MAX_ATTEMPTS_FACTOR) {
          logger?.error(logged, 'download failed')
          throw failure.refusal !== undefined ? errors.downloadRefused(job.shownUrl, failure.refusal, failure) : errors.downloadFailed(job.shownUrl, failure)
        }
        const delayMs = retryDelayMs({
          attempt: failuresInARow, baseDelayMs: job.retryBaseDelayMs, maxDelayMs: job.maxRetryDelayMs, retryAfterMs: failure.retryAfterMs,
        })
        logger?.warn({ ...logged, retryAfterMs: failure.retryAfterMs, delayMs }, 'download attempt failed; retrying')
        try {
          await sleep(delayMs, undefined, { signal: job.attemptSignal })
        } catch (sleepErr) {
          if (isAborted(signal)) throw abortError(signal)
          if (isAborted(job.deadline)) throw pastDeadline(job, run)
          throw sleepErr
        }
      }
      if (complete) {
        logger?.info({ url: job.shownUrl, bytes: run.bytes, attempts: attempt }, 'download complete')
        // The last slab goes to the sink (its error, unchanged, ends the download), then the digest is read.
        const digestHex = await run.feed.end()
        return { bytes: run.bytes, digestHex, contentLength: run.totalBytes, attempts: attempt }
      }
    }
  } finally {
    // The worker of a digest that will not be read (failure, abort); a no-op after the end.
    run.feed.dispose()
  }
}

function prepare (options: DownloadOptions): Job {
  const shownUrl = safeUrl(options.url)
  const refuse = (reason: string): never => {
    options.logger?.error({ url: shownUrl, reason }, 'download failed')
    throw errors.downloadFailed(shownUrl, new AttemptFailure(reason, { retryable: false }))
  }
  let url: URL
  try {
    url = new URL(options.url)
  } catch {
    return refuse('the URL is not valid')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') refuse(`${url.protocol} URLs are not supported, only http and https`)
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
    url,
    shownUrl,
    originHeaders: originHeaders(url, options.headers),
    foreignHeaders: ['user-agent', userAgent, 'accept-encoding', 'identity'],
    digestType: options.digestType,
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
    onProgress: options.onProgress,
  }
}

/**
 * The headers for the original origin, as a flat name/value list (duplicates kept, in the order
 * given): the customer's, then ours. `accept-encoding: identity` because the digest is over the
 * bytes as sent; the customer's User-Agent wins over ours; credentials in the URL become Basic
 * auth unless an Authorization header was given.
 */
function originHeaders (url: URL, headers: DownloadOptions['headers']): string[] {
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
  if (!hasAuthorization && (url.username !== '' || url.password !== '')) {
    const credentials = `${decodeUserInfo(url.username)}:${decodeUserInfo(url.password)}`
    list.push('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`)
  }
  return list
}

function decodeUserInfo (text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    return text
  }
}

/** One attempt: the request (through its redirects), then the body into the sink. */
async function runAttempt (job: Job, sink: DownloadSink, run: Run): Promise<void> {
  // Resume only what a validator guards: a Range without If-Range could splice two versions of the file.
  const resumeFromBytes = !run.restart && run.bytes > 0 && run.validator !== undefined ? run.bytes : 0
  const rangeHeaders = resumeFromBytes > 0 && run.validator !== undefined
    ? ['range', `bytes=${resumeFromBytes}-`, 'if-range', run.validator]
    : []
  if (resumeFromBytes > 0) job.logger?.info({ url: job.shownUrl, resumeFromBytes }, 'resuming download')

  const answer = await requestFollowingRedirects(job, rangeHeaders)
  let closed = false
  try {
    const plan = planBody(answer, run, resumeFromBytes)
    if (plan.fromZero) await startRun(job, sink, run, plan)
    else if (run.totalBytes === undefined) run.totalBytes = plan.totalBytes
    const received = await streamBody(job, run, answer.body, plan.expectedBytes)
    if (plan.expectedBytes !== undefined && received < plan.expectedBytes) {
      throw new AttemptFailure(`the body ended after ${received} of ${plan.expectedBytes} bytes`, { retryable: true })
    }
    closed = true
    await closeAfterBody(answer)
    if (plan.endsBeforeFileEnd) {
      throw new AttemptFailure(`HTTP 206 ended at byte ${run.bytes} of ${run.totalBytes ?? 'unknown'}`, { retryable: true, statusCode: 206 })
    }
  } finally {
    if (!closed) await dispose(answer)
  }
}

/** Each attempt starts again from the original URL: a redirect target (often a presigned URL) may have expired. */
async function requestFollowingRedirects (job: Job, rangeHeaders: string[]): Promise<Answer> {
  let url = job.url
  for (let redirects = 0; ; redirects++) {
    const answer = await send(job, url, rangeHeaders)
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
 * One GET on its own Agent, closed with its response: the connection then carries this one
 * response only, so what it reports after the body (see closeAfterBody) is about this body.
 * The customer's headers go to the original origin only, never to another one a redirect names.
 */
async function send (job: Job, url: URL, rangeHeaders: string[]): Promise<Answer> {
  const watch = new ConnectionWatch({ connect: { timeout: job.connectTimeoutMs } })
  const agent = new Agent({
    connect: watch.connect,
    headersTimeout: job.idleTimeoutMs,
    bodyTimeout: job.idleTimeoutMs,
  })
  const framingErrors: unknown[] = []
  agent.on('disconnect', (_origin, _targets, err) => {
    if (isFramingError(err)) framingErrors.push(err)
  })
  const headers = [...(url.origin === job.url.origin ? job.originHeaders : job.foreignHeaders), ...rangeHeaders]
  try {
    const response = await agent.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: 'GET', headers, signal: job.attemptSignal })
    // Body errors reach us through iteration; one destroyed before it is read must not be "unhandled".
    response.body.on('error', noop)
    const { statusCode, statusText, body } = response
    return { url, statusCode, statusText, headers: response.headers, body, agent, framingErrors, watch }
  } catch (err) {
    await agent.destroy().catch(noop)
    if (isContentLengthParseError(err)) {
      throw new AttemptFailure(
        `the answer's Content-Length could not be parsed (malformed, out of range, or given twice): ${shorten(err.message)}`,
        { retryable: false, refusal: INVALID_CONTENT_LENGTH }, err)
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

/** Drops a response we will not read (or stopped reading) and its connection. */
async function dispose (answer: Answer): Promise<void> {
  answer.body.destroy()
  await answer.agent.destroy().catch(noop)
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
async function closeAfterBody (answer: Answer): Promise<void> {
  const excess = answer.watch.excessBytes()
  await answer.agent.close()
  const excessBytes = await excess
  if (answer.framingErrors.length > 0 || excessBytes > 0) {
    const more = excessBytes > 0 ? ` (${excessBytes} more at least)` : ''
    throw new AttemptFailure(`the server sent more bytes than it announced${more}`,
      { retryable: false, statusCode: answer.statusCode }, answer.framingErrors[0])
  }
}

function isFramingError (err: unknown): boolean {
  const code = errorCode(err)
  if (code === undefined) return false
  return code.startsWith('HPE_') || (code === 'UND_ERR_SOCKET' && err instanceof Error && err.message === 'bad response')
}

/** Decides what a response means for the run: a body to take, or why this attempt failed. */
function planBody (answer: Answer, run: Run, resumeFromBytes: number): BodyPlan {
  const { statusCode, headers } = answer
  if (statusCode === 200 || statusCode === 206) refuseEncoding(answer)
  const contentLength = statusCode === 200 || statusCode === 206 ? announcedLength(answer) : undefined

  if (statusCode === 200) {
    // The whole file: the server does not do ranges, or If-Range told it the file changed.
    return { fromZero: true, expectedBytes: contentLength, totalBytes: contentLength, validator: ifRangeValidator(headers), endsBeforeFileEnd: false }
  }

  if (statusCode === 206) {
    const restart = (why: string): AttemptFailure => new AttemptFailure(`HTTP 206 ${why}`, { retryable: true, restart: true, statusCode })
    const range = parseContentRange(headerValue(headers, 'content-range'))
    if (range === undefined) throw restart('without a valid Content-Range')
    if (range.start !== resumeFromBytes) throw restart(`from byte ${range.start} where byte ${resumeFromBytes} was asked`)
    const expectedBytes = range.end - range.start + 1
    if (contentLength !== undefined && contentLength !== expectedBytes) {
      throw restart(`with Content-Length ${contentLength} for a range of ${expectedBytes} bytes`)
    }
    if (resumeFromBytes > 0) {
      // The server said the file is the same (If-Range); check what it shows agrees.
      if (run.totalBytes !== undefined && range.totalBytes !== run.totalBytes) {
        throw restart(`for a file of ${range.totalBytes ?? 'unknown'} bytes, not ${run.totalBytes}`)
      }
      if (!sameValidator(run.validator, headers)) throw restart('with another validator than the one resumed')
    }
    return {
      fromZero: range.start === 0,
      expectedBytes,
      totalBytes: range.totalBytes,
      validator: range.start === 0 ? ifRangeValidator(headers) : undefined,
      endsBeforeFileEnd: range.totalBytes !== undefined && range.end + 1 < range.totalBytes,
    }
  }

  if (statusCode === 416 && resumeFromBytes > 0) {
    throw new AttemptFailure(`HTTP 416 for a resume at byte ${resumeFromBytes}`, { retryable: true, restart: true, statusCode })
  }
  const retryAfterMs = honoursRetryAfter(statusCode) ? parseRetryAfterMs(headerValue(headers, 'retry-after'), Date.now()) : undefined
  throw new AttemptFailure(statusLine(answer), { retryable: isRetryableStatus(statusCode), statusCode, retryAfterMs })
}

/**
 * The bytes as sent are the image: we ask for `accept-encoding: identity`, but a server may
 * answer with an encoding anyway (S3 does for an object stored with `Content-Encoding: gzip`),
 * and undici's request API does not decode. Such a body written as the image would be garbage
 * with a matching digest, so any coding but identity is refused before a byte reaches the sink.
 */
function refuseEncoding (answer: Answer): void {
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
function announcedLength (answer: Answer): number | undefined {
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

/** A 206's own ETag or Last-Modified, when it sends one, must be the one resumed. */
function sameValidator (validator: string | undefined, headers: ResponseHeaders): boolean {
  if (validator === undefined) return true
  if (validator.startsWith('"')) {
    const etag = strongEtag(headerValue(headers, 'etag'))
    return etag === undefined || etag === validator
  }
  const lastModified = headerValue(headers, 'last-modified')
  return lastModified === undefined || lastModified.trim() === validator
}

/** A new run from byte 0: void what the sink holds, then announce the size (once per download). */
async function startRun (job: Job, sink: DownloadSink, run: Run, plan: BodyPlan): Promise<void> {
  if (run.bytes > 0) {
    job.logger?.warn({ url: job.shownUrl, discardedBytes: run.bytes }, 'the server could not resume; starting again from byte 0')
    await callSink(async () => { await run.feed.rewind() })
    run.bytes = 0
  }
  run.totalBytes = plan.totalBytes
  run.validator = plan.validator
  run.restart = false
  if (!run.begun) {
    run.begun = true
    await callSink(() => sink.begin(plan.totalBytes))
  }
}

/** The hot loop: undici's chunks go into the feed's slabs as they come, one awaited write each. */
async function streamBody (job: Job, run: Run, body: Answer['body'], expectedBytes: number | undefined): Promise<number> {
  const { onProgress } = job
  const { lowSpeedLimitBytesPerSecond: limit, lowSpeedTimeMs } = job
  const lowSpeed = limit > 0 ? new LowSpeedWatch({ limitBytesPerSecond: limit, windowMs: lowSpeedTimeMs, nowMs: Date.now() }) : undefined
  let received = 0
  for await (const chunk of body as AsyncIterable<Buffer>) {
    const slowBytesPerSecond = lowSpeed?.arrived(Date.now(), chunk.length)
    if (slowBytesPerSecond !== undefined) {
      // The chunk is not taken: the next attempt resumes before it.
      const slow = `${Math.round(slowBytesPerSecond)} bytes/s over the last ${lowSpeedTimeMs / 1000} s`
      throw new AttemptFailure(`${slow}, below the low-speed limit of ${limit} bytes/s`, { retryable: true })
    }
    received += chunk.length
    if (expectedBytes !== undefined && received > expectedBytes) {
      throw new AttemptFailure(`the body is longer than the ${expectedBytes} bytes announced`, { retryable: false })
    }
    run.bytes += chunk.length
    try {
      await run.feed.write(chunk)
      onProgress?.({ bytes: run.bytes, totalBytes: run.totalBytes })
    } catch (err) {
      throw new SinkError(err)
    }
    lowSpeed?.waiting(Date.now())
  }
  return received
}

async function callSink<T> (call: () => T | Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    throw new SinkError(err)
  }
}

/** deadlineMs has passed: the download fails, whatever attempt or wait was under way. */
function pastDeadline (job: Job, run: Run): Error {
  const failure = new AttemptFailure(`not done within the deadline of ${job.deadlineMs ?? 0} ms`, { retryable: false })
  job.logger?.error({ url: job.shownUrl, reason: failure.message, bytes: run.bytes }, 'download failed')
  return errors.downloadFailed(job.shownUrl, failure)
}

/** A network or protocol error as an attempt failure: its code and message, nothing else of it. */
function fromError (err: unknown): AttemptFailure {
  const code = errorCode(err)
  const message = err instanceof Error ? err.message : String(err)
  const failure = new AttemptFailure(shorten(message === '' ? (code ?? 'unknown error') : message), { retryable: isRetryableError(err) })
  failure.code = code
  return failure
}

/** "HTTP 404 Not Found", the reason phrase cut short and limited to printable ASCII. */
function statusLine (answer: Answer): string {
  const reason = shorten(answer.statusText.replace(/[^\x20-\x7e]/g, '')).trim()
  return reason === '' ? `HTTP ${answer.statusCode}` : `HTTP ${answer.statusCode} ${reason}`
}

function shorten (text: string): string {
  return text.length > MAX_LOGGED_TEXT ? `${text.slice(0, MAX_LOGGED_TEXT)}…` : text
}

/** A function, not a property read: TypeScript would keep `aborted` narrowed across awaits. */
function isAborted (signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true
}

/** The signal's reason when it is an Error, else a DOMException named AbortError. */
function abortError (signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason
  return reason instanceof Error ? reason : new DOMException('The download was aborted', 'AbortError')
}

function noop (): void {}
