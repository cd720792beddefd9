/**
 * An image uploaded to S3 (AWS, radosgw, MinIO…) with the multipart API, its bytes read ONCE from
 * an AsyncIterable (a capture's stream, which cannot be replayed): CreateMultipartUpload, the
 * stream cut into parts sent by UploadPart a few at a time, CompleteMultipartUpload. A single PUT
 * is capped at 5 GiB by S3; this takes objects up to 10 000 parts of up to 5 GiB.
 *
 * Each part is held in memory until S3 took it, so a part that failed is sent again from there:
 * memory is bounded by partBytes × (partsInFlight + 1) (the parts on the wire and the one being
 * filled: buffers reused, never more allocated). Every request is signed with SigV4 over its
 * payload's SHA-256 (x-amz-content-sha256), so S3 itself refuses a part that arrived damaged.
 *
 * Failures: a network error, a 5xx (or S3's 400 RequestTimeout) is retried with a backoff, up to
 * `maxAttempts` per request, then CAPTURE_UPLOAD_FAILED; any other 4xx (403 bad signature or key,
 * 404 no bucket) is CAPTURE_UPLOAD_REFUSED at once. A CompleteMultipartUpload answered 200 with an
 * <Error> body (S3 does that once it has started answering) is a failure like a 5xx. On ANY
 * failure or cancel (the AbortSignal), the parts in flight are stopped and the upload is aborted
 * (AbortMultipartUpload), so no half-uploaded object is left behind, nor reported as uploaded.
 *
 * The credentials and the signatures are in the requests' headers only: never logged, never in an
 * error; S3's error bodies (which can echo the string to sign and the signature) are read for their
 * <Code> alone.
 */
import { createHash } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Agent, type Dispatcher } from 'undici'
import { errors, isInstallError } from '../errors/install-error.js'
import { safeUrl } from '../report/redact.js'
import { EMPTY_SHA256, encodeS3Path, signS3, uriEncode } from './s3-sigv4.js'

const MiB = 1024 * 1024
/** S3's smallest part but the last ("Amazon S3 multipart upload limits"). */
export const S3_MIN_PART_BYTES = 5 * MiB
/** S3's largest part. */
export const S3_MAX_PART_BYTES = 5 * 1024 * MiB
/** S3's most parts in one upload. */
export const S3_MAX_PARTS = 10_000
/** The smallest part chosen by default: fewer requests than S3's 5 MiB for small images. */
const DEFAULT_MIN_PART_BYTES = 8 * MiB
/** Parts on the wire at once: measured on loopback against radosgw (docs/s3-multipart.md). */
export const DEFAULT_PARTS_IN_FLIGHT = 4

/** Where an object goes, and the credentials that may put it there. */
export interface S3Target {
  /** http(s)://host[:port] of the S3 service, e.g. https://s3.eu-west-3.amazonaws.com. */
  endpoint: string
  /** The SigV4 signing region, e.g. us-east-1 (radosgw accepts it for its default zonegroup). */
  region: string
  bucket: string
  /** The object's key, raw (encoded here): `images/web-1.qcow2`. */
  key: string
  accessKeyId: string
  secretAccessKey: string
  /** A temporary credential's session token (AWS_SESSION_TOKEN). */
  sessionToken?: string
  /** path (default): ENDPOINT/BUCKET/KEY; virtual: the bucket in the host name, BUCKET.HOST/KEY. */
  addressing?: 'path' | 'virtual'
}

export interface MultipartOptions {
  target: S3Target
  /** The object's bytes, iterated once. */
  body: AsyncIterable<Buffer>
  /** The object's size if known, or a bound on it: the default part size is chosen from it. */
  expectedBytes?: number
  /** Default: defaultPartBytes(expectedBytes). */
  partBytes?: number
  /** Default DEFAULT_PARTS_IN_FLIGHT. */
  partsInFlight?: number
  signal?: AbortSignal
  logger?: Logger
  /** Attempts per request; default 5. */
  maxAttempts?: number
  /** Default 1000 ms, doubled at each attempt. */
  retryBaseDelayMs?: number
  /** No byte moving for this long fails the attempt; default 60 s. */
  idleTimeoutMs?: number
}

