/**
 * The MBR: the first 512 bytes of LBA 0 whatever the sector size (formats.md 2.1).
 * Pure functions over the image's head; LBAs count the disk's logical sectors.
 */
import { MIB, placeAtEnd } from './end-placement.js'

export const MBR_BYTES = 512
const RECORDS_OFFSET = 446 // four 16-byte partition records
const RECORD_BYTES = 16
const SIGNATURE_OFFSET = 510 // 55 AA, at byte 510 even on 4Kn
export const PROTECTIVE_TYPE = 0xee // GPT protective (or the GPT part of a hybrid MBR)
export const LINUX_TYPE = 0x83
const EXTENDED_TYPES: readonly number[] = [0x05, 0x0f, 0x85] // CHS, LBA and Linux extended containers
/** StartingLBA and SizeInLBA are u32: nothing of an MBR partition lies at or past sector 2^32. */
export const MBR_MAX_SECTORS = 2 ** 32
const U32_MAX = 0xffffffff

export interface MbrRecord {
  /** 0..3; the Linux partition number is slot + 1. */
  slot: number
  bootIndicator: number
  type: number
  startLba: number
  sizeLba: number
}

export type MbrLayout = 'protective' | 'hybrid' | 'plain' | 'none'

/** The MBR's records (or an EBR chain) are no valid partition table: bad data, never a bug of the reader. */
export class MbrFormatError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MbrFormatError'
  }
}

export function hasMbrSignature (head: Buffer): boolean {
  return head.length >= MBR_BYTES && head[SIGNATURE_OFFSET] === 0x55 && head[SIGNATURE_OFFSET + 1] === 0xaa
}

export function readMbrRecords (head: Buffer): MbrRecord[] {
  if (head.length < MBR_BYTES) return []
  const records: MbrRecord[] = []
  for (let slot = 0; slot < 4; slot++) {
    const at = RECORDS_OFFSET + slot * RECORD_BYTES
    records.push({
      slot,
      bootIndicator: head.readUInt8(at), // 0x00 or 0x80
      type: head.readUInt8(at + 4),
      startLba: head.readUInt32LE(at + 8),
      sizeLba: head.readUInt32LE(at + 12),
    })
  }
  return records
}

/** A slot that holds nothing: sfdisk's and Linux's view (Linux skips records of size 0). */
export function isEmptyRecord (record: MbrRecord): boolean {
  return record.type === 0 && record.sizeLba === 0
}

export function isExtendedType (type: number): boolean {
  return EXTENDED_TYPES.includes(type)
}

/**
 * What LBA 0 holds, by Linux's rules (`is_pmbr_valid` in block/partitions/efi.c, `msdos_partition`):
 * an 0xEE record makes it protective, or hybrid when another record has a non-zero type; without
 * one, a plain MBR needs 55 AA, boot indicators of 0x00 or 0x80, and at least one partition.
 */
export function classifyMbr (head: Buffer): MbrLayout {
  if (!hasMbrSignature(head)) return 'none'
  const records = readMbrRecords(head)
  if (records.some((r) => r.type === PROTECTIVE_TYPE)) {
    return records.some((r) => r.type !== PROTECTIVE_TYPE && r.type !== 0) ? 'hybrid' : 'protective'
  }
  if (records.some((r) => r.bootIndicator !== 0x00 && r.bootIndicator !== 0x80)) return 'none'
  const used = records.filter((r) => r.sizeLba > 0)
  if (used.length === 0 || used.some((r) => r.startLba === 0)) return 'none'
  return 'plain'
}

/**
 * A plain MBR's primary records as a partitioner must leave them: none with a type but no sectors,
 * each starting past LBA 0 and ending on the disk, none overlapping another (logical partitions live inside their extended
 * record and are not looked at). Refused before any write, like an invalid GPT.
 */
