import {
  ATTR_DIRECTORY, ATTR_LONG_NAME, ATTR_VOLUME_ID, DIR_ENTRY_BYTES, ENTRY_END, ENTRY_FREE, ENTRY_KANJI_E5,
  LFN_CHAR_OFFSETS, LFN_LAST_SLOT, shortNameChecksum,
} from './fat-names.js'
import { TimeSlice } from '../time-slice.js'

/**
 * A reader of FAT12/16/32 filesystems (Microsoft's FAT specification; the checks Linux makes in
 * fs/fat/inode.c `fat_read_bpb`), for two questions the install asks of partitions it did not
 * write: does the image's EFI system partition hold the `efiBootloaderPath` binary, and is an
 * existing partition already labelled config-2. Every read goes through `read`, at byte offsets
 * from the start of the filesystem. Input is untrusted: every field is checked before use, chain
 * walks stop after as many steps as there are clusters (and at a cluster seen before), a directory
 * is read up to the 65,536 entries the FAT spec allows, and every step of a chain goes through a
 * TimeSlice (the event loop gets its turns, an abort ends the walk).
 */

export type ReadAt = (offset: number, length: number) => Promise<Buffer>

/** The filesystem is not FAT, or is damaged in a way that stops the lookup. */
export class FatFormatError extends Error {
  readonly code = 'FAT_FORMAT'

  constructor (message: string) {
    super(message)
    this.name = 'FatFormatError'
  }
}

const MAX_FAT12_CLUSTERS = 4084 // FAT spec 3.5 (Linux MAX_FAT12)
const MAX_FAT16_CLUSTERS = 65524 // FAT spec 3.5 (Linux MAX_FAT16)
const MAX_FAT32_CLUSTERS = 0x0ffffff5 // FAT spec 3.5: cluster numbers are 28 bits, minus reserved values
const MAX_DIRECTORY_ENTRIES = 65536 // FAT spec 6: a directory holds at most 65,536 entries
const MAX_PATH_COMPONENTS = 64
const MAX_LFN_SLOTS = 20 // FAT spec 7: 255 characters need at most 20 slots
const FIRST_CLUSTER = 2

interface FatVolume {
  fatBits: 12 | 16 | 32
  sectorBytes: number
  clusterBytes: number
  fatOffset: number
  fatBytes: number
  rootDirOffset: number
  rootDirBytes: number
  rootCluster: number
  dataOffset: number
  clusterCount: number
  bootLabel: string | undefined
}

interface DirectoryEntry {
  /** The long name when its slots are whole and their checksum matches, else the short name. */
  name: string
  shortName: string
  attributes: number
  firstCluster: number
  sizeBytes: number
}

function u16 (b: Buffer, offset: number): number {
  return b.readUInt16LE(offset)
}

function u32 (b: Buffer, offset: number): number {
  return b.readUInt32LE(offset)
}

async function readExactly (read: ReadAt, offset: number, length: number): Promise<Buffer> {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new FatFormatError(`FAT read out of range at ${offset} (${length} bytes)`)
  }
  const data = await read(offset, length)
  if (data.length < length) throw new FatFormatError(`FAT read at ${offset} returned ${data.length} of ${length} bytes`)
  return data.subarray(0, length)
}

