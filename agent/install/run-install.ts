import { totalmem } from 'node:os'
import type { Logger } from 'pino'
import { Disk } from '../disk/disk.js'
import { HEAD_BYTES, SequentialWriter } from '../disk/sequential-writer.js'
import { download, type DownloadOptions, type DownloadSink } from '../download/index.js'
import { MemoryBudgetExceeded, MemoryImage } from '../image/memory-image.js'
import { writeRawFromMemory } from '../image/raw.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, installedMessage, isInstallError, type InstallError, type InstallMode } from '../report/install-error.js'
import type { InstallEventListener, StepName, StepStatus } from '../report/progress.js'
import { redactHeaders, safeUrl } from '../report/redact.js'

/** The service's rule: the image must fit in RAM minus 3 GiB. */
export const RESERVED_MEMORY_BYTES = 3 * 1024 ** 3 // 3 GiB

export function defaultMemoryLimitBytes (): number {
  return Math.max(0, totalmem() - RESERVED_MEMORY_BYTES)
}

export interface InstallOptions {
  request: InstallRequest
  diskPath: string
  /** Memory budget for the image; default total RAM − 3 GiB. */
  memoryLimitBytes?: number
  /** Raw only: stream straight to the disk instead of downloading into memory first. */
  stream?: boolean
  signal?: AbortSignal
  logger?: Logger
  onEvent?: InstallEventListener
  /** Download tuning (tests shorten the timeouts and the backoff). */
  downloadTuning?: Pick<DownloadOptions, 'connectTimeoutMs' | 'idleTimeoutMs' | 'maxAttempts' | 'retryBaseDelayMs' | 'maxRedirects'>
}

export interface InstallResult {
  code: 'INSTALLED'
  message: string
  bytes: number
  digest: { type: string; hex: string } | undefined
  mode: InstallMode
  disk: { path: string; sizeBytes: number; logicalSectorBytes: number }
}

/** "QFI\xfb": the qcow2 magic (qcow2 spec, header offset 0). */
const QCOW2_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb])

const PROGRESS_INTERVAL_MS = 200

