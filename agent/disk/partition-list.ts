import { HeadOverlay, readBytes, type BlockIo } from './block-io.js'
import { loadGpt } from './gpt.js'
import { isEmptyRecord, readMbrRecords } from './mbr.js'
import { detectPartitionTable } from './partition-table.js'

/**
 * The partitions of a disk as its table lists them (GPT, or MBR primaries), each as the byte
 * range [start, end) of the disk and its type, for the code that reads the filesystems in them:
 * a capture (the free blocks of ext filesystems) and the scrub of an install (the root
 * filesystem). Partitions past the disk's end are left out. No table: the whole disk, number 0
 * (perhaps a filesystem on it). Reads through `io`; with `head`, the first bytes come from it
 * (an install's head, held in memory until the end).
 */

export interface ListedPartition {
  /** The Linux partition number (GPT slot + 1, MBR slot + 1); 0 for the whole disk. */
  number: number
  start: number
  end: number
  /** The GPT type GUID (upper case), or the MBR type byte; none for the whole disk. */
  type: { gpt: string } | { mbr: number } | undefined
  /** GPT: the entry's unique partition GUID (upper case), its PARTUUID. */
  uuid?: string
}

export interface PartitionList {
  table: 'gpt' | 'mbr' | 'none'
  partitions: ListedPartition[]
  /** Why the table could not be read (then `partitions` is empty). */
  problem?: string
}

/** MBR types that hold other partitions (logical ones in an EBR chain: not followed here) or a GPT. */
const MBR_CONTAINERS = new Set([0x05, 0x0f, 0x85, 0xee])
const HEAD_BYTES = 1024 * 1024

export async function listPartitions (io: BlockIo, head?: Buffer): Promise<PartitionList> {
  const first = head ?? await readBytes(io, 0, Math.min(HEAD_BYTES, io.sizeBytes))
  const table = detectPartitionTable(first)
  const inDisk = (span: ListedPartition): boolean => span.start < span.end && span.end <= io.sizeBytes
  if (table.kind === 'gpt') {
    const sectorBytes = table.sectorBytes
    try {
      const gpt = await loadGpt(new HeadOverlay(first, io), { sectorBytes, diskSectors: Math.floor(io.sizeBytes / sectorBytes) }, [])
      const partitions = gpt.entries.map((entry) => ({
        number: entry.index + 1, start: entry.firstLba * sectorBytes, end: (entry.lastLba + 1) * sectorBytes,
        type: { gpt: entry.typeGuid.toUpperCase() }, uuid: entry.uniqueGuid.toUpperCase(),
      }))
      return { table: 'gpt', partitions: partitions.filter(inDisk) }
    } catch (err) {
      return { table: 'gpt', partitions: [], problem: `the GPT could not be read (${err instanceof Error ? err.message : String(err)})` }
    }
  }
  if (table.kind === 'mbr') {
    const partitions = readMbrRecords(first)
      .filter((record) => !isEmptyRecord(record) && !MBR_CONTAINERS.has(record.type))
      .map((record) => ({ number: record.slot + 1, start: record.startLba * 512, end: (record.startLba + record.sizeLba) * 512, type: { mbr: record.type } }))
    return { table: 'mbr', partitions: partitions.filter(inDisk) }
  }
  return { table: 'none', partitions: [{ number: 0, start: 0, end: io.sizeBytes, type: undefined }] }
}
