/**
 * The free blocks of an ext2/3/4 filesystem, read from its own allocation bitmaps, from userspace
 * (the kernel's layout: Documentation/filesystems/ext4/ "Super Block", "Block Group Descriptors",
 * "Block and inode Bitmaps"). A capture leaves them out, so deleted data never leaves the server
 * and the image is as small as the used data.
 *
 * Trusted only when the filesystem says its bitmaps are current: cleanly unmounted (s_state
 * VALID, no ERROR), no journal to replay (no RECOVER), a layout this reader knows (no META_BG,
 * no BIGALLOC, no unknown incompatible feature), and each group's bitmap agreeing with the free
 * count its descriptor keeps. With metadata_csum (mke2fs's default since e2fsprogs 1.43) the
 * superblock's, each descriptor's and each written block bitmap's CRC-32C must match too: a
 * bitmap damaged so that its free count still agrees (a used block's bit cleared, a free one's
 * set) would otherwise have zeroed data in use. Otherwise the verdict says why and the caller
 * captures the filesystem as it is. A group whose bitmap was never written (BLOCK_UNINIT) holds
 * only the metadata placed in it: its superblock backup and descriptor blocks, and the bitmaps and
 * inode tables of any group that live there (flex_bg); the rest of it is free, as the kernel
 * computes it (ext4_init_block_bitmap).
 */

import { crc32c } from './crc32c.js'

/** Reads `length` bytes at `offset` of the filesystem (fewer only past its end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>

export type Ext4Verdict =
  | { kind: 'not-ext4' }
  /** An ext filesystem whose bitmaps are not to be trusted, and why (said in the result's notes). */
  | { kind: 'untrusted'; reason: string }
  | {
    kind: 'ext4'
    blockBytes: number
    blocks: number
    /** Free byte ranges from the filesystem's start, ascending, merged, [start, end). */
    free: Array<[number, number]>
    freeBytes: number
  }

const SUPERBLOCK_OFFSET = 1024
const SUPERBLOCK_BYTES = 1024
const EXT4_MAGIC = 0xef53
const STATE_VALID = 0x1
const STATE_ERROR = 0x2
const INCOMPAT_RECOVER = 0x4
const INCOMPAT_JOURNAL_DEV = 0x8
const INCOMPAT_META_BG = 0x10
const INCOMPAT_64BIT = 0x80
/** FILETYPE, EXTENTS, 64BIT, MMP, FLEX_BG, EA_INODE, DIRDATA, CSUM_SEED, LARGEDIR, INLINE_DATA, ENCRYPT, CASEFOLD. */
const INCOMPAT_KNOWN = 0x2 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000
const RO_COMPAT_SPARSE_SUPER = 0x1
const RO_COMPAT_BIGALLOC = 0x200
const RO_COMPAT_METADATA_CSUM = 0x400
const INCOMPAT_CSUM_SEED = 0x2000
const SB_CHECKSUM_AT = 0x3fc
const DESC_CHECKSUM_AT = 0x1e
/** The descriptor's bg_block_bitmap_csum_hi ends here: shorter descriptors keep only the low 16 bits. */
const DESC_BITMAP_CSUM_HI_END = 0x3c
const COMPAT_SPARSE_SUPER2 = 0x200
const BG_BLOCK_UNINIT = 0x2
/** The group descriptors read at most: 64 MiB, 1 Mi groups of 64 bytes (128 TiB in 4 KiB blocks with 32768 per group). */
const MAX_DESCRIPTOR_BYTES = 64 * 1024 * 1024

/** Where a group's bitmaps and inode table are (block numbers). */
interface GroupMetadata {
  blockBitmap: number
  inodeBitmap: number
  inodeTable: number
}

interface Superblock {
  blockBytes: number
  blocks: number
  firstDataBlock: number
  blocksPerGroup: number
  inodesPerGroup: number
  inodeBytes: number
  descBytes: number
  groups: number
  reservedGdtBlocks: number
  sparseSuper: boolean
  /** sparse_super2: the only groups with a backup besides 0. */
  backupGroups: number[] | undefined
  is64: boolean
  /** metadata_csum: the seed of every checksum (s_checksum_seed, or the CRC of the UUID); undefined without it. */
  csumSeed: number | undefined
}

