/**
 * After a run that wrote the disk: a few 1 MiB ranges of the disk (the image's first MiB, one in
 * the middle, its last MiB) must equal the image's, and the disk must keep its size (notrunc).
 * The agent rewrites the partition tables (protective MBR and primary GPT in the first 34 sectors,
 * the backup GPT moved from the image's last 33 sectors to the disk's end): for it those sectors
 * are left out of the comparison.
 */
import { promises as fs } from 'node:fs'
import type { DiskUnderTest } from './contender.js'

const SAMPLE_BYTES = 1024 * 1024 // 1 MiB
const SECTOR_BYTES = 512
const PRIMARY_GPT_SECTORS = 34 // LBA 0 protective MBR, LBA 1 header, LBAs 2-33 the 128 entries of 128 bytes
const BACKUP_GPT_SECTORS = 33 // the entries, then the header in the last LBA

export interface SampleRange {
  offset: number
  length: number
}

export function sampleRanges (imageBytes: number, options: { skipPartitionTables: boolean }): SampleRange[] {
  const skipHead = options.skipPartitionTables ? PRIMARY_GPT_SECTORS * SECTOR_BYTES : 0
  const skipTail = options.skipPartitionTables ? BACKUP_GPT_SECTORS * SECTOR_BYTES : 0
  const first = Math.min(SAMPLE_BYTES, imageBytes)
  const middle = Math.floor(imageBytes / 2 / SAMPLE_BYTES) * SAMPLE_BYTES
  const last = Math.max(0, imageBytes - SAMPLE_BYTES)
  return [
    { offset: skipHead, length: first - skipHead },
    { offset: middle, length: Math.min(SAMPLE_BYTES, imageBytes - middle) },
    { offset: last, length: imageBytes - last - skipTail },
  ].filter((r) => r.length > 0)
}

async function readRange (path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await fs.open(path, 'r')
  try {
    const data = Buffer.alloc(length)
    let done = 0
    while (done < length) {
      const { bytesRead } = await handle.read(data, done, length - done, offset + done)
      if (bytesRead === 0) break
      done += bytesRead
    }
    return data.subarray(0, done)
  } finally {
    await handle.close()
  }
}

/** Undefined when every sample matches; else what differs. */
export async function compareDiskSamples (disk: DiskUnderTest, options: { skipPartitionTables: boolean }): Promise<string | undefined> {
  const diskSize = (await fs.stat(disk.path)).size
  if (diskSize !== disk.sizeBytes) return `the disk is ${diskSize} bytes, not ${disk.sizeBytes}`
  for (const { offset, length } of sampleRanges(disk.referenceBytes, options)) {
    const [expected, got] = await Promise.all([readRange(disk.referencePath, offset, length), readRange(disk.path, offset, length)])
    if (!expected.equals(got)) return `the disk's bytes [${offset}, ${offset + length}) differ from the image's`
  }
  return undefined
}
