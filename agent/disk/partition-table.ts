/**
 * The image's partition table after it is written: what it is, whether the disk can hold it, the
 * backup GPT moved to the disk's end, and the cloud-init ConfigDrive partition added.
 *
 * The head (the image's first MiB, written last by the install) is modified in place; everything
 * else goes to the disk through `BlockIo` (block-io.ts). Order in the install: detectPartitionTable
 * and checkSectorSize before writing, relocateBackupGpt, then addConfigDrivePartition.
 */
import { errors, isInstallError } from '../errors/install-error.js'
import { readBytes, type ImageIo } from './block-io.js'
import { CONFIG_DRIVE_MAX_BYTES, MIB } from './end-placement.js'
import type { GptMoveResult } from './gpt.js'
import {
  addGptPartition,
  checkGptEntries,
  GptEntriesCrcError,
  GptFormatError,
  hasGptSignature,
  hasIntactPrimaryHeader,
  LINUX_FILESYSTEM_GUID,
  loadGpt,
  moveBackupGptToEnd,
} from './gpt.js'
import { addMbrPartition, checkLogicalPartitions, checkMbrRecords, classifyMbr, LINUX_TYPE, MbrFormatError } from './mbr.js'

export type { BlockIo, ImageIo } from './block-io.js'
export { HeadOverlay, readBytes } from './block-io.js'

export type TableKind =
  | {
    kind: 'gpt'
    sectorBytes: 512 | 4096
    hybridMbr: boolean
    /**
     * false when the MBR is protective but no "EFI PART" is in the head (a damaged primary):
     * `sectorBytes` is then only nominal, checkSectorSize lets it pass, and relocateBackupGpt looks
     * for the backup with the disk's sector size. Absent means true.
     */
    headerFound?: boolean
  }
  | { kind: 'mbr' }
  | { kind: 'none' }

export const CONFIG_DRIVE_LABEL = 'config-2'
const SECTOR_SIZES = [512, 4096] as const

/**
 * What the head holds: "EFI PART" at 512 or at 4096, a protective (0xEE) or hybrid MBR, a plain
 * MBR (0x55AA and valid entries), or nothing. As Linux decides: an MBR without an 0xEE record is an
 * MBR disk even if a stale GPT header follows it; a GPT header with no valid MBR is a GPT disk
 * (relocateBackupGpt then writes the protective MBR it lacks).
 */
export function detectPartitionTable (head: Buffer): TableKind {
  const mbr = classifyMbr(head)
  if (mbr === 'plain') return { kind: 'mbr' }
  const valid = SECTOR_SIZES.find((size) => hasIntactPrimaryHeader(head, size))
  const signed = valid ?? SECTOR_SIZES.find((size) => hasGptSignature(head, size))
  if (signed !== undefined) return { kind: 'gpt', sectorBytes: signed, hybridMbr: mbr === 'hybrid', headerFound: true }
  if (mbr === 'protective' || mbr === 'hybrid') return { kind: 'gpt', sectorBytes: 512, hybridMbr: mbr === 'hybrid', headerFound: false }
  return { kind: 'none' }
}

/** Refuses (InstallError, before any write) an image whose GPT sector size differs from the disk's, with a message saying both sizes. */
export function checkSectorSize (table: TableKind, diskSectorBytes: number, diskPath: string): void {
  if (table.kind !== 'gpt' || table.headerFound === false) return
  if (table.sectorBytes !== diskSectorBytes) throw errors.sectorSizeMismatch(table.sectorBytes, diskPath, diskSectorBytes)
}

/**
 * Checks the image's partition table as it stands in the image (its bytes, its length; `io` must
 * not show what lies past the image on the disk: a PlannedDisk, or the head alone), before any
 * write: GPT headers and entry CRCs, the primary rebuilt from the image's own backup (at its last
 * LBA) when damaged, the entries within the usable LBAs and not overlapping; MBR records on the
 * disk and not overlapping. An invalid table: PARTITION_TABLE_INVALID with the reason. `none` is
 * returned for the caller to refuse with what the bytes look like. `primaryOnly`: the primary GPT
 * alone is judged (a streamed image's head, whose backup is not there yet).
 */