/** Reads and checks the boot sector (FAT spec 3.1-3.5), as Linux's fat_read_bpb does. */
async function openVolume (read: ReadAt): Promise<FatVolume> {
  const boot = await readExactly(read, 0, 512)
  const sectorBytes = u16(boot, 11) // BPB_BytsPerSec
  const sectorsPerCluster = boot[13] ?? 0 // BPB_SecPerClus
  const reservedSectors = u16(boot, 14) // BPB_RsvdSecCnt
  const fatCount = boot[16] ?? 0 // BPB_NumFATs
  const rootEntries = u16(boot, 17) // BPB_RootEntCnt
  const totalSectors16 = u16(boot, 19) // BPB_TotSec16
  const media = boot[21] ?? 0 // BPB_Media
  const fatSectors16 = u16(boot, 22) // BPB_FATSz16
  const totalSectors32 = u32(boot, 32) // BPB_TotSec32
  const fatSectors32 = u32(boot, 36) // BPB_FATSz32 (FAT32 only)

  if (![512, 1024, 2048, 4096].includes(sectorBytes)) throw new FatFormatError(`not a FAT filesystem: ${sectorBytes} bytes per sector`)
  if (sectorsPerCluster === 0 || (sectorsPerCluster & (sectorsPerCluster - 1)) !== 0) {
    throw new FatFormatError(`not a FAT filesystem: ${sectorsPerCluster} sectors per cluster`)
  }
  if (reservedSectors === 0) throw new FatFormatError('not a FAT filesystem: no reserved sectors')
  if (fatCount === 0) throw new FatFormatError('not a FAT filesystem: no FAT')
  if (media !== 0xf0 && media < 0xf8) throw new FatFormatError(`not a FAT filesystem: media byte 0x${media.toString(16)}`)

  const fat32 = fatSectors16 === 0 && fatSectors32 !== 0 // Linux: FAT32 iff fat_length16 == 0 and fat32_length != 0
  const fatSectors = fat32 ? fatSectors32 : fatSectors16
  if (fatSectors === 0) throw new FatFormatError('not a FAT filesystem: FAT size 0')
  const totalSectors = totalSectors16 !== 0 ? totalSectors16 : totalSectors32
  if (totalSectors === 0) throw new FatFormatError('not a FAT filesystem: 0 sectors')
  if (!fat32 && (rootEntries === 0 || rootEntries % (sectorBytes / DIR_ENTRY_BYTES) !== 0)) {
    throw new FatFormatError(`not a FAT filesystem: ${rootEntries} root directory entries`)
  }

  const rootDirSectors = fat32 ? 0 : (rootEntries * DIR_ENTRY_BYTES) / sectorBytes
  const dataStartSector = reservedSectors + fatCount * fatSectors + rootDirSectors
  if (dataStartSector >= totalSectors) throw new FatFormatError('not a FAT filesystem: no data area')
  const clusterCount = Math.floor((totalSectors - dataStartSector) / sectorsPerCluster)
  const fatBits: 12 | 16 | 32 = fat32 ? 32 : clusterCount <= MAX_FAT12_CLUSTERS ? 12 : 16
  const maxClusters = fatBits === 12 ? MAX_FAT12_CLUSTERS : fatBits === 16 ? MAX_FAT16_CLUSTERS : MAX_FAT32_CLUSTERS
  if (clusterCount < 1 || clusterCount > maxClusters) throw new FatFormatError(`not a FAT${fatBits} filesystem: ${clusterCount} clusters`)
  const fatBytes = fatSectors * sectorBytes
  if (Math.floor((fatBytes * 8) / fatBits) < clusterCount + FIRST_CLUSTER) {
    throw new FatFormatError('damaged FAT filesystem: the FAT is smaller than the cluster count')
  }

  let rootCluster = 0
  let labelOffset = 43 // BS_VolLab (FAT12/16)
  let signatureOffset = 38 // BS_BootSig (FAT12/16)
  if (fat32) {
    rootCluster = u32(boot, 44) // BPB_RootClus
    if (rootCluster < FIRST_CLUSTER || rootCluster >= clusterCount + FIRST_CLUSTER) {
      throw new FatFormatError(`damaged FAT32 filesystem: root cluster ${rootCluster}`)
    }
    labelOffset = 71 // BS_VolLab (FAT32)
    signatureOffset = 66 // BS_BootSig (FAT32)
  }
  const signature = boot[signatureOffset]
  const bootLabel = signature === 0x29 || signature === 0x28 ? trimLabel(boot.toString('latin1', labelOffset, labelOffset + 11)) : undefined

  return {
    fatBits,
    sectorBytes,
    clusterBytes: sectorsPerCluster * sectorBytes,
    fatOffset: reservedSectors * sectorBytes,
    fatBytes,
    rootDirOffset: (reservedSectors + fatCount * fatSectors) * sectorBytes,
    rootDirBytes: rootDirSectors * sectorBytes,
    rootCluster,
    dataOffset: dataStartSector * sectorBytes,
    clusterCount,
    bootLabel,
  }
}

