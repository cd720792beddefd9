/**
 * The image over several connections at once: object stores and CDNs cap each connection (often
 * 50–200 MB/s), not the client. The file is cut in parts of PART_BYTES; `connections` workers each
 * fetch the next part by `Range` (ranged-get: If-Range with the first answer's validator, the size
 * checked), a bounded window of parts is held (part-window), and the parts go to the same SlabFeed
 * as download()'s, in order, as the prefix fills: every byte reaches the sink exactly once, in
 * order, and the digest is over the bytes in order, as with one connection.
 *
 * The first request is a short first part, `Range: bytes=0-(FIRST_PART_BYTES−1)` without
 * If-Range: its 206 tells the file's size and its validator. Without both (a 200: no ranges; a 206 without a strong
 * ETag or Last-Modified, or with `*` for the size) the file is downloaded on one connection by
 * download(): parts from two answers without a validator could splice two versions of the file.
 */
import { errors, isInstallError } from '../errors/install-error.js'
import { AttemptFailure } from './attempt-failure.js'
import { download, type DownloadOptions, type DownloadResult } from './http-download.js'
import { abortError, isAborted, prepare, type Job } from './http-request.js'
import { KeptConnection } from './connection.js'
import { PartWindow } from './part-window.js'
import { fetchRangeChunks, type RangeOptions } from './ranged-get.js'
import { SlabFeed, type DownloadSink } from './slab-feed.js'

/**
 * Connections by default: 4. Measured (docs/benchmarks.md, "Parallel ranges": 1 GiB from a server
 * capping each connection at 50 MiB/s, the agent streaming it to a disk with its sha512, 2 cores):
 * on a quiet machine one connection took 21.1 s, 4 took 6.5 s (×3.2) and 8 took 5.1 s (×4.1) with
 * more peak RSS (each connection adds a part to the window); under a load of 3 to 5, 8 were no
 * faster than 4 (8.6 s against 7.9 s). 4 takes most of the gain with a window of 40 MiB, and opens
 * half the connections to a server that may count or throttle them; --connections 8 is there for
 * a fast link to a server that caps each stream low.
 */
export const DEFAULT_CONNECTIONS = 4
/** `--connections` takes 1 to this: past it a server is more likely to refuse or throttle us than to go faster. */
export const MAX_CONNECTIONS = 16
/**
 * 8 MiB: each part is a request of its own (a worker's parts go one after another on its kept
 * connection), so a part must be long next to a request's round trip at 50–200 MB/s; and the
 * window holds a part per connection and one more, 40 MiB at 4 connections. Measured over loopback at 50 MiB/s
 * per connection: 4, 8 and 16 MiB parts within the noise of each other at 4 connections (512 MiB),
 * 32 MiB slower; in the bench's A/B (1 GiB, 3 rounds) 16 MiB was no faster at 4 connections and
 * slower at 8, with 90–160 MiB more peak RSS. With kept connections, 4 MiB parts ran as fast over
 * loopback (1 GiB at 50 MiB/s per connection, streamed: 6.89 and 7.16 s against 6.79 and 7.01)
 * with 23 MiB less peak RSS (152–154 MiB against 175–178); but on a real network each part waits
 * a round trip for its request (20 ms is 40 % of a 4 MiB part at 200 MB/s), so 8 MiB stays.
 */
export const PART_BYTES = 8 * 1024 * 1024
/**
 * 1 MiB: the first part is fetched alone (nothing is known before its answer), so it is short: at
 * 50 MiB/s it holds the other connections back 20 ms, not the 160 ms of a whole part; and a
 * server that turns out to need one GET (no validator) has sent little for nothing.
 */
export const FIRST_PART_BYTES = 1024 * 1024
/**
 * Parts held besides one per connection: the window is a part per connection and this many more,
 * so a connection done with its part goes on while the oldest one is handed to the sink. Measured
 * (1 GiB at 50 MiB/s per connection, 4 connections, streamed to a disk with its sha512, 3
 * interleaved runs): 2 parts per connection 6.68–6.88 s and 194–197 MiB peak RSS; 1 per connection
 * 6.52–7.11 s, 161–168 MiB; one per connection and one more 6.43–7.30 s (median 6.52), 170–173 MiB.
 */
const SPARE_WINDOW_PARTS = 1

/** Parts held at once over `workers` connections. */
function windowParts (workers: number): number {
  return Math.max(1, workers) + SPARE_WINDOW_PARTS
}

/** The most bytes of parts held at once over `connections` (the window): what the caller budgets for. */
export function partWindowBytes (connections: number, partBytes = PART_BYTES): number {
  return windowParts(connections) * partBytes
}

export interface ParallelDownloadOptions extends DownloadOptions {
  /** Requests at once, 1 to MAX_CONNECTIONS; default DEFAULT_CONNECTIONS. 1: download() as it is, one GET. */
  connections?: number
  /** Bytes per part (tests use small ones); default PART_BYTES. The first part is the smaller of this and FIRST_PART_BYTES. */
  partBytes?: number
}

