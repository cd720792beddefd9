import { createHash } from 'node:crypto'
import type { ConfigDriveFile } from './config-drive-files.js'
import {
  ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_VOLUME_ID, DIR_ENTRY_BYTES, longNameSlots, makeShortName,
} from './fat-names.js'
import { buildTree, type TreeDirectory, type TreeFile } from './file-tree.js'
import { DEFAULT_TIMESTAMP, checkTimestamp } from './timestamp.js'

/**
 * FAT12/16 with VFAT long names (Microsoft's FAT specification, "FAT: General Overview of On-Disk
 * Format"; Linux fs/fat), the ConfigDrive filesystem for disks whose logical sectors are too large
 * for ISO 9660 (4Kn). The filesystem's bytes-per-sector equals the disk's logical sector size:
 * Linux refuses a FAT whose sectors are smaller than the device's (fs/fat/inode.c fat_fill_super).
 *
 * Layout: boot sector, two FATs, the fixed root directory (volume label first), then the data
 * clusters: subdirectories breadth-first, then the files, each contiguous.
 */

export const MAX_FAT_BYTES = 64 * 1024 * 1024 // 64 MiB: a ConfigDrive partition's size
const MIN_FAT_BYTES = 256 * 1024 // 256 KiB: room for a few clusters at any sector size
const SECTOR_SIZES = [512, 1024, 2048, 4096] // FAT spec 3.1 BPB_BytsPerSec
const CLUSTER_BYTES_MIN = 2048 // 2 KiB clusters, as mkfs.fat picks for a 64 MiB FAT16
const RESERVED_SECTORS = 1 // FAT spec 3.1 BPB_RsvdSecCnt: the boot sector only (FAT12/16)
const FAT_COUNT = 2 // FAT spec 3.1 BPB_NumFATs
const ROOT_ENTRIES = 512 // FAT spec 3.1 BPB_RootEntCnt: a multiple of BytsPerSec/32 for 512..4096
const MEDIA_FIXED = 0xf8 // FAT spec 3.1 BPB_Media: fixed disk
/**
 * The FAT type is told from the cluster count alone (FAT spec 3.5: FAT12 below 4085 clusters, as
 * Linux's MAX_FAT12 = 4084), but readers disagree at the edge: Windows' fastfat takes fewer than
 * 4087 for FAT12 and blkid reports 4084 as FAT16. Counts from 4081 to 4089 are never made.
 */
const FAT12_SAFE_MAX_CLUSTERS = 4080
const FAT16_SAFE_MIN_CLUSTERS = 4090
const MAX_FAT16_CLUSTERS = 65524 // FAT spec 3.5: FAT16 below 65525 clusters (Linux MAX_FAT16)
const FIRST_CLUSTER = 2 // FAT spec 4: cluster numbers start at 2

export interface BuildFatOptions {
  /** Bytes per logical sector, the disk's: 512, 1024, 2048 or 4096. */
  sectorBytes: number
  /** Size of the filesystem in bytes, a multiple of sectorBytes; 64 MiB by default. */
  sizeBytes?: number
  /** Volume label, 1 to 11 ASCII characters; `config-2` by default (what cloud-init looks for). */
  label?: string
  /** Every date in the filesystem; `DEFAULT_TIMESTAMP` by default. */
  timestamp?: Date
  /** BS_VolID (blkid's UUID); by default derived from a hash of the content and options. */
  volumeSerial?: number
}

interface Geometry {
  sectorBytes: number
  /** The image's length: the size asked for, even when the filesystem stops short of it. */
  imageBytes: number
  /** BPB_TotSec16/32. */
  totalSectors: number
  sectorsPerCluster: number
  clusterBytes: number
  fatSectors: number
  rootDirSectors: number
  dataStartSector: number
  clusterCount: number
  fatBits: 12 | 16
}

