import type { ClusterBitmap } from '../cluster-bitmap.js'
import { QCOW2_MAGIC } from './header.js'

/**
 * A qcow2 v3 file laid out for a disk whose data clusters are known (a capture's first pass),
 * so that it can be written front to back in one stream (an HTTP PUT cannot seek back): the
 * header, the L1 table, the refcount table and blocks and the L2 tables first, then the data
 * clusters in guest order, nothing else. Every offset is known before the first byte goes out;
 * the metadata is made one cluster at a time from the bitmap (L2 tables are 1/8192 of the data
 * with 64 KiB clusters: 256 MiB for 2 TiB, never held whole).
 *
 * The file is what `qemu-img convert -O qcow2` makes of the same disk, minus its preallocation
 * choices: refcount_order 4 (16-bit refcounts, qemu's default), every cluster's refcount 1 and
 * the COPIED flag set in L1 and L2 entries (qemu's rule for refcount 1), unallocated L2 entries
 * (and L1 entries of ranges without data) 0, which a reader without a backing file reads as zeros
 * (spec: "Cluster mapping", docs/interop/qcow2.rst).
 */

/** Entries with refcount exactly 1 carry this flag (spec: QCOW_OFLAG_COPIED). */
const COPIED = 1n << 63n
const V3_HEADER_BYTES = 104
/** refcount_order 4: 16-bit refcounts. */
const REFCOUNT_ORDER = 4
const REFCOUNT_BYTES = 2
export const DEFAULT_CLUSTER_BITS = 16 // 64 KiB, qemu's default

export class Qcow2Layout {
  readonly clusterBytes: number
  /** Host clusters of each kind, in file order. */
  readonly l1Clusters: number
  readonly refcountTableClusters: number
  readonly refcountBlockClusters: number
  readonly l2Tables: number
  readonly dataClusters: number
  /** Host clusters before the first data cluster: the metadata, written first. */
  readonly metadataClusters: number
  readonly fileBytes: number
  private readonly l1Entries: number
  private readonly l2Entries: number
  /** For each L1 entry: its L2 table's ordinal, or −1 (no data in its range). */
  private readonly l2Ordinal: Int32Array
  /** For each L2 table, by ordinal: its L1 entry. */
  private readonly l2Entry: number[] = []
  /** For each L1 entry: data clusters in the ranges before it (their data comes first). */
  private readonly dataBefore: Float64Array

  constructor (readonly virtualSizeBytes: number, readonly data: ClusterBitmap, readonly clusterBits = DEFAULT_CLUSTER_BITS) {
    if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes <= 0 || virtualSizeBytes % 512 !== 0) {
      throw new RangeError(`a virtual size of ${virtualSizeBytes} bytes (a positive multiple of 512)`)
    }
    if (!Number.isSafeInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw new RangeError(`cluster_bits ${clusterBits}`)
    const clusterBytes = 2 ** clusterBits
    this.clusterBytes = clusterBytes
    const guestClusters = Math.ceil(virtualSizeBytes / clusterBytes)
    if (data.clusters !== guestClusters) throw new RangeError(`a bitmap of ${data.clusters} clusters for ${guestClusters}`)
    this.l2Entries = clusterBytes / 8
    this.l1Entries = Math.ceil(guestClusters / this.l2Entries)
    this.l1Clusters = Math.ceil((this.l1Entries * 8) / clusterBytes)
    this.l2Ordinal = new Int32Array(this.l1Entries).fill(-1)
    this.dataBefore = new Float64Array(this.l1Entries)
    let tables = 0
    let before = 0
    for (let entry = 0; entry < this.l1Entries; entry++) {
      this.dataBefore[entry] = before
      const inRange = data.countIn(entry * this.l2Entries, Math.min((entry + 1) * this.l2Entries, guestClusters))
      if (inRange > 0) {
        this.l2Ordinal[entry] = tables++
        this.l2Entry.push(entry)
      }
      before += inRange
    }
    this.l2Tables = tables
    this.dataClusters = before
    // The refcount blocks count every cluster of the file, themselves and the table included: grow both until they cover it.
    const refcountsPerBlock = clusterBytes / REFCOUNT_BYTES
    let blocks = 0
    let tableClusters = 1
    for (;;) {
      const total = 1 + this.l1Clusters + tableClusters + blocks + tables + before
      const needBlocks = Math.ceil(total / refcountsPerBlock)
      const needTable = Math.max(1, Math.ceil((needBlocks * 8) / clusterBytes))
      if (needBlocks === blocks && needTable === tableClusters) break
      blocks = needBlocks
      tableClusters = needTable
    }
    this.refcountTableClusters = tableClusters
    this.refcountBlockClusters = blocks
    this.metadataClusters = 1 + this.l1Clusters + tableClusters + blocks + tables
    this.fileBytes = (this.metadataClusters + before) * clusterBytes
  }

  /** Host cluster where each part starts. */
  private get l1Start (): number { return 1 }
  private get refcountTableStart (): number { return this.l1Start + this.l1Clusters }
  private get refcountBlocksStart (): number { return this.refcountTableStart + this.refcountTableClusters }
  private get l2Start (): number { return this.refcountBlocksStart + this.refcountBlockClusters }

