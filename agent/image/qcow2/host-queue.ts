/**
 * The guest extents of a qcow2 still to come in a streamed file, by where their bytes lie in it:
 * a min-heap on the host offset, so that the stream (which reads the file once, start to end)
 * meets each extent in order, however the tables order them. Four numbers per extent in typed
 * arrays (32 bytes each, never an object per cluster): the map of a 2 GiB file of 64 KiB
 * clusters, every cluster its own extent, is 1 MiB.
 */

/** Data: `length` host bytes from `hostOffset` are the guest's from `guestOffset`. Compressed: one cluster. */
export interface HostExtent {
  hostOffset: number
  guestOffset: number
  /** Guest bytes (for data, host bytes too). */
  length: number
  /** Compressed: the host bytes to read (to the file's end at most); 0 for data. */
  compressedBytes: number
}

/** Bytes one queued extent takes (four float64s; the arrays grow by doubling, so up to twice that). */
export const HOST_EXTENT_BYTES = 32
const INITIAL_CAPACITY = 1024

export class HostQueue {
  private host = new Float64Array(INITIAL_CAPACITY)
  private guest = new Float64Array(INITIAL_CAPACITY)
  private length = new Float64Array(INITIAL_CAPACITY)
  private compressed = new Float64Array(INITIAL_CAPACITY)
  private count = 0

  get size (): number {
    return this.count
  }

  push (extent: HostExtent): void {
    if (this.count === this.host.length) this.grow()
    let at = this.count++
    // Sift up.
    while (at > 0) {
      const parent = (at - 1) >> 1
      if ((this.host[parent] as number) <= extent.hostOffset) break
      this.move(parent, at)
      at = parent
    }
    this.set(at, extent)
  }

  /** The host offset of the first extent, or Infinity when none is left. */
  peekHost (): number {
    return this.count === 0 ? Infinity : this.host[0] as number
  }

  pop (): HostExtent | undefined {
    if (this.count === 0) return undefined
    const top = this.get(0)
    const last = --this.count
    if (last > 0) {
      const moved = this.get(last)
      // Sift down.
      let at = 0
      for (;;) {
        const left = 2 * at + 1
        if (left >= last) break
        const right = left + 1
        const child = right < last && (this.host[right] as number) < (this.host[left] as number) ? right : left
        if ((this.host[child] as number) >= moved.hostOffset) break
        this.move(child, at)
        at = child
      }
      this.set(at, moved)
    }
    return top
  }

  clear (): void {
    this.count = 0
  }

  private get (at: number): HostExtent {
    return {
      hostOffset: this.host[at] as number,
      guestOffset: this.guest[at] as number,
      length: this.length[at] as number,
      compressedBytes: this.compressed[at] as number,
    }
  }

  private set (at: number, extent: HostExtent): void {
    this.host[at] = extent.hostOffset
    this.guest[at] = extent.guestOffset
    this.length[at] = extent.length
    this.compressed[at] = extent.compressedBytes
  }

  private move (from: number, to: number): void {
    this.host[to] = this.host[from] as number
    this.guest[to] = this.guest[from] as number
    this.length[to] = this.length[from] as number
    this.compressed[to] = this.compressed[from] as number
  }

  private grow (): void {
    const grown = (old: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const next = new Float64Array(old.length * 2)
      next.set(old)
      return next
    }
    this.host = grown(this.host)
    this.guest = grown(this.guest)
    this.length = grown(this.length)
    this.compressed = grown(this.compressed)
  }
}
