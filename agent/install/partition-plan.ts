import type { Disk } from '../disk/disk.js'
import { HeadOverlay, relocateBackupGpt, type RelocateResult } from '../disk/partition-table.js'
import { PlannedDisk, type PlannedWrite } from '../disk/planned-disk.js'
import type { InstallRequest } from '../payload/install-request.js'
import { writeConfigDrive, type ConfigDriveStepOptions, type PreparedConfigDrive, type WrittenConfigDrive } from './config-drive-step.js'
import type { StagedImage } from './image-stage.js'
import { checkEfiBootloader, checkImageTables } from './image-checks.js'
import type { DiskShape } from './target.js'

/**
 * The partition-table and ConfigDrive steps, made in the verify step on a PlannedDisk (the image
 * as it will lie on the disk, nothing of the old disk) so that each of their checks passes or fails
 * before the first write: the GPT moved to the disk's end (or repaired from the image's own
 * backup), the config-2 partition placed (room, a free slot, or a reused one within bounds), the
 * ConfigDrive filesystem written into it. What they wrote is then applied to the disk after the
 * image, in order, and the head (holding the new primary GPT and MBR) goes last.
 */
export interface TablePlan {
  /** The image's first MiB as it will be written last. */
  head: Buffer
  /** Writes past the head, in order: the disk's last MiB zeroed, the backup GPT, the ConfigDrive. */
  writes: PlannedWrite[]
  /** The first `gptWrites` of `writes`, with `headAfterGpt`, are the image without its ConfigDrive. */
  gptWrites: number
  headAfterGpt: Buffer
  /**
   * What the ConfigDrive's writes covered, as it was before them: the image's own bytes of a
   * reused config-2, zeros past the image. Written back when a ConfigDrive is rejected after it was
   * written, so that none of it is left where cloud-init would read it.
   */
  configDriveUndo: PlannedWrite[]
  partitionTable: RelocateResult
  configDrive: WrittenConfigDrive
}

export interface PlanOptions {
  prepared: PreparedConfigDrive
  configDrive?: ConfigDriveStepOptions
  signal?: AbortSignal
}

/**
 * The verify step's planning, on the image alone as it will lie on the disk (a PlannedDisk: the
 * image's bytes, zeros past its end, nothing the disk held before): the head as it will be
 * written, the whole partition table checked, the EFI bootloader found, then the GPT and
 * ConfigDrive steps run. In memory mode all of it comes before the first write; streaming, before
 * the head is written.
 */
export async function planInstall (
  request: InstallRequest, disk: DiskShape & { head: Buffer }, image: StagedImage, options: PlanOptions,
): Promise<TablePlan> {
  const { imageBytes } = image
  const head = Buffer.alloc(disk.head.length)
  await image.read(head.subarray(0, Math.min(head.length, imageBytes)), 0)
  const planned = new PlannedDisk(disk.sizeBytes, disk.logicalSectorBytes, imageBytes, image.read)
  const io = new HeadOverlay(head, planned)
  await checkImageTables(request, io, imageBytes, disk.path)
  await checkEfiBootloader(request.efiBootloaderPath, io, { imageBytes, signal: options.signal })
  options.signal?.throwIfAborted()
  return await planPartitionTables(request, io, planned, options)
}

/** The GPT and ConfigDrive steps on `io` (the head over `planned`), their writes recorded in `planned`. */
async function planPartitionTables (request: InstallRequest, io: HeadOverlay, planned: PlannedDisk, options: PlanOptions): Promise<TablePlan> {
  const { head } = io
  planned.zeroTailPastImage()
  const partitionTable = await relocateBackupGpt(io, { imageBytes: planned.imageBytes })
  const gptWrites = planned.writes.length
  const headAfterGpt = Buffer.from(head)
  options.signal?.throwIfAborted()
  const configDrive = await writeConfigDrive(request, io, { ...options.configDrive, prepared: options.prepared, signal: options.signal })
  const configDriveUndo: PlannedWrite[] = []
  for (const write of planned.writes.slice(gptWrites)) {
    const data = Buffer.alloc(write.data.length)
    await planned.readAsOf(data, write.offset, gptWrites)
    configDriveUndo.push({ offset: write.offset, data })
  }
  return { head, writes: planned.writes, gptWrites, headAfterGpt, configDriveUndo, partitionTable, configDrive }
}

/**
 * Applies planned writes to the disk, syncs, reads each back and compares: an I/O failure is the
 * step's message (`failed`), never a half-done table reported as written.
 */
export async function applyPlannedWrites (disk: Disk, writes: readonly PlannedWrite[], failed: (cause: unknown) => Error): Promise<void> {
  try {
    for (const write of writes) await disk.write(write.data, write.offset)
    await disk.sync()
    // Later writes may cover earlier ones: compare each range with what the plan left there.
    const final = new Map<PlannedWrite, Buffer>()
    for (const [index, write] of writes.entries()) {
      const expected = Buffer.from(write.data)
      for (const later of writes.slice(index + 1)) {
        const from = Math.max(write.offset, later.offset)
        const to = Math.min(write.offset + write.data.length, later.offset + later.data.length)
        if (from < to) later.data.copy(expected, from - write.offset, from - later.offset, to - later.offset)
      }
      final.set(write, expected)
    }
    for (const [write, expected] of final) {
      const back = Buffer.alloc(expected.length)
      await disk.read(back, write.offset)
      if (!back.equals(expected)) throw new Error(`${expected.length} bytes written at ${write.offset} read back different`)
    }
  } catch (err) {
    throw failed(err)
  }
}