function trimLabel (label: string): string | undefined {
  const trimmed = label.replace(/[ \0]+$/, '')
  return trimmed === '' || trimmed === 'NO NAME' ? undefined : trimmed
}

/** Reads FAT entries one sector at a time, keeping the sectors it has read. */
class FatEntries {
  private readonly sectors = new Map<number, Buffer>()

  constructor (private readonly read: ReadAt, private readonly volume: FatVolume) {}

  private async byteAt (offset: number): Promise<number> {
    const sectorBytes = this.volume.sectorBytes
    const sector = Math.floor(offset / sectorBytes)
    let data = this.sectors.get(sector)
    if (data === undefined) {
      data = await readExactly(this.read, this.volume.fatOffset + sector * sectorBytes, sectorBytes)
      this.sectors.set(sector, data)
    }
    return data[offset % sectorBytes] ?? 0
  }

  async next (cluster: number): Promise<number> {
    switch (this.volume.fatBits) {
      case 12: {
        // FAT spec 4.1: two 12-bit entries share three bytes.
        const offset = Math.floor((cluster * 3) / 2)
        const pair = (await this.byteAt(offset)) | ((await this.byteAt(offset + 1)) << 8)
        return cluster % 2 === 0 ? pair & 0x0fff : pair >> 4
      }
      case 16:
        return (await this.byteAt(cluster * 2)) | ((await this.byteAt(cluster * 2 + 1)) << 8)
      case 32: {
        const offset = cluster * 4
        const value = (await this.byteAt(offset)) | ((await this.byteAt(offset + 1)) << 8) |
          ((await this.byteAt(offset + 2)) << 16) | ((await this.byteAt(offset + 3)) << 24)
        return (value >>> 0) & 0x0fffffff // FAT spec 4.1: the top 4 bits of a FAT32 entry are reserved
      }
    }
  }

  /** FAT spec 4: entries at or above 0xFF8 / 0xFFF8 / 0x0FFFFFF8 end the chain. */
  isEnd (value: number): boolean {
    const end = this.volume.fatBits === 12 ? 0xff8 : this.volume.fatBits === 16 ? 0xfff8 : 0x0ffffff8
    return value >= end
  }
}

/**
 * The clusters of a chain, in order. Stops with an error on a free, reserved, bad or out-of-range
 * link and on a cluster seen before (a loop), so hostile input can not make it spin; callers stop
 * pulling after the bytes they need.
 */
async function * clusterChain (fat: FatEntries, volume: FatVolume, first: number, slice: TimeSlice): AsyncGenerator<number> {
  let cluster = first
  const seen = new Set<number>()
  for (let steps = 0; steps <= volume.clusterCount; steps++) {
    await slice.next()
    if (cluster < FIRST_CLUSTER || cluster >= volume.clusterCount + FIRST_CLUSTER) {
      throw new FatFormatError(`damaged FAT filesystem: cluster ${cluster} is out of range`)
    }
    if (seen.has(cluster)) throw new FatFormatError(`damaged FAT filesystem: the cluster chain from ${first} loops at ${cluster}`)
    seen.add(cluster)
    yield cluster
    const next = await fat.next(cluster)
    if (fat.isEnd(next)) return
    cluster = next
  }
  throw new FatFormatError('damaged FAT filesystem: a cluster chain is longer than the filesystem')
}

/** The raw bytes of a directory: the FAT12/16 root region, or a cluster chain. */
async function readDirectory (read: ReadAt, volume: FatVolume, fat: FatEntries, firstCluster: number | 'root', slice: TimeSlice): Promise<Buffer> {
  const maxBytes = MAX_DIRECTORY_ENTRIES * DIR_ENTRY_BYTES
  if (firstCluster === 'root' && volume.fatBits !== 32) {
    return readExactly(read, volume.rootDirOffset, Math.min(volume.rootDirBytes, maxBytes))
  }
  const start = firstCluster === 'root' ? volume.rootCluster : firstCluster
  const pieces: Buffer[] = []
  let total = 0
  for await (const cluster of clusterChain(fat, volume, start, slice)) {
    const piece = await readExactly(read, volume.dataOffset + (cluster - FIRST_CLUSTER) * volume.clusterBytes, volume.clusterBytes)
    pieces.push(piece)
    total += piece.length
    // Stop reading at the end marker or at the spec's limit; what follows can not be an entry.
    if (total >= maxBytes || hasEndMarker(piece)) break
  }
  return Buffer.concat(pieces).subarray(0, maxBytes)
}

