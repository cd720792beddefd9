/**
 * An image held in memory as a list of large slabs (no single huge Buffer), filled in order with
 * the download's own slabs, kept as they are (`adopt`): the download copied each byte once. Its capacity is
 * the memory budget: going past it throws `MemoryBudgetExceeded`, and the caller decides what that
 * means (raw: switch to streaming; qcow2: "too big to download in memory").
 */

export const SLAB_BYTES = 16 * 1024 * 1024 // 16 MiB per slab

export class MemoryBudgetExceeded extends Error {
  constructor (readonly limitBytes: number) {
    super(`image exceeds the memory budget of ${limitBytes} bytes`)
    this.name = 'MemoryBudgetExceeded'
  }
}

/** Random read access to a downloaded image (the qcow2 reader's input). */
export interface ByteSource {
  readonly sizeBytes: number
  /**
   * Bytes [offset, offset + length): a view without copying when they lie in one slab, else a copy.
   * Shorter than `length` when the range passes the end. Callers must not modify it.
   */
  view (offset: number, length: number): Buffer
}

export class MemoryImage implements ByteSource {
  private slabs: Buffer[] = []
  private used = 0 // bytes used in the last slab
  private total = 0

  constructor (readonly limitBytes: number) {}

  get sizeBytes (): number {
    return this.total
  }

  /** Bytes of the next slab the budget allows: SLAB_BYTES, less near the budget, 0 once it is reached. */
  nextSlabBytes (): number {
    return Math.min(SLAB_BYTES, this.limitBytes - this.total)
  }

  /**
   * Keeps `data` (the filled part of a slab of the download, never changed after) as the image's
   * next bytes, without copying it. Only the last slab may be shorter than SLAB_BYTES for reads to
   * stay copy-free (nextSlabBytes gives that).
   */
  adopt (data: Buffer): void {
    if (this.total + data.length > this.limitBytes) throw new MemoryBudgetExceeded(this.limitBytes)
    if (data.length === 0) return
    this.slabs.push(data)
    this.used = data.length
    this.total += data.length
  }

  /** The filled parts of the slabs, in order, with their offsets in the image. */
  * pieces (): Generator<{ offset: number; data: Buffer }> {
    let offset = 0
    for (let i = 0; i < this.slabs.length; i++) {
      const slab = this.slabs[i] as Buffer
      const data = i === this.slabs.length - 1 ? slab.subarray(0, this.used) : slab
      yield { offset, data }
      offset += data.length
    }
  }

  /** Copies bytes [offset, offset + length) of the image out. */
  read (offset: number, length: number): Buffer {
    const out = Buffer.alloc(Math.max(0, Math.min(length, this.total - offset)))
    for (const piece of this.pieces()) {
      const start = Math.max(offset, piece.offset)
      const end = Math.min(offset + out.length, piece.offset + piece.data.length)
      if (start < end) piece.data.copy(out, start - offset, start - piece.offset, end - piece.offset)
    }
    return out
  }

  view (offset: number, length: number): Buffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) throw new RangeError(`bad range ${offset}+${length}`)
    const end = Math.min(offset + length, this.total)
    if (offset >= end) return Buffer.alloc(0)
    // Every slab but the last is SLAB_BYTES long, unless the budget made the first one smaller.
    const first = this.slabs[0]
    if (first !== undefined && first.length === SLAB_BYTES && (this.slabs.length < 3 || (this.slabs[this.slabs.length - 2] as Buffer).length === SLAB_BYTES)) {
      const index = Math.floor(offset / SLAB_BYTES)
      if (index === Math.floor((end - 1) / SLAB_BYTES)) {
        const slab = this.slabs[index] as Buffer
        return slab.subarray(offset - index * SLAB_BYTES, end - index * SLAB_BYTES)
      }
    }
    return this.read(offset, end - offset)
  }

  /** Forgets everything (the download restarted from byte 0, or the image went to disk). */
  clear (): void {
    this.slabs = []
    this.used = 0
    this.total = 0
  }
}
