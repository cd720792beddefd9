/**
 * A qcow2's map built from its own bytes as they come: the header (its first cluster), then the
 * active L1 table it names, then each L2 table the L1 names, every one checked exactly as
 * openQcow2 checks a file held whole (parseQcow2Header, readL1Table, checkL2Table), and each
 * checked table turned into the host extents of its guest range. Given the tables fetched first
 * (Range requests), the map is whole before the stream starts; otherwise it grows with the stream
 * and says which bytes it still wants.
 */
import { parseQcow2Header, type Qcow2Header } from './header.js'
import type { HostExtent } from './host-queue.js'
import { qcow2Geometry, qcow2Image, type Qcow2Image } from './open-qcow2.js'
import { checkL2Table, guestExtents, l1EntryCoverBytes, readL1Table, type Qcow2Geometry } from './tables.js'
import { SparseSource } from '../sparse-source.js'
import type { TimeSlice } from '../../time-slice.js'

/** The header's fixed fields up to cluster_bits (offset 20, 4 bytes). */
const CLUSTER_BITS_END = 24
/** qemu's cluster sizes: 512 B to 2 MiB; a header claiming others is refused by parseQcow2Header. */
const MIN_CLUSTER_BITS = 9
const MAX_CLUSTER_BITS = 21
/** Data runs of one extent, at most (a write's size). */
const MAX_EXTENT_BYTES = 8 * 1024 * 1024 // 8 MiB

/** Given each host extent as a checked table yields it. */
export type ExtentListener = (extent: HostExtent) => void | Promise<void>

export interface ByteRange {
  offset: number
  length: number
}

export class Qcow2StreamMap {
  /** The header's cluster, the L1 table and the L2 tables, as far as they came. */
  readonly tables: SparseSource
  private header: Qcow2Header | undefined
  private geometry: Qcow2Geometry | undefined
  private l2Offsets: Float64Array | undefined
  private zeroL1Ranges: Uint8Array | undefined
  /** L2 tables not checked yet: their offset, and the L1 entries that name them. */
  private readonly waiting = new Map<number, number[]>()
  private whole: Qcow2Image | undefined

  /** `onHeader`: the caller's own checks of the header once it passed the map's, before any extent. */
  constructor (
    readonly fileBytes: number, private readonly slice: TimeSlice, fetched?: SparseSource, private readonly onHeader?: (header: Qcow2Header) => void,
  ) {
    if (fetched !== undefined && fetched.sizeBytes !== fileBytes) throw new RangeError(`tables of a ${fetched.sizeBytes}-byte file for one of ${fileBytes}`)
    this.tables = fetched ?? new SparseSource(fileBytes)
  }

  /** The checked image, once every table it needs came. */
  get image (): Qcow2Image | undefined {
    return this.whole
  }

  /** The header's facts, once its cluster came and passed the checks. */
  get parsedHeader (): Qcow2Header | undefined {
    return this.header
  }

  /** The file's bytes the map needs next and does not hold, in file order. */
  wanted (): ByteRange[] {
    const ranges: ByteRange[] = []
    const want = (offset: number, length: number): void => { ranges.push(...this.tables.missing(offset, length)) }
    const { geometry, header } = this
    if (header === undefined || geometry === undefined) {
      if (!this.tables.has(0, CLUSTER_BITS_END) || this.fileBytes < CLUSTER_BITS_END) want(0, CLUSTER_BITS_END)
      else want(0, 2 ** Math.min(MAX_CLUSTER_BITS, Math.max(MIN_CLUSTER_BITS, this.tables.view(20, 4).readUInt32BE(0))))
    } else if (this.l2Offsets === undefined) {
      want(header.l1TableOffset, this.l1UsedEntries(geometry) * 8)
    } else {
      for (const offset of this.waiting.keys()) want(offset, geometry.clusterBytes)
    }
    return ranges.sort((a, b) => a.offset - b.offset)
  }

