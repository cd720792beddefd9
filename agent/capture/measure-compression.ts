import { compressPool } from '../image/qcow2/compress-pool.js'
import { CompressedSizes } from '../image/qcow2/compressed-sizes.js'
import type { CompressionType } from '../image/qcow2/decompress.js'

/**
 * A compressed capture's first pass, beside the scan: each cluster kept compressed on the pool's
 * threads, only its length kept (CompressedSizes, a byte per cluster), so that the qcow2 can be
 * laid out, every offset known, before the second pass compresses the clusters again to send
 * them. A few batches are under way while the scan reads on; `add` waits when more would be.
 */

/** Batches under way at once: two threads busy and the next read's waiting. */
const BATCHES_AHEAD = 3

export class CompressionMeter {
  readonly sizes: CompressedSizes
  private readonly underWay = new Set<Promise<void>>()
  private failure: Error | undefined

  constructor (readonly type: CompressionType, clusters: number, readonly clusterBits: number) {
    this.sizes = new CompressedSizes(type, clusters, clusterBits)
  }

  /** Measures `clusters` (their bytes in `data`, copied before this returns a promise). */
  async add (clusters: number[], data: Buffer[]): Promise<void> {
    this.throwIfFailed()
    const batch = compressPool.compress(this.type, data, this.sizes.clusterBytes, { keepOutput: false }).then(
      ({ lengths }) => { clusters.forEach((cluster, i) => { this.sizes.record(cluster, lengths[i] ?? 0) }) },
      (err: unknown) => { this.failure ??= err instanceof Error ? err : new Error(String(err)) },
    )
    this.underWay.add(batch)
    void batch.finally(() => this.underWay.delete(batch))
    while (this.underWay.size >= BATCHES_AHEAD) await Promise.race(this.underWay)
    this.throwIfFailed()
  }

  /** Every cluster measured: their sizes. */
  async finish (): Promise<CompressedSizes> {
    await Promise.all(this.underWay)
    this.throwIfFailed()
    return this.sizes
  }

  private throwIfFailed (): void {
    if (this.failure !== undefined) throw this.failure
  }
}
