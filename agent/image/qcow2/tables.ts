import type { ByteSource } from '../memory-image.js'
import { errors } from '../../errors/install-error.js'
import type { TimeSlice } from '../../time-slice.js'

/**
 * Address translation (spec: "Cluster mapping"): the active L1 table, the L2 tables it points to,
 * and what each L2 entry says about its guest cluster. qemu's checks (qcow2_get_host_offset,
 * qcow2_get_subcluster_type) are mirrored; on top, every byte we will read must lie in the file.
 *
 * 64-bit entries are read as two u32 halves: offsets fit 2^53 when the high half is below 2^21,
 * and everything above that is refused, so plain numbers stay exact.
 */

/** What the mapping needs from the header. */
export interface Qcow2Geometry {
  version: 2 | 3
  virtualSizeBytes: number
  clusterBits: number
  clusterBytes: number
  extendedL2: boolean
  fileBytes: number
}

const HIGH_SAFE_LIMIT = 2 ** 21 // a u64 whose high half is below this is a safe integer
const TWO_32 = 2 ** 32
/** L1E_OFFSET_MASK / L2E_OFFSET_MASK = 0x00fffffffffffe00: bits 9..55, split in halves. */
const OFFSET_MASK_HIGH = 0x00ffffff
const OFFSET_MASK_LOW = 0xfffffe00
/** L2 entry bit 62: compressed cluster (QCOW_OFLAG_COMPRESSED), in the high half. */
const COMPRESSED_FLAG_HIGH = 0x40000000
/** L2 entry bit 0, standard descriptor without extended L2: the cluster reads as zeros (v3). */
const ZERO_FLAG_LOW = 0x1

/** The L2 tables' entries per table: one cluster of 8-byte (or, extended, 16-byte) entries. */
export function l2EntriesPerTable (geometry: Qcow2Geometry): number {
  return geometry.clusterBytes / (geometry.extendedL2 ? 16 : 8)
}

/** Guest bytes one L1 entry covers. */
export function l1EntryCoverBytes (geometry: Qcow2Geometry): number {
  return l2EntriesPerTable(geometry) * geometry.clusterBytes
}

/** Guest bytes of one subcluster (extended L2: 32 per cluster; otherwise the cluster itself). */
export function subclusterBytes (geometry: Qcow2Geometry): number {
  return geometry.extendedL2 ? geometry.clusterBytes / 32 : geometry.clusterBytes
}

/** Table entries checked between two calls to the TimeSlice. */
const ENTRIES_PER_STEP = 4096

/**
 * Reads the active L1 entries that cover the virtual disk: the L2 table offset of each (0: none).
 * Entries past the virtual disk (qemu's VM state area) are never installed, so never read.
 */
export async function readL1Table (geometry: Qcow2Geometry, source: ByteSource, l1TableOffset: number, slice: TimeSlice): Promise<Float64Array> {
  const entries = Math.ceil(geometry.virtualSizeBytes / l1EntryCoverBytes(geometry))
  const table = source.view(l1TableOffset, entries * 8)
  if (table.length < entries * 8) throw errors.qcow2Damaged(`L1 table at ${l1TableOffset} lies beyond the end of the file`)
  const offsets = new Float64Array(entries)
  for (let i = 0; i < entries; i++) {
    if (i % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) await slice.next()
    const high = table.readUInt32BE(i * 8) & OFFSET_MASK_HIGH
    const low = table.readUInt32BE(i * 8 + 4) & OFFSET_MASK_LOW
    if (high === 0 && low === 0) continue
    if (high >= HIGH_SAFE_LIMIT) throw errors.qcow2Damaged(`L2 table offset for L1 index ${i} is too large`)
    const offset = high * TWO_32 + (low >>> 0)
    if (offset % geometry.clusterBytes !== 0) throw errors.qcow2Damaged(`L2 table offset ${offset} is not cluster-aligned`)
    if (offset + geometry.clusterBytes > geometry.fileBytes) throw errors.qcow2Damaged(`L2 table at ${offset} lies beyond the end of the file`)
    offsets[i] = offset
  }
  return offsets
}

/** One L2 entry, decoded. */
export type L2Entry =
  | {
    kind: 'standard'
    /** Host cluster offset; 0 when none. */
    hostOffset: number
    /** Subclusters read from the host (bit x: subcluster x; without extended L2, bit 0 is the cluster). */
    allocated: number
    /** Subclusters that read as zeros. Those in neither mask are unallocated: zeros too (no backing file). */
    zero: number
  }
  | {
    kind: 'compressed'
    /** Where the compressed bytes start (any byte offset), and how many to read (to 512-byte precision). */
    hostOffset: number
    compressedBytes: number
  }

