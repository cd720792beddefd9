import type { ByteSource } from '../memory-image.js'
import { errors } from '../../errors/install-error.js'

/**
 * The qcow2 header (QEMU docs/interop/qcow2.rst, "Header"), parsed and checked the way
 * qemu's qcow2_do_open checks it, plus the checks a reader of hostile files needs
 * (every offset a safe integer, every table inside the file).
 */

/** "QFI\xfb" (spec: magic, header offset 0). */
export const QCOW2_MAGIC = 0x514649fb

/** qemu's MIN_CLUSTER_BITS / MAX_CLUSTER_BITS (block/qcow2.h): 512 B .. 2 MiB clusters. */
const MIN_CLUSTER_BITS = 9
const MAX_CLUSTER_BITS = 21

/** Incompatible feature bits (spec: incompatible_features; block/qcow2.h QCOW2_INCOMPAT_*). */
const INCOMPAT_DIRTY = 1n << 0n
const INCOMPAT_CORRUPT = 1n << 1n
const INCOMPAT_DATA_FILE = 1n << 2n
const INCOMPAT_COMPRESSION = 1n << 3n
const INCOMPAT_EXTL2 = 1n << 4n
const INCOMPAT_KNOWN = 0x1fn

/**
 * Header extension types (spec: "Header extensions"): only the end marker matters here. The others
 * (backing file format 0xe2792aca, feature names 0x6803f857, bitmaps 0x23852875, LUKS header
 * 0x0537be77, data file name 0x44415441) belong to features refused by their header bits, or
 * change nothing in the guest's bytes; they are listed, bounds-checked, and skipped.
 */
const EXT_END = 0x00000000

/** qemu's table limits (block/qcow2.h): QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE, QCOW_MAX_SNAPSHOTS. */
const MAX_L1_TABLE_BYTES = 32 * 1024 * 1024 // 32 MiB, 4 Mi entries
const MAX_REFCOUNT_TABLE_BYTES = 8 * 1024 * 1024 // 8 MiB
const MAX_SNAPSHOTS = 65536
const SNAPSHOT_HEADER_BYTES = 40 // the fixed part of a snapshot table entry

const V2_HEADER_BYTES = 72 // v2 ends after snapshots_offset
const V3_MIN_HEADER_BYTES = 104 // v3 ends after header_length
const COMPRESSION_TYPE_OFFSET = 104 // present only when header_length > 104

export interface Qcow2HeaderExtension {
  type: number
  /** Where its data starts in the file, and its length. */
  offset: number
  length: number
}

export interface Qcow2Header {
  version: 2 | 3
  /** The header's size field, rounded down to 512 bytes as qemu does (bs->total_sectors). */
  virtualSizeBytes: number
  clusterBits: number
  clusterBytes: number
  l1Entries: number
  l1TableOffset: number
  snapshots: number
  incompatibleFeatures: bigint
  compressionType: 'deflate' | 'zstd'
  extendedL2: boolean
  dirty: boolean
  headerBytes: number
  extensions: Qcow2HeaderExtension[]
}

export function isQcow2 (firstBytes: Buffer): boolean {
  return firstBytes.length >= 4 && firstBytes.readUInt32BE(0) === QCOW2_MAGIC
}

/** A u64 field that must fit a safe integer (2^53 − 1): larger ones are refused with `what`. */
function readOffset (header: Buffer, at: number, what: string): number {
  const value = header.readBigUInt64BE(at)
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw errors.qcow2Damaged(`${what} ${value} is too large`)
  return Number(value)
}

/**
 * qemu's qcow2_validate_table: at most `maxBytes` of `entryBytes`-byte entries, cluster-aligned, and
 * (ours) inside the JS safe range. Whether it lies inside the file is checked only for tables we read.
 */
function validateTable (offset: number, entries: number, entryBytes: number, maxBytes: number, clusterBytes: number, name: string): void {
  if (entries > Math.floor(maxBytes / entryBytes)) throw errors.qcow2Damaged(`${name} of ${entries} entries is too large`)
  if (offset % clusterBytes !== 0) throw errors.qcow2Damaged(`${name} offset ${offset} is not cluster-aligned`)
}

