export { download } from './http-download.js'
export type { DigestType, DownloadOptions, DownloadResult, DownloadSink } from './http-download.js'