function hasEndMarker (data: Buffer): boolean {
  for (let at = 0; at + DIR_ENTRY_BYTES <= data.length; at += DIR_ENTRY_BYTES) if (data[at] === ENTRY_END) return true
  return false
}

/** Entries parsed between two calls to the TimeSlice (a directory holds up to 65,536). */
const ENTRIES_PER_STEP = 1024

/**
 * Parses directory entries, pairing each short entry with its long name (FAT spec 6-7). Free
 * entries cost a byte comparison; every ENTRIES_PER_STEP entries go through the TimeSlice.
 */
async function parseDirectory (data: Buffer, fatBits: 12 | 16 | 32, slice: TimeSlice): Promise<{ entries: DirectoryEntry[]; label: string | undefined }> {
  const entries: DirectoryEntry[] = []
  let label: string | undefined
  // Long-name slots come highest ordinal first; `pending` collects them, `complete` waits for
  // the short entry they belong to. Any slot out of order or with another checksum drops them.
  let pending: { units: number[]; checksum: number; next: number } | undefined
  let complete: { units: number[]; checksum: number } | undefined
  for (let at = 0; at + DIR_ENTRY_BYTES <= data.length; at += DIR_ENTRY_BYTES) {
    if ((at / DIR_ENTRY_BYTES) % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) await slice.next()
    const first = data[at] ?? 0
    if (first === ENTRY_END) break
    if (first === ENTRY_FREE) { pending = undefined; complete = undefined; continue }
    const entry = data.subarray(at, at + DIR_ENTRY_BYTES)
    const attributes = entry[11] ?? 0
    if ((attributes & 0x3f) === ATTR_LONG_NAME) {
      complete = undefined
      const ordinal = first & 0x1f // LDIR_Ord without the last-slot flag
      const checksum = entry[13] ?? 0 // LDIR_Chksum
      if ((first & LFN_LAST_SLOT) !== 0 && ordinal >= 1 && ordinal <= MAX_LFN_SLOTS) {
        pending = { units: new Array<number>(ordinal * 13).fill(0xffff), checksum, next: ordinal }
      }
      if (pending === undefined || ordinal !== pending.next || checksum !== pending.checksum) { pending = undefined; continue }
      for (const [i, offset] of LFN_CHAR_OFFSETS.entries()) pending.units[(ordinal - 1) * 13 + i] = u16(entry, offset)
      pending.next--
      if (pending.next === 0) { complete = pending; pending = undefined }
      continue
    }
    pending = undefined
    const shortBytes = Buffer.from(entry.subarray(0, 11))
    if (shortBytes[0] === ENTRY_KANJI_E5) shortBytes[0] = ENTRY_FREE
    const shortName = formatShortName(shortBytes, entry[12] ?? 0)
    let longName: string | undefined
    if (complete !== undefined && shortNameChecksum(entry.subarray(0, 11)) === complete.checksum) {
      const end = complete.units.indexOf(0)
      longName = String.fromCharCode(...complete.units.slice(0, end < 0 ? complete.units.length : end).filter((u) => u !== 0xffff))
    }
    complete = undefined
    if ((attributes & ATTR_VOLUME_ID) !== 0 && (attributes & ATTR_DIRECTORY) === 0) {
      label ??= trimLabel(entry.toString('latin1', 0, 11))
      continue
    }
    entries.push({
      name: longName !== undefined && longName !== '' ? longName : shortName,
      shortName,
      attributes,
      // DIR_FstClusHI counts on FAT32 only (FAT12/16 may keep other data there), DIR_FstClusLO.
      firstCluster: fatBits === 32 ? ((u16(entry, 20) << 16) | u16(entry, 26)) >>> 0 : u16(entry, 26),
      sizeBytes: u32(entry, 28),
    })
  }
  return { entries, label }
}

