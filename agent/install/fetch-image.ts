import type { Logger } from 'pino'
import { download, type DownloadOptions, type DownloadResult, type DownloadSink } from '../download/index.js'
import type { InstallRequest } from '../payload/install-request.js'
import type { InstallEventListener } from '../report/progress.js'
import { redactHeaders, safeUrl } from '../report/redact.js'

export type DownloadTuning = Pick<DownloadOptions, 'connectTimeoutMs' | 'idleTimeoutMs' | 'lowSpeedLimitBytesPerSecond' | 'lowSpeedTimeMs' | 'deadlineMs' | 'maxAttempts' | 'retryBaseDelayMs' | 'maxRedirects'>

export interface FetchOptions {
  signal: AbortSignal | undefined
  logger: Logger | undefined
  emit: InstallEventListener
  downloadTuning: DownloadTuning | undefined
}

const PROGRESS_INTERVAL_MS = 200

/**
 * The download step: the image from the request's URL, with its headers, into `sink` (the image
 * stage), its digest computed upstream of the sink; progress at most every 200 ms, and once at the
 * end. The result is not verified yet.
 */
export async function fetchImage (request: InstallRequest, sink: DownloadSink, options: FetchOptions): Promise<DownloadResult> {
  const { logger, emit } = options
  let lastProgressAt = 0
  const progress = (bytes: number, totalBytes: number | undefined, force = false): void => {
    const now = Date.now()
    if (!force && now - lastProgressAt < PROGRESS_INTERVAL_MS) return
    lastProgressAt = now
    emit({ type: 'progress', step: 'download', bytes, totalBytes })
  }
  const headers = redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value])))
  logger?.info({ url: safeUrl(request.imageUrl), headers, checksumType: request.checksum?.type }, 'download')
  const fetched = await download({
    ...options.downloadTuning,
    url: request.imageUrl,
    headers: request.httpHeaders,
    digestType: request.checksum?.type,
    signal: options.signal,
    logger,
    onProgress: (p) => progress(p.bytes, p.totalBytes),
  }, sink)
  progress(fetched.bytes, fetched.contentLength, true)
  return fetched
}