/** Reads the superblock at `1024` and judges it; `sizeBytes` is the partition's. */
export async function ext4FreeBlocks (read: ReadAt, sizeBytes: number): Promise<Ext4Verdict> {
  const raw = await read(SUPERBLOCK_OFFSET, SUPERBLOCK_BYTES)
  if (raw.length < SUPERBLOCK_BYTES || raw.readUInt16LE(0x38) !== EXT4_MAGIC) return { kind: 'not-ext4' }
  const judged = judge(raw, sizeBytes)
  if (typeof judged === 'string') return { kind: 'untrusted', reason: judged }
  const sb = judged
  const descriptors = await read((sb.firstDataBlock + 1) * sb.blockBytes, sb.groups * sb.descBytes)
  if (descriptors.length < sb.groups * sb.descBytes) return { kind: 'untrusted', reason: 'its group descriptors lie past the partition\'s end' }
  const groups: Array<GroupMetadata & { flags: number; freeCount: number; bitmapCsum: number }> = []
  for (let g = 0; g < sb.groups; g++) {
    const d = descriptors.subarray(g * sb.descBytes, (g + 1) * sb.descBytes)
    if (sb.csumSeed !== undefined && descriptorCsum(sb.csumSeed, g, d) !== d.readUInt16LE(DESC_CHECKSUM_AT)) {
      return { kind: 'untrusted', reason: `group ${g}'s descriptor fails its checksum (fsck it first)` }
    }
    const wide = (lo: number, hiAt: number): number => (sb.is64 ? d.readUInt32LE(hiAt) * 2 ** 32 : 0) + d.readUInt32LE(lo)
    const freeCount = d.readUInt16LE(0xc) + (sb.is64 ? d.readUInt16LE(0x2c) * 65536 : 0)
    const bitmapCsum = d.readUInt16LE(0x18) + (sb.descBytes >= DESC_BITMAP_CSUM_HI_END ? d.readUInt16LE(0x38) * 65536 : 0)
    const group = {
      blockBitmap: wide(0x0, 0x20), inodeBitmap: wide(0x4, 0x24), inodeTable: wide(0x8, 0x28), flags: d.readUInt16LE(0x12), freeCount, bitmapCsum,
    }
    const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeBytes) / sb.blockBytes)
    if ([group.blockBitmap, group.inodeBitmap].some((b) => b < sb.firstDataBlock || b >= sb.blocks) ||
        group.inodeTable < sb.firstDataBlock || group.inodeTable + tableBlocks > sb.blocks) {
      return { kind: 'untrusted', reason: `group ${g}'s descriptor points outside the filesystem` }
    }
    groups.push(group)
  }
  const metadata = metadataByGroup(sb, groups)
  const free = new FreeRanges(sb.blockBytes)
  for (let g = 0; g < sb.groups; g++) {
    const group = groups[g] as (typeof groups)[number]
    const first = sb.firstDataBlock + g * sb.blocksPerGroup
    const count = Math.min(sb.blocksPerGroup, sb.blocks - first)
    const uninit = (group.flags & BG_BLOCK_UNINIT) !== 0
    // The checksum covers a whole group's bits (blocks per group / 8), the last group's too.
    const bitmapBytes = uninit ? Math.ceil(count / 8) : Math.max(Math.ceil(count / 8), sb.blocksPerGroup / 8)
    const bitmap = uninit ? uninitBitmap(sb, metadata.get(g) ?? [], g, first, count) : await read(group.blockBitmap * sb.blockBytes, bitmapBytes)
    if (bitmap.length < bitmapBytes) return { kind: 'untrusted', reason: `group ${g}'s block bitmap lies past the partition's end` }
    if (!uninit && sb.csumSeed !== undefined) {
      const csum = crc32c(sb.csumSeed, bitmap.subarray(0, sb.blocksPerGroup / 8))
      const expected = sb.descBytes >= DESC_BITMAP_CSUM_HI_END ? csum : csum & 0xffff
      if (expected !== group.bitmapCsum) return { kind: 'untrusted', reason: `group ${g}'s block bitmap fails its checksum (fsck it first)` }
    }
    const before = free.bytes
    for (let i = 0; i < count; i += 8) {
      const byte = bitmap[i >>> 3] as number
      if (byte === 0xff) continue
      for (let bit = 0; bit < 8 && i + bit < count; bit++) if ((byte & (1 << bit)) === 0) free.add(first + i + bit)
    }
    // The descriptor counts its group's free blocks too: a bitmap that disagrees (corruption, a
    // descriptor pointing at the wrong block) is not trusted with the customer's data.
    const counted = (free.bytes - before) / sb.blockBytes
    if (counted !== group.freeCount) {
      return { kind: 'untrusted', reason: `group ${g}'s bitmap shows ${counted} free blocks where its descriptor says ${group.freeCount} (fsck it first)` }
    }
  }
  return { kind: 'ext4', blockBytes: sb.blockBytes, blocks: sb.blocks, free: free.ranges, freeBytes: free.bytes }
}

