import { fatFileExists, FatFormatError } from '../configdrive/index.js'
import type { ImageIo } from '../disk/block-io.js'
import { findEfiSystemPartition, partitionReader } from '../disk/efi-system-partition.js'
import { GptFormatError, hasWholePrimaryInHead } from '../disk/gpt.js'
import { checkPartitionTable, checkSectorSize, detectPartitionTable, HeadOverlay } from '../disk/partition-table.js'
import { PlannedDisk } from '../disk/planned-disk.js'
import { describeContent } from '../image/describe-content.js'
import { isQcow2 } from '../image/qcow2/index.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors, type InstallError } from '../errors/install-error.js'
import type { DiskShape } from './target.js'

/**
 * The checks an image passes before it may become bootable. They run before the first byte is
 * written when the image is in memory; for a streamed image, the head checks run on its first MiB
 * before anything reaches the disk, and the whole-image checks (tables, EFI) once it is streamed,
 * before its head is written (a failure then makes the disk unbootable).
 */

/** The digest of the bytes as downloaded equals the one given. */
export function checkDigest (request: InstallRequest, digestHex: string | undefined): void {
  if (request.checksum === undefined) return
  const got = digestHex ?? ''
  if (got !== request.checksum.hex) throw errors.checksumMismatch(request.checksum.type, got, request.checksum.hex)
}

/** The bytes are of the declared imageType: a qcow2 declared raw would be written as a useless disk, and the reverse cannot be read. */
export function checkDeclaredType (request: InstallRequest, firstBytes: Buffer): void {
  const actual = isQcow2(firstBytes) ? 'qcow2' : 'raw'
  if (actual !== request.imageType) throw errors.imageTypeMismatch(request.imageType, actual)
}

/**
 * What the image's first MiB (raw, or the qcow2's guest disk) allows to check, before any byte of a
 * streamed image reaches the disk: the declared type, a partition table at all (else the message
 * says what the bytes look like: a compressed file, a bare filesystem, zeros), its sector size, and
 * when the primary GPT lies whole in the head, its header and entries. A primary that is not whole
 * may still be repaired from the image's backup: checkImageTables decides once the image is there.
 */
export async function checkImageHead (request: InstallRequest, head: Buffer, disk: DiskShape): Promise<void> {
  if (request.imageType === 'raw') checkDeclaredType(request, head)
  const table = detectPartitionTable(head)
  if (table.kind === 'none') throw noPartitionTable(request, describeContent(head))
  checkSectorSize(table, disk.logicalSectorBytes, disk.path)
  if (table.kind === 'gpt' && !hasWholePrimaryInHead(head, disk.logicalSectorBytes)) return
  // The head alone: the image's bytes past it are not needed for a whole primary GPT or an MBR.
  const readHead = async (data: Uint8Array, offset: number): Promise<void> => { data.set(head.subarray(offset, offset + data.length)) }
  const headOnly = new PlannedDisk(disk.sizeBytes, disk.logicalSectorBytes, Math.min(head.length, disk.sizeBytes), readHead)
  await checkPartitionTable(new HeadOverlay(head, headOnly), { imageBytes: headOnly.imageBytes, diskPath: disk.path, primaryOnly: true })
}

/**
 * The whole image's partition table, as it will lie on the disk (`io`: the image's bytes, its
 * length, nothing of what the disk held): GPT headers and entries (a damaged primary rebuilt from
 * the image's own backup), partitions within bounds and not overlapping; MBR records likewise.
 */
export async function checkImageTables (request: InstallRequest, io: ImageIo, imageBytes: number, diskPath: string): Promise<void> {
  const table = await checkPartitionTable(io, { imageBytes, diskPath })
  if (table.kind === 'none') throw noPartitionTable(request, describeContent(io.head.subarray(0, imageBytes)))
}

/** No partition table: OVH's words for a raw image, the agent's for a qcow2's virtual disk; `what` says what the bytes look like. */
function noPartitionTable (request: InstallRequest, what: string): InstallError {
  return request.imageType === 'qcow2' ? errors.qcow2NoPartitionTable(what) : errors.noPartitionTable(what)
}

/**
 * What the EFI lookup throws when the image's bytes are not a readable ESP: a FAT that is not one
 * or is damaged (FatFormatError), a GPT that locates it that is not valid (GptFormatError), a read
 * outside the partition or the disk (RangeError: partitionReader, readBytes, PlannedDisk; also a
 * malformed efiPath). The file is then not in the image's EFI system partition, as UEFI would find.
 */
function isUnreadableEsp (err: unknown): boolean {
  return err instanceof FatFormatError || err instanceof GptFormatError || err instanceof RangeError
}

/**
 * efiBootloaderPath names a file that the image's EFI system partition holds, matched without
 * regard to case as UEFI does. `io` reads the image with its head in memory (the rest as planned).
 * The walk gives the event loop its turns and ends with the signal's reason once aborted.
 */
export async function checkEfiBootloader (efiPath: string | undefined, io: ImageIo, options: { imageBytes: number; signal?: AbortSignal }): Promise<void> {
  if (efiPath === undefined) return
  const { imageBytes, signal } = options
  let found: boolean
  try {
    const esp = await findEfiSystemPartition(io, { imageBytes, signal })
    if (esp === undefined) throw errors.efiBootloaderNotFound(efiPath, 'no-esp')
    found = await fatFileExists(partitionReader(io, esp), efiPath, { signal })
  } catch (err) {
    // An abort is a cancel, never "not found", whatever reason it carries.
    signal?.throwIfAborted()
    if (isUnreadableEsp(err)) throw errors.efiBootloaderNotFound(efiPath, 'not-in-esp', err)
    // Anything else (an InstallError from reading the image, a bug) goes up as it is: a bug is an INTERNAL_ERROR, not a bad image.
    throw err
  }
  if (!found) throw errors.efiBootloaderNotFound(efiPath, 'not-in-esp')
}
