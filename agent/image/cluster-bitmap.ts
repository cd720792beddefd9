/**
 * Which clusters of a disk carry data: one bit per cluster, in memory (a 2 TiB disk in 64 KiB
 * clusters is 32 Mi clusters, 4 MiB of bits). A capture sets the bits of the clusters it must keep
 * (not all zero, not free in a filesystem), then lays the image out from them.
 */
export class ClusterBitmap {
  private readonly bits: Uint8Array
  private setCount = 0

  constructor (readonly clusters: number) {
    if (!Number.isSafeInteger(clusters) || clusters < 0) throw new RangeError(`a bitmap of ${clusters} clusters`)
    this.bits = new Uint8Array(Math.ceil(clusters / 8))
  }

  /** Clusters set. */
  get count (): number {
    return this.setCount
  }

  has (cluster: number): boolean {
    this.check(cluster)
    return ((this.bits[cluster >>> 3] as number) & (1 << (cluster & 7))) !== 0
  }

  set (cluster: number): void {
    this.check(cluster)
    const byte = cluster >>> 3
    const mask = 1 << (cluster & 7)
    const value = this.bits[byte] as number
    if ((value & mask) !== 0) return
    this.bits[byte] = value | mask
    this.setCount++
  }

  /** Clusters set in [from, to). */
  countIn (from: number, to: number): number {
    let n = 0
    for (let cluster = from; cluster < to; cluster++) {
      // Whole bytes at once where the range allows.
      if ((cluster & 7) === 0 && cluster + 8 <= to) {
        n += POPCOUNT[this.bits[cluster >>> 3] as number] as number
        cluster += 7
        continue
      }
      if (this.has(cluster)) n++
    }
    return n
  }

  /** The clusters set, ascending. */
  * [Symbol.iterator] (): Generator<number> {
    for (let byte = 0; byte < this.bits.length; byte++) {
      const value = this.bits[byte] as number
      if (value === 0) continue
      for (let bit = 0; bit < 8; bit++) if ((value & (1 << bit)) !== 0) yield byte * 8 + bit
    }
  }

  private check (cluster: number): void {
    if (!Number.isSafeInteger(cluster) || cluster < 0 || cluster >= this.clusters) throw new RangeError(`cluster ${cluster} of ${this.clusters}`)
  }
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, value) => {
  let n = 0
  for (let v = value; v !== 0; v >>= 1) n += v & 1
  return n
})
