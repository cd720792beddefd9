/**
 * What is worth another attempt, and how long to wait before it. Pure functions.
 */
import { parseHttpDate } from './validators.js'

/** Statuses followed as redirects (RFC 9110 §15.4); every request is a GET, so 303 needs no change. */
export function isRedirectStatus (statusCode: number): boolean {
  return statusCode === 301 || statusCode === 302 || statusCode === 303 || statusCode === 307 || statusCode === 308
}

/** 408 Request Timeout, 429 Too Many Requests and every 5xx may pass; any other 4xx will not. */
export function isRetryableStatus (statusCode: number): boolean {
  return statusCode === 408 || statusCode === 429 || (statusCode >= 500 && statusCode <= 599)
}

/** Retry-After is honoured on these two only (RFC 9110 §10.2.3; RFC 6585 §4). */
export function honoursRetryAfter (statusCode: number): boolean {
  return statusCode === 429 || statusCode === 503
}

/**
 * Error codes of failures that another attempt may cure: the connection was refused, reset,
 * timed out or closed mid-body, the name did not resolve (yet), or the response was garbled
 * (llhttp's `HPE_*`). Anything else (TLS certificate errors, invalid arguments, bugs) fails at once.
 */
const RETRYABLE_ERROR_CODES = new Set([
  // node:net and DNS
  'ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN',
  'ENETUNREACH', 'ENETDOWN', 'ENETRESET', 'EAI_AGAIN', 'ENOTFOUND', 'EADDRNOTAVAIL',
  // undici
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_SOCKET',
  'UND_ERR_CLOSED', 'UND_ERR_INFO', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
])

/** The `code` of an error, or of the first error of an AggregateError (happy eyeballs). */
export function errorCode (err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined
  const code: unknown = (err as { code?: unknown }).code
  if (typeof code === 'string') return code
  if (err instanceof AggregateError) return errorCode(err.errors[0])
  return undefined
}

export function isRetryableError (err: unknown): boolean {
  const code = errorCode(err)
  if (code === undefined) return false
  return RETRYABLE_ERROR_CODES.has(code) || code.startsWith('HPE_')
}

/**
 * Retry-After as milliseconds from `nowMs`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
 * A date in the past means 0; anything unparsable, undefined.
 */
export function parseRetryAfterMs (value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) {
    const seconds = Number(text)
    return Number.isSafeInteger(seconds) ? seconds * 1000 : undefined
  }
  const dateMs = parseHttpDate(text)
  if (dateMs === undefined) return undefined
  return Math.max(0, dateMs - nowMs)
}

export interface RetryDelayInput {
  /** The attempt that just failed, 1-based. */
  attempt: number
  baseDelayMs: number
  maxDelayMs: number
  /** What the server asked for (Retry-After), if anything. */
  retryAfterMs?: number | undefined
  /** In [0, 1); Math.random by default, fixed in tests. */
  random?: () => number
}

/**
 * The wait before the next attempt: the server's Retry-After when given, else exponential
 * backoff (base × 2^(attempt − 1)) with "equal jitter" (half fixed, half random, so retries of
 * many agents spread out but never collapse to zero); both capped at maxDelayMs.
 */
export function retryDelayMs (input: RetryDelayInput): number {
  const { attempt, baseDelayMs, maxDelayMs, retryAfterMs } = input
  if (retryAfterMs !== undefined) return Math.min(maxDelayMs, retryAfterMs)
  const exponential = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, attempt - 1))
  const random = input.random ?? Math.random
  return Math.round(exponential / 2 + random() * exponential / 2)
}
