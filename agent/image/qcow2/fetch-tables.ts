/**
 * A qcow2's tables fetched ahead of its stream (Range requests, by the caller's reader): the header's
 * cluster, then the L1 table it names, then the L2 tables the L1 names, each step checked as
 * openQcow2 checks it, so that every refusal comes before the first byte is written and the stream
 * keeps nothing. Ranges close to each other go in one request.
 */
import { TimeSlice } from '../../time-slice.js'
import type { SparseSource } from '../sparse-source.js'
import { Qcow2StreamMap, type ByteRange } from './stream-map.js'

/** Bytes [offset, offset + length) of the file, clipped at its end; undefined when the server does not serve ranges. */
export type RangeReader = (offset: number, length: number) => Promise<Buffer | undefined>

/** Wanted ranges this close are fetched as one: a request costs more than this many bytes. */
const JOIN_GAP_BYTES = 256 * 1024 // 256 KiB
/** One request fetches at most this much. */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024 // 16 MiB
/** The first request: qemu's default cluster size, the header's cluster whole. */
const FIRST_REQUEST_BYTES = 64 * 1024 // 64 KiB
/** Requests under way at once. */
const MAX_PARALLEL = 4

export interface FetchedTables {
  tables: SparseSource
  /** Range requests made, and the bytes they brought. */
  requests: number
  bytes: number
}

/**
 * The tables of a `fileBytes`-byte qcow2 through `read`; undefined when the server does not serve
 * ranges (the stream then reads them as they come). `checkFirstBytes` sees the file's first bytes
 * before they are parsed. Throws what the checks throw (QCOW2_UNSUPPORTED, QCOW2_DAMAGED) and what
 * the reader throws.
 */
export async function fetchQcow2Tables (
  fileBytes: number, read: RangeReader, options: { signal?: AbortSignal; checkFirstBytes?: (first: Buffer) => void } = {},
): Promise<FetchedTables | undefined> {
  const map = new Qcow2StreamMap(fileBytes, new TimeSlice(options.signal))
  let requests = 0
  let bytes = 0
  let firstChecked = false
  while (map.image === undefined) {
    // The first request asks for the header's cluster at its usual size at once (64 KiB), not 24 bytes to learn it.
    const wanted = requests === 0 ? [{ offset: 0, length: Math.min(fileBytes, FIRST_REQUEST_BYTES) }] : joined(map.wanted())
    // Never for a file whose checks passed: each step names what the next needs.
    if (wanted.length === 0) throw new Error('the qcow2 map wants nothing and is not whole')
    let unsupported = false
    for (let first = 0; first < wanted.length && !unsupported; first += MAX_PARALLEL) {
      const batch = wanted.slice(first, first + MAX_PARALLEL)
      const got = await Promise.all(batch.map(async (range) => await read(range.offset, range.length)))
      for (const [index, data] of got.entries()) {
        if (data === undefined) {
          unsupported = true
          break
        }
        requests++
        bytes += data.length
        map.tables.add((batch[index] as ByteRange).offset, data)
      }
    }
    if (unsupported) return undefined
    if (!firstChecked) options.checkFirstBytes?.(map.tables.view(0, Math.min(fileBytes, 8)))
    firstChecked = true
    await map.advance(() => {})
  }
  return { tables: map.tables, requests, bytes }
}

/** Ranges in file order, those closer than JOIN_GAP_BYTES joined, none over MAX_REQUEST_BYTES (unless one alone is). */
function joined (ranges: ByteRange[]): ByteRange[] {
  const out: ByteRange[] = []
  for (const range of ranges) {
    const last = out[out.length - 1]
    const end = range.offset + range.length
    if (last !== undefined && range.offset - (last.offset + last.length) <= JOIN_GAP_BYTES && end - last.offset <= MAX_REQUEST_BYTES) {
      last.length = end - last.offset
    } else out.push({ ...range })
  }
  return out
}
