/**
 * Some byte ranges of a file known by its size, as a ByteSource: what a streamed qcow2 install
 * fetches first with Range requests (the header, the L1 and L2 tables), so that openQcow2 checks
 * them exactly as it checks a file held whole. Reading bytes that were not fetched is a RangeError
 * (a bug in the caller's map, never a silent zero); past the file's end a view is short, as
 * MemoryImage's is.
 */
import type { ByteSource } from './memory-image.js'

interface Piece {
  offset: number
  data: Buffer
}

export class SparseSource implements ByteSource {
  /** Disjoint, sorted by offset; adjacent or overlapping additions are merged. */
  private pieces: Piece[] = []

  constructor (readonly sizeBytes: number) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw new RangeError(`a file of ${sizeBytes} bytes`)
  }

  /** Bytes of the file at `offset` (clipped at its end). Overlapping bytes must be equal to those held. */
  add (offset: number, data: Uint8Array): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`bad offset ${offset}`)
    const end = Math.min(offset + data.length, this.sizeBytes)
    if (end <= offset) return
    let start = offset
    let merged = Buffer.from(data.subarray(0, end - offset))
    const kept: Piece[] = []
    for (const piece of this.pieces) {
      const pieceEnd = piece.offset + piece.data.length
      if (pieceEnd < start || piece.offset > start + merged.length) {
        kept.push(piece)
        continue
      }
      const overlapStart = Math.max(start, piece.offset)
      const overlapEnd = Math.min(start + merged.length, pieceEnd)
      if (overlapStart < overlapEnd &&
        !merged.subarray(overlapStart - start, overlapEnd - start).equals(piece.data.subarray(overlapStart - piece.offset, overlapEnd - piece.offset))) {
        throw new RangeError(`bytes ${overlapStart}-${overlapEnd - 1} were fetched twice and differ`)
      }
      const newStart = Math.min(start, piece.offset)
      const newEnd = Math.max(start + merged.length, pieceEnd)
      const joined = Buffer.alloc(newEnd - newStart)
      piece.data.copy(joined, piece.offset - newStart)
      merged.copy(joined, start - newStart)
      start = newStart
      merged = joined
    }
    kept.push({ offset: start, data: merged })
    this.pieces = kept.sort((a, b) => a.offset - b.offset)
  }

  /** True when bytes [offset, offset + length), clipped at the file's end, are all held. */
  has (offset: number, length: number): boolean {
    const end = Math.min(offset + length, this.sizeBytes)
    if (end <= offset) return true
    return this.pieceHolding(offset, end) !== undefined
  }

  view (offset: number, length: number): Buffer {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) throw new RangeError(`bad range ${offset}+${length}`)
    const end = Math.min(offset + length, this.sizeBytes)
    if (end <= offset) return Buffer.alloc(0)
    const piece = this.pieceHolding(offset, end)
    if (piece === undefined) throw new RangeError(`bytes ${offset}-${end - 1} of the file were not fetched`)
    return piece.data.subarray(offset - piece.offset, end - piece.offset)
  }

  /** The parts of [offset, offset + length), clipped at the file's end, that are not held, in order. */
  missing (offset: number, length: number): Array<{ offset: number; length: number }> {
    const end = Math.min(offset + length, this.sizeBytes)
    const gaps: Array<{ offset: number; length: number }> = []
    let at = offset
    for (const piece of this.pieces) {
      if (at >= end) break
      if (piece.offset + piece.data.length <= at) continue
      if (piece.offset >= end) break
      if (piece.offset > at) gaps.push({ offset: at, length: piece.offset - at })
      at = piece.offset + piece.data.length
    }
    if (at < end) gaps.push({ offset: at, length: end - at })
    return gaps
  }

  /**
   * The first file offset where `data`, the file's bytes at `offset`, differs from the bytes held
   * there; undefined when every byte held in that range is equal (bytes not held are not compared).
   */
  compare (offset: number, data: Uint8Array): number | undefined {
    const end = offset + data.length
    for (const piece of this.pieces) {
      const from = Math.max(offset, piece.offset)
      const to = Math.min(end, piece.offset + piece.data.length)
      if (from >= to) continue
      const held = piece.data.subarray(from - piece.offset, to - piece.offset)
      const seen = data.subarray(from - offset, to - offset)
      if (held.equals(seen)) continue
      let at = 0
      while (held[at] === seen[at]) at++
      return from + at
    }
    return undefined
  }

  /** Bytes held in all. */
  get heldBytes (): number {
    return this.pieces.reduce((sum, piece) => sum + piece.data.length, 0)
  }

  private pieceHolding (offset: number, end: number): Piece | undefined {
    // Pieces are disjoint and merged when they touch: a range held lies within one of them.
    let low = 0
    let high = this.pieces.length - 1
    while (low <= high) {
      const middle = (low + high) >> 1
      const piece = this.pieces[middle] as Piece
      if (piece.offset > offset) high = middle - 1
      else if (piece.offset + piece.data.length < end) low = middle + 1
      else return piece
    }
    return undefined
  }
}