export async function checkPartitionTable (io: ImageIo, options: { imageBytes: number; diskPath: string; primaryOnly?: boolean }): Promise<TableKind> {
  const head = io.head
  const table = detectPartitionTable(head)
  checkSectorSize(table, io.logicalSectorBytes, options.diskPath)
  try {
    const sectorBytes = io.logicalSectorBytes
    const diskSectors = Math.floor(io.sizeBytes / sectorBytes)
    const imageSectors = Math.floor(options.imageBytes / sectorBytes)
    if (table.kind === 'gpt') {
      const geometry = { sectorBytes, diskSectors }
      let loaded
      try {
        loaded = await loadGpt(io, geometry, options.primaryOnly === true ? [] : [imageSectors - 1])
      } catch (err) {
        // The head alone: entries that fail their CRC may still be repaired from the image's backup, checked once it is there.
        if (options.primaryOnly === true && err instanceof GptEntriesCrcError) return table
        throw err
      }
      // The head alone does not know the image's length yet.
      checkGptEntries(loaded.entries, loaded.primary, options.primaryOnly === true ? {} : { imageSectors })
      if (table.hybridMbr) checkMbrRecords(head, { diskSectors, ...(options.primaryOnly === true ? {} : { imageSectors }) })
    } else if (table.kind === 'mbr') {
      // An MBR without a protective record rules (Linux reads it, not the GPT); a valid GPT header
      // behind it is a second table that disagrees, which sgdisk and UEFI firmware may read instead.
      const gptSector = SECTOR_SIZES.find((size) => hasIntactPrimaryHeader(head, size))
      if (gptSector !== undefined) {
        throw new MbrFormatError('LBA 0 holds an MBR with no protective (0xEE) partition, ' +
          `but a valid GPT header follows it (at byte ${gptSector}): two partition tables that disagree`)
      }
      checkMbrRecords(head, { diskSectors, ...(options.primaryOnly === true ? {} : { imageSectors }) })
      if (options.primaryOnly !== true) {
        await checkLogicalPartitions(head, async (lba) => await readBytes(io, lba * sectorBytes, 512), { imageSectors })
      }
    }
  } catch (err) {
    if (isInstallError(err)) throw err
    // Only a table that is not valid is the image's fault; anything else (a bug) goes up as it is: INTERNAL_ERROR.
    if (isInvalidTable(err)) throw errors.partitionTableInvalid(err.message, err)
    throw err
  }
  return table
}

/**
 * What checkPartitionTable's checks throw when the image's table is not valid: GPT or MBR bytes
 * that fail a check (GptFormatError, MbrFormatError), a structure read outside the disk
 * (RangeError), or, as before, the image's bytes on the disk unreadable (a system call's error).
 */