export function checkMbrRecords (head: Buffer, options: { diskSectors: number; imageSectors?: number }): void {
  const { diskSectors, imageSectors } = options
  const records = readMbrRecords(head)
  // A type with no sectors: Linux skips it, partitioners (sgdisk) read it as a partition ending before it starts.
  const hollow = records.find((r) => r.type !== 0 && r.sizeLba === 0)
  if (hollow !== undefined) throw new MbrFormatError(`MBR partition ${hollow.slot + 1} has type 0x${hollow.type.toString(16).padStart(2, '0')} but no sectors`)
  // A protective (0xEE) record of 2^32 − 1 sectors means "to the disk's end" (UEFI 5.2.3): it is measured as that.
  const used = records.filter((r) => !isEmptyRecord(r)).map((r) =>
    r.type === PROTECTIVE_TYPE && r.sizeLba === U32_MAX ? { ...r, sizeLba: Math.max(1, Math.min(U32_MAX, (imageSectors ?? diskSectors) - r.startLba)) } : r)
  for (const r of used) {
    if (r.startLba === 0 || r.startLba + r.sizeLba > diskSectors) {
      throw new MbrFormatError(`MBR partition ${r.slot + 1} (LBA ${r.startLba}-${r.startLba + r.sizeLba - 1}) ` +
        `does not lie between LBA 1 and the disk's last LBA ${diskSectors - 1}`)
    }
    // Past the image's end the disk holds whatever it held before: no partition may take it for the image's.
    if (imageSectors !== undefined && r.startLba + r.sizeLba > imageSectors) {
      throw new MbrFormatError(`MBR partition ${r.slot + 1} (LBA ${r.startLba}-${r.startLba + r.sizeLba - 1}) ` +
        `runs past the image's end (its last LBA is ${imageSectors - 1})`)
    }
  }
  checkNoOverlap(used, 'MBR partition')
}

/** Partitions (MBR records, or logical ones) sorted by start: none may begin before the previous one ends. */
function checkNoOverlap (partitions: ReadonlyArray<{ slot: number; startLba: number; sizeLba: number }>, what: string): void {
  const sorted = [...partitions].sort((a, b) => a.startLba - b.startLba)
  for (let i = 1; i < sorted.length; i++) {
    const before = sorted[i - 1] as MbrRecord
    const after = sorted[i] as MbrRecord
    if (after.startLba < before.startLba + before.sizeLba) {
      throw new MbrFormatError(`${what} ${after.slot + 1} (LBA ${after.startLba}-${after.startLba + after.sizeLba - 1}) ` +
        `overlaps partition ${before.slot + 1} (LBA ${before.startLba}-${before.startLba + before.sizeLba - 1})`)
    }
  }
}

const MAX_LOGICAL_PARTITIONS = 128 // far beyond Linux's 64-odd minors per disk: a longer chain is a loop or garbage

/**
 * The logical partitions of each extended record, found by walking its chain of EBRs (formats.md
 * 2.1; Linux's `parse_extended`): each EBR's first record is a logical partition relative to that
 * EBR, its second the link to the next EBR relative to the container's start. Every logical must lie
 * inside its container (and the image), none overlapping another; every link must point forward
 * inside the container, at an EBR with 55 AA. A first EBR without 55 AA means no logical
 * partitions (as Linux reads it). `readSector` reads the 512-byte table at an LBA of the image.
 */
export async function checkLogicalPartitions (head: Buffer, readSector: (lba: number) => Promise<Buffer>, options: { imageSectors: number }): Promise<void> {
  for (const container of readMbrRecords(head).filter((r) => isExtendedType(r.type) && r.sizeLba > 0)) {
    const end = container.startLba + container.sizeLba
    const logicals: Array<{ slot: number; startLba: number; sizeLba: number }> = []
    let ebrLba = container.startLba
    for (let hop = 0; ; hop++) {
      if (hop >= MAX_LOGICAL_PARTITIONS) {
        throw new MbrFormatError(`the extended partition ${container.slot + 1} chains more than ${MAX_LOGICAL_PARTITIONS} logical partitions`)
      }
      const ebr = await readSector(ebrLba)
      if (!hasMbrSignature(ebr)) {
        if (hop === 0) break
        throw new MbrFormatError(`the EBR at LBA ${ebrLba} (extended partition ${container.slot + 1}) has no 55 AA signature`)
      }
      const [logical, link] = readMbrRecords(ebr)
      const number = 5 + hop
      if (logical !== undefined && logical.sizeLba > 0) {
        const startLba = ebrLba + logical.startLba
        const lastLba = startLba + logical.sizeLba - 1
        if (logical.startLba === 0 || lastLba >= end || lastLba >= options.imageSectors) {
          throw new MbrFormatError(`logical partition ${number} (LBA ${startLba}-${lastLba}) does not lie inside ` +
            `its extended partition ${container.slot + 1} (LBA ${container.startLba}-${end - 1}) and the image`)
        }
        logicals.push({ slot: number - 1, startLba, sizeLba: logical.sizeLba })
      }
      if (link === undefined || link.sizeLba === 0 || !isExtendedType(link.type)) break
      const next = container.startLba + link.startLba
      if (next <= ebrLba || next >= end) {
        throw new MbrFormatError(`the EBR at LBA ${ebrLba} links to LBA ${next}, ` +
          `not forward inside extended partition ${container.slot + 1} (LBA ${container.startLba}-${end - 1})`)
      }
      ebrLba = next
    }
    checkNoOverlap(logicals, 'logical partition')
  }
}

