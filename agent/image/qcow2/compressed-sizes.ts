import type { CompressionType } from './decompress.js'

/**
 * The size of each cluster of a disk once compressed, as a capture's first pass measures it, for
 * a qcow2 laid out with compressed clusters (spec: "Compressed Clusters Descriptor"). One byte per
 * guest cluster (a 2 TiB disk in 64 KiB clusters: 32 MiB): the size in units of 1/256 of a cluster
 * (256 bytes for 64 KiB clusters, 16 for 4 KiB ones), each compressed cluster stored padded to a
 * whole number of units. 0: the cluster is stored as it is (it does not shrink below 255 units,
 * QEMU's rule being "smaller than a cluster"), or is not kept at all (the bitmap says which).
 */

/** Sizes are kept in this many units per cluster, at most 255 of them for a compressed one. */
const UNITS_PER_CLUSTER = 256
const MAX_UNITS = 255

export class CompressedSizes {
  readonly clusterBytes: number
  /** Bytes of a unit: clusterBytes / 256 (2 bytes for 512-byte clusters, 8 KiB for 2 MiB ones). */
  readonly unitBytes: number
  private readonly units: Uint8Array

  constructor (readonly type: CompressionType, readonly clusters: number, readonly clusterBits: number) {
    if (!Number.isSafeInteger(clusters) || clusters < 0) throw new RangeError(`sizes of ${clusters} clusters`)
    if (!Number.isSafeInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) throw new RangeError(`cluster_bits ${clusterBits}`)
    this.clusterBytes = 2 ** clusterBits
    this.unitBytes = this.clusterBytes / UNITS_PER_CLUSTER
    this.units = new Uint8Array(clusters)
  }

  /** Units a compressed length takes, or 0 when the cluster is better stored as it is. */
  unitsFor (compressedBytes: number): number {
    if (!Number.isSafeInteger(compressedBytes) || compressedBytes <= 0) throw new RangeError(`a compressed length of ${compressedBytes} bytes`)
    const units = Math.ceil(compressedBytes / this.unitBytes)
    return units > MAX_UNITS ? 0 : units
  }

  /** Records `cluster`'s compressed length. */
  record (cluster: number, compressedBytes: number): void {
    this.check(cluster)
    this.units[cluster] = this.unitsFor(compressedBytes)
  }

  /** Units `cluster` takes compressed; 0: stored as it is. */
  unitsOf (cluster: number): number {
    this.check(cluster)
    return this.units[cluster] as number
  }

  /** Bytes `cluster` takes in the file compressed, padding included; 0: stored as it is. */
  storedBytes (cluster: number): number {
    return this.unitsOf(cluster) * this.unitBytes
  }

  private check (cluster: number): void {
    if (!Number.isSafeInteger(cluster) || cluster < 0 || cluster >= this.clusters) throw new RangeError(`cluster ${cluster} of ${this.clusters}`)
  }
}