/** Builds the filesystem image. Pure: the same files and options give the same bytes. */
export function buildFat (files: ConfigDriveFile[], options: BuildFatOptions): Buffer {
  const label = options.label ?? 'config-2'
  checkLabel(label)
  const timestamp = checkTimestamp(options.timestamp ?? DEFAULT_TIMESTAMP)
  const geometry = fatGeometry(options.sectorBytes, options.sizeBytes ?? MAX_FAT_BYTES)
  const tree = buildTree(files)
  const volumeSerial = options.volumeSerial ?? defaultSerial(files, label, timestamp, geometry)
  if (!Number.isSafeInteger(volumeSerial) || volumeSerial < 0 || volumeSerial > 0xffffffff) {
    throw new RangeError(`FAT volume serial must be a 32-bit unsigned integer, got ${volumeSerial}`)
  }

  const plan = planDirectories(tree, geometry, label)
  const image = Buffer.alloc(geometry.imageBytes)
  writeBootSector(image, geometry, label, volumeSerial)

  // FAT spec 4.2: FAT[0] holds the media byte, FAT[1] the end-of-chain mark (clean, no error).
  const fat = new FatTable(geometry)
  fat.set(0, (geometry.fatBits === 12 ? 0xf00 : 0xff00) | MEDIA_FIXED)
  fat.set(1, fat.endOfChain)
  for (const { first, count } of plan.chains) {
    for (let i = 0; i < count; i++) fat.set(first + i, i === count - 1 ? fat.endOfChain : first + i + 1)
  }
  for (let copy = 0; copy < FAT_COUNT; copy++) {
    fat.bytes.copy(image, (RESERVED_SECTORS + copy * geometry.fatSectors) * geometry.sectorBytes)
  }

  const stamp = fatStamp(timestamp)
  const rootOffset = (RESERVED_SECTORS + FAT_COUNT * geometry.fatSectors) * geometry.sectorBytes
  for (const dir of plan.directories) {
    const offset = dir.cluster === 0 ? rootOffset : clusterOffset(geometry, dir.cluster)
    let at = offset
    for (const entry of directoryEntries(dir, plan, stamp)) {
      entry.copy(image, at)
      at += entry.length
    }
  }
  for (const [file, cluster] of plan.fileClusters) {
    if (cluster !== 0) file.data.copy(image, clusterOffset(geometry, cluster))
  }
  return image
}

/**
 * Picks the layout for `sizeBytes` at `sectorBytes`: 2 KiB clusters (one sector at 4096), FAT16
 * when that gives 4090 clusters or more, else FAT12; the FAT sized to cover every cluster.
 */
export function fatGeometry (sectorBytes: number, sizeBytes: number): Geometry {
  if (!SECTOR_SIZES.includes(sectorBytes)) throw new RangeError(`FAT sector size must be 512, 1024, 2048 or 4096 bytes, got ${sectorBytes}`)
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes % sectorBytes !== 0) {
    throw new RangeError(`FAT size must be a whole number of ${sectorBytes}-byte sectors, got ${sizeBytes}`)
  }
  if (sizeBytes < MIN_FAT_BYTES || sizeBytes > MAX_FAT_BYTES) {
    throw new RangeError(`FAT size must be ${MIN_FAT_BYTES} to ${MAX_FAT_BYTES} bytes, got ${sizeBytes}`)
  }
  const clusterBytes = Math.max(sectorBytes, CLUSTER_BYTES_MIN)
  const sectorsPerCluster = clusterBytes / sectorBytes
  const rootDirSectors = (ROOT_ENTRIES * DIR_ENTRY_BYTES) / sectorBytes
  let totalSectors = sizeBytes / sectorBytes

  const layout = (fatBits: 12 | 16): { fatSectors: number; clusterCount: number } => {
    // The FAT and the cluster count depend on each other; grow the FAT until it covers them all.
    let fatSectors = 1
    for (;;) {
      const dataSectors = totalSectors - RESERVED_SECTORS - FAT_COUNT * fatSectors - rootDirSectors
      const clusterCount = Math.floor(dataSectors / sectorsPerCluster)
      const needed = Math.ceil(((clusterCount + FIRST_CLUSTER) * fatBits) / 8 / sectorBytes)
      if (needed <= fatSectors) return { fatSectors, clusterCount }
      fatSectors = needed
    }
  }
  let fatBits: 12 | 16 = 16
  let { fatSectors, clusterCount } = layout(16)
  if (clusterCount < FAT16_SAFE_MIN_CLUSTERS) {
    fatBits = 12
    const fat12 = layout(12)
    fatSectors = fat12.fatSectors
    clusterCount = fat12.clusterCount
    if (clusterCount > FAT12_SAFE_MAX_CLUSTERS) {
      // In the ambiguous band: the filesystem stops short of the partition, as a FAT12.
      totalSectors = RESERVED_SECTORS + FAT_COUNT * fatSectors + rootDirSectors + FAT12_SAFE_MAX_CLUSTERS * sectorsPerCluster
      clusterCount = FAT12_SAFE_MAX_CLUSTERS
    }
  }
  if (clusterCount > MAX_FAT16_CLUSTERS) throw new RangeError(`FAT16 can not hold ${clusterCount} clusters`)
  const dataStartSector = RESERVED_SECTORS + FAT_COUNT * fatSectors + rootDirSectors
  return {
    sectorBytes,
    imageBytes: sizeBytes,
    totalSectors,
    sectorsPerCluster,
    clusterBytes,
    fatSectors,
    rootDirSectors,
    dataStartSector,
    clusterCount,
    fatBits,
  }
}