/** Parses and checks the header and its extensions. Throws QCOW2_UNSUPPORTED or QCOW2_DAMAGED. */
export function parseQcow2Header (source: ByteSource): Qcow2Header {
  const fileBytes = source.sizeBytes
  const fixed = source.view(0, V2_HEADER_BYTES)
  if (fixed.length < 4 || fixed.readUInt32BE(0) !== QCOW2_MAGIC) throw errors.qcow2Damaged('the file does not start with the qcow2 magic')
  if (fixed.length < 8) throw errors.qcow2Damaged(`the file ends inside its header, at ${fileBytes} bytes`)
  // version (offset 4): qemu opens 2 and 3 only.
  const version = fixed.readUInt32BE(4)
  if (version !== 2 && version !== 3) throw errors.qcow2Unsupported(`version ${version}`)
  if (fixed.length < V2_HEADER_BYTES) throw errors.qcow2Damaged(`the file ends inside its header, at ${fileBytes} bytes`)

  // cluster_bits (offset 20).
  const clusterBits = fixed.readUInt32BE(20)
  if (clusterBits < MIN_CLUSTER_BITS) throw errors.qcow2Damaged(`cluster_bits ${clusterBits} is below ${MIN_CLUSTER_BITS}`)
  if (clusterBits > MAX_CLUSTER_BITS) throw errors.qcow2Unsupported(`cluster size 2^${clusterBits} bytes`)
  const clusterBytes = 2 ** clusterBits

  // Version 3 fields (offsets 72..103): implied for version 2.
  let incompatibleFeatures = 0n
  let refcountOrder = 4
  let headerBytes = V2_HEADER_BYTES
  let header = fixed
  if (version === 3) {
    const v3 = source.view(0, V3_MIN_HEADER_BYTES)
    if (v3.length < V3_MIN_HEADER_BYTES) throw errors.qcow2Damaged(`the file ends inside its header, at ${fileBytes} bytes`)
    incompatibleFeatures = v3.readBigUInt64BE(72)
    refcountOrder = v3.readUInt32BE(96)
    headerBytes = v3.readUInt32BE(100)
    if (headerBytes < V3_MIN_HEADER_BYTES) throw errors.qcow2Damaged(`header length ${headerBytes} is below ${V3_MIN_HEADER_BYTES}`)
    if (headerBytes > clusterBytes) throw errors.qcow2Damaged(`header length ${headerBytes} exceeds the cluster size ${clusterBytes}`)
    header = source.view(0, headerBytes)
    if (header.length < headerBytes) throw errors.qcow2Damaged(`the file ends inside its header, at ${fileBytes} bytes`)
  }

  // compression_type (offset 104, only in longer headers): 0 deflate, 1 zstd; bit 3 set iff not deflate.
  const compressionCode = headerBytes > COMPRESSION_TYPE_OFFSET ? header.readUInt8(COMPRESSION_TYPE_OFFSET) : 0
  if (compressionCode > 1) throw errors.qcow2Unsupported(`compression type ${compressionCode}`)
  if ((compressionCode !== 0) !== ((incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n)) {
    throw errors.qcow2Damaged(`the compression type bit does not match compression type ${compressionCode}`)
  }

  // What cannot be installed, from the most to the least fundamental.
  const unknown = incompatibleFeatures & ~INCOMPAT_KNOWN
  if (unknown !== 0n) throw errors.qcow2Unsupported(`unknown incompatible feature bits 0x${unknown.toString(16)}`)
  if ((incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) throw errors.qcow2Unsupported('corrupt bit set')
  if ((incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n) throw errors.qcow2Unsupported('external data file')
  // autoclear_features (offset 88, version 3) bit 1, data-file-raw: only meaningful with an external data file; qemu refuses it alone.
  if (version === 3 && (header.readBigUInt64BE(88) & (1n << 1n)) !== 0n) throw errors.qcow2Damaged('the data-file-raw bit is set without an external data file')
  // crypt_method (offset 32): 0 none, 1 AES, 2 LUKS.
  if (header.readUInt32BE(32) !== 0) throw errors.qcow2Unsupported('encryption')
  // backing_file_offset (offset 8): an overlay reads its unallocated clusters from another image.
  const backingFileOffset = header.readBigUInt64BE(8)
  if (backingFileOffset !== 0n) throw errors.qcow2Unsupported('backing file')

  // refcount_order (offset 96): qemu refuses refcounts wider than 64 bits.
  if (refcountOrder > 6) throw errors.qcow2Damaged(`refcount order ${refcountOrder} is above 6`)
  const extendedL2 = (incompatibleFeatures & INCOMPAT_EXTL2) !== 0n
  // Extended L2: 32 subclusters of at least 512 bytes (qemu: cluster size ≥ 16 KiB).
  if (extendedL2 && clusterBytes / 32 < 512) throw errors.qcow2Damaged(`extended L2 entries with ${clusterBytes}-byte clusters`)

  // refcount_table_offset (48), refcount_table_clusters (56): never read here, checked as qemu does.
  const refcountTableOffset = readOffset(header, 48, 'refcount table offset')
  const refcountTableClusters = header.readUInt32BE(56)
  if (refcountTableClusters === 0) throw errors.qcow2Damaged('the image has no refcount table')
  validateTable(refcountTableOffset, refcountTableClusters, clusterBytes, MAX_REFCOUNT_TABLE_BYTES, clusterBytes, 'refcount table')

  // nb_snapshots (60), snapshots_offset (64): internal snapshots are not installed, only counted.
  const snapshots = header.readUInt32BE(60)
  const snapshotsOffset = readOffset(header, 64, 'snapshot table offset')
  validateTable(snapshotsOffset, snapshots, SNAPSHOT_HEADER_BYTES, SNAPSHOT_HEADER_BYTES * MAX_SNAPSHOTS, clusterBytes, 'snapshot table')

  // l1_size (36), l1_table_offset (40): the active L1 table, read whole, so it must lie in the file.
  const l1Entries = header.readUInt32BE(36)
  const l1TableOffset = readOffset(header, 40, 'L1 table offset')
  validateTable(l1TableOffset, l1Entries, 8, MAX_L1_TABLE_BYTES, clusterBytes, 'L1 table')

  // size (24): the virtual disk. qemu counts it in 512-byte sectors, rounding down.
  const sizeField = header.readBigUInt64BE(24)
  if (sizeField > BigInt(Number.MAX_SAFE_INTEGER)) throw errors.qcow2Unsupported(`virtual size of ${sizeField} bytes`)
  const sizeBytes = Number(sizeField)
  // qemu's size_to_l1: the L1 entries the virtual disk needs; each covers a whole L2 table.
  const l2Bits = clusterBits - (extendedL2 ? 4 : 3)
  const neededL1Entries = Math.ceil(sizeBytes / 2 ** (clusterBits + l2Bits))
  if (neededL1Entries > 0x7fffffff) throw errors.qcow2Damaged(`virtual size ${sizeBytes} is too big for ${clusterBytes}-byte clusters`)
  if (l1Entries < neededL1Entries) throw errors.qcow2Damaged(`L1 table of ${l1Entries} entries is too small for ${sizeBytes} bytes`)
  if (l1TableOffset + l1Entries * 8 > fileBytes) throw errors.qcow2Damaged(`L1 table at ${l1TableOffset} lies beyond the end of the file`)

  const extensions = parseExtensions(source, headerBytes, clusterBytes)

  return {
    version,
    virtualSizeBytes: sizeBytes - (sizeBytes % 512),
    clusterBits,
    clusterBytes,
    l1Entries,
    l1TableOffset,
    snapshots,
    incompatibleFeatures,
    compressionType: compressionCode === 0 ? 'deflate' : 'zstd',
    extendedL2,
    dirty: (incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    headerBytes,
    extensions,
  }
}

/**
 * Header extensions (spec: "Header extensions"; qemu's qcow2_read_extensions): {u32 type, u32 length,
 * data padded to 8} from the end of the header to the end of cluster 0 (there is no backing file
 * name, which would end them earlier), type 0 ends the list. As in qemu, bytes past the end of the
 * file read as zeros (so as an end). Each record moves on by at least 8 bytes in at most 2 MiB,
 * so the loop is bounded.
 */
function parseExtensions (source: ByteSource, headerBytes: number, clusterBytes: number): Qcow2HeaderExtension[] {
  const end = clusterBytes
  const area = Buffer.alloc(end - headerBytes)
  source.view(headerBytes, area.length).copy(area)
  const extensions: Qcow2HeaderExtension[] = []
  let at = 0
  while (at < area.length) {
    if (area.length - at < 8) throw errors.qcow2Damaged(`header extension at ${headerBytes + at} is too large`)
    const type = area.readUInt32BE(at)
    const length = area.readUInt32BE(at + 4)
    at += 8
    if (length > area.length - at) throw errors.qcow2Damaged(`header extension at ${headerBytes + at - 8} is too large`)
    if (type === EXT_END) break
    extensions.push({ type, offset: headerBytes + at, length })
    at += Math.ceil(length / 8) * 8
  }
  return extensions
}
