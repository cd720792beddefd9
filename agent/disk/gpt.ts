/**
 * GPT (formats.md 2.2–2.8): read and check both copies, move the backup to the end of a larger disk
 * as `sgdisk -e` does, and add a partition entry.
 *
 * The primary header and entries normally lie in the image's head, which the install writes last;
 * every read and write here goes through an ImageIo (block-io.ts), so they land in the head
 * or on the disk as they should. LBA fields are u64: they are read as bigint and checked against the
 * disk before they become numbers, so a hostile header can neither crash this code nor steer a write
 * outside the disk or into a partition.
 */
import { randomUUID } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { isInstallError } from '../errors/install-error.js'
import { readBytes, type ImageIo } from './block-io.js'
import type { Placement } from './end-placement.js'
import { placeAtEnd } from './end-placement.js'
import type { ProtectiveMbrChange } from './mbr.js'
import { fitProtectiveMbr } from './mbr.js'

const SIGNATURE = Buffer.from('EFI PART', 'latin1') // 2.2 offset 0, 0x5452415020494645 as u64 LE
const HEADER_MIN_BYTES = 92 // 2.2: 92 ≤ HeaderSize ≤ logical block size
const ENTRY_BYTES = 128 // 2.2 offset 84: Linux and gdisk accept only 128
/** Cap on NumberOfPartitionEntries × 128 (8192 entries); 128 entries (16 KiB) is the usual table. */
export const MAX_ENTRIES_BYTES = 1024 * 1024 // 1 MiB

// GPT header fields (2.2), offsets in bytes.
const HEADER_SIZE = 12
const HEADER_CRC = 16
const MY_LBA = 24
const ALTERNATE_LBA = 32
const FIRST_USABLE_LBA = 40
const LAST_USABLE_LBA = 48
const DISK_GUID = 56
const ENTRIES_LBA = 72
const ENTRY_COUNT = 80
const ENTRY_SIZE = 84
const ENTRIES_CRC = 88

// Partition entry fields (2.3).
const ENTRY_TYPE = 0
const ENTRY_UNIQUE = 16
const ENTRY_FIRST_LBA = 32
const ENTRY_LAST_LBA = 40
const ENTRY_NAME = 56
const NAME_BYTES = 72 // 36 UTF-16LE code units

/** Linux filesystem data (gdisk 8300); cloud-init ignores the type. */
export const LINUX_FILESYSTEM_GUID = '0FC63DAF-8483-4772-8E79-3D69D8477DE4'

export interface GptHeader {
  /** The header's `headerSize` bytes as read (bytes 92.. kept as they are). */
  raw: Buffer
  myLba: number
  alternateLba: number
  firstUsableLba: number
  lastUsableLba: number
  entriesLba: number
  entryCount: number
  entriesCrc: number
}

export interface GptEntry {
  /** 0-based slot; the Linux partition number is index + 1. */
  index: number
  typeGuid: string
  uniqueGuid: string
  firstLba: number
  lastLba: number
  name: string
}

export interface GptGeometry {
  sectorBytes: number
  /** The disk's size in logical sectors: its last LBA is diskSectors − 1. */
  diskSectors: number
}

/** GUIDs are stored mixed-endian (2.3): the first three fields little-endian, the last 8 bytes as written. */
export function guidToBytes (guid: string): Buffer {
  const hex = guid.replace(/-/g, '')
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new Error(`not a GUID: ${guid}`)
  const b = Buffer.from(hex, 'hex')
  return Buffer.concat([b.subarray(0, 4).reverse(), b.subarray(4, 6).reverse(), b.subarray(6, 8).reverse(), b.subarray(8)])
}