/** One install: download, verify, write, finish. Throws an InstallError; never leaves a half-written disk bootable. */
export async function runInstall (options: InstallOptions): Promise<InstallResult> {
  const { request, signal, logger } = options
  const emit = options.onEvent ?? (() => {})
  const step = (name: StepName, status: StepStatus): void => emit({ type: 'step', step: name, status, at: new Date().toISOString() })
  let current: StepName[] = []
  const enter = (...names: StepName[]): void => {
    for (const name of current) step(name, 'done')
    current = names
    for (const name of names) step(name, 'doing')
  }

  enter('preflight')
  if (request.imageType !== 'raw') {
    // qcow2 support is its own module (agent/image/qcow2, issue 4); until then refuse before touching anything.
    for (const name of current) step(name, 'error')
    throw errors.badImageFormat(new Error(`imageType ${request.imageType} is not supported by this build`))
  }
  let disk: Disk
  try {
    disk = await Disk.open(options.diskPath)
  } catch (err) {
    for (const name of current) step(name, 'error')
    throw err
  }
  logger?.info({ disk: disk.path, kind: disk.kind, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes }, 'target disk')

  const memoryLimitBytes = options.memoryLimitBytes ?? defaultMemoryLimitBytes()
  let writer: SequentialWriter | undefined
  let memoryWriteStarted = false
  const newWriter = (): SequentialWriter => new SequentialWriter(disk, {
    limitBytes: disk.sizeBytes,
    tooBig: (bytes) => errors.imageTooBigForDisk(bytes, disk.path, disk.sizeBytes),
    writeFailed: (cause) => errors.rawWriteFailed(cause),
  })

  try {
    // ── download (and, when streaming, write) ──────────────────────────────────────────────
    const memory = options.stream === true ? undefined : new MemoryImage(memoryLimitBytes)
    if (memory === undefined) writer = newWriter()
    enter(...(writer === undefined ? ['download'] as const : ['download', 'write'] as const))

    let lastProgressAt = 0
    const progress = (bytes: number, totalBytes: number | undefined, force = false): void => {
      const now = Date.now()
      if (!force && now - lastProgressAt < PROGRESS_INTERVAL_MS) return
      lastProgressAt = now
      emit({ type: 'progress', step: 'download', bytes, totalBytes })
    }

    /** Memory runs out (no Content-Length, or one over the budget): the rest goes straight to the disk. */
    const switchToStream = async (reason: string): Promise<SequentialWriter> => {
      logger?.info({ memoryLimitBytes, reason }, 'raw image over the memory budget: streaming to disk')
      emit({ type: 'note', message: `The image is larger than the memory budget of ${memoryLimitBytes} bytes: streaming it to the disk, the first MiB held back until verified.` })
      const next = newWriter()
      if (memory !== undefined) {
        for (const piece of memory.pieces()) await next.write(piece.data)
        memory.clear()
      }
      step('write', 'doing')
      writer = next
      return next
    }

    const sink: DownloadSink = {
      begin: async (sizeBytes) => {
        if (sizeBytes === undefined) return
        // Refused before any write: the announced size cannot fit.
        if (sizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(sizeBytes, disk.path, disk.sizeBytes)
        if (writer === undefined && sizeBytes > memoryLimitBytes) await switchToStream('content-length')
      },
      write: async (chunk) => {
        if (writer !== undefined) return await writer.write(chunk)
        if (memory === undefined) throw new Error('no sink')
        if (memory.sizeBytes + chunk.length > disk.sizeBytes) throw errors.imageTooBigForDisk(memory.sizeBytes + chunk.length, disk.path, disk.sizeBytes)
        try {
          memory.append(chunk)
        } catch (err) {
          if (!(err instanceof MemoryBudgetExceeded)) throw err
          await (await switchToStream('grew past budget')).write(chunk)
        }
      },
      rewind: async () => {
        logger?.warn('download restarted from byte 0')
        memory?.clear()
        await writer?.rewind()
      },
    }

    logger?.info({ url: safeUrl(request.imageUrl), headers: redactHeaders(Object.fromEntries(request.httpHeaders.map((h) => [h.name, h.value]))), checksumType: request.checksum?.type }, 'download')
    const fetched = await download({
      ...options.downloadTuning,
      url: request.imageUrl,
      headers: request.httpHeaders,
      digestType: request.checksum?.type,
      signal,
      logger,
      onProgress: (p) => progress(p.bytes, p.totalBytes),
    }, sink)
    progress(fetched.bytes, fetched.contentLength, true)
    const mode: InstallMode = writer === undefined ? 'memory' : 'stream'
    const head = writer === undefined ? (memory as MemoryImage).read(0, HEAD_BYTES) : await writer.finish()

    // ── verify: nothing of the image becomes bootable before this passes ──────────────────
    enter('verify')
    if (request.checksum !== undefined) {
      const got = fetched.digestHex ?? ''
      if (got !== request.checksum.hex) throw errors.checksumMismatch(request.checksum.type, got, request.checksum.hex)
    }
    if (fetched.bytes === 0) throw errors.badImageFormat(new Error('the image is empty'))
    if (head.subarray(0, 4).equals(QCOW2_MAGIC)) throw errors.imageTypeMismatch('raw', 'qcow2')

    // ── write (memory mode) ────────────────────────────────────────────────────────────────
    if (mode === 'memory') {
      enter('write')
      const image = memory as MemoryImage
      memoryWriteStarted = true
      await writeRawFromMemory(disk, image, {
        signal,
        onProgress: (bytes) => emit({ type: 'progress', step: 'write', bytes, totalBytes: image.sizeBytes }),
      })
      image.clear()
    }

    // ── finish: the head goes last, then the kernel re-reads the table ─────────────────────
    enter('finish')
    signal?.throwIfAborted()
    try {
      await disk.write(head, 0)
      await disk.sync()
    } catch (err) {
      throw errors.rawWriteFailed(err)
    }
    await disk.rereadPartitions().catch((err: unknown) => logger?.warn({ err }, 'partition table re-read failed'))
    for (const name of current) step(name, 'done')
    current = []

    const message = installedMessage({ diskPath: disk.path, bytes: fetched.bytes, imageType: request.imageType, mode, checksumType: request.checksum?.type })
    return {
      code: 'INSTALLED',
      message,
      bytes: fetched.bytes,
      digest: request.checksum === undefined ? undefined : { type: request.checksum.type, hex: fetched.digestHex ?? '' },
      mode,
      disk: { path: disk.path, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes },
    }
  } catch (err) {
    for (const name of current) step(name, 'error')
    await writer?.settle()
    const touched = memoryWriteStarted || writer?.wroteToDisk === true
    const failure = toInstallError(err, signal, touched)
    logger?.error({ code: failure.code, cause: describeCause(err) }, failure.message)
    if (touched) await makeUnbootable(disk, logger)
    throw failure
  } finally {
    await disk.close().catch(() => {})
  }
}

function describeCause (err: unknown): unknown {
  const cause = isInstallError(err) ? err.cause : err
  if (cause instanceof Error) return { name: cause.name, message: cause.message, code: (cause as { code?: unknown }).code }
  return cause
}

function toInstallError (err: unknown, signal: AbortSignal | undefined, touched: boolean): InstallError {
  if (isInstallError(err)) return err
  if (signal?.aborted === true) return touched ? errors.cancelled() : errors.cancelledUntouched()
  return errors.internalError(err)
}

/**
 * After writing began, a failure zeroes the first and the last MiB of the disk: no MBR, no primary
 * GPT, no backup GPT (an old one at the end could otherwise bring back a stale table), so neither
 * BIOS nor UEFI firmware can boot what is half-written or unverified.
 */
export async function makeUnbootable (disk: Disk, logger?: Logger): Promise<void> {
  const span = Math.min(HEAD_BYTES, disk.sizeBytes)
  try {
    await disk.zero(0, span)
    await disk.zero(disk.sizeBytes - span, span)
    await disk.sync()
  } catch (err) {
    logger?.error({ err }, 'could not zero the first and last MiB of the disk')
  }
}