/** The superblock's fields, or why its bitmaps are not to be trusted. */
function judge (raw: Buffer, sizeBytes: number): Superblock | string {
  const logBlock = raw.readUInt32LE(0x18)
  if (logBlock > 6) return `a block size of 2^${10 + logBlock} bytes`
  const blockBytes = 1024 << logBlock
  const incompat = raw.readUInt32LE(0x60)
  const roCompat = raw.readUInt32LE(0x64)
  const compat = raw.readUInt32LE(0x5c)
  const state = raw.readUInt16LE(0x3a)
  if ((incompat & INCOMPAT_JOURNAL_DEV) !== 0) return 'it is an external journal, not a filesystem'
  if ((incompat & INCOMPAT_RECOVER) !== 0) return 'its journal needs recovery (it was not cleanly unmounted)'
  if ((state & STATE_VALID) === 0) return 'it was not cleanly unmounted'
  if ((state & STATE_ERROR) !== 0) return 'it has errors (fsck it first)'
  if ((incompat & INCOMPAT_META_BG) !== 0) return 'it uses meta_bg, which this reader does not follow'
  if ((roCompat & RO_COMPAT_BIGALLOC) !== 0) return 'it uses bigalloc, which this reader does not follow'
  const unknown = incompat & ~INCOMPAT_KNOWN
  if (unknown !== 0) return `it has incompatible features unknown here (0x${unknown.toString(16)})`
  const is64 = (incompat & INCOMPAT_64BIT) !== 0
  const blocks = raw.readUInt32LE(0x4) + (is64 ? raw.readUInt32LE(0x150) * 2 ** 32 : 0)
  const firstDataBlock = raw.readUInt32LE(0x14)
  const blocksPerGroup = raw.readUInt32LE(0x20)
  const inodesPerGroup = raw.readUInt32LE(0x28)
  const revision = raw.readUInt32LE(0x4c)
  const inodeBytes = revision === 0 ? 128 : raw.readUInt16LE(0x58)
  const descBytes = is64 ? raw.readUInt16LE(0xfe) : 32
  if (blocks * blockBytes > sizeBytes) return `it claims ${blocks * blockBytes} bytes, more than its partition's ${sizeBytes}`
  if (blocksPerGroup === 0 || blocksPerGroup > blockBytes * 8 || firstDataBlock >= blocks) return 'its block groups are not valid'
  if (descBytes < 32 || (is64 && descBytes < 64) || inodeBytes < 128 || inodesPerGroup === 0) return 'its group descriptors are not valid'
  const groups = Math.ceil((blocks - firstDataBlock) / blocksPerGroup)
  // Real filesystems have 8 × block size blocks per group: 16 Ki groups for 2 TiB in 4 KiB blocks.
  // A hostile superblock (8 blocks per group) must not make us read gigabytes of descriptors.
  if (groups * descBytes > MAX_DESCRIPTOR_BYTES) return `its ${groups} block groups are more than this reader follows`
  const backupGroups = (compat & COMPAT_SPARSE_SUPER2) !== 0 ? [raw.readUInt32LE(0x24c), raw.readUInt32LE(0x250)] : undefined
  let csumSeed: number | undefined
  if ((roCompat & RO_COMPAT_METADATA_CSUM) !== 0) {
    if (crc32c(0xffffffff, raw.subarray(0, SB_CHECKSUM_AT)) !== raw.readUInt32LE(SB_CHECKSUM_AT)) return 'its superblock fails its checksum'
    csumSeed = (incompat & INCOMPAT_CSUM_SEED) !== 0 ? raw.readUInt32LE(0x270) : crc32c(0xffffffff, raw.subarray(0x68, 0x78))
  }
  return {
    blockBytes, blocks, firstDataBlock, blocksPerGroup, inodesPerGroup, inodeBytes, descBytes, groups,
    reservedGdtBlocks: raw.readUInt16LE(0xce),
    sparseSuper: (roCompat & RO_COMPAT_SPARSE_SUPER) !== 0,
    backupGroups,
    is64,
    csumSeed,
  }
}