/** All 32 subclusters of an extended L2 bitmap, or the one "subcluster" of a plain entry. */
function allSubclusters (geometry: Qcow2Geometry): number {
  return geometry.extendedL2 ? 0xffffffff : 1
}

/**
 * Decodes the L2 entry of guest cluster `index` in `table` and checks it as qemu does (alignment,
 * zero flag only in v3, coherent subcluster bitmaps). `guestOffset` only names it in messages.
 */
export function decodeL2Entry (geometry: Qcow2Geometry, table: Buffer, index: number, guestOffset: number): L2Entry {
  const at = index * (geometry.extendedL2 ? 16 : 8)
  const high = table.readUInt32BE(at)
  const low = table.readUInt32BE(at + 4)

  if ((high & COMPRESSED_FLAG_HIGH) !== 0) {
    // Compressed descriptor (spec: "Compressed Clusters Descriptor"): x = 62 − (cluster_bits − 8);
    // bits 0..x−1 the byte offset, bits x..61 the number of additional 512-byte sectors.
    const x = 62 - (geometry.clusterBits - 8)
    const offsetHigh = high & ((1 << (x - 32)) - 1)
    if (offsetHigh >= HIGH_SAFE_LIMIT) throw errors.qcow2Damaged(`compressed cluster offset for guest offset ${guestOffset} is too large`)
    const hostOffset = offsetHigh * TWO_32 + (low >>> 0)
    const sectors = ((high >>> (x - 32)) & ((1 << (geometry.clusterBits - 8)) - 1)) + 1
    const compressedBytes = sectors * 512 - (hostOffset % 512)
    // Extended L2: the bitmap of a compressed cluster is reserved; qemu ignores it, so do we.
    return { kind: 'compressed', hostOffset, compressedBytes }
  }

  const offsetHigh = high & OFFSET_MASK_HIGH
  const offsetLow = (low & OFFSET_MASK_LOW) >>> 0
  if (offsetHigh >= HIGH_SAFE_LIMIT) throw errors.qcow2Damaged(`cluster offset for guest offset ${guestOffset} is too large`)
  const hostOffset = offsetHigh * TWO_32 + offsetLow
  let allocated: number
  let zero: number
  if (geometry.extendedL2) {
    // Extended L2 bitmap (spec: "Extended L2 Entries"): bits 0..31 allocated, 32..63 reads as zeros.
    allocated = table.readUInt32BE(at + 12)
    zero = table.readUInt32BE(at + 8)
    if (hostOffset === 0 && allocated !== 0) throw errors.qcow2Damaged(`unallocated cluster for guest offset ${guestOffset} has allocated subclusters`)
    if ((allocated & zero) !== 0) throw errors.qcow2Damaged(`subclusters for guest offset ${guestOffset} are both allocated and zero`)
  } else if ((low & ZERO_FLAG_LOW) !== 0) {
    if (geometry.version < 3) throw errors.qcow2Damaged(`zero cluster for guest offset ${guestOffset} in a version 2 image`)
    allocated = 0
    zero = 1
  } else {
    allocated = hostOffset === 0 ? 0 : 1
    zero = 0
  }
  if (hostOffset % geometry.clusterBytes !== 0) throw errors.qcow2Damaged(`cluster offset ${hostOffset} for guest offset ${guestOffset} is not cluster-aligned`)
  return { kind: 'standard', hostOffset, allocated: allocated >>> 0, zero: zero >>> 0 }
}

/**
 * The host bytes of `entry` that the guest range [guestOffset, guestOffset + usedBytes) of its
 * cluster reads, as [0, end) relative to the host offset; 0 when it reads none.
 */
function hostBytesRead (geometry: Qcow2Geometry, entry: L2Entry & { kind: 'standard' }, usedBytes: number): number {
  const sub = subclusterBytes(geometry)
  const usedSubclusters = Math.ceil(usedBytes / sub)
  const mask = usedSubclusters >= 32 ? allSubclusters(geometry) : ((1 << usedSubclusters) - 1) >>> 0
  const read = (entry.allocated & mask) >>> 0
  if (read === 0) return 0
  const last = 31 - Math.clz32(read)
  return Math.min(usedBytes, (last + 1) * sub)
}

