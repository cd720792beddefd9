/**
 * A piece of the image's file, by `Range`: what a streamed qcow2 reads first (its header, L1 and
 * L2 tables) before it downloads the whole file once. The request is download()'s (http-request:
 * the same headers, redirects, timeouts; retry-loop: the same retries), the answer held in memory,
 * never more than the bytes asked.
 */
import { redactHeaders } from '../report/redact.js'
import { AttemptFailure } from './attempt-failure.js'
import { checkPartialAnswer, checkWholeAnswer } from './file-version.js'
import {
  announcedLength, closeAfterBody, dispose, prepare, refuseEncoding, requestFollowingRedirects, statusFailure, watchBodySpeed,
  type Answer, type Job, type RequestOptions,
} from './http-request.js'
import { retryAttempts } from './retry-loop.js'
import { headerValue, ifRangeValidator, parseContentLength, parseContentRange, parseUnsatisfiedRange } from './validators.js'
import { bodyChunks } from './body-chunks.js'
import type { KeptConnection } from './connection.js'

export interface RangeOptions extends RequestOptions {
  /** The first byte asked, from 0. */
  start: number
  /** One past the last byte asked (exclusive): more than start. */
  end: number
  /**
   * If-Range value from an earlier answer (a RangeResult's or a DownloadResult's validator): the
   * bytes must be of that version of the file, else IMAGE_CHANGED.
   */
  validator?: string
  /** The file's size from an earlier answer: an answer for a file of another size is IMAGE_CHANGED. */
  totalBytes?: number
  /**
   * Where fetchRangeChunks() copies the body, from its first byte (at least end − start long): its
   * one chunk is then a view of it. A parallel download reuses a few such buffers for all its parts,
   * so the network's chunks die young instead of being held, part after part, until the parts
   * before arrive (measured: peak RSS of a 2 GiB raw install at 4 connections 236 MiB with the
   * chunks held, against 141 MiB on one connection).
   */
  into?: Buffer
  /** The run's connection, kept open across its requests (a parallel download's worker); default: one of its own. */
  connection?: KeptConnection
}

/** The bytes asked, from a 206 whose Content-Range is the range asked (clipped at the file's end). */
export interface RangeData {
  kind: 'range'
  /** Bytes start to min(end, totalBytes): fewer than asked only where the file ends. */
  data: Buffer
  /** The file's size, from Content-Range; undefined when the server sent `*`. */
  totalBytes: number | undefined
  /** The If-Range value for later requests of the same version: the one given, else the answer's own strong one, if any. */
  validator: string | undefined
  attempts: number
}

/** The server answered 200, the whole file (it does not do ranges): its body was not read. */
export interface WholeFile {
  kind: 'whole'
  /** The 200's Content-Length, if it sent one. */
  totalBytes: number | undefined
  /** The 200's own strong validator, if any. */
  validator: string | undefined
  attempts: number
}

export type RangeResult = RangeData | WholeFile

/** The bytes asked as the network brought them, or in `into` (parallel-download hands them on without another copy). */
export interface RangeChunks extends Omit<RangeData, 'data'> {
  /** Bytes start to min(end, totalBytes), in order, as undici gave them. */
  chunks: Buffer[]
}

/**
 * GETs bytes `start` to `end` − 1 of `options.url` (`Range: bytes=start-(end−1)`, with `If-Range`
 * when a validator is given), through redirects and retries as download() does.
 *
 * Resolves with the bytes (kind 'range'), or with kind 'whole' when the server answers a Range
 * without If-Range with the whole file (the caller falls back to download(); the body is dropped
 * unread). Rejects with IMAGE_CHANGED when the answer is of another version than `validator` or
 * `totalBytes` say (a 200 to the If-Range, another ETag or Last-Modified, another size); with
 * DOWNLOAD_FAILED when the range lies wholly past the file's end (HTTP 416), when a 206 is not of
 * the range asked or its body is longer than asked (past the retries for the first), or as
 * download() does (network errors, HTTP errors, the deadline); with DOWNLOAD_REFUSED for a
 * Content-Encoding or a Content-Length that cannot be the file's bytes; with an AbortError (or
 * the signal's reason) when aborted.
 */
export async function fetchRange (options: RangeOptions): Promise<RangeResult> {
  const result = await fetchRangeChunks(options)
  if (result.kind === 'whole') return result
  const { chunks, ...rest } = result
  return { ...rest, data: chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks) }
}

/**
 * fetchRange(), the bytes left in the chunks they came in, or copied into `options.into` (one
 * chunk then): no buffer of the range's length is allocated for it.
 */
