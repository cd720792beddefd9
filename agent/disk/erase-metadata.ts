/**
 * Ironic's `erase_devices_metadata` clean step, on one disk: what makes a disk look empty to the
 * next owner's tools and firmware, without the hours a full erase takes. ironic-python-agent runs
 * `wipefs --all` on the disk and its partitions and `sgdisk -Z`; the same bytes are zeroed here,
 * with no tool: the disk's first MiB (MBR, primary GPT, a filesystem or LVM/md signature on the
 * whole disk) and last MiB (backup GPT, md 0.90/1.0 and DDF RAID metadata at the end), and each
 * partition's first and last MiB (ext2/3/4, XFS, Btrfs, swap, LVM, md 1.1/1.2 and LUKS headers at
 * its start, md 0.90/1.0 at its end). The partitions are listed before anything is zeroed.
 *
 * The disk is opened as an install opens it (O_EXCL on a device: refused while mounted or held),
 * so a disk in use is never erased.
 */
import type { Logger } from 'pino'
import { Disk } from './disk.js'
import { listPartitions } from './partition-list.js'

const SPAN_BYTES = 1024 * 1024 // 1 MiB

export interface ErasedMetadata {
  path: string
  sizeBytes: number
  table: 'gpt' | 'mbr' | 'none'
  /** The ranges zeroed, [start, end), merged and in order. */
  ranges: Array<[number, number]>
}

export async function eraseDiskMetadata (path: string, options: { logger?: Logger } = {}): Promise<ErasedMetadata> {
  const disk = await Disk.open(path)
  try {
    const { table, partitions } = await listPartitions(disk)
    const spans: Array<[number, number]> = [[0, SPAN_BYTES], [disk.sizeBytes - SPAN_BYTES, disk.sizeBytes]]
    for (const partition of partitions) {
      if (partition.number === 0) continue
      spans.push([partition.start, partition.start + SPAN_BYTES], [partition.end - SPAN_BYTES, partition.end])
    }
    const ranges = mergeRanges(spans.map(([start, end]) => [Math.max(0, start), Math.min(disk.sizeBytes, end)]))
    for (const [start, end] of ranges) await disk.zero(start, end - start)
    await disk.sync()
    options.logger?.info({ disk: path, table, ranges }, 'disk metadata erased')
    return { path, sizeBytes: disk.sizeBytes, table, ranges }
  } finally {
    await disk.close()
  }
}

/** Sorted, overlapping or touching ranges joined, empty ones dropped. */
export function mergeRanges (spans: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const sorted = spans.filter(([start, end]) => end > start).map(([start, end]): [number, number] => [start, end]).sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const span of sorted) {
    const last = merged[merged.length - 1]
    if (last !== undefined && span[0] <= last[1]) last[1] = Math.max(last[1], span[1])
    else merged.push(span)
  }
  return merged
}
