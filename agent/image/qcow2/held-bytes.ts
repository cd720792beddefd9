/**
 * Bytes of a streamed qcow2 kept because the stream passed them before the map could say what they
 * are (data of an L2 table not met yet, a table before the L1 that names it). Appended in file
 * order, copied out on demand; the caller bounds them (the memory budget) and drops them all once
 * the map is whole.
 */
interface Piece {
  offset: number
  data: Buffer
}

export class HeldBytes {
  private pieces: Piece[] = []
  private total = 0

  /** Bytes held in all. */
  get bytes (): number {
    return this.total
  }

  /** Keeps a copy of `data`, the file's bytes at `offset`; offsets only grow from one call to the next. */
  add (offset: number, data: Uint8Array): void {
    if (data.length === 0) return
    const last = this.pieces[this.pieces.length - 1]
    if (last !== undefined && offset < last.offset + last.data.length) throw new RangeError(`held bytes at ${offset} come before those held`)
    this.pieces.push({ offset, data: Buffer.from(data) })
    this.total += data.length
  }

  /** A copy of [offset, offset + length), or undefined when any of it is not held. */
  read (offset: number, length: number): Buffer | undefined {
    const out = Buffer.allocUnsafe(length)
    let at = offset
    let index = this.firstEndingAfter(offset)
    while (at < offset + length) {
      const piece = this.pieces[index++]
      if (piece === undefined || piece.offset > at) return undefined
      const n = Math.min(piece.offset + piece.data.length, offset + length) - at
      piece.data.copy(out, at - offset, at - piece.offset, at - piece.offset + n)
      at += n
    }
    return out
  }

  clear (): void {
    this.pieces = []
    this.total = 0
  }

  /** Index of the first piece ending after `offset` (pieces are sorted and disjoint). */
  private firstEndingAfter (offset: number): number {
    let low = 0
    let high = this.pieces.length
    while (low < high) {
      const middle = (low + high) >> 1
      const piece = this.pieces[middle] as Piece
      if (piece.offset + piece.data.length <= offset) low = middle + 1
      else high = middle
    }
    return low
  }
}