  /**
   * Checks what became whole since the last call (the header, the L1 table, L2 tables) and gives
   * `onExtent` the host extents (data and compressed clusters) of the guest ranges whose tables
   * passed, one by one (never a list of them all: a table shared by many L1 entries names a cluster
   * many times). Throws QCOW2_UNSUPPORTED / QCOW2_DAMAGED as openQcow2 would, and what `onExtent` throws.
   */
  async advance (onExtent: ExtentListener): Promise<void> {
    for (let progress = true; progress && this.whole === undefined;) {
      progress = false
      if (this.header === undefined) {
        if (this.wanted().length > 0) break
        this.readHeader()
        progress = true
      } else if (this.l2Offsets === undefined) {
        if (this.wanted().length > 0) break
        await this.readL1()
        progress = true
      } else {
        for (const [offset, l1Indexes] of [...this.waiting]) {
          if (!this.tables.has(offset, (this.geometry as Qcow2Geometry).clusterBytes)) continue
          await this.checkTable(offset, l1Indexes, onExtent)
          progress = true
        }
        if (this.waiting.size === 0) this.finish()
      }
    }
  }

  private readHeader (): void {
    const header = parseQcow2Header(this.tables)
    this.geometry = qcow2Geometry(header, this.fileBytes)
    this.header = header
    // The caller's own checks of the header, before any extent is given.
    this.onHeader?.(header)
  }

  private l1UsedEntries (geometry: Qcow2Geometry): number {
    return Math.ceil(geometry.virtualSizeBytes / l1EntryCoverBytes(geometry))
  }

  private async readL1 (): Promise<void> {
    const header = this.header as Qcow2Header
    const l2Offsets = await readL1Table(this.geometry as Qcow2Geometry, this.tables, header.l1TableOffset, this.slice)
    this.zeroL1Ranges = new Uint8Array(l2Offsets.length)
    for (let l1Index = 0; l1Index < l2Offsets.length; l1Index++) {
      const offset = l2Offsets[l1Index] ?? 0
      if (offset === 0) {
        this.zeroL1Ranges[l1Index] = 1
        continue
      }
      const users = this.waiting.get(offset)
      if (users === undefined) this.waiting.set(offset, [l1Index])
      else users.push(l1Index)
    }
    this.l2Offsets = l2Offsets
  }

  /** One L2 table checked (once, for the first L1 entry naming it, as validateL2Tables does), and the extents of each entry naming it. */
  private async checkTable (offset: number, l1Indexes: number[], onExtent: ExtentListener): Promise<void> {
    const geometry = this.geometry as Qcow2Geometry
    const zeroL1Ranges = this.zeroL1Ranges as Uint8Array
    const readsZeros = await checkL2Table(geometry, this.tables.view(offset, geometry.clusterBytes), l1Indexes[0] as number, this.slice)
    this.waiting.delete(offset)
    for (const l1Index of l1Indexes) zeroL1Ranges[l1Index] = readsZeros ? 1 : 0
    if (readsZeros) return
    const mapping = { ...geometry, l2TableOffsets: this.l2Offsets as Float64Array, zeroL1Ranges }
    const cover = l1EntryCoverBytes(geometry)
    for (const l1Index of l1Indexes) {
      const range = { start: l1Index * cover, end: Math.min(geometry.virtualSizeBytes, (l1Index + 1) * cover) }
      for (const extent of guestExtents(mapping, this.tables, range, { maxDataBytes: MAX_EXTENT_BYTES })) {
        await this.slice.next()
        if (extent.kind === 'zero') continue
        const { hostOffset, guestOffset, length } = extent
        // qemu reads zeros past the file's end: what lies there of a compressed cluster is not in the stream.
        const compressedBytes = extent.kind === 'compressed' ? Math.min(extent.compressedBytes, this.fileBytes - hostOffset) : 0
        await onExtent({ hostOffset, guestOffset, length, compressedBytes })
      }
    }
  }

  private finish (): void {
    this.whole = qcow2Image(this.header as Qcow2Header, this.fileBytes, {
      l2TableOffsets: this.l2Offsets as Float64Array,
      zeroL1Ranges: this.zeroL1Ranges as Uint8Array,
    })
  }
}