/**
 * The mapping from guest clusters to the file: the L2 table offset of each active L1 entry (0:
 * none), and which L1 ranges read as zeros whole (no L2 table, or a table whose entries used there
 * are all unallocated or zero). One number and one byte per L1 entry, nothing per guest cluster:
 * the L1 table lies in the file and holds at most 4 Mi entries (qemu's QCOW_MAX_L1_SIZE), so this
 * is at most 9/8 of the file's size and never above 36 MiB, whatever virtual size is claimed.
 */
export interface Qcow2Mapping {
  readonly l2TableOffsets: Float64Array
  /** 1 where the L1 entry's guest range reads as zeros whole: a walk skips it in one step. */
  readonly zeroL1Ranges: Uint8Array
}

/**
 * Checks every entry of every active L2 table against the file and the virtual disk: data and
 * compressed clusters must start in the file, and the data a guest byte reads must end in it.
 * A table shared by several L1 entries is checked once, so the work is bounded by the file size
 * (at most one pass over each cluster of the file), never by the virtual size. Returns the mapping,
 * with the L1 ranges that read as zeros marked (a shared empty table then costs one step per L1
 * entry in every later walk, not one per guest cluster). Every ENTRIES_PER_STEP entries (L1 or L2)
 * go through the TimeSlice.
 */
export async function validateL2Tables (geometry: Qcow2Geometry, source: ByteSource, l2Offsets: Float64Array, slice: TimeSlice): Promise<Qcow2Mapping> {
  /** Each table checked so far, and whether its entries read as zeros. */
  const checked = new Map<number, boolean>()
  const zeroL1Ranges = new Uint8Array(l2Offsets.length)
  for (let l1Index = 0; l1Index < l2Offsets.length; l1Index++) {
    if (l1Index % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) await slice.next()
    const l2Offset = l2Offsets[l1Index] ?? 0
    if (l2Offset === 0) {
      zeroL1Ranges[l1Index] = 1
      continue
    }
    let readsZeros = checked.get(l2Offset)
    if (readsZeros === undefined) {
      // Only the last L1 entry covers fewer guest clusters; it comes last, so a table it shares with
      // an earlier entry has already been checked whole.
      readsZeros = await checkL2Table(geometry, source.view(l2Offset, geometry.clusterBytes), l1Index, slice)
      checked.set(l2Offset, readsZeros)
    }
    zeroL1Ranges[l1Index] = readsZeros ? 1 : 0
  }
  return { l2TableOffsets: l2Offsets, zeroL1Ranges }
}

/**
 * Checks the L2 table of L1 entry `l1Index` (its cluster's bytes): every entry the virtual disk uses
 * must start in the file, and the data a guest byte reads must end in it. True when all of those
 * entries read as zeros (unallocated or zero clusters). Every ENTRIES_PER_STEP entries go through
 * the TimeSlice.
 */
export async function checkL2Table (geometry: Qcow2Geometry, table: Buffer, l1Index: number, slice: TimeSlice): Promise<boolean> {
  const cover = l1EntryCoverBytes(geometry)
  const base = l1Index * cover
  const guestBytes = Math.min(cover, geometry.virtualSizeBytes - base)
  const used = Math.min(Math.ceil(guestBytes / geometry.clusterBytes), l2EntriesPerTable(geometry))
  let readsZeros = true
  for (let index = 0; index < used; index++) {
    if (index % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) await slice.next()
    const guestOffset = base + index * geometry.clusterBytes
    const entry = decodeL2Entry(geometry, table, index, guestOffset)
    if (entry.kind === 'compressed') {
      if (entry.hostOffset >= geometry.fileBytes) {
        throw errors.qcow2Damaged(`compressed cluster for guest offset ${guestOffset} lies beyond the end of the file`)
      }
      readsZeros = false
      continue
    }
    if (entry.allocated !== 0) readsZeros = false
    const usedBytes = Math.min(geometry.clusterBytes, geometry.virtualSizeBytes - guestOffset)
    const end = hostBytesRead(geometry, entry, usedBytes)
    if (end > 0 && entry.hostOffset + end > geometry.fileBytes) {
      throw errors.qcow2Damaged(`data cluster for guest offset ${guestOffset} lies beyond the end of the file`)
    }
  }
  return readsZeros
}

/** A run of guest bytes and where they come from. */
export type GuestExtent =
  | { kind: 'zero'; guestOffset: number; length: number }
  | { kind: 'data'; guestOffset: number; length: number; hostOffset: number }
  /** One whole compressed cluster starting at `guestOffset`; `length` is the part below the end. */
  | { kind: 'compressed'; guestOffset: number; length: number; hostOffset: number; compressedBytes: number }