/** bg_checksum with metadata_csum (ext4_group_desc_csum): the group's number, then the descriptor with its checksum field as zeros. */
function descriptorCsum (seed: number, group: number, descriptor: Buffer): number {
  const number = Buffer.alloc(4)
  number.writeUInt32LE(group)
  let csum = crc32c(seed, number)
  csum = crc32c(csum, descriptor.subarray(0, DESC_CHECKSUM_AT))
  csum = crc32c(csum, Buffer.alloc(2))
  csum = crc32c(csum, descriptor.subarray(DESC_CHECKSUM_AT + 2))
  return csum & 0xffff
}

/** Group `g` holds a copy of the superblock and descriptors (ext4_bg_has_super). */
function hasBackup (sb: Superblock, g: number): boolean {
  if (g === 0) return true
  if (sb.backupGroups !== undefined) return sb.backupGroups.includes(g)
  if (!sb.sparseSuper || g === 1) return true
  for (const base of [3, 5, 7]) {
    let power = base
    while (power < g) power *= base
    if (power === g) return true
  }
  return false
}

/** Every group's bitmaps and inode table, as [first block, blocks] runs, listed under each group they lie in (flex_bg puts them in another). */
function metadataByGroup (sb: Superblock, groups: GroupMetadata[]): Map<number, Array<[number, number]>> {
  const byGroup = new Map<number, Array<[number, number]>>()
  const tableBlocks = Math.ceil((sb.inodesPerGroup * sb.inodeBytes) / sb.blockBytes)
  const place = (block: number, n: number): void => {
    for (let at = block; at < block + n;) {
      const g = Math.floor((at - sb.firstDataBlock) / sb.blocksPerGroup)
      const groupEnd = sb.firstDataBlock + (g + 1) * sb.blocksPerGroup
      const run = Math.min(block + n, groupEnd) - at
      const list = byGroup.get(g) ?? []
      list.push([at, run])
      byGroup.set(g, list)
      at += run
    }
  }
  for (const group of groups) {
    place(group.blockBitmap, 1)
    place(group.inodeBitmap, 1)
    place(group.inodeTable, tableBlocks)
  }
  return byGroup
}

/** The bitmap the kernel computes for a BLOCK_UNINIT group: its backup (superblock, descriptors, reserved), and the metadata placed in it. */
function uninitBitmap (sb: Superblock, metadata: Array<[number, number]>, g: number, first: number, count: number): Buffer {
  const bitmap = Buffer.alloc(Math.ceil(count / 8))
  const use = (index: number): void => { bitmap[index >>> 3] = (bitmap[index >>> 3] as number) | (1 << (index & 7)) }
  if (hasBackup(sb, g)) {
    const gdtBlocks = Math.ceil((sb.groups * sb.descBytes) / sb.blockBytes)
    for (let i = 0; i < 1 + gdtBlocks + sb.reservedGdtBlocks && i < count; i++) use(i)
  }
  for (const [block, n] of metadata) for (let b = block; b < block + n; b++) use(b - first)
  return bitmap
}

/** Free blocks added in ascending order, kept as merged byte ranges. */
class FreeRanges {
  readonly ranges: Array<[number, number]> = []
  bytes = 0

  constructor (private readonly blockBytes: number) {}

  add (block: number): void {
    const start = block * this.blockBytes
    const end = start + this.blockBytes
    this.bytes += this.blockBytes
    const last = this.ranges[this.ranges.length - 1]
    if (last !== undefined && last[1] === start) last[1] = end
    else this.ranges.push([start, end])
  }
}