export interface ParallelDownloadResult extends DownloadResult {
  /** Connections used at once: 1 when the file went over one connection (no ranges, no validator, one part). */
  connections: number
  /** The most parts held in memory at once (0 on one connection). */
  peakPartsHeld: number
}

/**
 * Downloads `options.url` into `sink` over up to `connections` connections. Resolves and rejects
 * as download() does; an answer of another version (another ETag or Last-Modified, another size)
 * to any part ends it with IMAGE_CHANGED. No request is left open when it settles.
 */
export async function parallelDownload (options: ParallelDownloadOptions, sink: DownloadSink): Promise<ParallelDownloadResult> {
  const connections = options.connections ?? DEFAULT_CONNECTIONS
  if (!Number.isSafeInteger(connections) || connections < 1 || connections > MAX_CONNECTIONS) {
    throw new RangeError(`connections must be an integer from 1 to ${MAX_CONNECTIONS}, got ${connections}`)
  }
  const partBytes = options.partBytes ?? PART_BYTES
  if (!Number.isSafeInteger(partBytes) || partBytes < 1) throw new RangeError(`partBytes must be a positive integer, got ${partBytes}`)
  if (connections === 1) return { ...await download(options, sink), connections: 1, peakPartsHeld: 0 }

  // The deadline covers the whole download, every part and the fallback: one clock, from now.
  const job = prepare(options, 'download')
  const { deadlineMs: _deadline, connections: _connections, partBytes: _partBytes, ...request } = options
  const firstBytes = Math.min(partBytes, FIRST_PART_BYTES)
  const base: RangeOptions = { ...request, signal: job.attemptSignal, start: 0, end: firstBytes }
  return await withinDeadline(job, async () => {
    const first = await probe(job, { ...base, validator: options.ifRange })
    if (first === undefined) return await oneConnection(options, sink, job)
    const { chunks, totalBytes, validator } = first
    if (firstBytes < totalBytes && validator === undefined) {
      job.logger?.info({ url: job.shownUrl }, 'no strong validator (ETag or Last-Modified): downloading on one connection')
      return await oneConnection(options, sink, job)
    }
    return await inParts(job, options, sink, {
      base, first: chunks, firstBytes, firstAttempts: first.attempts, totalBytes, validator, connections, partBytes,
    })
  })
}

interface FirstPart {
  chunks: Buffer[]
  totalBytes: number
  validator: string | undefined
  attempts: number
}

/** The first part's answer, or undefined when the file must go over one connection (a 200, a 416, a size not told). */
async function probe (job: Job, options: RangeOptions): Promise<FirstPart | undefined> {
  let first
  try {
    first = await fetchRangeChunks(options)
  } catch (err) {
    // An empty file has no byte 0 to ask for: one GET says so as it does for any file.
    if (isInstallError(err) && err.code === 'DOWNLOAD_FAILED' && err.cause instanceof AttemptFailure && err.cause.statusCode === 416) return undefined
    throw err
  }
  if (first.kind === 'whole') {
    job.logger?.info({ url: job.shownUrl }, 'the server does not answer Range requests: downloading on one connection')
    return undefined
  }
  if (first.totalBytes === undefined) {
    job.logger?.info({ url: job.shownUrl }, 'the server did not tell the file\'s size: downloading on one connection')
    return undefined
  }
  return { chunks: first.chunks, totalBytes: first.totalBytes, validator: first.validator, attempts: first.attempts }
}

/** download() as it is, under this download's deadline and signal (its own clock would start again). */
async function oneConnection (options: ParallelDownloadOptions, sink: DownloadSink, job: Job): Promise<ParallelDownloadResult> {
  const { deadlineMs: _deadline, connections: _connections, partBytes: _partBytes, ...rest } = options
  return { ...await download({ ...rest, signal: job.attemptSignal }, sink), connections: 1, peakPartsHeld: 0 }
}

interface PartsPlan {
  base: RangeOptions
  /** Part 0, from the first answer: bytes 0 to firstBytes − 1 (or the whole file, if shorter). */
  first: Buffer[]
  firstBytes: number
  firstAttempts: number
  totalBytes: number
  validator: string | undefined
  connections: number
  partBytes: number
}

/** The server stopped honouring Range for a part (a 200 of the same version): the rest goes over one connection. */
class RangesRefused extends Error {}

