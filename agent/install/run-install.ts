import { totalmem } from 'node:os'
import type { Logger } from 'pino'
import { Disk, rereadPartitionTable } from '../disk/disk.js'
import { HEAD_BYTES, type SequentialWriter } from '../disk/sequential-writer.js'
import { relocateBackupGpt, type RelocateResult } from '../disk/partition-table.js'
import type { MemoryImage } from '../image/memory-image.js'
import { openQcow2, readQcow2Guest, writeQcow2, type Qcow2Image } from '../image/qcow2/index.js'
import { writeRawFromMemory } from '../image/raw.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, installedMessage, isInstallError, type InstallError, type InstallMode } from '../report/install-error.js'
import type { InstallEventListener, StepName, StepStatus } from '../report/progress.js'
import { checkConfigDriveMount, mountCheckNote, type ConfigDriveMountCheck, type MountCheckOptions } from './config-drive-mount-check.js'
import { writeConfigDrive, type ConfigDriveResult, type ConfigDriveStepOptions } from './config-drive-step.js'
import { fetchImage, type DownloadTuning } from './fetch-image.js'
import { checkDeclaredType, checkDigest, checkEfiBootloader, checkHead, imageIo } from './image-checks.js'

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
  /** ConfigDrive filesystem (default: ISO 9660 on disks with sectors up to 2048 bytes, FAT above) and instance id. */
  configDrive?: ConfigDriveStepOptions
  /** The read-only mount of config-2 at the end (tests give a fake mount runner and locator). */
  mountCheck?: Omit<MountCheckOptions, 'logger'>
  signal?: AbortSignal
  logger?: Logger
  onEvent?: InstallEventListener
  /** Download tuning (tests shorten the timeouts and the backoff). */
  downloadTuning?: DownloadTuning
}

export interface InstallResult {
  code: 'INSTALLED'
  message: string
  bytes: number
  digest: { type: string; hex: string } | undefined
  mode: InstallMode
  /** Bytes of guest disk written (the raw image's size, or the qcow2's virtual size). */
  imageBytes: number
  disk: { path: string; sizeBytes: number; logicalSectorBytes: number }
  partitionTable: RelocateResult
  /** `mountCheck`: the kernel mounted config-2 read-only and found every file as written, or why that did not run. */
  configDrive: ConfigDriveResult & { mountCheck: ConfigDriveMountCheck }
}

/** The image checked and ready to write: what the write step needs. */
interface ReadyImage {
  imageBytes: number
  head: Buffer
  write: (() => Promise<void>) | undefined
}

/**
 * One install: preflight, download, verify, write, gpt, configdrive, finish. Throws an InstallError.
 * Nothing is written before every check that can be made has passed; the image's first MiB goes
 * last; once writing began, a failure zeroes the disk's first and last MiB so it cannot boot.
 */
