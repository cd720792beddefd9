import { totalmem } from 'node:os'
import type { Logger } from 'pino'
import { Disk, rereadPartitionTable } from '../disk/disk.js'
import type { RelocateResult } from '../disk/partition-table.js'
import { PlannedDisk, type ImageReader } from '../disk/planned-disk.js'
import { HEAD_BYTES } from '../disk/sequential-writer.js'
import type { MemoryImage } from '../image/memory-image.js'
import { openQcow2, readQcow2Guest, writeQcow2, type Qcow2Image } from '../image/qcow2/index.js'
import { writeRawFromMemory } from '../image/raw.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, isInstallError, type InstallError } from '../errors/install-error.js'
import { installedMessage, type InstallMode } from '../errors/installed-message.js'
import type { InstallEventListener, StepName, StepStatus } from '../report/progress.js'
import { checkConfigDriveMount, mountCheckNote, type ConfigDriveMountCheck, type MountCheckOptions } from './config-drive-mount-check.js'
import { prepareConfigDrive, type ConfigDriveResult, type ConfigDriveStepOptions, type PreparedConfigDrive } from './config-drive-step.js'
import { fetchImage, type DownloadTuning } from './fetch-image.js'
import { checkDeclaredType, checkDigest, checkEfiBootloader, checkImageHead, checkImageTables } from './image-checks.js'
import { applyPlannedWrites, planPartitionTables, type TablePlan } from './partition-plan.js'

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
  /**
   * Awaited once, before the first byte reaches the disk (whichever step writes first: the streamed
   * image's first slab, the memory-mode write, the GPT step; see Disk.beforeFirstWrite), with the
   * disk as opened. The service and the CLI record there, synced, that the disk may be part-written,
   * so that after a `kill -9` the next start makes it unbootable. A rejection fails the install
   * before any write.
   */
  beforeFirstWrite?: (disk: { path: string; sizeBytes: number }) => Promise<void>
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

/** The image as downloaded and checked so far: its length on the disk, a reader of its bytes, and (memory mode) how to write it. */
interface ImageToInstall {
  imageBytes: number
  read: ImageReader
  /** Memory mode: writes the image but its head to the disk, and syncs. Stream mode: already on the disk. */
  write: (() => Promise<void>) | undefined
}