/** The parts: fetched by the workers, handed to the feed in order by this function. */
async function inParts (job: Job, options: ParallelDownloadOptions, sink: DownloadSink, plan: PartsPlan): Promise<ParallelDownloadResult> {
  const { totalBytes, validator, partBytes, firstBytes } = plan
  // Part 0 is the first answer's; part i ≥ 1 starts at firstBytes + (i − 1) × partBytes.
  const partCount = 1 + Math.max(0, Math.ceil((totalBytes - firstBytes) / partBytes))
  const workers = Math.min(plan.connections, partCount - 1)
  const window = new PartWindow<Buffer[]>(partCount, windowParts(workers))
  // Ends every part's request when one fails: the first failure is the download's.
  const stop = new AbortController()
  const partSignal = job.attemptSignal === undefined ? stop.signal : AbortSignal.any([job.attemptSignal, stop.signal])
  const closeWindow = (): void => { window.close() }
  partSignal.addEventListener('abort', closeWindow, { once: true })
  const feed = new SlabFeed(sink, options.digestType)
  // One buffer per part held, reused part after part: a claimed part always finds one free (the window bounds both).
  const freeBuffers: Buffer[] = []
  const buffersOf = new Map<number, Buffer>()
  let attempts = plan.firstAttempts
  let bytes = 0
  let begun = false
  job.logger?.info({ url: job.shownUrl, totalBytes, partBytes, parts: partCount, connections: workers }, 'download in parts')

  const fetchParts = async (): Promise<void> => {
    // Each worker's parts go one after another on one connection, kept open between them.
    const connection = new KeptConnection()
    try {
      for (let index = await window.claim(); index !== undefined; index = await window.claim()) {
        const start = firstBytes + (index - 1) * partBytes
        const into = freeBuffers.pop() ?? Buffer.allocUnsafeSlow(partBytes)
        buffersOf.set(index, into)
        const end = Math.min(start + partBytes, totalBytes)
        const part = await fetchRangeChunks({ ...plan.base, signal: partSignal, start, end, validator, totalBytes, into, connection })
        attempts += part.attempts
        if (part.kind === 'whole') throw new RangesRefused()
        window.fill(index, part.chunks)
      }
    } catch (err) {
      await connection.drop()
      throw err
    }
    // What the server sent past the last part's answer, or past any on a connection it closed, fails the download.
    await connection.close(job, job.subject)
  }
  const handOver = async (): Promise<void> => {
    await sink.begin(totalBytes, validator)
    begun = true
    for (let chunks = await window.next(); chunks !== undefined; chunks = await window.next()) {
      for (const chunk of chunks) {
        if (partSignal.aborted) return // the download ends: the rest of this part need not reach the sink
        await feed.write(chunk)
        bytes += chunk.length
        options.onProgress?.({ bytes, totalBytes })
      }
      const index = window.handedOverParts
      const buffer = buffersOf.get(index)
      buffersOf.delete(index)
      if (buffer !== undefined) freeBuffers.push(buffer)
      window.handOver()
    }
  }

  let failure: { error: unknown } | undefined
  const fail = (error: unknown): void => {
    failure ??= { error }
    stop.abort()
  }
  try {
    const index = await window.claim()
    if (index !== undefined) window.fill(index, plan.first)
    await Promise.all([handOver(), ...Array.from({ length: workers }, fetchParts)].map(async (task) => { await task.catch(fail) }))
    if (failure === undefined && window.handedOverParts < partCount) failure = { error: abortError(job.signal) }
    if (failure !== undefined) {
      if (!(failure.error instanceof RangesRefused) || isAborted(job.attemptSignal)) throw failure.error
      job.logger?.warn({ url: job.shownUrl, discardedBytes: bytes }, 'the server answered a part with the whole file: downloading on one connection')
      if (!begun) return await oneConnection({ ...options, ifRange: validator }, sink, job)
      await feed.rewind()
      return await oneConnection({ ...options, ifRange: validator }, alreadyBegun(sink), job)
    }
    const digestHex = await feed.end()
    job.logger?.info({ url: job.shownUrl, bytes, attempts, connections: workers, peakPartsHeld: window.peakHeld }, 'download complete')
    return { bytes, digestHex, contentLength: totalBytes, attempts, validator, connections: Math.max(1, workers), peakPartsHeld: window.peakHeld }
  } finally {
    partSignal.removeEventListener('abort', closeWindow)
    feed.dispose()
  }
}

/** The sink as download() sees it after a rewind: begun already, with the same size and validator (its If-Range guarantees the same version). */
function alreadyBegun (sink: DownloadSink): DownloadSink {
  return {
    begin: () => {},
    slabBytes: () => sink.slabBytes(),
    take: async (slab) => { await sink.take(slab) },
    rewind: async () => { await sink.rewind() },
  }
}

/**
 * `run` under the deadline of `job`: a request or wait the deadline aborted fails as download()
 * fails past its deadline (DOWNLOAD_FAILED, not an abort).
 */
async function withinDeadline<T> (job: Job, run: () => Promise<T>): Promise<T> {
  try {
    return await run()
  } catch (err) {
    if (isAborted(job.deadline) && !isAborted(job.signal)) {
      const failure = new AttemptFailure(`not done within the deadline of ${job.deadlineMs ?? 0} ms`, { retryable: false })
      job.logger?.error({ url: job.shownUrl, reason: failure.message }, `${job.subject} failed`)
      throw errors.downloadFailed(job.shownUrl, failure)
    }
    throw err
  }
}