export async function runInstall (options: InstallOptions): Promise<InstallResult> {
  const { request, signal, logger } = options
  const emit = options.onEvent ?? (() => {})
  let current: StepName[] = []
  const step = (name: StepName, status: StepStatus): void => emit({ type: 'step', step: name, status, at: new Date().toISOString() })
  const enter = (...names: StepName[]): void => {
    for (const name of current) if (!names.includes(name)) step(name, 'done')
    for (const name of names) if (!current.includes(name)) step(name, 'doing')
    current = names
  }

  enter('preflight')
  let disk: Disk
  try {
    disk = await Disk.open(options.diskPath)
  } catch (err) {
    for (const name of current) step(name, 'error')
    throw err
  }
  logger?.info({ disk: disk.path, kind: disk.kind, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes }, 'target disk')

  let writer: SequentialWriter | undefined
  let wroteToDisk = false
  /** Let go of before the partition table is re-read and config-2 mounted (the kernel refuses both while it is held). */
  let diskClosed = false
  const touched = (): boolean => wroteToDisk || writer?.wroteToDisk === true
  /** The image as it stands after the GPT step, in case the ConfigDrive step fails. */
  let afterGpt: { head: Buffer; imageBytes: number } | undefined

  try {
    // ── download (and, when streaming, write) ──────────────────────────────────────────────
    enter('download')
    const fetched = await fetchImage({
      request,
      disk,
      memoryLimitBytes: options.memoryLimitBytes ?? defaultMemoryLimitBytes(),
      stream: options.stream === true,
      signal,
      logger,
      emit,
      onStreamStart: (started) => { writer = started; enter('download', 'write') },
      // A streamed image's first MiB is checked before anything reaches the disk.
      checkHead: (head) => { checkDeclaredType(request, head); checkHead(head, disk) },
      downloadTuning: options.downloadTuning,
    })
    const { bytes, digestHex } = fetched.download

    // ── verify: nothing of the image becomes bootable before this passes ──────────────────
    enter('verify')
    checkDigest(request, digestHex)
    if (bytes === 0) throw errors.badImageFormat(new Error('the image is empty'))
    let ready: ReadyImage
    if (fetched.memory !== undefined) {
      ready = await checkInMemory(request, fetched.memory, disk, { signal, emit })
    } else {
      const head = fetched.streamedHead ?? Buffer.alloc(0)
      // Stream mode: the rest is on the disk already; the EFI check reads it there.
      await checkEfiBootloader(request.efiBootloaderPath, head, disk, { imageBytes: bytes, signal })
      ready = { imageBytes: bytes, head, write: undefined }
    }

    // ── write (memory mode) ────────────────────────────────────────────────────────────────
    if (ready.write !== undefined) {
      enter('write')
      wroteToDisk = true
      await ready.write()
    }
    const { head, imageBytes } = ready
    // The head buffer grows to a MiB (or the disk) so the GPT and ConfigDrive steps can edit it.
    const fullHead = Buffer.alloc(Math.min(HEAD_BYTES, disk.sizeBytes))
    head.copy(fullHead)
    if (head.length < fullHead.length) await disk.read(fullHead.subarray(head.length), head.length)

    // ── gpt: the backup GPT to the disk's end, the protective MBR to the disk's size ────────
    enter('gpt')
    wroteToDisk = true
    const partitionTable = await relocateBackupGpt(fullHead, disk, { imageBytes })
    logger?.info({ partitionTable }, 'partition table')
    afterGpt = { head: Buffer.from(fullHead), imageBytes }

    // ── configdrive ─────────────────────────────────────────────────────────────────────────
    enter('configdrive')
    const written = await writeConfigDrive(request, fullHead, disk, options.configDrive)
    const configDrive = written.result
    logger?.info({ configDrive }, 'config drive')

    // ── finish: the head goes last; then the kernel re-reads the table and mounts config-2 ──
    enter('finish')
    signal?.throwIfAborted()
    await writeHeadLast(disk, fullHead, request.imageType)
    // The disk is let go of first: while it is open with O_EXCL, the kernel refuses to re-read its
    // partition table (EBUSY) and to mount any of its partitions.
    diskClosed = true
    await disk.close()
    const mountCheck = await checkConfigDriveMount(
      { disk: { path: disk.path, kind: disk.kind }, partition: configDrive.partition, filesystem: configDrive.filesystem, files: written.files },
      { ...options.mountCheck, logger },
    )
    const note = mountCheckNote(mountCheck)
    if (note !== undefined) emit({ type: 'note', message: note })
    if (mountCheck.status === 'skipped') logger?.warn({ mountCheck }, 'config-2 mount check skipped')
    else logger?.info({ mountCheck }, `config-2 mount check ${mountCheck.status}`)
    enter()

    return {
      code: 'INSTALLED',
      message: installedMessage({ diskPath: disk.path, bytes, imageType: request.imageType, mode: fetched.mode, checksumType: request.checksum?.type }),
      bytes,
      digest: request.checksum === undefined ? undefined : { type: request.checksum.type, hex: digestHex ?? '' },
      mode: fetched.mode,
      imageBytes,
      disk: { path: disk.path, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes },
      partitionTable,
      configDrive: { ...configDrive, mountCheck },
    }
  } catch (err) {
    for (const name of current) step(name, 'error')
    await writer?.settle()
    const failure = toInstallError(err, signal, touched())
    logger?.error({ code: failure.code, cause: describeCause(err) }, failure.message)
    // Only the mount check fails after the disk was let go of: take it again to undo.
    const target = diskClosed ? await reopenDisk(disk, logger) : disk
    if (target !== undefined) {
      if (failure.code === 'CONFIGDRIVE_FAILED' && afterGpt !== undefined && signal?.aborted !== true) {
        // The image is verified and whole: leave it bootable as written, without a ConfigDrive.
        await keepImageWithoutConfigDrive(target, afterGpt, request, logger)
      } else if (touched()) {
        await makeUnbootable(target, logger)
      }
      if (diskClosed) await closeAndReread(target, logger)
    }
    throw failure
  } finally {
    if (!diskClosed) await disk.close().catch(() => {})
  }
}

