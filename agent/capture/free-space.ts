import { readBytes, type BlockIo } from '../disk/partition-table.js'
import { listPartitions } from '../disk/partition-list.js'
import { ext4FreeBlocks } from '../image/ext4-free-blocks.js'

/**
 * The byte ranges of a disk that a capture leaves out as free: the free blocks of each ext2/3/4
 * filesystem found in its partition table (GPT or MBR primaries), read from the filesystem's own
 * bitmaps. Everything else (other filesystems, unpartitioned space, an ext4 whose bitmaps cannot
 * be trusted) is captured as it is; all-zero clusters are left out anyway (scan-disk).
 */

/** A partition: bytes [start, end) of the disk. */
interface Span {
  number: number
  start: number
  end: number
}


export class FreeSpace {
  /** Free byte ranges of the disk, ascending, not overlapping, [start, end). */
  readonly ranges: Array<[number, number]> = []
  /** What was found, for the result's notes: `partition 1: ext4, 812 MiB free left out`, or why not. */
  readonly notes: string[] = []

  get bytes (): number {
    return this.ranges.reduce((sum, [start, end]) => sum + end - start, 0)
  }

  /** The first range that ends after `offset` (binary search), or ranges.length. */
  private firstEndingAfter (offset: number): number {
    let lo = 0
    let hi = this.ranges.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.ranges[mid] as [number, number])[1] <= offset) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** Every byte of [start, end) is free. */
  covers (start: number, end: number): boolean {
    const range = this.ranges[this.firstEndingAfter(start)]
    return range !== undefined && range[0] <= start && range[1] >= end
  }

  /** Zeroes the free bytes of `data`, which holds the disk's bytes from `offset`. */
  zeroIn (data: Uint8Array, offset: number): void {
    const end = offset + data.length
    for (let i = this.firstEndingAfter(offset); i < this.ranges.length; i++) {
      const [start, stop] = this.ranges[i] as [number, number]
      if (start >= end) break
      data.fill(0, Math.max(start, offset) - offset, Math.min(stop, end) - offset)
    }
  }
}

/** Reads the disk's partition table and each ext filesystem's bitmaps. */
export async function findFreeSpace (io: BlockIo): Promise<FreeSpace> {
  const free = new FreeSpace()
  const spans = (await partitions(io, free.notes)).sort((a, b) => a.start - b.start)
  if (spans.some((span, i) => i > 0 && span.start < (spans[i - 1] as Span).end)) {
    free.notes.push('partitions overlap: the disk is captured as it is')
    return free
  }
  for (const span of spans) {
    const which = span.number === 0 ? 'the disk' : `partition ${span.number}`
    const read = async (offset: number, length: number): Promise<Buffer> => {
      const bytes = Math.max(0, Math.min(length, span.end - span.start - offset))
      return await readBytes(io, span.start + offset, bytes)
    }
    const verdict = await ext4FreeBlocks(read, span.end - span.start)
    if (verdict.kind === 'not-ext4') continue
    if (verdict.kind === 'untrusted') {
      free.notes.push(`${which}: ext2/3/4 captured whole: ${verdict.reason}`)
      continue
    }
    for (const [start, end] of verdict.free) free.ranges.push([span.start + start, span.start + end])
    free.notes.push(`${which}: ext2/3/4, ${Math.round(verdict.freeBytes / 2 ** 20)} MiB free left out`)
  }
  return free
}

async function partitions (io: BlockIo, notes: string[]): Promise<Span[]> {
  const list = await listPartitions(io)
  if (list.problem !== undefined) notes.push(`${list.problem}: the disk is captured as it is`)
  return list.partitions
}
