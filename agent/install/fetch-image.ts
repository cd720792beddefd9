import type { Logger } from 'pino'
import type { Disk } from '../disk/disk.js'
import { SequentialWriter } from '../disk/sequential-writer.js'
import { download, type DownloadOptions, type DownloadResult, type DownloadSink } from '../download/index.js'
import type { RunningDigest } from '../download/running-digest.js'
import { MemoryBudgetExceeded, MemoryImage } from '../image/memory-image.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors } from '../errors/install-error.js'
import type { InstallMode } from '../errors/installed-message.js'
import type { InstallEventListener } from '../report/progress.js'
import { redactHeaders, safeUrl } from '../report/redact.js'

export type DownloadTuning = Pick<DownloadOptions, 'connectTimeoutMs' | 'idleTimeoutMs' | 'lowSpeedLimitBytesPerSecond' | 'lowSpeedTimeMs' | 'deadlineMs' | 'maxAttempts' | 'retryBaseDelayMs' | 'maxRedirects'>

export interface FetchOptions {
  request: InstallRequest
  disk: Disk
  memoryLimitBytes: number
  stream: boolean
  signal?: AbortSignal
  logger?: Logger
  emit: InstallEventListener
  /** The write to disk starts alongside the download (stream mode, from the start or on a switch). */
  onStreamStart: () => void
  /** Checks of the image's first MiB, run before any byte of a streamed image reaches the disk. */
  checkHead: (head: Buffer) => void | Promise<void>
  downloadTuning?: DownloadTuning
}

export interface FetchedImage {
  mode: InstallMode
  download: DownloadResult
  /** Memory mode: the whole verified-to-be image. */
  memory: MemoryImage | undefined
  /** Stream mode: the image is on the disk but for its head, which is here. */
  streamedHead: Buffer | undefined
}

const PROGRESS_INTERVAL_MS = 200

/**
 * Downloads the image. Default (and always for qcow2): into memory, within the budget, nothing
 * written. Raw with --stream, or raw over the budget: straight to the disk through a
 * SequentialWriter that holds the first MiB back. The result is not verified yet.
 */
export async function fetchImage (options: FetchOptions): Promise<FetchedImage> {
  const { request, disk, memoryLimitBytes, logger, emit } = options
  const qcow2 = request.imageType === 'qcow2'
  const memory = options.stream && !qcow2 ? undefined : new MemoryImage(memoryLimitBytes)
  let writer: SequentialWriter | undefined
  const newWriter = (): SequentialWriter => new SequentialWriter(disk, {
    limitBytes: disk.sizeBytes,
    tooBig: (bytes) => errors.imageTooBigForDisk(bytes, disk.path, disk.sizeBytes),
    writeFailed: (cause) => errors.rawWriteFailed(cause),
    onHead: options.checkHead,
  })
  /** The run's digest: the sink hashes from its own shared memory (the memory image's slabs, or the writer's). */
  let digest: RunningDigest | undefined
  if (memory === undefined) {
    writer = newWriter()
    options.onStreamStart()
  }

  /** Raw over the memory budget: what is in memory so far, and the rest, go straight to the disk. */
  const switchToStream = async (reason: string): Promise<SequentialWriter> => {
    logger?.info({ memoryLimitBytes, reason }, 'raw image over the memory budget: streaming to disk')
    emit({ type: 'note', message: `The image is larger than the memory budget of ${memoryLimitBytes} bytes: streaming it to the disk, the first MiB held back until verified.` })
    const next = newWriter()
    writer = next
    options.onStreamStart()
    if (memory !== undefined) {
      // What memory holds is hashed (or handed to the digest) already; the writer hashes what comes after.
      const hashing = memory.flushHash()
      next.hashWith(digest, memory.sizeBytes)
      for (const piece of memory.pieces()) await next.write(piece.data)
      memory.clear()
      await hashing
    }
    return next
  }

  const sink: DownloadSink = {
    begin: async (sizeBytes) => {
      if (sizeBytes === undefined) return
      if (qcow2) {
        // The service's rule: a qcow2 is held in memory whole, so one over the budget is refused up front.
        if (sizeBytes > memoryLimitBytes) throw errors.qcow2TooBig(new Error(`Content-Length ${sizeBytes} > memory budget ${memoryLimitBytes}`))
        return
      }
      // Refused before any write: the announced size cannot fit.
      if (sizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(sizeBytes, disk.path, disk.sizeBytes)
      if (writer === undefined && sizeBytes > memoryLimitBytes) await switchToStream('content-length')
    },
    write: async (chunk) => {
      if (writer !== undefined) return await writer.write(chunk)
      if (memory === undefined) throw new Error('no sink')
      if (!qcow2 && memory.sizeBytes + chunk.length > disk.sizeBytes) throw errors.imageTooBigForDisk(memory.sizeBytes + chunk.length, disk.path, disk.sizeBytes)
      try {
        memory.append(chunk)
      } catch (err) {
        if (!(err instanceof MemoryBudgetExceeded)) throw err
        if (qcow2) throw errors.qcow2TooBig(err)
        await (await switchToStream('grew past budget')).write(chunk)
      }
    },
    rewind: async () => {
      logger?.warn('download restarted from byte 0')
      memory?.clear()
      await writer?.rewind()
    },
    hashWith: (next) => {
      digest = next
      if (writer !== undefined) writer.hashWith(next)
      else memory?.hashWith(next)
    },
    flushHash: async () => {
      if (writer !== undefined) await writer.flushHash()
      else await memory?.flushHash()
    },
  }

  let lastProgressAt = 0
  const progress = (bytes: number, totalBytes: number | undefined, force = false): void => {
    const now = Date.now()
    if (!force && now - lastProgressAt < PROGRESS_INTERVAL_MS) return
    lastProgressAt = now
    emit({ type: 'progress', step: 'download', bytes, totalBytes })
  }

  logger?.info({ url: safeUrl(request.imageUrl), headers: redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value]))), checksumType: request.checksum?.type }, 'download')
  try {
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
    const streamedHead = writer === undefined ? undefined : await writer.finish()
    return { mode: writer === undefined ? 'memory' : 'stream', download: fetched, memory: writer === undefined ? memory : undefined, streamedHead }
  } catch (err) {
    await writer?.settle()
    throw err
  }
}

