/**
 * The attempts of one download or ranged fetch: each failure is logged, then retried after its
 * backoff (or the server's Retry-After) or turned into the install's error, within the deadline,
 * the caller's signal heard at every step.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import { errors } from '../errors/install-error.js'
import { AttemptFailure, SinkError } from './attempt-failure.js'
import { abortError, fromError, isAborted, type Job } from './http-request.js'
import { retryDelayMs } from './retry-policy.js'

/** An attempt that delivered this much before failing starts the count of failures in a row again. */
const PROGRESS_RESETS_BYTES = 1024 * 1024 // 1 MiB
/** However much progress is made, at most maxAttempts × this many attempts in all. */
const MAX_ATTEMPTS_FACTOR = 10

export interface Attempts<T> {
  /** One attempt, 1-based: its value ends the loop; its AttemptFailure (or network error) is retried or ends it. */
  attempt: (attempt: number) => Promise<T>
  /** What the log lines say of where things stand (e.g. `bytes`), besides the URL and the failure. */
  logged: () => Record<string, unknown>
  /** Bytes delivered so far: an attempt that moved them on by 1 MiB does not use up the retries. */
  progressBytes?: () => number
  /** Told of each failed attempt before the loop decides (e.g. that the next one must start over). */
  failed?: (failure: AttemptFailure) => void
}

/**
 * Runs attempts until one succeeds: resolves with its value and the number of attempts; rejects
 * with `errors.downloadFailed` (or `downloadRefused`, `imageChanged` as the failure says) when no
 * attempt may succeed, with a sink's own error (SinkError, unwrapped) unchanged, with an
 * AbortError (or the signal's reason) when aborted.
 */
export async function retryAttempts<T> (job: Job, attempts: Attempts<T>): Promise<{ value: T; attempts: number }> {
  const { signal, logger, subject } = job
  // Attempts that moved the download on by at least PROGRESS_RESETS_BYTES do not use up the retries
  // (a long download over a flaky link keeps going), but the total stays bounded: never a hang.
  let failuresInARow = 0
  for (let attempt = 1; ; attempt++) {
    if (isAborted(signal)) throw abortError(signal)
    if (isAborted(job.deadline)) throw pastDeadline(job, attempts)
    const bytesBefore = attempts.progressBytes?.() ?? 0
    try {
      return { value: await attempts.attempt(attempt), attempts: attempt }
    } catch (err) {
      if (err instanceof SinkError) throw err.error
      if (isAborted(signal)) throw abortError(signal)
      if (isAborted(job.deadline)) throw pastDeadline(job, attempts)
      const failure = err instanceof AttemptFailure ? err : fromError(err)
      failure.attempt = attempt
      attempts.failed?.(failure)
      const progressed = (attempts.progressBytes?.() ?? 0) - bytesBefore >= PROGRESS_RESETS_BYTES
      failuresInARow = progressed ? 1 : failuresInARow + 1
      const logged = {
        url: job.shownUrl, attempt, maxAttempts: job.maxAttempts,
        statusCode: failure.statusCode, code: failure.code, reason: failure.message, ...attempts.logged(),
      }
      if (!failure.retryable || failuresInARow >= job.maxAttempts || attempt >= job.maxAttempts * MAX_ATTEMPTS_FACTOR) {
        logger?.error(logged, `${subject} failed`)
        throw installError(job, failure)
      }
      const delayMs = retryDelayMs({
        attempt: failuresInARow, baseDelayMs: job.retryBaseDelayMs, maxDelayMs: job.maxRetryDelayMs, retryAfterMs: failure.retryAfterMs,
      })
      logger?.warn({ ...logged, retryAfterMs: failure.retryAfterMs, delayMs }, `${subject} attempt failed; retrying`)
      try {
        await sleep(delayMs, undefined, { signal: job.attemptSignal })
      } catch (sleepErr) {
        if (isAborted(signal)) throw abortError(signal)
        if (isAborted(job.deadline)) throw pastDeadline(job, attempts)
        throw sleepErr
      }
    }
  }
}

/** The customer's error for the last failure: the file changed, the server's answer cannot be the image, or the download failed. */
function installError (job: Job, failure: AttemptFailure): Error {
  if (failure.changed !== undefined) return errors.imageChanged(job.shownUrl, failure.changed, failure)
  if (failure.refusal !== undefined) return errors.downloadRefused(job.shownUrl, failure.refusal, failure)
  return errors.downloadFailed(job.shownUrl, failure)
}

/** deadlineMs has passed: the download fails, whatever attempt or wait was under way. */
function pastDeadline (job: Job, attempts: Attempts<unknown>): Error {
  const failure = new AttemptFailure(`not done within the deadline of ${job.deadlineMs ?? 0} ms`, { retryable: false })
  job.logger?.error({ url: job.shownUrl, reason: failure.message, ...attempts.logged() }, `${job.subject} failed`)
  return errors.downloadFailed(job.shownUrl, failure)
}