function isInvalidTable (err: unknown): err is Error {
  return err instanceof GptFormatError || err instanceof MbrFormatError || err instanceof RangeError ||
    (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string')
}

export interface RelocateResult extends Partial<Omit<GptMoveResult, 'moved' | 'repairedFromBackup'>> {
  kind: 'gpt' | 'mbr' | 'none'
  /** The backup GPT was (re)written at the disk's last LBAs. */
  moved: boolean
  repairedFromBackup: boolean
  sectorBytes?: number
}

/**
 * GPT: validate the primary (header CRC, entries CRC, LBAs); move the backup entries and header to
 * the disk's last LBAs, update the primary (AlternateLBA, LastUsableLBA, CRCs) and size the
 * protective MBR to the disk (capped at 0xFFFFFFFF sectors), like `sgdisk -e`. Nothing to do when
 * the backup is already at the end. A damaged primary with a valid backup at the image's end (its
 * last LBA is imageBytes / sector − 1) is repaired from the backup. MBR-only: untouched. Hybrid MBR:
 * its entries kept. Any failure: GPT_MOVE_FAILED, with the reason as the cause.
 */
export async function relocateBackupGpt (io: ImageIo, options: { imageBytes: number }): Promise<RelocateResult> {
  const head = io.head
  const table = detectPartitionTable(head)
  if (table.kind !== 'gpt') return { kind: table.kind, moved: false, repairedFromBackup: false }
  const sectorBytes = table.headerFound === false ? io.logicalSectorBytes : table.sectorBytes
  try {
    if (sectorBytes !== io.logicalSectorBytes) {
      throw new Error(`the image's GPT uses ${sectorBytes}-byte sectors, the disk ${io.logicalSectorBytes}-byte sectors`)
    }
    const result = await moveBackupGptToEnd(io, { sectorBytes, imageBytes: options.imageBytes })
    return { kind: 'gpt', sectorBytes, ...result }
  } catch (err) {
    throw errors.gptMoveFailed(err)
  }
}

export interface AddedPartition {
  offsetBytes: number
  sizeBytes: number
  /** The partition number (GPT slot or MBR record + 1), as in /dev/sdaN. */
  number: number
  /** An existing config-2 partition was found: the table is unchanged. */
  reused: boolean
  table: 'gpt' | 'mbr'
  /** GPT only: the partition's unique GUID (PARTUUID). */
  uniqueGuid?: string
}

export interface ConfigDrivePartitionOptions {
  /** The most the partition takes of the end of the free space; default and maximum 64 MiB (ironic's). */
  sizeBytes?: number
  /** Refuse when less than this fits (or when a reused partition is smaller); default 1 MiB. Pass the filesystem's size. */
  minSizeBytes?: number
  /**
   * Whether the filesystem at [offsetBytes, offsetBytes + sizeBytes) is labelled config-2 (ironic's
   * `get_labelled_partition`). Asked for every MBR primary partition, and on GPT for every partition
   * not named config-2. It reads through the ImageIo, so offsets below head.length come from the head.
   */
  isConfigDrive?: (offsetBytes: number, sizeBytes: number) => Promise<boolean>
}

/**
 * Adds (or reuses) the config-2 partition. GPT: a new entry in the first free slot, in the last
 * 64 MiB of the free space at the end of the disk (start aligned up to 1 MiB, end at LastUsableLBA),
 * type Linux filesystem, name "config-2", a fresh random unique GUID; both copies and CRCs updated.
 * MBR: the first free primary slot, type 0x83, 1 MiB aligned, ending at or below sector 2^32. An
 * existing partition named config-2 (GPT), or one `isConfigDrive` accepts, is reused. No slot, no
 * space, no table: CONFIGDRIVE_FAILED with the reason as the cause. Must run after relocateBackupGpt.
 */
export async function addConfigDrivePartition (io: ImageIo, options: ConfigDrivePartitionOptions = {}): Promise<AddedPartition> {
  const head = io.head
  const maxBytes = options.sizeBytes ?? CONFIG_DRIVE_MAX_BYTES
  const minBytes = options.minSizeBytes ?? MIB
  try {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < MIB || maxBytes > CONFIG_DRIVE_MAX_BYTES) {
      throw new RangeError(`config drive size ${maxBytes} is not between 1 MiB and 64 MiB`)
    }
    if (!Number.isSafeInteger(minBytes) || minBytes < 1 || minBytes > maxBytes) {
      throw new RangeError(`minimum config drive size ${minBytes} is not between 1 byte and ${maxBytes}`)
    }
    const table = detectPartitionTable(head)
    const sectorBytes = io.logicalSectorBytes
    let added: AddedPartition
    if (table.kind === 'gpt') {
      if (table.headerFound !== false && table.sectorBytes !== sectorBytes) {
        throw new Error(`the image's GPT uses ${table.sectorBytes}-byte sectors, the disk ${sectorBytes}-byte sectors`)
      }
      const partition = await addGptPartition(io, {
        sectorBytes,
        name: CONFIG_DRIVE_LABEL,
        typeGuid: LINUX_FILESYSTEM_GUID,
        maxBytes,
        minBytes,
        isWanted: options.isConfigDrive,
      })
      added = { table: 'gpt', ...partition }
    } else if (table.kind === 'mbr') {
      const diskSectors = Math.floor(io.sizeBytes / sectorBytes)
      const partition = await addMbrPartition(head, { sectorBytes, diskSectors, type: LINUX_TYPE, maxBytes, minBytes, isWanted: options.isConfigDrive })
      added = { table: 'mbr', ...partition }
    } else {
      throw new Error('the image has no partition table (neither GPT nor MBR)')
    }
    if (added.reused && added.sizeBytes < minBytes) {
      throw new Error(`the existing config-2 partition ${added.number} holds ${added.sizeBytes} bytes, less than the ${minBytes} needed`)
    }
    return added
  } catch (err) {
    if (isInstallError(err)) throw err
    throw errors.configDriveFailed(err)
  }
}
