import { totalmem } from 'node:os'
import type { Logger } from 'pino'
import type { RelocateResult } from '../disk/partition-table.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, isInstallError, type InstallError } from '../errors/install-error.js'
import { installedMessage, type InstallMode } from '../errors/installed-message.js'
import type { InstallEventListener } from '../report/progress.js'
import { checkConfigDriveMount, mountCheckNote, type ConfigDriveMountCheck, type MountCheckOptions } from './config-drive-mount-check.js'
import { prepareConfigDrive, type ConfigDriveResult, type ConfigDriveStepOptions, type WrittenConfigDrive } from './config-drive-step.js'
import { connectionsWithin, fetchImage, rangeReader, type DownloadTuning } from './fetch-image.js'
import type { ImageStage, StageContext, StagedImage } from './image-stage.js'
import { checkDigest } from './image-checks.js'
import { InstallSteps } from './install-steps.js'
import { Qcow2MemoryStage, RawMemoryStage } from './memory-stages.js'
import type { RangesOf } from './qcow2-stream-stage.js'
import { planInstall } from './partition-plan.js'
import { RawStreamStage } from './raw-stream-stage.js'
import { Target, type DiskShape } from './target.js'
import { scrubImage, type ScrubImageOptions } from '../scrub/scrub-image.js'

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
  /** Stream straight to the disk instead of downloading into memory first (a qcow2: once the server announced its size). */
  stream?: boolean
  /** ConfigDrive filesystem (default: ISO 9660 on disks with sectors up to 2048 bytes, FAT above) and instance id. */
  configDrive?: ConfigDriveStepOptions
  /** The read-only mount of config-2 at the end (tests give a fake mount runner and locator). */
  mountCheck?: Omit<MountCheckOptions, 'logger'>
  /** The scrub's mounter and mount point folder (tests). */
  scrub?: Pick<ScrubImageOptions, 'mounter' | 'tmpDir'>
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
  disk: DiskShape
  partitionTable: RelocateResult
  /** `mountCheck`: the kernel mounted config-2 read-only and found every file as written, or why that did not run. */
  configDrive: ConfigDriveResult & { mountCheck: ConfigDriveMountCheck }
  /** What the scrub did, one note per action, when the payload asked for it. */
  scrub: string[] | undefined
}

/**
 * One install, top to bottom: open the target, choose the image stage, download, verify (the
 * tables and the ConfigDrive planned on the image as it will lie on the disk), write, gpt,
 * configdrive, finish. Throws an InstallError. Nothing is written before every check that can be
 * made has passed; the scrub, when asked, just before the image's first MiB, which goes last; one catch hands any failure to the target's
 * rollback (untouched, unbootable, or the image kept without its ConfigDrive).
 */
