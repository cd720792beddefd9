/**
 * Response header parsing for resumed downloads: which validator may guard a `Range` request,
 * and what a `Content-Range` or `Content-Length` says. Pure functions over header values.
 */

/** Response headers as undici gives them. */
export type ResponseHeaders = Record<string, string | string[] | undefined>

/** One header's value; a repeated header (an array) counts as absent: we cannot tell which one holds. */
export function headerValue (headers: ResponseHeaders, name: string): string | undefined {
  const value = headers[name]
  return typeof value === 'string' ? value : undefined
}

// entity-tag = [ weak ] opaque-tag; opaque-tag = DQUOTE *etagc DQUOTE;
// etagc = %x21 / %x23-7E / obs-text (RFC 9110 §8.8.3). The weak prefix `W/` makes it fail the test.
const STRONG_ETAG = /^"[\x21\x23-\x7e\x80-\xff]*"$/

/** The ETag when it is strong: If-Range with a weak entity tag never matches (RFC 9110 §13.1.5). */
export function strongEtag (value: string | undefined): string | undefined {
  if (value === undefined) return undefined
  const tag = value.trim()
  return STRONG_ETAG.test(tag) ? tag : undefined
}

/**
 * An HTTP-date as ms since the epoch, or undefined. All three formats RFC 9110 §5.6.7 accepts
 * (IMF-fixdate, rfc850, asctime) start with a day name; Date.parse alone would take "-5" or "7".
 */
export function parseHttpDate (value: string): number | undefined {
  const text = value.trim()
  if (!/^[A-Za-z]{3}/.test(text)) return undefined
  const ms = Date.parse(text)
  return Number.isNaN(ms) ? undefined : ms
}

/** Last-Modified is only as strong as its clock: at least one second older than Date (RFC 9110 §8.8.2.2). */
const LAST_MODIFIED_MIN_AGE_MS = 1000

/**
 * Last-Modified when it may stand in If-Range: a valid HTTP date, and the response's own Date at
 * least a second later. Otherwise the file may have changed within the same second and a resume
 * could splice two versions of it.
 */
export function strongLastModified (lastModified: string | undefined, date: string | undefined): string | undefined {
  if (lastModified === undefined || date === undefined) return undefined
  const modifiedMs = parseHttpDate(lastModified)
  const dateMs = parseHttpDate(date)
  if (modifiedMs === undefined || dateMs === undefined) return undefined
  return dateMs - modifiedMs >= LAST_MODIFIED_MIN_AGE_MS ? lastModified.trim() : undefined
}

/**
 * The value to send in `If-Range` when resuming this response's body: its strong ETag, else its
 * Last-Modified (when strong); undefined when nothing can prove the file unchanged, and then the
 * download must not resume at all.
 */
export function ifRangeValidator (headers: ResponseHeaders): string | undefined {
  return strongEtag(headerValue(headers, 'etag')) ??
    strongLastModified(headerValue(headers, 'last-modified'), headerValue(headers, 'date'))
}

/**
 * Whether an answer may be part of the file `validator` (an If-Range value) names: its own ETag
 * or Last-Modified, when it sends the kind the validator is, must be that validator. An answer
 * that sends none is taken on the server's word (it answered the If-Range).
 */
export function sameValidator (validator: string | undefined, headers: ResponseHeaders): boolean {
  if (validator === undefined) return true
  if (validator.startsWith('"')) {
    const etag = strongEtag(headerValue(headers, 'etag'))
    return etag === undefined || etag === validator
  }
  const lastModified = headerValue(headers, 'last-modified')
  return lastModified === undefined || lastModified.trim() === validator
}

/**
 * Whether an answer shows `validator` itself: its strong ETag, or its Last-Modified strong by its
 * own Date, is that value. A positive proof of the same version, whatever the answer's status (a
 * 200 to an If-Range from a server that ignores Range may still be the very file).
 */
export function showsValidator (validator: string, headers: ResponseHeaders): boolean {
  if (validator.startsWith('"')) return strongEtag(headerValue(headers, 'etag')) === validator
  return strongLastModified(headerValue(headers, 'last-modified'), headerValue(headers, 'date')) === validator
}

export interface ContentRange {
  /** First byte of the body in the whole file. */
  start: number
  /** Last byte of the body in the whole file (inclusive). */
  end: number
  /** Size of the whole file; undefined when the server sent `*`. */
  totalBytes: number | undefined
}

// Content-Range = range-unit SP ( range-resp / unsatisfied-range );
// range-resp = incl-range "/" ( complete-length / "*" ) (RFC 9110 §14.4).
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/i

/** A `Content-Range: bytes first-last/complete-length` with first ≤ last < complete-length, or undefined. */
export function parseContentRange (value: string | undefined): ContentRange | undefined {
  if (value === undefined) return undefined
  const match = CONTENT_RANGE.exec(value.trim())
  if (match === null) return undefined
  const start = toSafeInteger(match[1])
  const end = toSafeInteger(match[2])
  const totalBytes = match[3] === '*' ? undefined : toSafeInteger(match[3])
  if (start === undefined || end === undefined || start > end) return undefined
  if (match[3] !== '*' && (totalBytes === undefined || end >= totalBytes)) return undefined
  return { start, end, totalBytes }
}

// unsatisfied-range = "*/" complete-length (RFC 9110 §14.4), as a 416 sends it.
const UNSATISFIED_RANGE = /^bytes \*\/(\d+)$/i

/** The file's size in a 416's `Content-Range: bytes *\/complete-length`, or undefined. */
export function parseUnsatisfiedRange (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  return toSafeInteger(UNSATISFIED_RANGE.exec(value.trim())?.[1])
}

/** `Content-Length` as a safe integer, or undefined (absent, or not a safe integer: the download refuses that). */
export function parseContentLength (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  return toSafeInteger(value.trim())
}

function toSafeInteger (digits: string | undefined): number | undefined {
  if (digits === undefined || !/^\d+$/.test(digits)) return undefined
  const n = Number(digits)
  return Number.isSafeInteger(n) ? n : undefined
}