// The usual LBA-assist geometry (gdisk, sfdisk, parted): 255 heads, 63 sectors per track.
const HEADS = 255
const SECTORS_PER_TRACK = 63

/** CHS bytes (head, sector | cylinder high bits, cylinder low) of an LBA, or `overflow` past cylinder 1023. */
function chsBytes (lba: number, overflow: readonly [number, number, number]): [number, number, number] {
  const cylinder = Math.floor(lba / (HEADS * SECTORS_PER_TRACK))
  if (cylinder > 1023) return [...overflow]
  const headNumber = Math.floor(lba / SECTORS_PER_TRACK) % HEADS
  const sector = (lba % SECTORS_PER_TRACK) + 1
  return [headNumber, sector | ((cylinder >> 2) & 0xc0), cylinder & 0xff]
}

/** Writes one record into LBA 0 of `head`, with CHS values computed as gdisk does. */
export function writeMbrRecord (head: Buffer, record: MbrRecord): void {
  const at = RECORDS_OFFSET + record.slot * RECORD_BYTES
  if (record.slot < 0 || record.slot > 3 || head.length < MBR_BYTES) throw new RangeError(`no MBR record ${record.slot}`)
  if (!Number.isSafeInteger(record.startLba) || record.startLba < 0 || record.startLba > U32_MAX ||
    !Number.isSafeInteger(record.sizeLba) || record.sizeLba < 0 || record.sizeLba > U32_MAX) {
    throw new RangeError(`MBR record ${record.slot} does not fit 32-bit LBAs (start ${record.startLba}, size ${record.sizeLba})`)
  }
  head.fill(0, at, at + RECORD_BYTES)
  if (record.type === 0 && record.sizeLba === 0) return
  // UEFI wants FF FF FF as the end CHS of a protective record that cannot be represented; other
  // records use 1023/254/63 (FE FF FF), as sfdisk and parted write it.
  const overflow = record.type === PROTECTIVE_TYPE ? [0xff, 0xff, 0xff] as const : [0xfe, 0xff, 0xff] as const
  head.writeUInt8(record.bootIndicator, at)
  head.set(chsBytes(record.startLba, overflow), at + 1)
  head.writeUInt8(record.type, at + 4)
  head.set(chsBytes(record.startLba + Math.max(record.sizeLba, 1) - 1, overflow), at + 5)
  head.writeUInt32LE(record.startLba, at + 8)
  head.writeUInt32LE(record.sizeLba, at + 12)
}

export type ProtectiveMbrChange = 'resized' | 'created' | 'unchanged'

/**
 * Sizes the protective MBR to a disk of `diskSectors` logical sectors, like `sgdisk -e`
 * (formats.md 2.5, 2.6 step 7), keeping the boot code and the disk signature:
 * - protective (only 0xEE records): one 0xEE record from LBA 1 over min(diskSectors − 1, 2^32 − 1) sectors;
 * - hybrid: only the 0xEE records that reached the image's old end (`previousDiskSectors`) grow to
 *   the new end; the other records, which a BIOS boot or an old OS relies on, are kept as they are;
 * - no valid MBR at all (GPT without protective MBR, which Linux would not read): a fresh one;
 * - plain MBR: untouched (not a GPT disk for Linux).
 */