export async function runInstall (options: InstallOptions): Promise<InstallResult> {
  const { request, signal, logger } = options
  const emit = options.onEvent ?? (() => {})
  const steps = new InstallSteps(emit)

  steps.enter('preflight')
  let target: Target
  try {
    target = await Target.open(options.diskPath, { beforeFirstWrite: options.beforeFirstWrite, logger })
  } catch (err) {
    steps.fail()
    throw err
  }
  logger?.info({ disk: target.path, kind: target.kind, sizeBytes: target.sizeBytes, logicalSectorBytes: target.logicalSectorBytes }, 'target disk')
  let stage: ImageStage | undefined
  try {
    // The ConfigDrive does not depend on the image: content that cannot make one is refused before the download.
    const prepared = prepareConfigDrive(request, target.logicalSectorBytes, options.configDrive)
    const context: StageContext = { request, target, memoryLimitBytes: options.memoryLimitBytes ?? defaultMemoryLimitBytes(), steps, emit, signal, logger }
    const ranges: RangesOf = (version) => rangeReader(request, { signal, logger, downloadTuning: options.downloadTuning }, version)
    stage = chooseStage(context, options.stream === true, ranges)
    if (stage.mode === 'stream') steps.enter('download', 'write')
    else steps.enter('download')
    const onProgress = (bytes: number, totalBytes: number | undefined): void => { steps.progress('download', bytes, totalBytes) }
    const connections = connectionsWithin(context.memoryLimitBytes, options.downloadTuning)
    if (connections < (options.downloadTuning?.connections ?? connections)) {
      logger?.info({ connections, memoryLimitBytes: context.memoryLimitBytes }, 'fewer connections than asked: the memory budget')
    }
    const downloadTuning = { ...options.downloadTuning, connections }
    const downloaded = await fetchImage(request, stage, { signal, logger, onProgress, downloadTuning })
    await stage.end()

    // Nothing of the image becomes bootable (in memory mode, nothing is written) before this passes.
    steps.enter('verify')
    checkDigest(request, downloaded.digestHex)
    if (downloaded.bytes === 0) throw errors.badImageFormat(new Error('the image is empty'))
    const image = await stage.verify()
    const plan = await planInstall(request, target, image, { prepared, configDrive: options.configDrive, signal })
    logger?.info({ partitionTable: plan.partitionTable, configDrive: plan.configDrive.result }, 'partition tables planned')

    if (stage.mode === 'memory') steps.enter('write')
    await stage.write()
    steps.enter('gpt')
    signal?.throwIfAborted()
    await target.applyPlan(plan, 'tables')
    steps.enter('configdrive')
    await target.applyPlan(plan, 'configdrive')
    const configDrive = plan.configDrive.result
    logger?.info({ configDrive }, 'config drive')

    steps.enter('finish')
    signal?.throwIfAborted()
    // The clone made new while its first MiB is still held back: a scrub that fails leaves nothing bootable.
    let scrub: string[] | undefined
    if (request.scrub !== undefined) {
      scrub = await scrubImage({ ...options.scrub, diskPath: target.path, io: target, head: plan.head, paths: request.scrub.paths, signal, logger })
      logger?.info({ scrub }, 'scrubbed')
      for (const message of scrub) emit({ type: 'note', message })
    }
    signal?.throwIfAborted()
    await target.writeHeadLast(plan.head, (cause) => request.imageType === 'qcow2' ? errors.qcow2WriteFailed(cause) : errors.rawWriteFailed(cause))
    await target.close()
    const mountCheck = await checkMountedConfigDrive(target, plan.configDrive, { ...options.mountCheck, logger }, emit)
    steps.enter()

    const { bytes, digestHex } = downloaded
    const mode = stage.mode
    return {
      code: 'INSTALLED',
      message: installedMessage({
        diskPath: target.path, bytes, imageBytes: image.imageBytes, imageType: shownType(request, image), mode, checksumType: request.checksum?.type,
      }),
      bytes,
      digest: request.checksum === undefined ? undefined : { type: request.checksum.type, hex: digestHex ?? '' },
      mode,
      imageBytes: image.imageBytes,
      disk: { path: target.path, sizeBytes: target.sizeBytes, logicalSectorBytes: target.logicalSectorBytes },
      partitionTable: plan.partitionTable,
      configDrive: { ...configDrive, mountCheck },
      scrub,
    }
  } catch (err) {
    steps.fail()
    const failure = toInstallError(err, signal, target.touched)
    logger?.error({ code: failure.code, cause: describeCause(err) }, failure.message)
    await stage?.settle()
    const disk = await target.rollback(failure, { cancelled: signal?.aborted === true })
    logger?.info({ disk }, 'the disk after the failure')
    throw failure
  } finally {
    await target.close()
  }
}

/**
 * The disk let go of (while the agent holds it with O_EXCL the kernel refuses to re-read its table
 * or mount a partition): config-2 mounted read-only and every file compared, or why not; a note.
 */
async function checkMountedConfigDrive (
  target: Target, written: WrittenConfigDrive, options: MountCheckOptions, emit: InstallEventListener,
): Promise<ConfigDriveMountCheck> {
  const { partition, filesystem } = written.result
  const mountCheck = await checkConfigDriveMount({ disk: { path: target.path, kind: target.kind }, partition, filesystem, files: written.files }, options)
  const note = mountCheckNote(mountCheck)
  if (note !== undefined) emit({ type: 'note', message: note })
  if (mountCheck.status === 'skipped') options.logger?.warn({ mountCheck }, 'config-2 mount check skipped')
  else options.logger?.info({ mountCheck }, `config-2 mount check ${mountCheck.status}`)
  return mountCheck
}

/**
 * Raw: into memory (over the budget, or with --stream, straight to the disk); qcow2: into memory,
 * or (over the budget, or with --stream, once its size is announced) straight to the disk.
 */
function chooseStage (context: StageContext, stream: boolean, ranges: RangesOf): ImageStage {
  if (context.request.imageType === 'qcow2') return new Qcow2MemoryStage(context, { stream, ranges })
  return stream ? new RawStreamStage(context) : new RawMemoryStage(context)
}

/** The image's type as the result says it: the request's, or how a raw image was compressed. */
function shownType (request: InstallRequest, image: StagedImage): string {
  return image.compression === undefined ? request.imageType : `${image.compression}-compressed raw`
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
