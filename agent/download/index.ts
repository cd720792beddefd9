export { download, MAX_DEADLINE_MS } from './http-download.js'
export type { DigestType, DownloadOptions, DownloadResult, DownloadSink } from './http-download.js'
