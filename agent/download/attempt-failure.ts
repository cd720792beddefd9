/**
 * How one attempt of a download ended badly, in words safe for a log: never a header value,
 * never a URL's credentials, never more of a response body than its status line.
 */
export interface AttemptFailureDetails {
  /** Another attempt may succeed. */
  retryable: boolean
  /** The bytes received so far are void: the next attempt starts again at byte 0. */
  restart?: boolean
  statusCode?: number
  /** What Retry-After asked for, in ms. */
  retryAfterMs?: number
  /**
   * The server's answer cannot be the image, whatever the retries: what it sent, for the
   * customer's message (DOWNLOAD_REFUSED: "the server sent REASON"); implies not retryable.
   */
  refusal?: string
  /**
   * The file is not the version the caller's validator (If-Range) names: what shows it, for the
   * customer's message (IMAGE_CHANGED: "the image changed while it was being read: REASON");
   * implies not retryable (every attempt would get the other version).
   */
  changed?: string
}

export class AttemptFailure extends Error {
  readonly retryable: boolean
  readonly restart: boolean
  readonly statusCode: number | undefined
  readonly retryAfterMs: number | undefined
  readonly refusal: string | undefined
  readonly changed: string | undefined
  /** The error code of the network failure behind it (errno or undici's `UND_ERR_*`), if any. */
  code: string | undefined
  /** Which attempt this was, 1-based; set by the retry loop. */
  attempt: number | undefined

  constructor (message: string, details: AttemptFailureDetails, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause })
    this.name = 'AttemptFailure'
    this.retryable = details.retryable && details.refusal === undefined && details.changed === undefined
    this.restart = details.restart ?? false
    this.statusCode = details.statusCode
    this.retryAfterMs = details.retryAfterMs
    this.refusal = details.refusal
    this.changed = details.changed
    this.code = undefined
    this.attempt = undefined
  }
}

/**
 * An error thrown by the sink (or the progress callback), carried past the retry loop and
 * rethrown as the very same object: those are the caller's errors, not the network's.
 */
export class SinkError extends Error {
  readonly error: unknown

  constructor (error: unknown) {
    super('sink failed')
    this.name = 'SinkError'
    this.error = error
  }
}
