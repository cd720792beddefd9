/**
 * Finds the image's EFI system partition: the GPT entry of type C12A7328-F81F-11D2-BA4B-00A0C93EC93B
 * (UEFI spec 5.3.3), or an MBR record of type 0xEF (UEFI spec 5.2.2). Reads go through an `ImageIo`,
 * so it works on an image in memory, on a written disk whose head is still held back, or on both.
 */
import { readBytes, type ImageIo } from './block-io.js'
import { loadGpt } from './gpt.js'
import { isEmptyRecord, readMbrRecords } from './mbr.js'
import { detectPartitionTable } from './partition-table.js'

export const EFI_SYSTEM_GUID = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B'
const MBR_EFI_TYPE = 0xef

export interface PartitionSpan {
  /** The Linux partition number. */
  number: number
  offsetBytes: number
  sizeBytes: number
}

/**
 * The first EFI system partition, or undefined when the image has none (or no partition table).
 * Its work is bounded (one GPT: header and at most MAX_ENTRIES_BYTES of entries); `signal` is
 * looked at before and after the reads.
 */
export async function findEfiSystemPartition (io: ImageIo, options: { imageBytes: number; signal?: AbortSignal }): Promise<PartitionSpan | undefined> {
  const head = io.head
  options.signal?.throwIfAborted()
  const table = detectPartitionTable(head)
  if (table.kind === 'gpt') {
    const sectorBytes = table.headerFound === false ? io.logicalSectorBytes : table.sectorBytes
    const diskSectors = Math.floor(io.sizeBytes / sectorBytes)
    const backupLba = Math.floor(options.imageBytes / sectorBytes) - 1
    // The image's own backup only: what lies past the image on the disk is not part of it.
    const { entries } = await loadGpt(io, { sectorBytes, diskSectors }, [backupLba])
    options.signal?.throwIfAborted()
    const esp = entries.find((entry) => entry.typeGuid === EFI_SYSTEM_GUID)
    if (esp === undefined) return undefined
    return { number: esp.index + 1, offsetBytes: esp.firstLba * sectorBytes, sizeBytes: (esp.lastLba - esp.firstLba + 1) * sectorBytes }
  }
  if (table.kind === 'mbr') {
    const record = readMbrRecords(head).find((r) => !isEmptyRecord(r) && r.type === MBR_EFI_TYPE)
    if (record === undefined) return undefined
    const sectorBytes = io.logicalSectorBytes
    return { number: record.slot + 1, offsetBytes: record.startLba * sectorBytes, sizeBytes: record.sizeLba * sectorBytes }
  }
  return undefined
}

/** A reader of the partition's bytes, bounded to the partition. */
export function partitionReader (io: ImageIo, span: PartitionSpan): (offset: number, length: number) => Promise<Buffer> {
  return async (offset, length) => {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > span.sizeBytes) {
      throw new RangeError(`${length} bytes at ${offset} are outside partition ${span.number} (${span.sizeBytes} bytes)`)
    }
    return await readBytes(io, span.offsetBytes + offset, length)
  }
}