/** Characters a FAT volume label may not hold (FAT spec 6.1, as for short names). */
// eslint-disable-next-line no-control-regex
const LABEL_FORBIDDEN = /[\u0000-\u001f\u007f-\uffff"*+,./:;<=>?[\\\]|]/

function checkLabel (label: string): void {
  if (label.length === 0 || label.length > 11 || LABEL_FORBIDDEN.test(label) || label.startsWith(' ')) {
    throw new RangeError(`FAT volume label must be 1 to 11 ASCII characters without "*+,./:;<=>?[\\]|, got ${JSON.stringify(label)}`)
  }
}

function defaultSerial (files: readonly ConfigDriveFile[], label: string, timestamp: Date, geometry: Geometry): number {
  const hash = createHash('sha256')
  hash.update(JSON.stringify({ label, time: timestamp.getTime(), sectorBytes: geometry.sectorBytes, totalSectors: geometry.totalSectors }))
  for (const file of files) {
    hash.update(`${file.path}\0${file.data.length}\0`)
    hash.update(file.data)
  }
  return hash.digest().readUInt32LE(0)
}

function clusterOffset (geometry: Geometry, cluster: number): number {
  return (geometry.dataStartSector + (cluster - FIRST_CLUSTER) * geometry.sectorsPerCluster) * geometry.sectorBytes
}

/** One FAT copy, 12 or 16 bits per entry, little-endian. */
class FatTable {
  readonly bytes: Buffer
  readonly endOfChain: number
  private readonly bits: 12 | 16

  constructor (geometry: Geometry) {
    this.bytes = Buffer.alloc(geometry.fatSectors * geometry.sectorBytes)
    this.bits = geometry.fatBits
    this.endOfChain = geometry.fatBits === 12 ? 0xfff : 0xffff // FAT spec 4: EOC marks
  }

  set (cluster: number, value: number): void {
    if (this.bits === 16) {
      this.bytes.writeUInt16LE(value, cluster * 2)
      return
    }
    // FAT12: two entries share three bytes (FAT spec 4.1).
    const offset = Math.floor((cluster * 3) / 2)
    const pair = this.bytes.readUInt16LE(offset)
    const next = cluster % 2 === 0 ? (pair & 0xf000) | (value & 0x0fff) : (pair & 0x000f) | ((value & 0x0fff) << 4)
    this.bytes.writeUInt16LE(next, offset)
  }
}

interface PlannedDirectory {
  node: TreeDirectory
  /** 0 for the root, which lives in its fixed region (FAT12/16). */
  cluster: number
  parentCluster: number
  /** Short names of the children, by node. */
  shortNames: Map<TreeDirectory | TreeFile, Buffer>
  label?: string
}

interface Plan {
  directories: PlannedDirectory[]
  directoryClusters: Map<TreeDirectory, number>
  fileClusters: Map<TreeFile, number>
  chains: Array<{ first: number; count: number }>
}

/** Entries a child takes in its directory: its long-name slots and its short entry. */
function entriesFor (name: string): number {
  return Math.ceil(name.length / 13) + 1
}

function planDirectories (root: TreeDirectory, geometry: Geometry, label: string): Plan {
  const directories: PlannedDirectory[] = []
  const directoryClusters = new Map<TreeDirectory, number>()
  const fileClusters = new Map<TreeFile, number>()
  const chains: Array<{ first: number; count: number }> = []
  let next = FIRST_CLUSTER
  const allocate = (bytes: number): number => {
    const count = Math.ceil(bytes / geometry.clusterBytes)
    if (count === 0) return 0
    if (next - FIRST_CLUSTER + count > geometry.clusterCount) {
      throw new RangeError(`ConfigDrive content does not fit in a ${geometry.totalSectors * geometry.sectorBytes}-byte FAT`)
    }
    const first = next
    chains.push({ first, count })
    next += count
    return first
  }

  // Breadth-first: the root (fixed region), then every subdirectory, then the files.
  const queue: Array<{ node: TreeDirectory; parentCluster: number }> = [{ node: root, parentCluster: 0 }]
  for (let i = 0; i < queue.length; i++) {
    const item = queue[i]
    if (item === undefined) break
    const used = new Set<string>()
    const shortNames = new Map<TreeDirectory | TreeFile, Buffer>()
    let entries = item.node === root ? 1 : 2 // the volume label, or "." and ".."
    for (const child of item.node.children) {
      shortNames.set(child, Buffer.from(makeShortName(child.name, used), 'latin1'))
      entries += entriesFor(child.name)
    }
    let cluster = 0
    if (item.node === root) {
      if (entries > ROOT_ENTRIES) throw new RangeError(`ConfigDrive root directory needs ${entries} entries, a FAT16 root holds ${ROOT_ENTRIES}`)
    } else {
      cluster = allocate(entries * DIR_ENTRY_BYTES)
      directoryClusters.set(item.node, cluster)
    }
    directories.push({ node: item.node, cluster, parentCluster: item.parentCluster, shortNames, ...(item.node === root ? { label } : {}) })
    for (const child of item.node.children) {
      if (child.kind === 'directory') queue.push({ node: child, parentCluster: cluster })
    }
  }
  for (const dir of directories) {
    for (const child of dir.node.children) {
      if (child.kind === 'file') fileClusters.set(child, allocate(child.data.length))
    }
  }
  return { directories, directoryClusters, fileClusters, chains }
}

interface FatStamp {
  date: number
  time: number
  hundredths: number
}

/** FAT spec 6.3: date = (year-1980)<<9 | month<<5 | day; time = hour<<11 | minute<<5 | second/2. */
function fatStamp (date: Date): FatStamp {
  return {
    date: ((date.getUTCFullYear() - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | Math.floor(date.getUTCSeconds() / 2),
    hundredths: (date.getUTCSeconds() % 2) * 100,
  }
}

/** FAT spec 6: a 32-byte short directory entry. */
function shortEntry (name: Buffer, attributes: number, cluster: number, sizeBytes: number, stamp: FatStamp): Buffer {
  const entry = Buffer.alloc(DIR_ENTRY_BYTES)
  name.copy(entry, 0, 0, 11) // DIR_Name
  entry[11] = attributes // DIR_Attr
  entry[12] = 0 // DIR_NTRes: case flags unused (the long name carries the case)
  entry[13] = stamp.hundredths // DIR_CrtTimeTenth
  entry.writeUInt16LE(stamp.time, 14) // DIR_CrtTime
  entry.writeUInt16LE(stamp.date, 16) // DIR_CrtDate
  entry.writeUInt16LE(stamp.date, 18) // DIR_LstAccDate
  entry.writeUInt16LE(0, 20) // DIR_FstClusHI: 0 on FAT12/16
  entry.writeUInt16LE(stamp.time, 22) // DIR_WrtTime
  entry.writeUInt16LE(stamp.date, 24) // DIR_WrtDate
  entry.writeUInt16LE(cluster, 26) // DIR_FstClusLO
  entry.writeUInt32LE(sizeBytes, 28) // DIR_FileSize
  return entry
}

function directoryEntries (dir: PlannedDirectory, plan: Plan, stamp: FatStamp): Buffer[] {
  const out: Buffer[] = []
  if (dir.label !== undefined) {
    // The root's volume-label entry: what blkid reports as LABEL (and the boot sector as LABEL_FATBOOT).
    out.push(shortEntry(Buffer.from(dir.label.padEnd(11, ' '), 'latin1'), ATTR_VOLUME_ID, 0, 0, stamp))
  } else {
    // FAT spec 6.7: "." points at itself, ".." at the parent (0 for the root).
    out.push(shortEntry(Buffer.from('.'.padEnd(11, ' '), 'latin1'), ATTR_DIRECTORY, dir.cluster, 0, stamp))
    out.push(shortEntry(Buffer.from('..'.padEnd(11, ' '), 'latin1'), ATTR_DIRECTORY, dir.parentCluster, 0, stamp))
  }
  for (const child of dir.node.children) {
    const shortName = dir.shortNames.get(child) ?? Buffer.alloc(11, 0x20)
    out.push(...longNameSlots(child.name, shortName))
    if (child.kind === 'directory') {
      out.push(shortEntry(shortName, ATTR_DIRECTORY, plan.directoryClusters.get(child) ?? 0, 0, stamp))
    } else {
      out.push(shortEntry(shortName, ATTR_ARCHIVE, plan.fileClusters.get(child) ?? 0, child.data.length, stamp))
    }
  }
  return out
}

/** FAT spec 3.1-3.2: the boot sector with its BPB and the FAT12/16 extended fields. */
function writeBootSector (image: Buffer, geometry: Geometry, label: string, volumeSerial: number): void {
  const b = image.subarray(0, geometry.sectorBytes)
  b.set([0xeb, 0x3c, 0x90], 0) // BS_jmpBoot: jump over the BPB to the boot code at 0x3E
  b.write('MSWIN4.1', 3, 'latin1') // BS_OEMName: the value the FAT spec recommends
  b.writeUInt16LE(geometry.sectorBytes, 11) // BPB_BytsPerSec
  b[13] = geometry.sectorsPerCluster // BPB_SecPerClus
  b.writeUInt16LE(RESERVED_SECTORS, 14) // BPB_RsvdSecCnt
  b[16] = FAT_COUNT // BPB_NumFATs
  b.writeUInt16LE(ROOT_ENTRIES, 17) // BPB_RootEntCnt
  b.writeUInt16LE(geometry.totalSectors < 0x10000 ? geometry.totalSectors : 0, 19) // BPB_TotSec16
  b[21] = MEDIA_FIXED // BPB_Media
  b.writeUInt16LE(geometry.fatSectors, 22) // BPB_FATSz16
  b.writeUInt16LE(63, 24) // BPB_SecPerTrk: conventional LBA geometry, unused
  b.writeUInt16LE(255, 26) // BPB_NumHeads: idem
  b.writeUInt32LE(0, 28) // BPB_HiddSec: informational only
  b.writeUInt32LE(geometry.totalSectors < 0x10000 ? 0 : geometry.totalSectors, 32) // BPB_TotSec32
  b[36] = 0x80 // BS_DrvNum: hard disk
  b[37] = 0 // BS_Reserved1
  b[38] = 0x29 // BS_BootSig: the next three fields are present
  b.writeUInt32LE(volumeSerial, 39) // BS_VolID
  b.write(label.padEnd(11, ' '), 43, 'latin1') // BS_VolLab
  b.write(geometry.fatBits === 12 ? 'FAT12   ' : 'FAT16   ', 54, 'latin1') // BS_FilSysType
  b.set([0xcd, 0x18, 0xeb, 0xfe], 0x3e) // boot code: int 18h (no bootable disk here), then halt
  b.set([0x55, 0xaa], 510) // FAT spec 3.2: signature word
}
