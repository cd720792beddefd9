/**
 * What a static file server answers to a Range request, as nginx does: `bytes=N-` and `bytes=N-M`
 * (clipped at the end), honoured when If-Range is absent or equals the file's ETag; a start past
 * the end is 416. The demo's and the benchmarks' file server and the e2e image server use it.
 */
export type RangeAnswer =
  | { status: 200 | 206; start: number; end: number; headers: Record<string, string> }
  | { status: 416; headers: Record<string, string> }

export function answerRange (headers: { range?: string; 'if-range'?: string }, sizeBytes: number, etag: string): RangeAnswer {
  const range = /^bytes=(\d+)-(\d*)$/.exec(headers.range ?? '')
  const honoured = range !== null && (headers['if-range'] === undefined || headers['if-range'] === etag)
  if (!honoured) return { status: 200, start: 0, end: sizeBytes, headers: { 'content-length': String(sizeBytes) } }
  const start = Number(range[1])
  if (start >= sizeBytes) return { status: 416, headers: { 'content-range': `bytes */${sizeBytes}` } }
  const end = range[2] === undefined || range[2] === '' ? sizeBytes : Math.min(sizeBytes, Number(range[2]) + 1)
  return { status: 206, start, end, headers: { 'content-length': String(end - start), 'content-range': `bytes ${start}-${end - 1}/${sizeBytes}` } }
}