/**
 * One install: preflight, download, verify, write, gpt, configdrive, finish. Throws an InstallError.
 * Nothing is written before every check that can be made has passed: in the verify step the
 * partition tables and the ConfigDrive are planned on the image as it will lie on the disk (a
 * PlannedDisk), so their failures, too, come before the first write. The image's first MiB goes
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
  let prepared: PreparedConfigDrive
  try {
    disk = await Disk.open(options.diskPath)
  } catch (err) {
    for (const name of current) step(name, 'error')
    throw err
  }
  const recordFirstWrite = options.beforeFirstWrite
  if (recordFirstWrite !== undefined) disk.beforeFirstWrite = async () => { await recordFirstWrite({ path: disk.path, sizeBytes: disk.sizeBytes }) }
  logger?.info({ disk: disk.path, kind: disk.kind, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes }, 'target disk')

  /** Let go of before the partition table is re-read and config-2 mounted (the kernel refuses both while it is held). */
  let diskClosed = false
  let plan: TablePlan | undefined
  /** The image and its backup GPT are on the disk: a ConfigDrive failure from here leaves the image without one. */
  let gptApplied = false

  try {
    // The ConfigDrive does not depend on the image: content that cannot make one is refused before the download.
    prepared = prepareConfigDrive(request, disk.logicalSectorBytes, options.configDrive)

    // ── download (and, when streaming, write all but the head) ─────────────────────────────
    enter('download')
    const fetched = await fetchImage({
      request,
      disk,
      memoryLimitBytes: options.memoryLimitBytes ?? defaultMemoryLimitBytes(),
      stream: options.stream === true,
      signal,
      logger,
      emit,
      onStreamStart: () => { enter('download', 'write') },
      // A streamed image's first MiB is checked before anything reaches the disk.
      checkHead: async (head) => { await checkImageHead(request, head, disk) },
      downloadTuning: options.downloadTuning,
    })
    const { bytes, digestHex } = fetched.download

    // ── verify: nothing of the image becomes bootable (in memory mode, nothing is written) before this passes ──
    enter('verify')
    checkDigest(request, digestHex)
    if (bytes === 0) throw errors.badImageFormat(new Error('the image is empty'))
    const image = fetched.memory !== undefined
      ? await openInMemory(request, fetched.memory, disk, { signal, emit })
      : streamedImage(fetched.streamedHead ?? Buffer.alloc(0), disk, bytes)
    const { imageBytes } = image
    // The head as it will be written: the image's first MiB, zeros past the image's end (never the old disk's bytes).
    const head = Buffer.alloc(Math.min(HEAD_BYTES, disk.sizeBytes))
    await image.read(head.subarray(0, Math.min(head.length, imageBytes)), 0)
    // The whole table, as it will lie on the disk (a streamed head had its own checks before any write).
    const planned = new PlannedDisk(disk.sizeBytes, disk.logicalSectorBytes, imageBytes, image.read)
    await checkImageTables(request, head, planned, disk.path)
    await checkEfiBootloader(request.efiBootloaderPath, head, planned, { imageBytes, signal })
    signal?.throwIfAborted()
    plan = await planPartitionTables(request, head, planned, { prepared, configDrive: options.configDrive, signal })
    logger?.info({ partitionTable: plan.partitionTable, configDrive: plan.configDrive.result }, 'partition tables planned')

    // ── write (memory mode) ────────────────────────────────────────────────────────────────
    if (image.write !== undefined) {
      enter('write')
      await image.write()
    }

    // ── gpt: the disk's last MiB zeroed, the backup GPT at the disk's end (the primary is in the head) ──
    enter('gpt')
    signal?.throwIfAborted()
    await applyPlannedWrites(disk, plan.writes.slice(0, plan.gptWrites), (cause) => errors.gptMoveFailed(cause))
    gptApplied = true

    // ── configdrive: the filesystem written into config-2, read back ───────────────────────
    enter('configdrive')
    await applyPlannedWrites(disk, plan.writes.slice(plan.gptWrites), (cause) => errors.configDriveFailed(cause))
    const configDrive = plan.configDrive.result
    logger?.info({ configDrive }, 'config drive')

    // ── finish: the head goes last; then the kernel re-reads the table and mounts config-2 ──
    enter('finish')
    signal?.throwIfAborted()
    await writeHeadLast(disk, plan.head, request.imageType)
    // The disk is let go of first: while it is open with O_EXCL, the kernel refuses to re-read its
    // partition table (EBUSY) and to mount any of its partitions.
    diskClosed = true
    await disk.close()
    const mountCheck = await checkConfigDriveMount(
      { disk: { path: disk.path, kind: disk.kind }, partition: configDrive.partition, filesystem: configDrive.filesystem, files: plan.configDrive.files },
      { ...options.mountCheck, logger },
    )
    const note = mountCheckNote(mountCheck)
    if (note !== undefined) emit({ type: 'note', message: note })
    if (mountCheck.status === 'skipped') logger?.warn({ mountCheck }, 'config-2 mount check skipped')
    else logger?.info({ mountCheck }, `config-2 mount check ${mountCheck.status}`)
    enter()

    return {
      code: 'INSTALLED',
      message: installedMessage({ diskPath: disk.path, bytes, imageBytes, imageType: request.imageType, mode: fetched.mode, checksumType: request.checksum?.type }),
      bytes,
      digest: request.checksum === undefined ? undefined : { type: request.checksum.type, hex: digestHex ?? '' },
      mode: fetched.mode,
      imageBytes,
      disk: { path: disk.path, sizeBytes: disk.sizeBytes, logicalSectorBytes: disk.logicalSectorBytes },
      partitionTable: plan.partitionTable,
      configDrive: { ...configDrive, mountCheck },
    }
  } catch (err) {
    for (const name of current) step(name, 'error')
    const failure = toInstallError(err, signal, disk.touched)
    logger?.error({ code: failure.code, cause: describeCause(err) }, failure.message)
    // Only the mount check fails after the disk was let go of: take it again to undo.
    const target = diskClosed ? await reopenDisk(disk, logger) : disk
    if (target !== undefined) {
      if (failure.code === 'CONFIGDRIVE_FAILED' && gptApplied && plan !== undefined && signal?.aborted !== true) {
        // The image is verified and whole: leave it bootable as written, without a ConfigDrive.
        await keepImageWithoutConfigDrive(target, plan, request, logger)
      } else if (disk.touched) {
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
 * Memory mode: the image in memory, its type and size checked (qcow2: header, features and every
 * table, by openQcow2), read through the guest view; its write comes after verify.
 */
async function openInMemory (request: InstallRequest, memory: MemoryImage, disk: Disk, context: { signal: AbortSignal | undefined; emit: InstallEventListener }): Promise<ImageToInstall> {
  const { signal, emit } = context
  checkDeclaredType(request, memory.view(0, 8))
  if (request.imageType === 'raw') {
    if (memory.sizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(memory.sizeBytes, disk.path, disk.sizeBytes)
    return {
      imageBytes: memory.sizeBytes,
      read: async (data, offset) => { data.set(memory.read(offset, data.length)) },
      write: async () => {
        await writeRawFromMemory(disk, memory, { signal, onProgress: (bytes) => emit({ type: 'progress', step: 'write', bytes, totalBytes: memory.sizeBytes }) })
        memory.clear()
      },
    }
  }
  const image: Qcow2Image = await openQcow2(memory, { signal })
  if (image.virtualSizeBytes > disk.sizeBytes) throw errors.imageTooBigForDisk(image.virtualSizeBytes, disk.path, disk.sizeBytes)
  return {
    imageBytes: image.virtualSizeBytes,
    read: async (data, offset) => { data.set(readQcow2Guest(image, memory, offset, data.length)) },
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

/** Stream mode: the image is on the disk but for its head, held in memory. */
function streamedImage (head: Buffer, disk: Disk, imageBytes: number): ImageToInstall {
  return {
    imageBytes,
    read: async (data, offset) => {
      const inHead = Math.max(0, Math.min(data.length, head.length - offset))
      if (inHead > 0) data.set(head.subarray(offset, offset + inHead))
      if (inHead < data.length) await disk.read(data.subarray(inHead), offset + inHead)
    },
    write: undefined,
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

/**
 * The ConfigDrive failed: the GPT step's writes again (the backup GPT without config-2), what the
 * ConfigDrive covered written back as it was (the image's own bytes of a reused config-2, zeros
 * past the image), then the head as it was after the GPT step.
 */
async function keepImageWithoutConfigDrive (disk: Disk, plan: TablePlan, request: InstallRequest, logger: Logger | undefined): Promise<void> {
  try {
    await applyPlannedWrites(disk, [...plan.writes.slice(0, plan.gptWrites), ...plan.configDriveUndo], (cause) => errors.gptMoveFailed(cause))
    await writeHeadLast(disk, plan.headAfterGpt, request.imageType)
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
 * BIOS nor UEFI firmware can boot what is half-written or unverified. Returns whether it was done
 * (a failure is logged).
 */
export async function makeUnbootable (disk: Disk, logger?: Logger): Promise<boolean> {
  const span = Math.min(HEAD_BYTES, disk.sizeBytes)
  try {
    await disk.zero(0, span)
    await disk.zero(disk.sizeBytes - span, span)
    await disk.sync()
    return true
  } catch (err) {
    logger?.error({ err }, 'could not zero the first and last MiB of the disk')
    return false
  }
}