export interface MultipartResult {
  bytes: number
  parts: number
  partBytes: number
  /** Requests sent again after a failure (parts, creation or completion). */
  retries: number
}

/** The part size: the image in at most S3_MAX_PARTS parts (0.1 % spare, whole MiB), 8 MiB at least, 5 GiB at most. */
export function defaultPartBytes (expectedBytes: number | undefined): number {
  const needed = Math.ceil(((expectedBytes ?? 0) * 1.001) / S3_MAX_PARTS / MiB) * MiB
  return Math.min(S3_MAX_PART_BYTES, Math.max(DEFAULT_MIN_PART_BYTES, needed))
}

interface Address {
  origin: string
  host: string
  /** The object's path, encoded. */
  path: string
}

function address (target: S3Target): Address | string {
  let url: URL
  try {
    url = new URL(target.endpoint)
  } catch {
    return 'the S3 endpoint is not a URL'
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'the S3 endpoint is not an http(s) URL'
  if (url.username !== '' || url.password !== '' || url.search !== '' || (url.pathname !== '/' && url.pathname !== '')) {
    return 'the S3 endpoint must be scheme://host[:port] alone'
  }
  if (target.bucket === '' || target.key === '') return 'the S3 bucket and key must not be empty'
  if (target.addressing === 'virtual') {
    const host = `${target.bucket}.${url.host}`
    return { origin: `${url.protocol}//${host}`, host, path: encodeS3Path(target.key) }
  }
  return { origin: url.origin, host: url.host, path: encodeS3Path(target.bucket, target.key) }
}

/** The object's URL, without credentials (the result's imageURL, the messages and logs). */
export function s3ObjectUrl (target: S3Target): string {
  const where = address(target)
  return typeof where === 'string' ? safeUrl(target.endpoint) : safeUrl(`${where.origin}${where.path}`)
}

interface Answer {
  statusCode: number
  headers: Dispatcher.ResponseData['headers']
  /** The body's first MiB, as text. */
  text: string
}

/** S3's error code in an <Error> body (letters and digits only: the rest of the body is never shown). */
function s3ErrorCode (text: string): string | undefined {
  return /<Error>[\s\S]*?<Code>([A-Za-z0-9]{1,64})<\/Code>/.exec(text)?.[1]
}

function xmlEscape (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

/** A multipart object's ETag as S3 makes it: the MD5 of its parts' binary MD5s, then "-" and their count. */
function multipartEtag (partEtags: string[]): string {
  const md5 = createHash('md5')
  for (const etag of partEtags) md5.update(Buffer.from(etag.replace(/"/g, ''), 'hex'))
  return `"${md5.digest('hex')}-${partEtags.length}"`
}

export async function uploadMultipart (options: MultipartOptions): Promise<MultipartResult> {
  const { target, logger } = options
  const shownUrl = s3ObjectUrl(target)
  const where = address(target)
  if (typeof where === 'string') {
    logger?.error({ url: shownUrl, reason: where }, 'upload failed')
    throw errors.captureUploadFailed(shownUrl, new Error(where))
  }
  const partBytes = options.partBytes ?? defaultPartBytes(options.expectedBytes)
  const partsInFlight = Math.max(1, options.partsInFlight ?? DEFAULT_PARTS_IN_FLIGHT)
  const maxAttempts = options.maxAttempts ?? 5
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000
  const agent = new Agent({ connections: partsInFlight + 1, headersTimeout: idleTimeoutMs, bodyTimeout: idleTimeoutMs })
  // Aborted on cancel, or by the first part that failed for good: stops the others in flight.
  const stop = new AbortController()
  const onCancel = (): void => { stop.abort(options.signal?.reason) }
  options.signal?.addEventListener('abort', onCancel, { once: true })
  if (options.signal?.aborted === true) onCancel()
  let retries = 0

  /** One signed request; its answer's first MiB read. */
  const send = async (
    method: Dispatcher.HttpMethod, query: Array<[string, string]>, signal: AbortSignal, body?: Buffer, contentType?: string,
  ): Promise<Answer> => {
    const headers: Record<string, string> = { host: where.host }
    if (body !== undefined) headers['content-length'] = String(body.length)
    if (contentType !== undefined) headers['content-type'] = contentType
    const payloadHash = body === undefined ? EMPTY_SHA256 : createHash('sha256').update(body).digest('hex')
    const credentials = { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey, sessionToken: target.sessionToken }
    const signed = signS3({ method, path: where.path, query, headers, payloadHash }, { credentials, region: target.region, now: new Date() })
    // `?uploads` as S3's own clients send it; the canonical query has it as `uploads=`.
    const search = query.map(([name, value]) => value === '' ? uriEncode(name) : `${uriEncode(name)}=${uriEncode(value)}`).join('&')
    const response = await agent.request({
      origin: where.origin, path: search === '' ? where.path : `${where.path}?${search}`, method, headers: { ...headers, ...signed }, body, signal,
    })
    const chunks: Buffer[] = []
    let bytes = 0
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (bytes < MiB) chunks.push(chunk)
      bytes += chunk.length
    }
    return { statusCode: response.statusCode, headers: response.headers, text: Buffer.concat(chunks).toString('utf8') }
  }

  /** HTTP 503 (SlowDown): the status and S3's code, all a message or a log line shows of an answer. */
  const status = (answer: Answer): string => {
    const code = s3ErrorCode(answer.text)
    return `HTTP ${answer.statusCode}${code === undefined ? '' : ` (${code})`}`
  }

  /**
   * `once` retried on a network error, a 5xx or S3's RequestTimeout (it throws a plain Error);
   * a refusal (an InstallError) and a cancel end at once.
   */
  const withRetries = async <T>(what: string, signal: AbortSignal, once: (attempt: number) => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      signal.throwIfAborted()
      try {
        return await once(attempt)
      } catch (err) {
        if (signal.aborted) throw signal.reason
        if (isInstallError(err)) throw err
        const reason = err instanceof Error ? err.message : String(err)
        if (attempt >= maxAttempts) {
          logger?.error({ url: shownUrl, what, attempt, reason }, 'upload failed')
          throw errors.captureUploadFailed(shownUrl, err instanceof Error ? err : new Error(reason))
        }
        retries++
        const delayMs = (options.retryBaseDelayMs ?? 1000) * 2 ** (attempt - 1)
        logger?.warn({ url: shownUrl, what, attempt, reason, delayMs }, 'upload attempt failed; retrying')
        await sleep(delayMs, undefined, { signal })
      }
    }
  }

  /** A 2xx passes; a 5xx or RequestTimeout is retried; any other answer is S3's refusal. */
  const check = (answer: Answer, what: string): Answer => {
    if (answer.statusCode >= 200 && answer.statusCode < 300) return answer
    if (answer.statusCode >= 500 || s3ErrorCode(answer.text) === 'RequestTimeout') throw new Error(`${what}: ${status(answer)}`)
    logger?.error({ url: shownUrl, what, status: status(answer) }, 'upload refused')
    throw errors.captureUploadRefused(shownUrl, status(answer), new Error(`${what}: ${status(answer)}`))
  }

  const abortUpload = async (uploadId: string): Promise<void> => {
    // A signal of its own: the job's may be the reason we are here.
    const signal = AbortSignal.timeout(30_000)
    try {
      await withRetries('AbortMultipartUpload', signal, async () => {
        const answer = await send('DELETE', [['uploadId', uploadId]], signal)
        if (answer.statusCode === 404 && s3ErrorCode(answer.text) === 'NoSuchUpload') return
        check(answer, 'AbortMultipartUpload')
      })
      logger?.info({ url: shownUrl, uploadId }, 'multipart upload aborted')
    } catch (err) {
      logger?.error({ url: shownUrl, uploadId, reason: err instanceof Error ? err.message : String(err) },
        'could not abort the multipart upload: its parts stay stored until a lifecycle rule or an abort removes them')
    }
  }

  let uploadId: string | undefined
  const inFlight = new Set<Promise<void>>()
  try {
    uploadId = await withRetries('CreateMultipartUpload', stop.signal, async () => {
      const answer = check(await send('POST', [['uploads', '']], stop.signal), 'CreateMultipartUpload')
      const id = /<UploadId>([^<]+)<\/UploadId>/.exec(answer.text)?.[1]
      if (id === undefined) throw new Error('CreateMultipartUpload: no UploadId in the answer')
      return id
    })
    const id = uploadId
    logger?.info({ url: shownUrl, uploadId: id, partBytes, partsInFlight }, 'multipart upload starts')

    const etags: string[] = []
    let failure: Error | undefined
    const buffers: Buffer[] = []
    let allocated = 0
    const take = (): Buffer => {
      const free = buffers.pop()
      if (free !== undefined) return free
      allocated++
      return Buffer.allocUnsafe(partBytes)
    }
    let parts = 0
    const dispatch = async (buffer: Buffer, length: number): Promise<void> => {
      if (parts >= S3_MAX_PARTS) throw errors.captureUploadFailed(shownUrl, new Error(`more than ${S3_MAX_PARTS} parts of ${partBytes} bytes`))
      const partNumber = ++parts
      const body = buffer.subarray(0, length)
      const what = `UploadPart ${partNumber}`
      const upload = withRetries(what, stop.signal, async (attempt) => {
        const answer = check(await send('PUT', [['partNumber', String(partNumber)], ['uploadId', id]], stop.signal, body), what)
        const etag = answer.headers.etag
        if (typeof etag !== 'string' || etag === '') throw new Error(`${what}: no ETag in the answer`)
        logger?.debug({ part: partNumber, bytes: length, attempt }, 'part uploaded')
        etags[partNumber - 1] = etag
      }).then(() => { buffers.push(buffer) }, (err: unknown) => {
        failure ??= err instanceof Error ? err : new Error(String(err))
        stop.abort(err)
      })
      const tracked = upload.finally(() => { inFlight.delete(tracked) })
      inFlight.add(tracked)
      // Back-pressure: at most partsInFlight parts on the wire, so at most partsInFlight + 1 buffers.
      while (inFlight.size >= partsInFlight && failure === undefined) await Promise.race(inFlight)
      if (failure !== undefined) throw failure
    }

    let fill = take()
    let filled = 0
    let bytes = 0
    for await (const chunk of options.body) {
      if (failure !== undefined) throw failure
      stop.signal.throwIfAborted()
      for (let offset = 0; offset < chunk.length;) {
        const copied = chunk.copy(fill, filled, offset)
        filled += copied
        offset += copied
        if (filled === partBytes) {
          await dispatch(fill, filled)
          fill = take()
          filled = 0
        }
      }
      bytes += chunk.length
    }
    if (filled > 0 || parts === 0) await dispatch(fill, filled)
    await Promise.all(inFlight)
    if (failure !== undefined) throw failure
    logger?.debug({ allocatedBuffers: allocated, partBytes }, 'parts buffers')

    const completion = '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      etags.map((etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${xmlEscape(etag)}</ETag></Part>`).join('') +
      '</CompleteMultipartUpload>'
    await withRetries('CompleteMultipartUpload', stop.signal, async (attempt) => {
      const answer = await send('POST', [['uploadId', id]], stop.signal, Buffer.from(completion), 'application/xml')
      // Completed by an earlier attempt whose answer was lost: the upload is gone, the object is there with our parts' ETag.
      if (attempt > 1 && answer.statusCode === 404 && s3ErrorCode(answer.text) === 'NoSuchUpload') {
        const head = await send('HEAD', [], stop.signal)
        if (head.statusCode === 200 && head.headers.etag === multipartEtag(etags)) return
      }
      check(answer, 'CompleteMultipartUpload')
      // S3 answers 200 before it is done, and an <Error> in the body if it then failed. (radosgw
      // 16.2 answers an empty <ETag>: not a failure.)
      const code = s3ErrorCode(answer.text)
      if (code !== undefined) throw new Error(`CompleteMultipartUpload: HTTP ${answer.statusCode} with an error (${code})`)
    })
    logger?.info({ url: shownUrl, bytes, parts, retries }, 'multipart upload done')
    return { bytes, parts, partBytes, retries }
  } catch (err) {
    stop.abort(err)
    await Promise.allSettled(inFlight)
    if (uploadId !== undefined) await abortUpload(uploadId)
    if (options.signal?.aborted === true) throw options.signal.reason
    throw err
  } finally {
    options.signal?.removeEventListener('abort', onCancel)
    await agent.destroy().catch(() => {})
  }
}