/** "NAME    EXT" → "NAME.EXT", honouring the lower-case flags Windows NT sets (DIR_NTRes 0x08, 0x10). */
function formatShortName (raw: Buffer, caseFlags: number): string {
  let base = raw.toString('latin1', 0, 8).replace(/ +$/, '')
  let ext = raw.toString('latin1', 8, 11).replace(/ +$/, '')
  if ((caseFlags & 0x08) !== 0) base = base.toLowerCase()
  if ((caseFlags & 0x10) !== 0) ext = ext.toLowerCase()
  return ext === '' ? base : `${base}.${ext}`
}

/** UEFI compares file names case-insensitively (EFI_UNICODE_COLLATION_PROTOCOL StriColl). */
function sameName (a: string, b: string): boolean {
  return a.toUpperCase() === b.toUpperCase()
}

/** `\EFI\debian\grubx64.efi` (or with `/`) → its components; refuses empty, `.` and `..` parts. */
function uefiPathComponents (efiPath: string): string[] {
  const parts = efiPath.split(/[\\/]+/).filter((part) => part !== '')
  if (parts.length === 0) throw new RangeError(`not a UEFI file path: ${JSON.stringify(efiPath)}`)
  if (parts.length > MAX_PATH_COMPONENTS) throw new RangeError(`UEFI file path has more than ${MAX_PATH_COMPONENTS} components`)
  if (parts.some((part) => part === '.' || part === '..')) throw new RangeError(`UEFI file path must not hold "." or "..": ${JSON.stringify(efiPath)}`)
  return parts
}

/**
 * Whether a file exists at `efiPath` (e.g. `\EFI\debian\grubx64.efi`) in the FAT filesystem that
 * `read` reads, each component matched case-insensitively against the long or the short name, as
 * UEFI firmware does. A directory at that path is not a file. Throws FatFormatError when the
 * filesystem is not FAT or is too damaged to walk, RangeError for a malformed path, the signal's
 * reason once aborted.
 */
export async function fatFileExists (read: ReadAt, efiPath: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
  const parts = uefiPathComponents(efiPath)
  const slice = new TimeSlice(options.signal)
  const volume = await openVolume(read)
  const fat = new FatEntries(read, volume)
  let directory: number | 'root' = 'root'
  for (const [index, part] of parts.entries()) {
    await slice.next()
    const { entries } = await parseDirectory(await readDirectory(read, volume, fat, directory, slice), volume.fatBits, slice)
    const found = entries.find((entry) => sameName(entry.name, part) || sameName(entry.shortName, part))
    if (found === undefined) return false
    const isDirectory = (found.attributes & ATTR_DIRECTORY) !== 0
    if (index === parts.length - 1) return !isDirectory
    if (!isDirectory) return false
    // ".." of a first-level directory points at cluster 0, the root (FAT spec 6.7).
    directory = found.firstCluster === 0 ? 'root' : found.firstCluster
  }
  return false
}

/**
 * The volume label of a FAT filesystem as blkid reports it (LABEL): the root directory's
 * volume-label entry, else the boot sector's label; undefined when neither is set (or "NO NAME"),
 * or when the bytes are not a FAT filesystem.
 */
export async function readFatLabel (read: ReadAt, options: { signal?: AbortSignal } = {}): Promise<string | undefined> {
  let volume: FatVolume
  try {
    volume = await openVolume(read)
  } catch (err) {
    if (err instanceof FatFormatError) return undefined
    throw err
  }
  try {
    const slice = new TimeSlice(options.signal)
    const { label } = await parseDirectory(await readDirectory(read, volume, new FatEntries(read, volume), 'root', slice), volume.fatBits, slice)
    return label ?? volume.bootLabel
  } catch (err) {
    if (err instanceof FatFormatError) return volume.bootLabel
    throw err
  }
}