export function bytesToGuid (bytes: Uint8Array): string {
  const b = Buffer.from(bytes.subarray(0, 16))
  const hex = Buffer.concat([b.subarray(0, 4).reverse(), b.subarray(4, 6).reverse(), b.subarray(6, 8).reverse(), b.subarray(8)]).toString('hex').toUpperCase()
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export function hasGptSignature (buffer: Buffer, offset: number): boolean {
  return buffer.length >= offset + SIGNATURE.length && buffer.subarray(offset, offset + SIGNATURE.length).equals(SIGNATURE)
}

/** A primary header at byte `sectorBytes` of the head whose size, CRC and MyLBA are right (the full checks come later). */
export function hasIntactPrimaryHeader (head: Buffer, sectorBytes: number): boolean {
  if (!hasGptSignature(head, sectorBytes) || head.length < 2 * sectorBytes) return false
  const headerSize = head.readUInt32LE(sectorBytes + HEADER_SIZE)
  if (headerSize < HEADER_MIN_BYTES || headerSize > sectorBytes) return false
  const raw = head.subarray(sectorBytes, sectorBytes + headerSize)
  return headerCrc(raw) === raw.readUInt32LE(HEADER_CRC) && raw.readBigUInt64LE(MY_LBA) === 1n
}

/** An intact primary header whose entry array lies in the head too: the whole primary GPT can be checked from the head alone. */
export function hasWholePrimaryInHead (head: Buffer, sectorBytes: number): boolean {
  if (!hasIntactPrimaryHeader(head, sectorBytes)) return false
  const entriesStart = head.readBigUInt64LE(sectorBytes + ENTRIES_LBA) * BigInt(sectorBytes)
  const entriesEnd = entriesStart + BigInt(head.readUInt32LE(sectorBytes + ENTRY_COUNT)) * BigInt(ENTRY_BYTES)
  return entriesEnd <= BigInt(head.length)
}

/** The CRC32 (IEEE, zlib's) of a header's first `headerSize` bytes with its CRC field zeroed. */
function headerCrc (raw: Buffer): number {
  const copy = Buffer.from(raw)
  copy.writeUInt32LE(0, HEADER_CRC)
  return crc32(copy)
}

/** The bytes are no valid GPT (a header, its entries, or both copies): bad data, never a bug of the reader. */
export class GptFormatError extends Error {
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'GptFormatError'
  }
}

/**
 * Whether a failure to load one copy of the GPT means that copy is unusable, so that the next is
 * tried: its bytes (GptFormatError), a read outside the disk (RangeError), the image's bytes there
 * unreadable (an InstallError, e.g. a qcow2 cluster that does not decompress) or the disk's (a
 * system call's error, e.g. EIO). Anything else is a bug and goes up as it is.
 */
