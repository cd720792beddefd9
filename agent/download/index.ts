export { download, MAX_DEADLINE_MS } from './http-download.js'
export type { DigestType, DownloadOptions, DownloadResult } from './http-download.js'
export type { DownloadSink, Slab } from './slab-feed.js'
