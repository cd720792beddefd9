/**
 * An image uploaded with one HTTP PUT (a WebDAV server, an object store's presigned URL), its
 * bytes streamed as they are made: `body()` gives them front to back, and is called again for each
 * attempt (a capture can read its disk again; nothing is held to replay). The length is announced
 * when known (Content-Length: presigned S3 PUTs require it), else the body goes chunked. A 2xx is success; a 4xx is the server's refusal
 * (credentials, an expired URL, too large: CAPTURE_UPLOAD_REFUSED, not retried); a network error
 * or a 5xx is retried after a backoff, up to `maxAttempts`, then CAPTURE_UPLOAD_FAILED. Redirects
 * are not followed (the body would have to be sent twice to an address nobody checked).
 * The customer's header values are sent and never logged.
 */
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Agent } from 'undici'
import { errors, isInstallError } from '../errors/install-error.js'
import { httpUrl, urlCredentials } from '../download/index.js'
import { safeUrl } from '../report/redact.js'

export interface PutOptions {
  url: string
  headers: Array<{ name: string; value: string }>
  /** Announced as Content-Length; undefined: the body is sent chunked. */
  contentLength: number | undefined
  body: () => AsyncIterable<Buffer>
  signal?: AbortSignal
  logger?: Logger
  /** Default 3. */
  maxAttempts?: number
  /** Default 1000 ms, doubled at each attempt. */
  retryBaseDelayMs?: number
  /** No byte moving for this long fails the attempt; default 60 s. */
  idleTimeoutMs?: number
}

export interface PutResult {
  statusCode: number
  attempts: number
}

export async function putStream (options: PutOptions): Promise<PutResult> {
  const shownUrl = safeUrl(options.url)
  const refuse = (reason: string): never => {
    options.logger?.error({ url: shownUrl, reason }, 'upload failed')
    throw errors.captureUploadFailed(shownUrl, new Error(reason))
  }
  const url = httpUrl(options.url)
  if (typeof url === 'string') return refuse(url)
  const maxAttempts = options.maxAttempts ?? 3
  const headers: string[] = options.contentLength === undefined
    ? ['content-type', 'application/octet-stream']
    : ['content-length', String(options.contentLength), 'content-type', 'application/octet-stream']
  const credentials = urlCredentials(url)
  for (const { name, value } of options.headers) headers.push(name, value)
  if (credentials !== undefined && !options.headers.some((h) => h.name.toLowerCase() === 'authorization')) headers.push('authorization', credentials)
  const path = `${url.pathname}${url.search}`
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted()
    const agent = new Agent({ headersTimeout: options.idleTimeoutMs ?? 60_000, bodyTimeout: options.idleTimeoutMs ?? 60_000 })
    try {
      options.logger?.info({ url: shownUrl, attempt, contentLength: options.contentLength }, 'upload starts')
      const body = Readable.from(options.body(), { objectMode: false })
      const response = await agent.request({ origin: url.origin, path, method: 'PUT', headers, body, signal: options.signal })
      await response.body.dump({ limit: 64 * 1024 }).catch(() => {})
      const { statusCode } = response
      if (statusCode >= 200 && statusCode < 300) {
        options.logger?.info({ url: shownUrl, attempt, statusCode }, 'upload done')
        return { statusCode, attempts: attempt }
      }
      const status = `HTTP ${statusCode}`
      if (statusCode < 500) {
        options.logger?.error({ url: shownUrl, attempt, statusCode }, 'upload refused')
        throw errors.captureUploadRefused(shownUrl, status, new Error(status))
      }
      throw new Error(status) // a 5xx: retried below
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason
      if (isInstallError(err)) throw err
      const reason = err instanceof Error ? err.message : String(err)
      if (attempt >= maxAttempts) {
        options.logger?.error({ url: shownUrl, attempt, reason }, 'upload failed')
        throw errors.captureUploadFailed(shownUrl, err instanceof Error ? err : new Error(reason))
      }
      const delayMs = (options.retryBaseDelayMs ?? 1000) * 2 ** (attempt - 1)
      options.logger?.warn({ url: shownUrl, attempt, reason, delayMs }, 'upload attempt failed; retrying')
      await sleep(delayMs, undefined, { signal: options.signal })
    } finally {
      await agent.destroy().catch(() => {})
    }
  }
}

