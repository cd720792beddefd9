export { download } from './http-download.js'
export { MAX_DEADLINE_MS } from './http-request.js'
export type { DigestType, DownloadOptions, DownloadResult } from './http-download.js'
export type { DownloadSink, Slab } from './slab-feed.js'
