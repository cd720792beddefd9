import { compressPool } from '../image/qcow2/compress-pool.js'
import { CompressedSizes } from '../image/qcow2/compressed-sizes.js'
import type { CompressionType } from '../image/qcow2/decompress.js'

/**
 * A compressed capture's first pass, beside the scan: each cluster kept compressed on the pool's
 * threads, only its length kept (CompressedSizes, two bytes per data cluster), so that the
 * qcow2 can be laid out, every offset known, before the second pass compresses the clusters again
 * to send them. A few batches are under way while the scan reads on; `add` waits when more would be.
 */

/** Batches under way at once: two threads busy and the next read's waiting. */
const BATCHES_AHEAD = 3

export class CompressionMeter {
  readonly sizes: CompressedSizes
  private readonly underWay = new Set<Promise<void>>()
  private failure: Error | undefined
  /** Data clusters added so far: the ordinal of the next. */
  private added = 0

  constructor (readonly type: CompressionType, readonly clusterBits: number) {
    this.sizes = new CompressedSizes(type, clusterBits)
  }

  /** Measures the next data clusters, in guest order (their bytes copied before this returns a promise). */
  async add (data: Buffer[]): Promise<void> {
    this.throwIfFailed()
    const first = this.added
    this.added += data.length
    // Never rejects: a failure is kept, and thrown by the next add or by finish.
    const batch = compressPool.compress(this.type, data, this.sizes.clusterBytes, { keepOutput: false })
      .then(({ lengths }) => { lengths.forEach((length, i) => { this.sizes.record(first + i, length) }) })
      .catch((err: unknown) => { this.failure ??= err instanceof Error ? err : new Error(String(err)) })
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