  /** Host clusters in the file. */
  get totalClusters (): number {
    return this.metadataClusters + this.dataClusters
  }

  /** Metadata cluster `index` (0 ≤ index < metadataClusters), a new buffer of clusterBytes. */
  metadataCluster (index: number): Buffer {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.metadataClusters) {
      throw new RangeError(`metadata cluster ${index} of ${this.metadataClusters}`)
    }
    const out = Buffer.alloc(this.clusterBytes)
    if (index === 0) this.writeHeader(out)
    else if (index < this.refcountTableStart) this.writeL1(out, index - this.l1Start)
    else if (index < this.refcountBlocksStart) this.writeRefcountTable(out, index - this.refcountTableStart)
    else if (index < this.l2Start) this.writeRefcountBlock(out, index - this.refcountBlocksStart)
    else this.writeL2(out, index - this.l2Start)
    return out
  }

  /** The metadata clusters in file order. */
  * metadata (): Generator<Buffer> {
    for (let index = 0; index < this.metadataClusters; index++) yield this.metadataCluster(index)
  }

  private writeHeader (out: Buffer): void {
    out.writeUInt32BE(QCOW2_MAGIC, 0)
    out.writeUInt32BE(3, 4) // version
    // backing_file_offset (8), backing_file_size (16): 0, no backing file
    out.writeUInt32BE(this.clusterBits, 20)
    out.writeBigUInt64BE(BigInt(this.virtualSizeBytes), 24)
    // crypt_method (32): 0
    out.writeUInt32BE(this.l1Entries, 36)
    out.writeBigUInt64BE(BigInt(this.l1Start * this.clusterBytes), 40)
    out.writeBigUInt64BE(BigInt(this.refcountTableStart * this.clusterBytes), 48)
    out.writeUInt32BE(this.refcountTableClusters, 56)
    // nb_snapshots (60), snapshots_offset (64), incompatible (72), compatible (80), autoclear (88) features: 0
    out.writeUInt32BE(REFCOUNT_ORDER, 96)
    out.writeUInt32BE(V3_HEADER_BYTES, 100)
    // Header extensions from byte 104: the end marker (type 0, length 0) is the zeros already there.
  }

  /** Cluster `part` of the L1 table: each entry points at its range's L2 table, or is 0. */
  private writeL1 (out: Buffer, part: number): void {
    const perCluster = this.clusterBytes / 8
    for (let i = 0; i < perCluster; i++) {
      const entry = part * perCluster + i
      if (entry >= this.l1Entries) break
      const ordinal = this.l2Ordinal[entry] as number
      if (ordinal < 0) continue
      out.writeBigUInt64BE(BigInt((this.l2Start + ordinal) * this.clusterBytes) | COPIED, i * 8)
    }
  }

  private writeRefcountTable (out: Buffer, part: number): void {
    const perCluster = this.clusterBytes / 8
    for (let i = 0; i < perCluster; i++) {
      const block = part * perCluster + i
      if (block >= this.refcountBlockClusters) break
      out.writeBigUInt64BE(BigInt((this.refcountBlocksStart + block) * this.clusterBytes), i * 8)
    }
  }

  /** Every cluster of the file is used once: refcount 1 up to the file's end, 0 after. */
  private writeRefcountBlock (out: Buffer, block: number): void {
    const perBlock = this.clusterBytes / REFCOUNT_BYTES
    const first = block * perBlock
    const used = Math.min(perBlock, this.totalClusters - first)
    for (let i = 0; i < used; i++) out.writeUInt16BE(1, i * REFCOUNT_BYTES)
  }

  /** The L2 table of ordinal `ordinal`: its range's data clusters, in guest order, at their place after the metadata. */
  private writeL2 (out: Buffer, ordinal: number): void {
    const entry = this.l2Entry[ordinal] as number
    const firstGuest = entry * this.l2Entries
    const end = Math.min(firstGuest + this.l2Entries, this.data.clusters)
    let host = this.metadataClusters + (this.dataBefore[entry] as number)
    for (let guest = firstGuest; guest < end; guest++) {
      if (!this.data.has(guest)) continue
      out.writeBigUInt64BE(BigInt(host * this.clusterBytes) | COPIED, (guest - firstGuest) * 8)
      host++
    }
  }
}

/**
 * The whole file, front to back: the layout's metadata, then each data cluster as `readCluster`
 * gives it (clusterBytes long; the last guest cluster past the virtual size padded with zeros),
 * in guest order. (Reading runs of clusters in one call instead was measured no faster: a 2 GiB
 * disk captured in 4.36–6.09 s against 4.06–4.09 s, the page cache and the kernel's readahead
 * doing the batching.)
 */
export async function * qcow2Stream (layout: Qcow2Layout, readCluster: (guestCluster: number) => Promise<Buffer>): AsyncGenerator<Buffer> {
  yield * layout.metadata()
  for (const guest of layout.data) {
    const cluster = await readCluster(guest)
    if (cluster.length !== layout.clusterBytes) throw new RangeError(`cluster ${guest}: ${cluster.length} bytes, not ${layout.clusterBytes}`)
    yield cluster
  }
}