export async function fetchRangeChunks (options: RangeOptions): Promise<RangeChunks | WholeFile> {
  const { start, end, into } = options
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end <= start) {
    throw new RangeError(`a range is start < end, both integers from 0, got ${start} to ${end}`)
  }
  if (into !== undefined && into.length < end - start) throw new RangeError(`a buffer of ${into.length} bytes for a range of ${end - start}`)
  const job = prepare(options, 'range fetch')
  const range = `bytes=${start}-${end - 1}`
  job.logger?.debug({
    url: job.shownUrl, range, ifRange: options.validator !== undefined,
    headers: redactHeaders(Object.fromEntries(options.headers.map((h) => [h.name, h.value]))),
  }, 'range fetch starts')
  const { value, attempts } = await retryAttempts(job, {
    attempt: async () => await fetchOnce(job, options, range),
    logged: () => ({ range }),
  })
  const bytes = value.kind === 'range' ? value.chunks.reduce((sum, chunk) => sum + chunk.length, 0) : 0
  job.logger?.debug({ url: job.shownUrl, range, kind: value.kind, bytes, attempts }, 'range fetch done')
  return { ...value, attempts }
}

type Fetched = Omit<RangeChunks, 'attempts'> | Omit<WholeFile, 'attempts'>

/** One attempt: the request through its redirects, then the answer judged and its body, if taken, read. */
async function fetchOnce (job: Job, options: RangeOptions, range: string): Promise<Fetched> {
  const { validator } = options
  const rangeHeaders = validator === undefined ? ['range', range] : ['range', range, 'if-range', validator]
  const answer = await requestFollowingRedirects(job, rangeHeaders, options.connection)
  let closed = false
  try {
    const { statusCode, headers } = answer
    if (statusCode === 200) {
      if (validator !== undefined) checkWholeAnswer(validator, statusCode, headers)
      // Not read: the caller downloads the file whole anyway, and one answer is held, not two.
      return { kind: 'whole', totalBytes: parseContentLength(headerValue(headers, 'content-length')), validator: ifRangeValidator(headers) }
    }
    if (statusCode === 416) throw pastTheEnd(answer, options)
    if (statusCode !== 206) throw statusFailure(answer)
    refuseEncoding(answer)
    const { length, totalBytes } = planRange(answer, options)
    const chunks = await readBody(job, answer, length, options.into)
    closed = true
    await closeAfterBody(answer)
    return { kind: 'range', chunks, totalBytes, validator: validator ?? ifRangeValidator(headers) }
  } finally {
    if (!closed) await dispose(answer)
  }
}

/** A 206 must be the version asked for, and carry the range asked, clipped at the file's end: its length then. */
function planRange (answer: Answer, options: RangeOptions): { length: number; totalBytes: number | undefined } {
  const { statusCode, headers } = answer
  const range = parseContentRange(headerValue(headers, 'content-range'))
  // A file of another version ends the fetch, whatever the rest of the answer says.
  checkPartialAnswer(options, statusCode, headers, range?.totalBytes)
  const contentLength = announcedLength(answer)
  const mismatch = (why: string): AttemptFailure => new AttemptFailure(`HTTP 206 ${why}`, { retryable: true, statusCode })
  if (range === undefined) throw mismatch('without a valid Content-Range')
  // With `*` for the size, a range that stops short cannot be told from one cut by the file's end: only the range asked will do.
  const last = Math.min(options.end, range.totalBytes ?? options.end) - 1
  if (range.start !== options.start || range.end !== last) {
    throw mismatch(`for bytes ${range.start}-${range.end} where bytes ${options.start}-${last} were asked`)
  }
  const length = range.end - range.start + 1
  if (contentLength !== undefined && contentLength !== length) throw mismatch(`with Content-Length ${contentLength} for a range of ${length} bytes`)
  return { length, totalBytes: range.totalBytes }
}

/**
 * A 416: no byte of the range is in the file (of the size its Content-Range says), or the file is
 * not the version asked for. Every attempt would get the same answer.
 */
function pastTheEnd (answer: Answer, options: RangeOptions): AttemptFailure {
  const { statusCode, headers } = answer
  const totalBytes = parseUnsatisfiedRange(headerValue(headers, 'content-range'))
  checkPartialAnswer(options, statusCode, headers, totalBytes)
  const size = totalBytes === undefined ? 'of a size it did not say' : `of ${totalBytes} bytes`
  return new AttemptFailure(`HTTP 416: bytes ${options.start}-${options.end - 1} lie past the end of the file, ${size}`, { retryable: false, statusCode })
}

/** The body's chunks (or one view of `into`, where they were copied), the length planned: a byte more is refused before it is held. */
async function readBody (job: Job, answer: Answer, length: number, into: Buffer | undefined): Promise<Buffer[]> {
  const chunks: Buffer[] = []
  const speed = watchBodySpeed(job)
  let received = 0
  for await (const chunk of bodyChunks(answer.body)) {
    speed.arrived(chunk.length)
    if (received + chunk.length > length) {
      throw new AttemptFailure(`the body is longer than the ${length} bytes of its Content-Range`, { retryable: false, statusCode: answer.statusCode })
    }
    if (into === undefined) chunks.push(chunk)
    else chunk.copy(into, received)
    received += chunk.length
    speed.waiting()
  }
  if (received < length) throw new AttemptFailure(`the body ended after ${received} of ${length} bytes`, { retryable: true, statusCode: answer.statusCode })
  return into === undefined ? chunks : [into.subarray(0, length)]
}
