import type { CompressionType } from './decompress.js'

/**
 * The size of each data cluster of a disk once compressed, as a capture's first pass measures it,
 * for a qcow2 laid out with compressed clusters (spec: "Compressed Clusters Descriptor"). Indexed
 * by the cluster's ordinal among the data clusters (in guest order: the clusters left out cost
 * nothing), two bytes each (a 2 TiB disk full of data in 64 KiB clusters: 64 MiB), kept in chunks
 * of 1 Mi so that growing never copies. Exact sizes up to 64 KiB clusters; larger clusters count in
 * units of 1/65536 of a cluster (32 bytes for 2 MiB ones), each compressed cluster then padded to
 * a whole unit. 0: stored as it is (it does not shrink below a cluster, QEMU's rule).
 *
 * (A byte per guest cluster in units of 1/256 of a cluster was tried first: the padding, 128 bytes
 * a cluster on average with 64 KiB clusters, made a 2 GiB system disk 0.04 % larger than
 * `qemu-img convert -c` makes it, and 0.13 % with 4 KiB clusters; exact sizes make it smaller.)
 */

const MAX_UNITS = 0xffff
const CHUNK_BITS = 20 // 1 Mi sizes (2 MiB) a chunk

export class CompressedSizes {
  readonly clusterBytes: number
  /** Bytes of a unit: 1 up to 64 KiB clusters, clusterBytes / 65536 above. */
  readonly unitBytes: number
  private readonly chunks: Uint16Array[] = []
  private recorded = 0

  constructor (readonly type: CompressionType, readonly clusterBits: number) {
    if (!Number.isSafeInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw new RangeError(`cluster_bits ${clusterBits}`)
    this.clusterBytes = 2 ** clusterBits
    this.unitBytes = Math.max(1, this.clusterBytes / (MAX_UNITS + 1))
  }

  /** Data clusters recorded: one more than the highest ordinal. */
  get count (): number {
    return this.recorded
  }

  /** Units a compressed length takes, or 0 when the cluster is better stored as it is (not smaller than a cluster). */
  unitsFor (compressedBytes: number): number {
    if (!Number.isSafeInteger(compressedBytes) || compressedBytes <= 0) throw new RangeError(`a compressed length of ${compressedBytes} bytes`)
    const units = Math.ceil(compressedBytes / this.unitBytes)
    return units * this.unitBytes >= this.clusterBytes ? 0 : units
  }

  /** Records the compressed length of data cluster `ordinal` (its rank among the data clusters; in any order). */
  record (ordinal: number, compressedBytes: number): void {
    if (!Number.isSafeInteger(ordinal) || ordinal < 0) throw new RangeError(`data cluster ${ordinal}`)
    const chunk = ordinal >>> CHUNK_BITS
    while (this.chunks.length <= chunk) this.chunks.push(new Uint16Array(2 ** CHUNK_BITS))
    ;(this.chunks[chunk] as Uint16Array)[ordinal & (2 ** CHUNK_BITS - 1)] = this.unitsFor(compressedBytes)
    this.recorded = Math.max(this.recorded, ordinal + 1)
  }

  /** Units data cluster `ordinal` takes compressed; 0: stored as it is. */
  unitsOf (ordinal: number): number {
    if (!Number.isSafeInteger(ordinal) || ordinal < 0 || ordinal >= this.recorded) throw new RangeError(`data cluster ${ordinal} of ${this.recorded}`)
    return (this.chunks[ordinal >>> CHUNK_BITS] as Uint16Array)[ordinal & (2 ** CHUNK_BITS - 1)] as number
  }

  /** Bytes data cluster `ordinal` takes in the file compressed, padding included; 0: stored as it is. */
  storedBytes (ordinal: number): number {
    return this.unitsOf(ordinal) * this.unitBytes
  }
}
