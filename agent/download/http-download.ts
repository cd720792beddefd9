/**
 * The HTTP image source: one GET (http-request: redirects followed by hand), retried with backoff
 * (retry-loop), resumed with `Range` + `If-Range` when a body breaks, the digest computed over the
 * bytes as they stream. Every byte of the file reaches the sink exactly once, in order, since its
 * last rewind.
 */
import { redactHeaders } from '../report/redact.js'
import { AttemptFailure, SinkError } from './attempt-failure.js'
import {
  announcedLength, closeAfterBody, dispose, prepare, refuseEncoding, requestFollowingRedirects, statusFailure, watchBodySpeed,
  type Answer, type Job, type RequestOptions,
} from './http-request.js'
import { checkPartialAnswer, checkWholeAnswer } from './file-version.js'
import { retryAttempts } from './retry-loop.js'
import type { DigestType } from './running-digest.js'
import { SlabFeed, type DownloadSink } from './slab-feed.js'
import { headerValue, ifRangeValidator, parseContentRange, sameValidator } from './validators.js'
import { bodyChunks } from './body-chunks.js'

export type { DigestType, DownloadSink }

export interface DownloadOptions extends RequestOptions {
  /** Digest over the bytes as downloaded, as they stream. */
  digestType?: DigestType
  /** Called after each chunk the sink took; keep it cheap. */
  onProgress?: (p: { bytes: number; totalBytes: number | undefined }) => void
  /**
   * The If-Range validator of an earlier answer (fetchRange's): the file must be that version.
   * The first request asks `Range: bytes=0-` with it; an answer of another version (a 200 that
   * does not show it, a 206 with another ETag or Last-Modified) fails with IMAGE_CHANGED before
   * a byte of it reaches the sink, not retried. Resumes are guarded by it as well.
   */
  ifRange?: string
}

export interface DownloadResult {
  /** Bytes given to the sink since its last rewind: the size of the file. */
  bytes: number
  /** Lower-case hex digest of those bytes, when digestType was given. */
  digestHex: string | undefined
  /** The whole-file size the server announced, if it did. */
  contentLength: number | undefined
  attempts: number
  /** The If-Range validator of the run (ifRange when given, else the answer's own strong one): undefined when nothing could guard a resume. */
  validator: string | undefined
}

/** The options a download adds to a request's. */
interface DownloadJob extends Job {
  digestType: DigestType | undefined
  onProgress: DownloadOptions['onProgress']
  ifRange: string | undefined
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
  const job: DownloadJob = { ...prepare(options, 'download'), digestType: options.digestType, onProgress: options.onProgress, ifRange: options.ifRange }
  const run: Run = { bytes: 0, feed: new SlabFeed(sink, job.digestType), totalBytes: undefined, validator: undefined, restart: false, begun: false }
  job.logger?.debug({ url: job.shownUrl, headers: redactHeaders(Object.fromEntries(options.headers.map((h) => [h.name, h.value]))) }, 'download starts')

  try {
    const { attempts } = await retryAttempts(job, {
      attempt: async () => { await runAttempt(job, sink, run) },
      logged: () => ({ bytes: run.bytes }),
      progressBytes: () => run.bytes,
      failed: (failure) => { if (failure.restart) run.restart = true },
    })
    job.logger?.info({ url: job.shownUrl, bytes: run.bytes, attempts }, 'download complete')
    // The last slab goes to the sink (its error, unchanged, ends the download), then the digest is read.
    const digestHex = await run.feed.end()
    return { bytes: run.bytes, digestHex, contentLength: run.totalBytes, attempts, validator: run.validator }
  } finally {
    // The worker of a digest that will not be read (failure, abort); a no-op after the end.
    run.feed.dispose()
  }
}

/** One attempt: the request (through its redirects), then the body into the sink. */
async function runAttempt (job: DownloadJob, sink: DownloadSink, run: Run): Promise<void> {
  // Resume only what a validator guards: a Range without If-Range could splice two versions of the file.
  const resumeFromBytes = !run.restart && run.bytes > 0 && run.validator !== undefined ? run.bytes : 0
  // With ifRange, a run from byte 0 is asked as a range too: only If-Range lets the server say the file changed.
  const rangeHeaders = resumeFromBytes > 0 && run.validator !== undefined
    ? ['range', `bytes=${resumeFromBytes}-`, 'if-range', run.validator]
    : job.ifRange !== undefined ? ['range', 'bytes=0-', 'if-range', job.ifRange] : []
  if (resumeFromBytes > 0) job.logger?.info({ url: job.shownUrl, resumeFromBytes }, 'resuming download')

  const answer = await requestFollowingRedirects(job, rangeHeaders)
  let closed = false
  try {
    const plan = planBody(answer, run, resumeFromBytes, job.ifRange)
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

/**
 * Decides what a response means for the run: a body to take, or why this attempt failed. With
 * `ifRange`, every request carried it (the run's validator is that one), so an answer of another
 * version ends the download before a byte of it is taken.
 */
function planBody (answer: Answer, run: Run, resumeFromBytes: number, ifRange: string | undefined): BodyPlan {
  const { statusCode, headers } = answer
  if (ifRange !== undefined) {
    if (statusCode === 200) checkWholeAnswer(ifRange, statusCode, headers)
    if (statusCode === 206) checkPartialAnswer({ validator: ifRange }, statusCode, headers, undefined)
  }
  if (statusCode === 200 || statusCode === 206) refuseEncoding(answer)
  const contentLength = statusCode === 200 || statusCode === 206 ? announcedLength(answer) : undefined

  if (statusCode === 200) {
    // The whole file: the server does not do ranges, or If-Range told it the file changed (with ifRange, only the same version gets here).
    const validator = ifRange ?? ifRangeValidator(headers)
    return { fromZero: true, expectedBytes: contentLength, totalBytes: contentLength, validator, endsBeforeFileEnd: false }
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
      validator: range.start === 0 ? ifRange ?? ifRangeValidator(headers) : undefined,
      endsBeforeFileEnd: range.totalBytes !== undefined && range.end + 1 < range.totalBytes,
    }
  }

  if (statusCode === 416 && resumeFromBytes > 0) {
    throw new AttemptFailure(`HTTP 416 for a resume at byte ${resumeFromBytes}`, { retryable: true, restart: true, statusCode })
  }
  throw statusFailure(answer)
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
    await callSink(() => sink.begin(plan.totalBytes, plan.validator))
  }
}

/** The hot loop: undici's chunks go into the feed's slabs as they come, one awaited write each. */
async function streamBody (job: DownloadJob, run: Run, body: Answer['body'], expectedBytes: number | undefined): Promise<number> {
  const { onProgress } = job
  const speed = watchBodySpeed(job)
  let received = 0
  for await (const chunk of bodyChunks(body)) {
    // A chunk too slow in coming is not taken: the next attempt resumes before it.
    speed.arrived(chunk.length)
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
    speed.waiting()
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