/** The kernel saw the table with config-2: after undoing it, show the kernel the table now on the disk. */
async function closeAndReread (disk: Disk, logger: Logger | undefined): Promise<void> {
  await disk.close().catch(() => {})
  if (disk.kind === 'block') await rereadPartitionTable(disk.path).catch((err: unknown) => logger?.warn({ err }, 'partition table re-read failed'))
}

/** The disk opened again (read-write, O_EXCL) after the agent let go of it; undefined, logged, if it cannot be. */
async function reopenDisk (disk: Disk, logger: Logger | undefined): Promise<Disk | undefined> {
  try {
    return await Disk.open(disk.path)
  } catch (err) {
    logger?.error({ err }, `could not open ${disk.path} again after the ConfigDrive check failed`)
    return undefined
  }
}

/**
 * Memory mode: everything is checked on the image in memory, then a write function is handed back.
 * raw: type, head, EFI; qcow2: type, header and tables, virtual size, head, EFI.
 */
async function checkInMemory (request: InstallRequest, memory: MemoryImage, disk: Disk, context: { signal: AbortSignal | undefined; emit: InstallEventListener }): Promise<ReadyImage> {
  const { signal, emit } = context
  checkDeclaredType(request, memory.view(0, 8))
  if (request.imageType === 'raw') {
    if (memory.sizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(memory.sizeBytes, disk.path, disk.sizeBytes)
    const head = memory.read(0, HEAD_BYTES)
    checkHead(head, disk)
    await checkEfiBootloader(request.efiBootloaderPath, head, imageIo({ sizeBytes: memory.sizeBytes, read: (o, l) => memory.read(o, l) }, disk.logicalSectorBytes), { imageBytes: memory.sizeBytes, signal })
    return {
      imageBytes: memory.sizeBytes,
      head,
      write: async () => {
        await writeRawFromMemory(disk, memory, { signal, onProgress: (bytes) => emit({ type: 'progress', step: 'write', bytes, totalBytes: memory.sizeBytes }) })
        memory.clear()
      },
    }
  }
  const image: Qcow2Image = await openQcow2(memory, { signal })
  if (image.virtualSizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(image.virtualSizeBytes, disk.path, disk.sizeBytes)
  const guest = { sizeBytes: image.virtualSizeBytes, read: (offset: number, length: number) => readQcow2Guest(image, memory, offset, Math.max(0, Math.min(length, image.virtualSizeBytes - offset))) }
  const head = guest.read(0, HEAD_BYTES)
  checkHead(head, disk)
  await checkEfiBootloader(request.efiBootloaderPath, head, imageIo(guest, disk.logicalSectorBytes), { imageBytes: image.virtualSizeBytes, signal })
  return {
    imageBytes: image.virtualSizeBytes,
    head,
    write: async () => {
      await writeQcow2(image, memory, disk, { signal, onProgress: (bytes) => emit({ type: 'progress', step: 'write', bytes, totalBytes: image.virtualSizeBytes }) })
      try {
        await disk.sync()
      } catch (err) {
        throw errors.qcow2WriteFailed(err)
      }
      memory.clear()
    },
  }
}

/** Everything else is on the disk and synced: now the first MiB, then sync again. */
async function writeHeadLast (disk: Disk, head: Buffer, imageType: string): Promise<void> {
  try {
    await disk.sync()
    await disk.write(head, 0)
    await disk.sync()
  } catch (err) {
    throw imageType === 'qcow2' ? errors.qcow2WriteFailed(err) : errors.rawWriteFailed(err)
  }
}

/** The ConfigDrive failed: the backup GPT is rewritten from the head as it was before that step, and the head written. */
async function keepImageWithoutConfigDrive (disk: Disk, afterGpt: { head: Buffer; imageBytes: number }, request: InstallRequest, logger: Logger | undefined): Promise<void> {
  try {
    await relocateBackupGpt(afterGpt.head, disk, { imageBytes: afterGpt.imageBytes })
    await writeHeadLast(disk, afterGpt.head, request.imageType)
  } catch (err) {
    logger?.error({ err }, 'could not leave the image in place without a ConfigDrive')
    await makeUnbootable(disk, logger)
  }
}

function describeCause (err: unknown): unknown {
  const cause = isInstallError(err) ? err.cause : err
  if (cause instanceof Error) return { name: cause.name, message: cause.message, code: (cause as { code?: unknown }).code }
  return cause
}

function toInstallError (err: unknown, signal: AbortSignal | undefined, touched: boolean): InstallError {
  if (signal?.aborted === true && !(isInstallError(err) && err.code !== 'INTERNAL_ERROR')) return touched ? errors.cancelled() : errors.cancelledUntouched()
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