function isUnusableCopy (err: unknown): boolean {
  return err instanceof GptFormatError || err instanceof RangeError || isInstallError(err) ||
    (err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string')
}

/** A u64 LBA field, which must name a sector of the disk. */
function readLba (buffer: Buffer, offset: number, what: string, diskSectors: number): number {
  const value = buffer.readBigUInt64LE(offset)
  if (value >= BigInt(diskSectors)) throw new GptFormatError(`${what} ${value} is beyond the disk's last LBA ${diskSectors - 1}`)
  return Number(value)
}

/**
 * Parses and checks the header block read at `lba` (Linux's `is_gpt_valid`, 2.4), plus what keeps
 * our writes safe: the entry array lies between LBA 2 and the first usable LBA (primary), or between
 * the last usable LBA and the header (backup), and is at most MAX_ENTRIES_BYTES.
 */
export function parseGptHeader (block: Buffer, lba: number, geometry: GptGeometry): GptHeader {
  const { sectorBytes, diskSectors } = geometry
  if (!hasGptSignature(block, 0)) throw new GptFormatError(`no GPT signature at LBA ${lba}`)
  const headerSize = block.readUInt32LE(HEADER_SIZE)
  if (headerSize < HEADER_MIN_BYTES || headerSize > sectorBytes || headerSize > block.length) {
    throw new GptFormatError(`GPT header at LBA ${lba} has a size of ${headerSize} bytes (92 to ${sectorBytes} allowed)`)
  }
  const raw = Buffer.from(block.subarray(0, headerSize))
  if (headerCrc(raw) !== raw.readUInt32LE(HEADER_CRC)) throw new GptFormatError(`GPT header at LBA ${lba} fails its CRC`)
  const myLba = readLba(raw, MY_LBA, 'MyLBA', diskSectors)
  if (myLba !== lba) throw new GptFormatError(`GPT header at LBA ${lba} says it is at LBA ${myLba}`)
  const alternate = raw.readBigUInt64LE(ALTERNATE_LBA)
  if (alternate > BigInt(Number.MAX_SAFE_INTEGER)) throw new GptFormatError(`GPT header at LBA ${lba} has an AlternateLBA of ${alternate}`)
  const firstUsableLba = readLba(raw, FIRST_USABLE_LBA, 'FirstUsableLBA', diskSectors)
  const lastUsableLba = readLba(raw, LAST_USABLE_LBA, 'LastUsableLBA', diskSectors)
  if (lastUsableLba < firstUsableLba) {
    throw new GptFormatError(`GPT header at LBA ${lba} has LastUsableLBA ${lastUsableLba} before FirstUsableLBA ${firstUsableLba}`)
  }
  const entrySize = raw.readUInt32LE(ENTRY_SIZE)
  if (entrySize !== ENTRY_BYTES) throw new GptFormatError(`GPT header at LBA ${lba} has ${entrySize}-byte entries (only 128 is supported)`)
  const entryCount = raw.readUInt32LE(ENTRY_COUNT)
  if (entryCount === 0 || entryCount * ENTRY_BYTES > MAX_ENTRIES_BYTES) {
    throw new GptFormatError(`GPT header at LBA ${lba} has ${entryCount} partition entries (1 to ${MAX_ENTRIES_BYTES / ENTRY_BYTES} allowed)`)
  }
  const entriesLba = readLba(raw, ENTRIES_LBA, 'PartitionEntryLBA', diskSectors)
  const entriesEnd = entriesLba * sectorBytes + entryCount * ENTRY_BYTES
  if (lba === 1) {
    if (entriesLba < 2 || entriesEnd > firstUsableLba * sectorBytes) {
      throw new GptFormatError(`primary GPT entries at LBA ${entriesLba} (${entryCount} entries) do not lie between LBA 2 and FirstUsableLBA ${firstUsableLba}`)
    }
  } else if (entriesLba <= lastUsableLba || entriesEnd > lba * sectorBytes) {
    throw new GptFormatError(`backup GPT entries at LBA ${entriesLba} (${entryCount} entries) ` +
      `do not lie between LastUsableLBA ${lastUsableLba} and the header at LBA ${lba}`)
  }
  return { raw, myLba, alternateLba: Number(alternate), firstUsableLba, lastUsableLba, entriesLba, entryCount, entriesCrc: raw.readUInt32LE(ENTRIES_CRC) }
}

/** Entries that fail their CRC: damage the other copy of the GPT may repair (Linux then reads the backup). */
export class GptEntriesCrcError extends GptFormatError {
  constructor (message: string) {
    super(message)
    this.name = 'GptEntriesCrcError'
  }
}

/** Checks the entry array's CRC and returns the used entries (type GUID not zero), checked against the disk. */
export function parseGptEntries (array: Buffer, header: GptHeader, geometry: GptGeometry): GptEntry[] {
  if (array.length !== header.entryCount * ENTRY_BYTES) throw new GptFormatError('GPT entry array of the wrong length')
  if (crc32(array) !== header.entriesCrc) throw new GptEntriesCrcError(`GPT entries at LBA ${header.entriesLba} fail their CRC`)
  const entries: GptEntry[] = []
  for (let index = 0; index < header.entryCount; index++) {
    const entry = array.subarray(index * ENTRY_BYTES, (index + 1) * ENTRY_BYTES)
    if (entry.subarray(ENTRY_TYPE, ENTRY_TYPE + 16).every((b) => b === 0)) continue
    const firstLba = readLba(entry, ENTRY_FIRST_LBA, `partition ${index + 1} StartingLBA`, geometry.diskSectors)
    const lastLba = readLba(entry, ENTRY_LAST_LBA, `partition ${index + 1} EndingLBA`, geometry.diskSectors)
    if (lastLba < firstLba) throw new GptFormatError(`partition ${index + 1} ends (LBA ${lastLba}) before it starts (LBA ${firstLba})`)
    const nameBytes = entry.subarray(ENTRY_NAME, ENTRY_NAME + NAME_BYTES)
    let nameEnd = 0
    while (nameEnd < NAME_BYTES && (nameBytes[nameEnd] !== 0 || nameBytes[nameEnd + 1] !== 0)) nameEnd += 2
    entries.push({
      index,
      typeGuid: bytesToGuid(entry.subarray(ENTRY_TYPE, ENTRY_TYPE + 16)),
      uniqueGuid: bytesToGuid(entry.subarray(ENTRY_UNIQUE, ENTRY_UNIQUE + 16)),
      firstLba,
      lastLba,
      name: nameBytes.subarray(0, nameEnd).toString('utf16le'),
    })
  }
  return entries
}

/**
 * The entries as a partitioner must leave them (what `sgdisk -v` checks): each within
 * [FirstUsableLBA, LastUsableLBA] (and, given `imageSectors`, within the image), none overlapping
 * another. A partition outside that range lies
 * over the GPT's own structures or past the disk's end, and two that overlap share data: writing
 * a ConfigDrive into either would destroy the other, so such a table is refused before any write.
 */
export function checkGptEntries (entries: readonly GptEntry[], header: GptHeader, options: { imageSectors?: number } = {}): void {
  for (const e of entries) {
    if (e.firstLba < header.firstUsableLba || e.lastLba > header.lastUsableLba) {
      throw new GptFormatError(`partition ${e.index + 1} (LBA ${e.firstLba}-${e.lastLba}) ` +
        `lies outside the usable LBAs ${header.firstUsableLba}-${header.lastUsableLba}`)
    }
    // Past the image's end the disk holds whatever it held before: no partition may take it for the image's.
    if (options.imageSectors !== undefined && e.lastLba >= options.imageSectors) {
      throw new GptFormatError(`partition ${e.index + 1} (LBA ${e.firstLba}-${e.lastLba}) ` +
        `runs past the image's end (its last LBA is ${options.imageSectors - 1})`)
    }
  }
  const sorted = [...entries].sort((a, b) => a.firstLba - b.firstLba)
  for (let i = 1; i < sorted.length; i++) {
    const before = sorted[i - 1] as GptEntry
    const after = sorted[i] as GptEntry
    if (after.firstLba <= before.lastLba) {
      throw new GptFormatError(`partition ${after.index + 1} (LBA ${after.firstLba}-${after.lastLba}) ` +
        `overlaps partition ${before.index + 1} (LBA ${before.firstLba}-${before.lastLba})`)
    }
  }
}

function entrySectors (header: GptHeader, sectorBytes: number): number {
  return Math.ceil(header.entryCount * ENTRY_BYTES / sectorBytes)
}

/** The header fields headerBlock sets. */
interface HeaderFields {
  myLba: number
  alternateLba: number
  lastUsableLba: number
  entriesLba: number
  entriesCrc: number
}

/** A header block: `raw` with the given fields set, its CRC recomputed, zero-padded to one sector. */
function headerBlock (raw: Buffer, fields: HeaderFields, sectorBytes: number): Buffer {
  const block = Buffer.alloc(sectorBytes)
  raw.copy(block)
  block.writeBigUInt64LE(BigInt(fields.myLba), MY_LBA)
  block.writeBigUInt64LE(BigInt(fields.alternateLba), ALTERNATE_LBA)
  block.writeBigUInt64LE(BigInt(fields.lastUsableLba), LAST_USABLE_LBA)
  block.writeBigUInt64LE(BigInt(fields.entriesLba), ENTRIES_LBA)
  block.writeUInt32LE(fields.entriesCrc, ENTRIES_CRC)
  block.writeUInt32LE(headerCrc(block.subarray(0, raw.length)), HEADER_CRC)
  return block
}

/** The entry array padded with zeros to whole sectors. */
function entriesBlock (array: Buffer, header: GptHeader, sectorBytes: number): Buffer {
  const block = Buffer.alloc(entrySectors(header, sectorBytes) * sectorBytes)
  array.copy(block)
  return block
}

async function readHeader (io: ImageIo, lba: number, geometry: GptGeometry): Promise<GptHeader> {
  if (!Number.isSafeInteger(lba) || lba < 1 || lba >= geometry.diskSectors) throw new GptFormatError(`LBA ${lba} is outside the disk`)
  return parseGptHeader(await readBytes(io, lba * geometry.sectorBytes, geometry.sectorBytes), lba, geometry)
}

async function readEntries (io: ImageIo, header: GptHeader, geometry: GptGeometry): Promise<{ array: Buffer; entries: GptEntry[] }> {
  const array = await readBytes(io, header.entriesLba * geometry.sectorBytes, header.entryCount * ENTRY_BYTES)
  return { array, entries: parseGptEntries(array, header, geometry) }
}

export interface LoadedGpt {
  primary: GptHeader
  /** The entry array (entryCount × 128 bytes) and its used entries. */
  array: Buffer
  entries: GptEntry[]
  /** Set when the primary was damaged and rebuilt (in memory only) from the backup at this LBA. */
  repairedFromLba: number | undefined
}

/**
 * The primary GPT, or when it is damaged, one rebuilt from the first valid backup among
 * `backupLbas` (its entries then belong at LBA 2, which the caller writes).
 */
export async function loadGpt (io: ImageIo, geometry: GptGeometry, backupLbas: readonly number[]): Promise<LoadedGpt> {
  let primaryError: unknown
  try {
    const primary = await readHeader(io, 1, geometry)
    return { primary, ...await readEntries(io, primary, geometry), repairedFromLba: undefined }
  } catch (err) {
    if (backupLbas.length === 0 || !isUnusableCopy(err)) throw err
    primaryError = err
  }
  const tried: string[] = []
  for (const lba of new Set(backupLbas)) {
    if (!Number.isSafeInteger(lba) || lba <= 1 || lba >= geometry.diskSectors) continue
    try {
      const backup = await readHeader(io, lba, geometry)
      const { array, entries } = await readEntries(io, backup, geometry)
      // The primary, as gdisk rebuilds it: the backup's fields with MyLBA 1, the entries at LBA 2.
      const block = headerBlock(backup.raw, {
        myLba: 1,
        alternateLba: lba,
        lastUsableLba: backup.lastUsableLba,
        entriesLba: 2,
        entriesCrc: backup.entriesCrc,
      }, geometry.sectorBytes)
      const primary = parseGptHeader(block, 1, geometry)
      return { primary, array, entries, repairedFromLba: lba }
    } catch (err) {
      if (!isUnusableCopy(err)) throw err
      tried.push(`LBA ${lba}: ${err instanceof Error ? err.message : String(err)}`)
    }
  }
  const primaryReason = primaryError instanceof Error ? primaryError.message : String(primaryError)
  const triedText = tried.length > 0 ? ` (${tried.join('; ')})` : ''
  throw new GptFormatError(`the primary GPT is not valid (${primaryReason}) and no valid backup was found${triedText}`, { cause: primaryError })
}

/** Whether a valid backup matching `primary` sits at `lba`. */
async function hasMatchingBackup (io: ImageIo, primary: GptHeader, lba: number, geometry: GptGeometry): Promise<boolean> {
  try {
    const backup = await readHeader(io, lba, geometry)
    if (backup.entriesCrc !== primary.entriesCrc || backup.entryCount !== primary.entryCount ||
      backup.firstUsableLba !== primary.firstUsableLba || backup.lastUsableLba !== primary.lastUsableLba ||
      backup.alternateLba !== 1 || !backup.raw.subarray(DISK_GUID, DISK_GUID + 16).equals(primary.raw.subarray(DISK_GUID, DISK_GUID + 16))) return false
    await readEntries(io, backup, geometry)
    return true
  } catch {
    return false
  }
}

export interface GptMoveResult {
  moved: boolean
  repairedFromBackup: boolean
  /** LBAs after the move, in logical sectors. */
  backupLba: number
  lastUsableLba: number
  /** Where the backup header was before (the image's last LBA, usually). */
  previousBackupLba: number
  protectiveMbr: ProtectiveMbrChange
}

/**
 * Moves the backup GPT to the disk's last LBAs as `sgdisk -e` does (formats.md 2.5, 2.6), or
 * repairs a damaged primary from the backup at the image's end. Writes, in gdisk's order: backup
 * entries, backup header, (zeroes the stale backup header), primary entries and header (into the
 * head), protective MBR (into the head). Throws plain Errors; the caller maps them to a result code.
 */
export async function moveBackupGptToEnd (io: ImageIo, options: { sectorBytes: number; imageBytes: number }): Promise<GptMoveResult> {
  const head = io.head
  const { sectorBytes, imageBytes } = options
  const diskSectors = Math.floor(io.sizeBytes / sectorBytes)
  const geometry: GptGeometry = { sectorBytes, diskSectors }
  if (!Number.isSafeInteger(imageBytes) || imageBytes <= 0 || imageBytes > io.sizeBytes) throw new Error(`image size ${imageBytes} does not fit the disk`)
  const imageLastLba = Math.floor(imageBytes / sectorBytes) - 1
  const lastLba = diskSectors - 1

  // The image's own backup only: what lies past the image on the disk is not part of it.
  const gpt = await loadGpt(io, geometry, [imageLastLba])
  const { primary, array, entries } = gpt
  const repaired = gpt.repairedFromLba !== undefined
  const previousBackupLba = gpt.repairedFromLba ?? primary.alternateLba
  const previousDiskSectors = previousBackupLba + 1
  const mbrOptions = { diskSectors, previousDiskSectors }

  if (!repaired && primary.alternateLba === lastLba && await hasMatchingBackup(io, primary, lastLba, geometry)) {
    // Already at the end (the image is as large as the disk, or this ran before).
    return {
      moved: false,
      repairedFromBackup: false,
      backupLba: lastLba,
      lastUsableLba: primary.lastUsableLba,
      previousBackupLba,
      protectiveMbr: fitProtectiveMbr(head, mbrOptions),
    }
  }

  // LastUsableLBA: gdisk's symmetric `diskSectors − FirstUsableLBA` (so our headers match `sgdisk -e`),
  // or, when a partition would not fit under it, the tight UEFI layout (entries right before the header).
  const maxUsedLba = entries.reduce((max, e) => Math.max(max, e.lastLba), primary.firstUsableLba - 1)
  const tight = lastLba - entrySectors(primary, sectorBytes) - 1
  const symmetric = diskSectors - primary.firstUsableLba
  const lastUsableLba = symmetric <= tight && symmetric >= maxUsedLba ? symmetric : tight
  if (lastUsableLba < maxUsedLba) {
    const last = entries.find((e) => e.lastLba === maxUsedLba)
    throw new Error(`partition ${(last?.index ?? 0) + 1} ends at LBA ${maxUsedLba}, past the last usable LBA ${lastUsableLba} of the disk`)
  }
  if (lastUsableLba < primary.firstUsableLba) throw new Error(`the disk (${diskSectors} sectors) is too small for this GPT`)
  const backupEntriesLba = lastUsableLba + 1

  const fields = { lastUsableLba, entriesCrc: primary.entriesCrc }
  const backupHeader = headerBlock(primary.raw, { ...fields, myLba: lastLba, alternateLba: 1, entriesLba: backupEntriesLba }, sectorBytes)
  const primaryHeader = headerBlock(primary.raw, { ...fields, myLba: 1, alternateLba: lastLba, entriesLba: primary.entriesLba }, sectorBytes)
  // Both blocks must read back as valid before anything is written.
  parseGptHeader(backupHeader, lastLba, geometry)
  parseGptHeader(primaryHeader, 1, geometry)

  await io.write(entriesBlock(array, primary, sectorBytes), backupEntriesLba * sectorBytes)
  await io.write(backupHeader, lastLba * sectorBytes)
  // The old backup header is left behind by gdisk; we zero it so no tool finds a stale table
  // there (formats.md 2.6 step 6), but only where nothing of the new layout or any partition lies.
  if (previousBackupLba !== lastLba && previousBackupLba > maxUsedLba && previousBackupLba < backupEntriesLba) {
    const old = await readBytes(io, previousBackupLba * sectorBytes, sectorBytes)
    if (hasGptSignature(old, 0)) await io.write(Buffer.alloc(sectorBytes), previousBackupLba * sectorBytes)
  }
  if (repaired) await io.write(entriesBlock(array, primary, sectorBytes), primary.entriesLba * sectorBytes)
  await io.write(primaryHeader, sectorBytes)
  return { moved: true, repairedFromBackup: repaired, backupLba: lastLba, lastUsableLba, previousBackupLba, protectiveMbr: fitProtectiveMbr(head, mbrOptions) }
}

export interface NewGptPartition {
  offsetBytes: number
  sizeBytes: number
  number: number
  reused: boolean
  uniqueGuid?: string
}

/**
 * Reuses a partition named `name` (or one `isWanted` accepts), or adds one: first free slot, the last
 * `maxBytes` of the free space after the last partition (start aligned to 1 MiB), type
 * `typeGuid`, a fresh random unique GUID. Updates both copies and their CRCs.
 */
export async function addGptPartition (io: ImageIo, options: {
  sectorBytes: number
  name: string
  typeGuid: string
  maxBytes: number
  minBytes: number
  isWanted?: ((offsetBytes: number, sizeBytes: number) => Promise<boolean>) | undefined
}): Promise<NewGptPartition> {
  const { sectorBytes, name } = options
  const geometry: GptGeometry = { sectorBytes, diskSectors: Math.floor(io.sizeBytes / sectorBytes) }
  const { primary, array, entries } = await loadGpt(io, geometry, [])
  // A partition reused as config-2 gets written over: it must lie where partitions may, alone.
  checkGptEntries(entries, primary)
  let backup: GptHeader
  try {
    if (primary.alternateLba <= primary.lastUsableLba) throw new Error('it would lie in the usable space')
    backup = await readHeader(io, primary.alternateLba, geometry)
    if (backup.firstUsableLba !== primary.firstUsableLba || backup.lastUsableLba !== primary.lastUsableLba) {
      throw new Error('its usable LBAs differ from the primary\'s')
    }
    const backupEntries = await readEntries(io, backup, geometry)
    if (!backupEntries.array.equals(array)) throw new Error('its entries differ from the primary entries')
  } catch (err) {
    throw new Error(`the backup GPT at LBA ${primary.alternateLba} is not valid (${err instanceof Error ? err.message : String(err)})`, { cause: err })
  }

  const found = (e: GptEntry): NewGptPartition => ({
    offsetBytes: e.firstLba * sectorBytes, sizeBytes: (e.lastLba - e.firstLba + 1) * sectorBytes, number: e.index + 1, reused: true, uniqueGuid: e.uniqueGuid,
  })
  const named = entries.find((e) => e.name.toLowerCase() === name.toLowerCase())
  if (named !== undefined) return found(named)
  if (options.isWanted !== undefined) {
    for (const e of entries) {
      const candidate = found(e)
      if (await options.isWanted(candidate.offsetBytes, candidate.sizeBytes)) return candidate
    }
  }

  let slot = -1
  for (let index = 0; index < primary.entryCount && slot < 0; index++) {
    if (array.subarray(index * ENTRY_BYTES, index * ENTRY_BYTES + 16).every((b) => b === 0)) slot = index
  }
  if (slot < 0) throw new Error(`all ${primary.entryCount} GPT partition entries are in use`)
  const freeStartLba = entries.reduce((max, e) => Math.max(max, e.lastLba + 1), primary.firstUsableLba)
  const placement: Placement | undefined = placeAtEnd({
    freeStartLba,
    freeEndLba: primary.lastUsableLba + 1,
    sectorBytes,
    maxBytes: options.maxBytes,
    minBytes: options.minBytes,
  })
  if (placement === undefined) {
    const freeBytes = Math.max(0, primary.lastUsableLba + 1 - freeStartLba) * sectorBytes
    throw new Error(`no room for a partition of at least ${options.minBytes} bytes after the last partition (${freeBytes} bytes free from LBA ${freeStartLba})`)
  }

  // A fresh unique GUID (v4), different from the disk's and every partition's.
  const taken = new Set([bytesToGuid(primary.raw.subarray(DISK_GUID, DISK_GUID + 16)), ...entries.map((e) => e.uniqueGuid)])
  let uniqueGuid = randomUUID().toUpperCase()
  while (taken.has(uniqueGuid)) uniqueGuid = randomUUID().toUpperCase()

  const entry = Buffer.alloc(ENTRY_BYTES)
  guidToBytes(options.typeGuid).copy(entry, ENTRY_TYPE)
  guidToBytes(uniqueGuid).copy(entry, ENTRY_UNIQUE)
  entry.writeBigUInt64LE(BigInt(placement.startLba), ENTRY_FIRST_LBA)
  entry.writeBigUInt64LE(BigInt(placement.startLba + placement.sizeLba - 1), ENTRY_LAST_LBA)
  Buffer.from(name, 'utf16le').subarray(0, NAME_BYTES).copy(entry, ENTRY_NAME)
  const newArray = Buffer.from(array)
  entry.copy(newArray, slot * ENTRY_BYTES)
  const entriesCrc = crc32(newArray)

  const backupHeader = headerBlock(backup.raw, {
    myLba: backup.myLba,
    alternateLba: backup.alternateLba,
    lastUsableLba: backup.lastUsableLba,
    entriesLba: backup.entriesLba,
    entriesCrc,
  }, sectorBytes)
  const primaryHeader = headerBlock(primary.raw, {
    myLba: 1,
    alternateLba: primary.alternateLba,
    lastUsableLba: primary.lastUsableLba,
    entriesLba: primary.entriesLba,
    entriesCrc,
  }, sectorBytes)
  // Backup first, then the primary (into the head), as gdisk orders its writes.
  await io.write(entriesBlock(newArray, backup, sectorBytes), backup.entriesLba * sectorBytes)
  await io.write(backupHeader, backup.myLba * sectorBytes)
  await io.write(entriesBlock(newArray, primary, sectorBytes), primary.entriesLba * sectorBytes)
  await io.write(primaryHeader, sectorBytes)
  return { offsetBytes: placement.startLba * sectorBytes, sizeBytes: placement.sizeLba * sectorBytes, number: slot + 1, reused: false, uniqueGuid }
}
