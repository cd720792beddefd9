import type { Logger } from 'pino'
import {
  DEFAULT_CONNECTIONS, fetchRange, parallelDownload, partWindowBytes, type DownloadResult, type DownloadSink, type ParallelDownloadOptions,
} from '../download/index.js'
import type { RangeReader } from '../image/qcow2/fetch-tables.js'
import type { InstallRequest } from '../payload/install-request.js'
import { redactHeaders, safeUrl } from '../report/redact.js'

export type DownloadTuning = Pick<ParallelDownloadOptions,
  'connectTimeoutMs' | 'idleTimeoutMs' | 'lowSpeedLimitBytesPerSecond' | 'lowSpeedTimeMs' | 'deadlineMs' | 'maxAttempts' | 'retryBaseDelayMs' | 'maxRedirects' |
  'connections' | 'partBytes'>

export interface FetchOptions {
  signal: AbortSignal | undefined
  logger: Logger | undefined
  /** Download progress, as the bytes come (the caller throttles). */
  onProgress: (bytes: number, totalBytes: number | undefined) => void
  downloadTuning: DownloadTuning | undefined
}

/**
 * The download step: the image from the request's URL, with its headers, into `sink` (the image
 * stage), its digest computed upstream of the sink, over `connections` parallel ranges when the
 * server allows (download/parallel-download). The result is not verified yet.
 */
export async function fetchImage (request: InstallRequest, sink: DownloadSink, options: FetchOptions): Promise<DownloadResult> {
  const { logger, onProgress } = options
  const headers = redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value])))
  logger?.info({ url: safeUrl(request.imageUrl), headers, checksumType: request.checksum?.type }, 'download')
  const fetched = await parallelDownload({
    ...options.downloadTuning,
    url: request.imageUrl,
    headers: request.httpHeaders,
    digestType: request.checksum?.type,
    signal: options.signal,
    logger,
    onProgress: (p) => onProgress(p.bytes, p.totalBytes),
  }, sink)
  onProgress(fetched.bytes, fetched.contentLength)
  return fetched
}

/** The parts of a parallel download may take this share of the memory budget, at most. */
const WINDOW_SHARE_OF_BUDGET = 4

/**
 * The connections asked (or the default), fewer when their window of parts would take more than a
 * quarter of the memory budget: the window is held outside the image's budget, and a small
 * rescue system (a budget of 64 MiB) must not run out of memory for speed. At least one.
 */
export function connectionsWithin (memoryLimitBytes: number, tuning: DownloadTuning | undefined): number {
  const asked = tuning?.connections ?? DEFAULT_CONNECTIONS
  let connections = asked
  while (connections > 1 && partWindowBytes(connections, tuning?.partBytes) * WINDOW_SHARE_OF_BUDGET > memoryLimitBytes) connections--
  return connections
}

/**
 * Reads ranges of the request's image with its headers, of the version the download's answer
 * showed (`validator` as If-Range, `totalBytes` as the size; another version is IMAGE_CHANGED);
 * undefined from a server that answers a Range with the whole file.
 */
export function rangeReader (
  request: InstallRequest, options: Omit<FetchOptions, 'onProgress'>, version: { validator: string | undefined; totalBytes: number },
): RangeReader {
  return async (offset, length) => {
    const answer = await fetchRange({
      ...options.downloadTuning,
      url: request.imageUrl,
      headers: request.httpHeaders,
      signal: options.signal,
      logger: options.logger,
      start: offset,
      end: offset + length,
      validator: version.validator,
      totalBytes: version.totalBytes,
    })
    return answer.kind === 'range' ? answer.data : undefined
  }
}