export interface GuestExtentOptions {
  /** Data runs are cut at this many bytes (a write's size). */
  maxDataBytes: number
}

/**
 * Steps (L1 entries, L2 entries, subclusters) a walk takes at most before it hands back the run it
 * holds, even one that could grow: the caller gets control back (to give the event loop a turn, to
 * look at its AbortSignal) after a bounded amount of work, whatever the tables look like.
 */
const MAX_STEPS_PER_EXTENT = 16384

/**
 * The guest range [start, end) as extents in guest order, from the cluster holding `start`: data
 * runs whose host bytes are contiguous are merged (up to maxDataBytes), as are zero runs;
 * compressed clusters come one by one. The walk goes straight to the L1 entry of `start`; it takes
 * one step per L1 entry whose range reads as zeros, else one per L2 entry (and subcluster), and
 * hands back a run at least every MAX_STEPS_PER_EXTENT steps.
 */
export function * guestExtents (
  image: Qcow2Geometry & Qcow2Mapping,
  source: ByteSource,
  range: { start: number; end: number },
  options: GuestExtentOptions,
): Generator<GuestExtent> {
  const { l2TableOffsets, zeroL1Ranges } = image
  const { end } = range
  const cover = l1EntryCoverBytes(image)
  const sub = subclusterBytes(image)
  const subclusters = image.extendedL2 ? 32 : 1
  let pending: GuestExtent | undefined
  let steps = 0

  // Appends [guestOffset, +length) of `kind`; yields the pending run when this one cannot join it.
  function * add (kind: 'zero' | 'data', guestOffset: number, length: number, hostOffset: number): Generator<GuestExtent> {
    steps++
    if (pending !== undefined && pending.kind === kind && pending.guestOffset + pending.length === guestOffset && steps < MAX_STEPS_PER_EXTENT) {
      if (kind === 'zero') {
        pending.length += length
        return
      }
      if (pending.kind === 'data' && pending.hostOffset + pending.length === hostOffset && pending.length + length <= options.maxDataBytes) {
        pending.length += length
        return
      }
    }
    if (pending !== undefined) yield pending
    steps = 0
    pending = kind === 'zero' ? { kind, guestOffset, length } : { kind, guestOffset, length, hostOffset }
  }

  const first = Math.floor(Math.max(0, range.start) / image.clusterBytes) * image.clusterBytes
  const l1Used = Math.min(l2TableOffsets.length, Math.ceil(end / cover))
  for (let l1Index = Math.floor(first / cover); l1Index < l1Used; l1Index++) {
    const base = l1Index * cover
    const from = Math.max(first, base)
    const tableEnd = Math.min(end, base + cover)
    const l2Offset = l2TableOffsets[l1Index] ?? 0
    if (l2Offset === 0 || zeroL1Ranges[l1Index] === 1) {
      yield * add('zero', from, tableEnd - from, 0)
      continue
    }
    const table = source.view(l2Offset, image.clusterBytes)
    for (let index = (from - base) / image.clusterBytes; base + index * image.clusterBytes < tableEnd; index++) {
      const guestOffset = base + index * image.clusterBytes
      const clusterEnd = Math.min(tableEnd, guestOffset + image.clusterBytes)
      const entry = decodeL2Entry(image, table, index, guestOffset)
      if (entry.kind === 'compressed') {
        if (pending !== undefined) yield pending
        pending = undefined
        yield { kind: 'compressed', guestOffset, length: clusterEnd - guestOffset, hostOffset: entry.hostOffset, compressedBytes: entry.compressedBytes }
        continue
      }
      if (entry.allocated === 0) {
        yield * add('zero', guestOffset, clusterEnd - guestOffset, 0)
        continue
      }
      for (let s = 0; s < subclusters; s++) {
        const at = guestOffset + s * sub
        if (at >= clusterEnd) break
        const length = Math.min(sub, clusterEnd - at)
        if (((entry.allocated >>> s) & 1) === 1) yield * add('data', at, length, entry.hostOffset + s * sub)
        else yield * add('zero', at, length, 0)
      }
    }
  }
  if (pending !== undefined) yield pending
  // Past the L1 table's reach (never for a valid image: the L1 table covers the virtual size).
  const covered = Math.max(first, l1Used * cover)
  if (covered < end) yield { kind: 'zero', guestOffset: covered, length: end - covered }
}
