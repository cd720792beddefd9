import { fatFileExists, FatFormatError } from '../configdrive/index.js'
import type { BlockIo } from '../disk/block-io.js'
import { findEfiSystemPartition, partitionReader } from '../disk/efi-system-partition.js'
import { checkSectorSize, detectPartitionTable } from '../disk/partition-table.js'
import { isQcow2 } from '../image/qcow2/index.js'
import type { InstallRequest } from '../payload/install-request.js'
import { errors } from '../report/install-error.js'

/**
 * The checks an image passes before it may become bootable. They run before the first byte is
 * written when the image is in memory; for a streamed image, the head checks run on its first MiB
 * before anything reaches the disk, and the EFI check runs after writing (a failure then makes the
 * disk unbootable).
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

/** The guest disk's first MiB: its partition table must use the disk's sector size. */
export function checkHead (head: Buffer, disk: { path: string; logicalSectorBytes: number }): void {
  checkSectorSize(detectPartitionTable(head), disk.logicalSectorBytes, disk.path)
}

/**
 * efiBootloaderPath names a file that the image's EFI system partition holds, matched without
 * regard to case as UEFI does. `io` reads the image past its head (the image in memory, or the disk).
 * The walk gives the event loop its turns and ends with the signal's reason once aborted.
 */
export async function checkEfiBootloader (efiPath: string | undefined, head: Buffer, io: BlockIo, options: { imageBytes: number; signal?: AbortSignal }): Promise<void> {
  if (efiPath === undefined) return
  const { imageBytes, signal } = options
  let found: boolean
  try {
    const esp = await findEfiSystemPartition(head, io, { imageBytes, signal })
    if (esp === undefined) throw errors.efiBootloaderNotFound(efiPath, 'no-esp')
    found = await fatFileExists(partitionReader(head, io, esp), efiPath, { signal })
  } catch (err) {
    // An abort is a cancel, never "not found", whatever reason it carries.
    signal?.throwIfAborted()
    if (err instanceof FatFormatError || err instanceof RangeError || (err instanceof Error && !('code' in err))) {
      throw errors.efiBootloaderNotFound(efiPath, 'not-in-esp', err)
    }
    throw err
  }
  if (!found) throw errors.efiBootloaderNotFound(efiPath, 'not-in-esp')
}

/** A read-only BlockIo over an image that is not on a disk yet (reads past its end are zeros, writes refused). */
export function imageIo (image: { sizeBytes: number; read: (offset: number, length: number) => Buffer }, logicalSectorBytes: number): BlockIo {
  return {
    sizeBytes: image.sizeBytes,
    logicalSectorBytes,
    read: async (data, offset) => { data.set(image.read(offset, data.length)) },
    write: async () => { throw new Error('the image is read-only before it is written') },
  }
}