export function fitProtectiveMbr (head: Buffer, options: { diskSectors: number; previousDiskSectors: number }): ProtectiveMbrChange {
  const { diskSectors, previousDiskSectors } = options
  const layout = classifyMbr(head)
  if (layout === 'plain' || head.length < MBR_BYTES) return 'unchanged'
  const before = Buffer.from(head.subarray(0, MBR_BYTES))
  if (layout === 'hybrid') {
    for (const record of readMbrRecords(head)) {
      if (record.type !== PROTECTIVE_TYPE) continue
      const reachedEnd = record.sizeLba === U32_MAX || record.startLba + record.sizeLba >= previousDiskSectors
      const sizeLba = Math.min(diskSectors - record.startLba, U32_MAX)
      if (reachedEnd && sizeLba > record.sizeLba) writeMbrRecord(head, { ...record, sizeLba })
    }
    return before.equals(head.subarray(0, MBR_BYTES)) ? 'unchanged' : 'resized'
  }
  const sizeLba = Math.min(diskSectors - 1, U32_MAX)
  const records = readMbrRecords(head)
  const protective = records.filter((r) => r.type === PROTECTIVE_TYPE)
  const only = protective[0]
  if (layout === 'protective' && protective.length === 1 && only !== undefined && only.startLba === 1 && only.sizeLba === sizeLba) return 'unchanged'
  // parted's pmbr_boot flag (0x80 on the 0xEE record, which some BIOSes want) is kept.
  const bootIndicator = only?.bootIndicator === 0x80 ? 0x80 : 0x00
  for (let slot = 0; slot < 4; slot++) writeMbrRecord(head, { slot, bootIndicator: 0, type: 0, startLba: 0, sizeLba: 0 })
  writeMbrRecord(head, { slot: 0, bootIndicator, type: PROTECTIVE_TYPE, startLba: 1, sizeLba })
  head[SIGNATURE_OFFSET] = 0x55
  head[SIGNATURE_OFFSET + 1] = 0xaa
  if (layout === 'none') return 'created'
  return before.equals(head.subarray(0, MBR_BYTES)) ? 'unchanged' : 'resized'
}

export interface NewMbrPartition {
  offsetBytes: number
  sizeBytes: number
  number: number
  reused: boolean
}

/**
 * Reuses a primary partition `isWanted` accepts, or adds one in the first free primary slot: the
 * last `maxBytes` of the free space after the last partition, start aligned to 1 MiB, ending at or
 * below sector 2^32 (2 TiB with 512-byte sectors), as ironic does with parted, and before the last
 * sectors a backup GPT would take (33 of 512 bytes, 5 of 4 KiB). Only the head changes.
 */
export async function addMbrPartition (head: Buffer, options: {
  sectorBytes: number
  diskSectors: number
  type: number
  maxBytes: number
  minBytes: number
  isWanted?: ((offsetBytes: number, sizeBytes: number) => Promise<boolean>) | undefined
}): Promise<NewMbrPartition> {
  const { sectorBytes, diskSectors } = options
  if (classifyMbr(head) !== 'plain') throw new Error('LBA 0 holds no MBR partition table')
  // A partition reused as config-2 gets written over: it must lie on the disk, alone.
  checkMbrRecords(head, { diskSectors })
  const records = readMbrRecords(head)
  const used = records.filter((r) => !isEmptyRecord(r))
  if (options.isWanted !== undefined) {
    for (const r of used) {
      if (isExtendedType(r.type) || r.sizeLba === 0 || r.startLba + r.sizeLba > diskSectors) continue
      const candidate = { offsetBytes: r.startLba * sectorBytes, sizeBytes: r.sizeLba * sectorBytes, number: r.slot + 1, reused: true }
      if (await options.isWanted(candidate.offsetBytes, candidate.sizeBytes)) return candidate
    }
  }
  const free = records.find(isEmptyRecord)
  if (free === undefined) throw new Error('all four primary partitions are in use')
  // The first MiB stays for the table and the boot loader, as every partitioner leaves it.
  const freeStartLba = used.reduce((max, r) => Math.max(max, r.startLba + r.sizeLba), Math.ceil(MIB / sectorBytes))
  // The disk's last sectors stay free, as many as a backup GPT takes (header + 16 KiB of entries):
  // a partition up to the very last sector is one that `sgdisk -v` (and a later conversion to GPT)
  // finds overlapping the secondary table.
  const gptTailSectors = 1 + Math.ceil(16384 / sectorBytes)
  const freeEndLba = Math.min(diskSectors - gptTailSectors, MBR_MAX_SECTORS)
  const placement = placeAtEnd({ freeStartLba, freeEndLba, sectorBytes, maxBytes: options.maxBytes, minBytes: options.minBytes })
  if (placement === undefined) {
    const freeBytes = Math.max(0, freeEndLba - freeStartLba) * sectorBytes
    throw new Error(`no room for a partition of at least ${options.minBytes} bytes after the last partition and below sector 2^32 ` +
      `(${freeBytes} bytes free from LBA ${freeStartLba})`)
  }
  writeMbrRecord(head, { slot: free.slot, bootIndicator: 0, type: options.type, startLba: placement.startLba, sizeLba: placement.sizeLba })
  return { offsetBytes: placement.startLba * sectorBytes, sizeBytes: placement.sizeLba * sectorBytes, number: free.slot + 1, reused: false }
}
